package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/agentd/agentd/wire"
)

const (
	// WSPath is the gateway's WebSocket endpoint.
	WSPath = "/ws"
	// maxFrameSize bounds one incoming frame; replies with long texts and
	// base64 audio chunks fit comfortably.
	maxFrameSize = 8 << 20
	// writeTimeout bounds one frame write so a stuck peer cannot block a
	// sender forever.
	writeTimeout = 10 * time.Second
	// recvBuffer is how many decoded frames wait for Recv before the read
	// loop stops reading (and TCP back-pressure applies).
	recvBuffer = 64
)

// ErrClosed is returned by Send and Recv after Close.
var ErrClosed = errors.New("client: connection closed")

// AuthError is the gateway's auth_error answer.
type AuthError struct{ Reason string }

func (e *AuthError) Error() string { return "gateway refused the connection: " + e.Reason }

// Conn is one WebSocket connection to the gateway, authenticated and past
// the auth/auth_ok exchange. Send and Recv may be called from different
// goroutines; Send is safe for concurrent use, Recv too.
type Conn struct {
	ws        *websocket.Conn
	agentName string
	version   string
	log       *slog.Logger

	// writeMu guards writes to ws (gorilla allows one writer at a time).
	writeMu sync.Mutex

	frames  chan wire.Message
	closing chan struct{} // closed by Close, stops a read loop blocked on frames
	done    chan struct{} // closed when the read loop ends
	// readErr is set before done is closed.
	readErr error

	closeOnce sync.Once
}

// DialWS opens an authenticated WebSocket to the gateway's /ws, sends the
// legacy auth frame and waits for auth_ok. An auth_error becomes *AuthError.
func (d *Dialer) DialWS(ctx context.Context) (*Conn, error) {
	return d.DialWSWith(ctx, WSOptions{})
}

// DialWSLogger is DialWS with a logger for frames the connection skips.
func (d *Dialer) DialWSLogger(ctx context.Context, log *slog.Logger) (*Conn, error) {
	return d.DialWSWith(ctx, WSOptions{Logger: log})
}

// WSOptions tune DialWSWith.
type WSOptions struct {
	// Logger receives the frames the connection skips; default
	// slog.Default().
	Logger *slog.Logger
	// Acks opts this device into acknowledged delivery (auth{acks:true},
	// docs/protocol.md): the gateway keeps every final reply until the
	// client sends wire.Ack for its session, and sends it again on each new
	// connection meanwhile. Only for clients that do send acks.
	Acks bool
	// AckFirst are acks to send before the auth frame: those a previous
	// connection could not send. The gateway applies them before it sends
	// this connection the replies still awaiting an ack, so replies
	// already handled are not sent again.
	AckFirst []wire.Ack
}

// DialWSWith is DialWS with options.
func (d *Dialer) DialWSWith(ctx context.Context, o WSOptions) (*Conn, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	wd := websocket.Dialer{
		NetDialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialAuth(ctx)
		},
		HandshakeTimeout: d.handshakeTimeout(),
	}
	ws, resp, err := wd.DialContext(ctx, "ws://agentd"+WSPath, nil)
	if err != nil {
		if resp != nil {
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusSwitchingProtocols {
				return nil, fmt.Errorf("open websocket: %w", ReadAPIError(resp))
			}
		}
		return nil, fmt.Errorf("open websocket: %w", err)
	}
	ws.SetReadLimit(maxFrameSize)
	c := &Conn{
		ws:      ws,
		log:     log,
		frames:  make(chan wire.Message, recvBuffer),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	for _, a := range o.AckFirst {
		if err := c.Send(a); err != nil {
			ws.Close()
			return nil, err
		}
	}
	if err := c.awaitAuth(ctx, d.handshakeTimeout(), wire.Auth{Acks: o.Acks}); err != nil {
		ws.Close()
		return nil, err
	}
	go c.readLoop()
	return c, nil
}

