package discord

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Why a relay, hand-written: discordgo v0.29.0 (the newest version the
// module proxy serves; its master handles this, unreleased) answers op 9
// Invalid Session with an identify on the same connection even when d is
// true, so a resumable session is thrown away and the events Discord sent
// meanwhile are never replayed. discordgo reads the gateway inside its own
// goroutine and offers no hook before it answers, so the bridge puts
// itself in between: discordgo's Dialer connects to this in-process relay
// (a net.Pipe, no socket), which dials the real gateway with gorilla (TLS,
// HTTP proxies) and passes every message both ways unchanged — except op 9
// with d=true, which it answers by closing the connection towards
// discordgo with 4000 (resumable): discordgo reports a disconnect, and
// Run's loop reconnects with Open, which sends op 6 Resume.
type relay struct {
	log      *slog.Logger
	upstream *websocket.Dialer
	ln       *pipeListener
	srv      *http.Server
}

// resumeClose is the close code the relay sends discordgo for a resumable
// invalid session: any code but 1000/1001 keeps a session resumable.
const resumeClose = 4000

// newRelay starts a relay; close stops it.
func newRelay(log *slog.Logger) *relay {
	r := &relay{
		log:      log,
		upstream: &websocket.Dialer{Proxy: http.ProxyFromEnvironment, HandshakeTimeout: 15 * time.Second},
		ln:       &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})},
	}
	r.srv = &http.Server{
		Handler:           http.HandlerFunc(r.serve),
		ReadHeaderTimeout: 15 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, schemeKey{}, c.(*pipeConn).scheme)
		},
	}
	go func() { _ = r.srv.Serve(r.ln) }()
	return r
}

// dialer is the Dialer discordgo uses: every connection reaches the relay.
func (r *relay) dialer() *websocket.Dialer {
	return &websocket.Dialer{
		HandshakeTimeout:  15 * time.Second,
		NetDialContext:    func(ctx context.Context, _, _ string) (net.Conn, error) { return r.ln.dial(ctx, "ws") },
		NetDialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return r.ln.dial(ctx, "wss") },
	}
}

// close stops the relay and every connection through it.
func (r *relay) close() {
	r.ln.Close()
	_ = r.srv.Close()
}

type schemeKey struct{}

// serve relays one gateway connection: the URL discordgo asked for, with
// the scheme it dialed, is the one dialed upstream.
func (r *relay) serve(w http.ResponseWriter, req *http.Request) {
	scheme, _ := req.Context().Value(schemeKey{}).(string)
	target := scheme + "://" + req.Host + req.URL.RequestURI()
	up, resp, err := r.upstream.DialContext(req.Context(), target, nil)
	if err != nil {
		status := http.StatusBadGateway
		if resp != nil {
			status = resp.StatusCode
		}
		r.log.Debug("gateway relay: upstream dial failed", "err", err)
		http.Error(w, "gateway unreachable: "+err.Error(), status)
		return
	}
	defer up.Close()
	down, err := (&websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}).Upgrade(w, req, nil)
	if err != nil {
		return
	}
	defer down.Close()
	done := make(chan struct{}, 2)
	go func() { r.pump(up, down, true); done <- struct{}{} }()
	go func() { r.pump(down, up, false); done <- struct{}{} }()
	<-done // one side ended: end the other
	_ = up.Close()
	_ = down.Close()
	<-done
}

// pump copies messages from src to dst until either ends, passing a close
// on with its code. fromDiscord marks the direction whose op 9 d=true
// becomes a resumable close.
func (r *relay) pump(src, dst *websocket.Conn, fromDiscord bool) {
	for {
		mt, msg, err := src.ReadMessage()
		if err != nil {
			code, text := websocket.CloseAbnormalClosure, ""
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				code, text = ce.Code, ce.Text
			}
			if code != websocket.CloseAbnormalClosure && code != websocket.CloseNoStatusReceived {
				_ = dst.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
			}
			return
		}
		if fromDiscord && mt == websocket.TextMessage && resumableInvalid(msg) {
			r.log.Info("gateway: invalid session, resumable (op 9 d=true); resuming it")
			_ = src.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(resumeClose, "resuming"), time.Now().Add(time.Second))
			_ = dst.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(resumeClose, "invalid session, resumable"), time.Now().Add(time.Second))
			return
		}
		if err := dst.WriteMessage(mt, msg); err != nil {
			return
		}
	}
}

// resumableInvalid reports whether msg is op 9 with d=true.
func resumableInvalid(msg []byte) bool {
	if len(msg) > 256 || !bytes.Contains(msg, []byte(`"op"`)) {
		return false // every dispatch worth reading is larger than an op 9
	}
	var f struct {
		Op int             `json:"op"`
		D  json.RawMessage `json:"d"`
	}
	return json.Unmarshal(msg, &f) == nil && f.Op == 9 && string(bytes.TrimSpace(f.D)) == "true"
}

// pipeListener is a net.Listener whose connections are in-process pipes.
type pipeListener struct {
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

// pipeConn is the relay's end of a pipe, with the scheme discordgo dialed.
type pipeConn struct {
	net.Conn
	scheme string
}

func (l *pipeListener) dial(ctx context.Context, scheme string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- &pipeConn{Conn: server, scheme: scheme}:
		return client, nil
	case <-l.done:
	case <-ctx.Done():
	}
	client.Close()
	server.Close()
	return nil, errors.New("discord gateway relay closed")
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "discord-gateway-relay" }
