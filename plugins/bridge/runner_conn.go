package bridge

import (
	"context"
	"maps"
	"math/rand/v2"
	"time"

	"github.com/agentd/agentd/client"
	"github.com/agentd/agentd/plugins/bridge/store"
	"github.com/agentd/agentd/wire"
)

// Reconnect policy: exponential backoff from reconnectMin to reconnectMax,
// each wait randomised by ±reconnectJitter so that bridges restarted
// together do not hammer a recovering gateway in step. A connection that
// stayed up for stableAfter resets the backoff.
const (
	reconnectMin    = 250 * time.Millisecond
	reconnectMax    = 30 * time.Second
	reconnectFactor = 2
	reconnectJitter = 0.2
	stableAfter     = 10 * time.Second
)

// Keep-alive: a ping every pingInterval; a connection with no frame at all
// for silenceLimit is considered dead (a half-open TCP or iroh stream
// otherwise looks alive forever).
const (
	pingInterval = 30 * time.Second
	silenceLimit = 2*pingInterval + 15*time.Second
)

// backoff returns the wait before reconnect attempt n (0-based).
func backoff(n int) time.Duration {
	d := reconnectMin
	for i := 0; i < n && d < reconnectMax; i++ {
		d *= reconnectFactor
	}
	d = min(d, reconnectMax)
	j := 1 + reconnectJitter*(2*rand.Float64()-1)
	return time.Duration(float64(d) * j)
}

// gatewayLoop keeps one gateway connection up until ctx ends.
func (r *Runner) gatewayLoop(ctx context.Context) {
	attempt := 0
	refused := false // the refusal of our certificate was reported since the last connect
	for ctx.Err() == nil {
		// Acks: the gateway keeps each reply until a chat has shown it
		// (chatWorker acks at turn_complete), so a reply this process
		// received but did not post before dying is sent again to the
		// next process.
		unacked := r.unackedSnapshot()
		first := make([]wire.Ack, 0, len(unacked))
		for a := range unacked {
			first = append(first, a.frame())
		}
		c, err := r.dialer.DialWSWith(ctx, client.WSOptions{Logger: r.log, Acks: true, AckFirst: first})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			wait := backoff(attempt)
			if !refused && (client.IsStatus(err, 401) || client.IsStatus(err, 403)) {
				// Retrying continues (the device may be re-enrolled), but
				// the operator (and agentd's supervisor, which renews the
				// certificate) must hear of it, once.
				refused = true
				(*host)(r).Event("alert", CertRefused+": "+err.Error())
			}
			attempt++
			r.setErr(err.Error())
			r.log.Warn("gateway connection failed", "err", err, "retry_in", wait.Round(time.Millisecond), "attempt", attempt)
			if !sleepCtx(ctx, wait) {
				return
			}
			continue
		}
		refused = false
		r.log.Info("connected to gateway", "gateway", r.dialer.String(), "agent", c.AgentName(), "version", c.Version())
		r.mu.Lock()
		r.agentName = c.AgentName()
		r.mu.Unlock()
		r.acked(ctx, unacked)
		gc := &gwConn{c: c, opened: map[string]bool{}}
		start := time.Now()
		r.setConn(gc)
		r.sendAcks(ctx) // those that came up while dialing
		err = r.serveConn(ctx, gc)
		r.dropConn(gc, err)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) >= stableAfter {
			attempt = 0
		}
		wait := backoff(attempt)
		attempt++
		r.log.Warn("gateway connection lost", "err", err, "retry_in", wait.Round(time.Millisecond))
		if !sleepCtx(ctx, wait) {
			return
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (r *Runner) setErr(s string) {
	r.mu.Lock()
	r.lastErr = s
	r.mu.Unlock()
}

func (r *Runner) setConn(gc *gwConn) {
	r.mu.Lock()
	r.conn = gc
	r.lastErr = ""
	close(r.connCh)
	r.connCh = make(chan struct{})
	r.mu.Unlock()
	r.connected.Store(true)
}

// dropConn retires gc if it is still the live connection, and tells every
// chat with a reply in flight that it was cut off.
func (r *Runner) dropConn(gc *gwConn, cause error) {
	r.mu.Lock()
	if r.conn != gc {
		r.mu.Unlock()
		return
	}
	r.conn = nil
	if cause != nil {
		r.lastErr = cause.Error()
	}
	close(r.connCh)
	r.connCh = make(chan struct{})
	workers := make([]*chatWorker, 0, len(r.workers))
	for _, w := range r.workers {
		workers = append(workers, w)
	}
	r.mu.Unlock()
	r.connected.Store(false)
	gc.c.Close()
	for _, w := range workers {
		w.enqueue(event{kind: evDisconnected})
	}
}

// serveConn reads frames until the connection fails or ctx ends.
func (r *Runner) serveConn(ctx context.Context, gc *gwConn) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		t := time.NewTicker(pingInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				// A failed ping shows up as a read error below.
				_ = gc.c.Send(wire.Ping{})
			}
		}
	}()
	for {
		rctx, rcancel := context.WithTimeout(ctx, silenceLimit)
		m, err := gc.c.Recv(rctx)
		rcancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		r.dispatch(m)
	}
}