func (d *Dialer) handshakeTimeout() time.Duration {
	if d.HandshakeTimeout > 0 {
		return d.HandshakeTimeout
	}
	return DefaultHandshakeTimeout
}

// awaitAuth sends auth and reads until auth_ok or auth_error. Frames before
// it (a server may greet first) other than those two are not expected and
// are skipped.
func (c *Conn) awaitAuth(ctx context.Context, timeout time.Duration, auth wire.Auth) error {
	if err := c.Send(auth); err != nil {
		return err
	}
	dl := time.Now().Add(timeout)
	if cdl, ok := ctx.Deadline(); ok && cdl.Before(dl) {
		dl = cdl
	}
	_ = c.ws.SetReadDeadline(dl)
	stop := context.AfterFunc(ctx, func() { _ = c.ws.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			if ctx.Err() != nil {
				err = fmt.Errorf("%w (%w)", err, ctx.Err())
			}
			return fmt.Errorf("wait for auth_ok: %w", err)
		}
		m, err := wire.Decode(data, wire.ServerToClient)
		if err != nil {
			return fmt.Errorf("wait for auth_ok: bad frame from gateway: %w", err)
		}
		switch m := m.(type) {
		case wire.AuthOK:
			if !stop() {
				// ctx ended at this very moment and poisoned the deadline.
				return fmt.Errorf("wait for auth_ok: %w", ctx.Err())
			}
			c.agentName, c.version = m.AgentName, m.Version
			_ = c.ws.SetReadDeadline(time.Time{})
			return nil
		case wire.AuthError:
			return &AuthError{Reason: m.Reason}
		default:
			c.log.Debug("frame before auth_ok skipped", "type", m.Type())
		}
	}
}

// readLoop decodes frames until the connection fails or is closed. It ends
// with the connection, so Close (or the peer) stops it.
func (c *Conn) readLoop() {
	defer close(c.done)
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			select {
			case <-c.closing:
				c.readErr = ErrClosed
			default:
				c.readErr = fmt.Errorf("gateway connection: %w", err)
			}
			return
		}
		m, err := wire.Decode(data, wire.ServerToClient)
		if err != nil {
			// Unknown types are newer protocol; malformed frames are the
			// server's bug. Neither should kill the connection.
			c.log.Warn("gateway frame skipped", "err", err)
			continue
		}
		if _, ok := m.(wire.AuthOK); ok {
			// A server that greets unprompted and also answers our auth
			// frame sends two; the second carries nothing new.
			continue
		}
		select {
		case c.frames <- m:
		case <-c.closing:
			c.readErr = ErrClosed
			return
		}
	}
}

// AgentName is the agent's name from auth_ok.
func (c *Conn) AgentName() string { return c.agentName }

// Version is the agent's version from auth_ok.
func (c *Conn) Version() string { return c.version }

// Send writes one frame.
func (c *Conn) Send(m wire.Message) error {
	select {
	case <-c.closing:
		return ErrClosed
	default:
	}
	data, err := wire.Encode(m)
	if err != nil {
		return err
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := c.ws.WriteMessage(websocket.TextMessage, data); err != nil {
		return fmt.Errorf("send %s: %w", m.Type(), err)
	}
	return nil
}

// Recv returns the next frame from the gateway. After the connection ends
// it returns the reason (ErrClosed after Close).
func (c *Conn) Recv(ctx context.Context) (wire.Message, error) {
	select {
	case m := <-c.frames:
		return m, nil
	default:
	}
	select {
	case m := <-c.frames:
		return m, nil
	case <-c.done:
		// Frames read before the end still count.
		select {
		case m := <-c.frames:
			return m, nil
		default:
		}
		return nil, c.readErr
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Done is closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Close sends a close frame (best effort) and closes the stream.
func (c *Conn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.closing)
		// WriteControl may run concurrently with a Send (gorilla allows it).
		_ = c.ws.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		err = c.ws.Close()
	})
	return err
}
