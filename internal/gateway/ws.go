package gateway

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"time"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/session"
	"github.com/agentd/agentd/wire"
)

// serveWS upgrades the request, greets the client and hands its reader to
// a goroutine so the HTTP handler (and the buffers net/http keeps for it)
// can return.
func (g *Gateway) serveWS(w http.ResponseWriter, r *http.Request) {
	if g.ctx.Err() != nil {
		auth.WriteError(w, http.StatusServiceUnavailable, "unavailable", "the gateway is shutting down")
		return
	}
	id, _ := auth.FromContext(r.Context())
	hj, ok := w.(http.Hijacker)
	if !ok {
		auth.WriteError(w, http.StatusInternalServerError, "internal", "connection cannot be upgraded")
		return
	}
	var raw *batchConn
	ws, err := g.upgrader.Upgrade(hijackWrapper{ResponseWriter: w, hj: hj, wrap: func(nc net.Conn) net.Conn {
		raw = &batchConn{Conn: nc}
		return raw
	}}, r, nil)
	if err != nil {
		return // the upgrader answered the client
	}
	cfg := g.opts.Config.Current()
	c := &conn{
		g:         g,
		ws:        ws,
		raw:       raw,
		limit:     cfg.Limits.WriteQueue,
		pingEvery: cfg.Limits.PingInterval.D(),
		idle:      cfg.Limits.IdleTimeout.D(),
		writeWait: g.opts.WriteTimeout,
	}
	c.client = &session.Client{Identity: id, Sink: c}
	ws.SetReadLimit(0)
	c.ping = time.AfterFunc(c.pingEvery, c.sendPing)

	g.mu.Lock()
	if g.ctx.Err() != nil {
		g.mu.Unlock()
		c.shutdown()
		return
	}
	g.conns[c] = struct{}{}
	g.wg.Add(1)
	g.mu.Unlock()

	c.Send(wire.AuthOK{AgentName: cfg.Agent.Name, Version: g.opts.Version})
	// Connect (an outbox query) runs here, not on the reader, so the
	// reader's stack stays small for as long as the connection idles.
	var detach func()
	if g.opts.Sessions != nil {
		detach = g.opts.Sessions.Connect(c.client)
	}
	go func() {
		defer g.wg.Done()
		c.read(g.ctx, cfg.Limits.MaxFrameBytes)
		if detach != nil {
			detach()
		}
		g.mu.Lock()
		delete(g.conns, c)
		g.mu.Unlock()
	}()
}

// hijackWrapper lets the upgrader hijack a wrapped net.Conn.
type hijackWrapper struct {
	http.ResponseWriter
	hj   http.Hijacker
	wrap func(net.Conn) net.Conn
}

func (h hijackWrapper) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := h.hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	return h.wrap(nc), brw, nil
}

// dispatch acts on one decoded client frame.
func (g *Gateway) dispatch(ctx context.Context, c *conn, msg wire.Message) {
	switch m := msg.(type) {
	case wire.Auth:
		// Legacy handshake: authentication already happened in the stream
		// preamble, so only its acks flag (the client's delivery mode)
		// matters. SetAcks also sends the outbox of a client in ack mode,
		// which waited for this frame: after the answer, so a client sees
		// auth_ok, then its outbox.
		c.Send(wire.AuthOK{AgentName: g.opts.Config.Current().Agent.Name, Version: g.opts.Version})
		if g.opts.Sessions != nil {
			if err := g.opts.Sessions.SetAcks(ctx, c.client, m.Acks); err != nil {
				c.logger().Error("delivery mode not recorded", "acks", m.Acks, "err", err)
				c.Send(wire.Error{Text: "auth: delivery mode (acks) not recorded: database error"})
			}
		}
	case wire.Ping:
		c.Send(wire.Pong{})
	case wire.AudioChunkIn:
		g.audioChunkIn(ctx, c, m)
	case wire.SessionOpen, wire.TextFinal, wire.AttachmentIn, wire.Interrupt, wire.Command, wire.Ack:
		if g.opts.Sessions == nil {
			c.Send(wire.Error{Text: "sessions are not available on this agent"})
			return
		}
		g.opts.Sessions.Handle(ctx, c.client, msg)
	default:
		c.Send(wire.Error{Text: "unexpected " + msg.Type() + " frame"})
	}
}