// dispatch routes one gateway frame to the chat it belongs to.
func (r *Runner) dispatch(m wire.Message) {
	var sid string
	var ev event
	switch m := m.(type) {
	case wire.Delta:
		sid, ev = m.SessionID, event{kind: evDelta, text: m.Text}
	case wire.Status:
		sid, ev = m.SessionID, event{kind: evStatus, text: m.Text}
	case wire.Response:
		sid, ev = m.SessionID, event{kind: evResponse, resp: m, turn: m.TurnID}
	case wire.TurnComplete:
		sid, ev = m.SessionID, event{kind: evTurnComplete, turn: m.TurnID}
	case wire.Queued:
		sid, ev = m.SessionID, event{kind: evQueued, pos: m.Position}
		if sid == "" {
			r.mu.Lock()
			sid = r.lastTurn
			r.mu.Unlock()
		}
	case wire.CommandResult:
		sid, ev = m.SessionID, event{kind: evNotice, text: m.Text}
		if sid == "" {
			r.mu.Lock()
			sid = r.lastCmd
			r.mu.Unlock()
		}
		if m.NewSessionID != "" {
			r.moveSession(sid, m.NewSessionID)
		}
	case wire.Error:
		if m.SessionID == "" {
			r.log.Warn("gateway error", "text", m.Text)
			return
		}
		sid, ev = m.SessionID, event{kind: evNotice, text: errorMark + UserText(m.Text)}
		if m.TurnID != "" { // the end of a failed turn: a reply to deliver like any
			ev = event{kind: evTurnError, text: UserText(m.Text), turn: m.TurnID}
		}
	case wire.AuthError:
		r.log.Error("gateway sent auth_error", "reason", m.Reason)
		return
	default:
		// pong, resource_event, system_snapshot, audio: nothing to show.
		return
	}
	chatID, ok := r.chatFor(sid)
	if !ok {
		r.log.Debug("frame for a session that is not ours dropped", "type", m.Type(), "session_id", sid)
		return
	}
	ev.sid = sid
	r.post(chatID, ev)
}

// ackRef names a reply to ack: its session and turn (turn "" for a
// gateway without turn ids: the whole session), and its row in the store
// (0 if none), which moves to Done once the ack is written.
type ackRef struct {
	sid, turn string
	id        int64
}

func (a ackRef) frame() wire.Ack { return wire.Ack{SessionID: a.sid, TurnID: a.turn} }

// ack tells the gateway that reply a has been shown. Without a live
// connection it is sent first thing on the next one (before the gateway
// re-sends what awaits an ack); if this process dies first, the store
// still has it (Acking) and the next process sends it.
func (r *Runner) ack(a ackRef) {
	r.mu.Lock()
	gc := r.conn
	r.mu.Unlock()
	if gc != nil {
		err := gc.c.Send(a.frame())
		if err == nil {
			r.done(r.runCtx, a)
			return
		}
		r.log.Debug("ack not sent; it will be sent on the next connection", "session_id", a.sid, "turn_id", a.turn, "err", err)
	}
	r.mu.Lock()
	r.ackSeq++
	r.unacked[a] = r.ackSeq
	r.mu.Unlock()
}

// done marks an acked reply Done in the store.
func (r *Runner) done(ctx context.Context, a ackRef) {
	if a.id == 0 {
		return
	}
	if err := r.st.SetState(context.WithoutCancel(ctx), a.id, store.Done); err != nil {
		r.log.Error("bridge store", "err", err)
	}
}

// sendAcks sends the acks waiting for a connection on the live one.
func (r *Runner) sendAcks(ctx context.Context) {
	snap := r.unackedSnapshot()
	r.mu.Lock()
	gc := r.conn
	r.mu.Unlock()
	if gc == nil || len(snap) == 0 {
		return
	}
	sent := map[ackRef]uint64{}
	for a, seq := range snap {
		if err := gc.c.Send(a.frame()); err != nil {
			break
		}
		sent[a] = seq
	}
	r.acked(ctx, sent)
}

// unackedSnapshot returns the acks waiting for a connection.
func (r *Runner) unackedSnapshot() map[ackRef]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.unacked)
}

// acked forgets the acks of snap, which a new connection sent, unless one
// of them failed again since the snapshot.
func (r *Runner) acked(ctx context.Context, snap map[ackRef]uint64) {
	r.mu.Lock()
	var sent []ackRef
	for a, seq := range snap {
		if r.unacked[a] == seq {
			delete(r.unacked, a)
			sent = append(sent, a)
		}
	}
	r.mu.Unlock()
	for _, a := range sent {
		r.done(ctx, a)
	}
}

// moveSession applies a "new" command's session id, if it stays within
// this bridge's prefix (the gateway would refuse anything else).
func (r *Runner) moveSession(oldSID, newSID string) {
	chatID, ok := r.chatFor(oldSID)
	if !ok || len(newSID) <= len(r.prefix)+1 || newSID[:len(r.prefix)+1] != r.prefix+":" {
		return
	}
	r.mu.Lock()
	r.sessions[chatID] = newSID
	r.chats[newSID] = chatID
	r.mu.Unlock()
	if err := r.st.SetChatSession(context.Background(), chatID, newSID); err != nil {
		r.log.Error("chat session not stored; it reverts after a restart", "chat_id", chatID, "session_id", newSID, "err", err)
	}
}
