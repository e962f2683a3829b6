package clienttest

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/agentd/agentd/wire"
)

// QueueCap is the FIFO cap per client, as in the real gateway's default.
const QueueCap = 20

// wsPeer is one WebSocket connection.
type wsPeer struct {
	ws *websocket.Conn
	// mu guards writes to ws.
	mu sync.Mutex
}

func (p *wsPeer) send(m wire.Message) {
	data, err := wire.Encode(m)
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	// A failed write means the client is gone; like the real gateway the
	// run goes on and its output is lost for this connection.
	_ = p.ws.WriteMessage(websocket.TextMessage, data)
}

func (g *Gateway) serveWS(w http.ResponseWriter, r *http.Request, p *peer) {
	if !slices.Contains(p.caps, "chat") && !slices.Contains(p.caps, "admin") && !slices.Contains(p.caps, "bridge") {
		writeError(w, http.StatusForbidden, "forbidden", "this device lacks the chat capability")
		return
	}
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer ws.Close()
	out := &wsPeer{ws: ws}
	// Like the real gateway: greet at once, and answer a legacy auth frame
	// with a second auth_ok.
	out.send(wire.AuthOK{AgentName: AgentName, Version: Version})
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			return
		}
		m, err := wire.Decode(data, wire.ClientToServer)
		if err != nil {
			out.send(wire.Error{Text: err.Error()})
			continue
		}
		g.record(Received{ClientID: p.clientID, Msg: m})
		switch m := m.(type) {
		case wire.Auth:
			out.send(wire.AuthOK{AgentName: AgentName, Version: Version})
		case wire.Ping:
			out.send(wire.Pong{})
		case wire.SessionOpen:
			if !p.maySession(m.SessionID) {
				out.send(wire.Error{Text: "session " + m.SessionID + " is outside this device's prefix", SessionID: m.SessionID})
			}
		case wire.TextFinal:
			if !p.maySession(m.SessionID) {
				out.send(wire.Error{Text: "session " + m.SessionID + " is outside this device's prefix", SessionID: m.SessionID})
				continue
			}
			g.queue(p.clientID).submit(Turn{ClientID: p.clientID, SessionID: m.SessionID, Text: m.Text, Attachments: m.Attachments}, out)
		case wire.Interrupt:
			g.queue(p.clientID).interrupt()
		case wire.Command:
			switch m.Name {
			case "stop":
				g.queue(p.clientID).interrupt()
				out.send(wire.CommandResult{Text: "stopped", SessionID: m.SessionID})
			case "clear", "reset":
				out.send(wire.CommandResult{Text: "session cleared", SessionID: m.SessionID})
			case "new":
				out.send(wire.CommandResult{Text: "new session", SessionID: m.SessionID})
			default:
				out.send(wire.CommandResult{Text: "unknown command: " + m.Name, SessionID: m.SessionID})
			}
		}
	}
}

func (g *Gateway) queue(clientID string) *runQueue {
	g.mu.Lock()
	defer g.mu.Unlock()
	q := g.clients[clientID]
	if q == nil {
		ctx, cancel := context.WithCancel(context.Background())
		q = &runQueue{g: g, ctx: ctx, stop: cancel}
		g.clients[clientID] = q
	}
	return q
}

type job struct {
	turn Turn
	out  *wsPeer
}

// runQueue is one client's active run plus FIFO.
type runQueue struct {
	g    *Gateway
	ctx  context.Context
	stop context.CancelFunc

	// mu guards active, pending and cancelRun.
	mu        sync.Mutex
	active    bool
	pending   []job
	cancelRun context.CancelFunc
}

func (q *runQueue) submit(t Turn, out *wsPeer) {
	q.mu.Lock()
	if q.active {
		if len(q.pending) >= QueueCap {
			q.mu.Unlock()
			out.send(wire.Error{Text: "queue full", SessionID: t.SessionID})
			return
		}
		q.pending = append(q.pending, job{t, out})
		pos := len(q.pending)
		q.mu.Unlock()
		out.send(wire.Queued{Position: pos, SessionID: t.SessionID})
		return
	}
	q.active = true
	q.mu.Unlock()
	go q.loop(job{t, out})
}

func (q *runQueue) loop(j job) {
	for {
		runCtx, cancel := context.WithCancel(q.ctx)
		q.mu.Lock()
		q.cancelRun = cancel
		q.mu.Unlock()
		q.run(runCtx, j)
		cancel()
		q.mu.Lock()
		if len(q.pending) == 0 || q.ctx.Err() != nil {
			q.active = false
			q.cancelRun = nil
			q.mu.Unlock()
			return
		}
		j = q.pending[0]
		q.pending = q.pending[1:]
		q.mu.Unlock()
	}
}

func (q *runQueue) run(ctx context.Context, j job) {
	q.g.mu.Lock()
	agent := q.g.agent
	q.g.mu.Unlock()
	r := agent(ctx, j.turn)
	sid := j.turn.SessionID
	for _, s := range r.Status {
		j.out.send(wire.Status{Text: s, SessionID: sid})
	}
	var sent strings.Builder
	interrupted := false
	for _, d := range r.Deltas {
		if ctx.Err() != nil {
			interrupted = true
			break
		}
		j.out.send(wire.Delta{Text: d, SessionID: sid})
		sent.WriteString(d)
		if r.DeltaDelay > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(r.DeltaDelay):
			}
		}
	}
	if ctx.Err() != nil {
		interrupted = true
	}
	text := r.Text
	if text == "" || interrupted {
		text = sent.String()
	}
	atts := r.Attachments
	if atts == nil {
		atts = []wire.Attachment{}
	}
	if q.ctx.Err() != nil {
		return // gateway shut down: nothing more is sent
	}
	j.out.send(wire.Response{Text: text, SessionID: sid, Model: "test-model", Attachments: atts, Interrupted: interrupted})
	j.out.send(wire.TurnComplete{SessionID: sid, Usage: wire.Usage{PromptTokens: len(j.turn.Text), CompletionTokens: len(text), TotalTokens: len(j.turn.Text) + len(text)}})
}

func (q *runQueue) interrupt() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.cancelRun != nil {
		q.cancelRun()
	}
}

func (q *runQueue) shutdown() { q.stop() }

func (g *Gateway) record(r Received) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.received = append(g.received, r)
	close(g.notify)
	g.notify = make(chan struct{})
}

// Received returns every frame clients sent so far, in order.
func (g *Gateway) Received() []Received {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.received)
}

// Turns returns the text_final frames received so far.
func (g *Gateway) Turns() []wire.TextFinal {
	var out []wire.TextFinal
	for _, r := range g.Received() {
		if tf, ok := r.Msg.(wire.TextFinal); ok {
			out = append(out, tf)
		}
	}
	return out
}

// WaitReceived waits until some received frame (from the start) satisfies
// match and returns it; it fails the test after timeout.
func (g *Gateway) WaitReceived(timeout time.Duration, match func(Received) bool) Received {
	g.t.Helper()
	deadline := time.After(timeout)
	seen := 0
	for {
		g.mu.Lock()
		rs := g.received[seen:]
		seen = len(g.received)
		ch := g.notify
		for _, r := range rs {
			if match(r) {
				g.mu.Unlock()
				return r
			}
		}
		g.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			g.t.Fatalf("clienttest: no matching frame within %v; received %d frames", timeout, seen)
			return Received{}
		}
	}
}
