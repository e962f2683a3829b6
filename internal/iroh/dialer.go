package iroh

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

const (
	// DefaultDialTimeout bounds a dial when neither Dialer.Timeout nor the
	// context sets a shorter limit (the binding alone waits ~30 s on a dead address).
	DefaultDialTimeout = 10 * time.Second
	// dialReplySlack is extra time the sidecar gets to send its reply line
	// after its own dial timeout.
	dialReplySlack = 2 * time.Second
)

// Dial errors; test with errors.Is.
var (
	ErrTimeout            = errors.New("iroh dial timed out")
	ErrUnreachable        = errors.New("iroh node unreachable")
	ErrALPNRefused        = errors.New("iroh node refused the ALPN")
	ErrBadRequest         = errors.New("iroh dial request rejected by the sidecar")
	ErrSidecarUnavailable = errors.New("iroh sidecar unavailable")
)

// NodeAddr says how to reach a node.
type NodeAddr struct {
	NodeID string   // 64 hex chars
	Addrs  []string // direct addresses "ip:port" (optional with a relay or discovery)
	Relay  string   // relay URL (optional)
}

// dialRequest / dialReply are the dial socket's lines of the contract.
type dialRequest struct {
	NodeID    string   `json:"node_id"`
	Addrs     []string `json:"addrs"`
	Relay     string   `json:"relay,omitempty"`
	ALPN      string   `json:"alpn"`
	TimeoutMS int64    `json:"timeout_ms"`
}

type dialReply struct {
	OK    bool   `json:"ok"`
	Code  string `json:"code"`
	Error string `json:"error"`
}

// Dialer opens iroh streams through a sidecar's dial socket.
type Dialer struct {
	// SocketPath is the sidecar's DialSocket.
	SocketPath string
	// Timeout of one dial; default DefaultDialTimeout. A context deadline
	// that comes sooner wins.
	Timeout time.Duration
	// WaitReady, if set, is called before each dial (Sidecar.WaitReady), so
	// dials made while the sidecar restarts wait for it instead of failing.
	WaitReady func(ctx context.Context) error
}

// Dial opens a bi-stream to addr with the given ALPN. The result is a *Conn.
func (d *Dialer) Dial(ctx context.Context, addr NodeAddr, alpn string) (net.Conn, error) {
	c, err := d.DialConn(ctx, addr, alpn)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// DialConn is Dial with the concrete type.
func (d *Dialer) DialConn(ctx context.Context, addr NodeAddr, alpn string) (*Conn, error) {
	nodeID := strings.ToLower(addr.NodeID)
	c, err := d.dial(ctx, nodeID, addr, alpn)
	if err != nil {
		short := nodeID
		if len(short) > 16 {
			short = short[:16]
		}
		return nil, fmt.Errorf("dial iroh node %s (alpn %s): %w", short, alpn, err)
	}
	return c, nil
}

func (d *Dialer) dial(ctx context.Context, nodeID string, addr NodeAddr, alpn string) (*Conn, error) {
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left < timeout {
			timeout = left
		}
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("%w: %w", ErrTimeout, context.DeadlineExceeded)
	}
	deadline := time.Now().Add(timeout)
	ctx, cancel := context.WithDeadline(ctx, deadline.Add(dialReplySlack))
	defer cancel()

	if d.WaitReady != nil {
		if err := d.WaitReady(ctx); err != nil {
			return nil, err
		}
	}
	var nd net.Dialer
	raw, err := nd.DialContext(ctx, "unix", d.SocketPath)
	if err != nil {
		return nil, fmt.Errorf("%w: connect to dial socket: %w", ErrSidecarUnavailable, err)
	}
	uc := raw.(*net.UnixConn)
	stop := context.AfterFunc(ctx, func() { _ = uc.Close() })

	req := dialRequest{NodeID: nodeID, Addrs: addr.Addrs, Relay: addr.Relay, ALPN: alpn,
		TimeoutMS: max(1, time.Until(deadline).Milliseconds())}
	if req.Addrs == nil {
		req.Addrs = []string{}
	}
	line, _ := json.Marshal(req)
	br := bufio.NewReaderSize(uc, maxHeaderLine)
	var rep dialReply
	if _, err = uc.Write(append(line, '\n')); err == nil {
		rep, err = readReply(br)
	}
	if !stop() || ctx.Err() != nil {
		// The context fired: the socket is (being) closed.
		_ = uc.Close()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("%w: no stream within %s: %w", ErrTimeout, timeout.Round(time.Millisecond), ctx.Err())
		}
		return nil, ctx.Err()
	}
	if err != nil {
		_ = uc.Close()
		return nil, fmt.Errorf("%w: reading dial reply: %w", ErrSidecarUnavailable, err)
	}
	if !rep.OK {
		_ = uc.Close()
		return nil, replyError(rep)
	}
	return &Conn{uc: uc, br: br, remote: nodeID, alpn: alpn}, nil
}

// readReply reads the sidecar's one-line answer to a dial request.
func readReply(br *bufio.Reader) (dialReply, error) {
	var rep dialReply
	if err := readLine(br, &rep); err != nil {
		return rep, err
	}
	if !rep.OK && rep.Code == "" && rep.Error == "" {
		return rep, errors.New(`dial reply: neither "ok":true nor an error`)
	}
	return rep, nil
}

func replyError(rep dialReply) error {
	msg := rep.Error
	if msg == "" {
		msg = "dial failed"
	}
	switch rep.Code {
	case "timeout":
		return fmt.Errorf("%w: %s", ErrTimeout, msg)
	case "alpn_refused":
		return fmt.Errorf("%w: %s", ErrALPNRefused, msg)
	case "bad_request":
		return fmt.Errorf("%w: %s", ErrBadRequest, msg)
	default:
		return fmt.Errorf("%w: %s", ErrUnreachable, msg)
	}
}
