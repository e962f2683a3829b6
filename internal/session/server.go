package session

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/agentd/agentd/wire"
)

// Server-side clients (the scheduler, workflows) ask for turns with RunTurn.
// Their turns go through the same lanes as a device's — queueing behind the
// session's active run, the queue cap, the model lookup, usage rows — but
// nobody is connected to receive the frames: the result is handed back to
// the caller, which decides where it goes (a task delivers it with Push).
//
// Such a turn is not persisted: the caller owns its durability (a task run
// cut by a shutdown is recorded as failed and the schedule decides whether
// to run again), so a restart does not replay it to nobody.

// TurnRequest is a turn asked for by a server-side client.
type TurnRequest struct {
	// Client names the asker ("scheduler:<task id>"); it owns a session the
	// turn creates and is recorded with the usage.
	Client string
	// SessionID is where the turn runs and its history is kept. With
	// Ephemeral it only labels the usage row.
	SessionID string
	Text      string
	// Model overrides the session's pin for this turn only; "" means the
	// pin, else the default model.
	Model string
	// System overrides the configured system prompt when not empty.
	System string
	// Ephemeral runs the turn without history: none is read, none kept
	// (usage is still recorded).
	Ephemeral bool
}

// TurnResult is the outcome of a finished server-side turn.
type TurnResult struct {
	Text        string
	Model       string
	Attachments []wire.Attachment
	Usage       wire.Usage
	Interrupted bool
}

// ErrStopped is returned by RunTurn when agentd shuts down before the turn
// ended.
var ErrStopped = errors.New("agentd stopped")

// serverResult is what execute hands back to RunTurn.
type serverResult struct {
	res TurnResult
	err error
}

// RunTurn runs req as a turn and waits for its end. Cancelling ctx
// interrupts the turn (or withdraws it while it waits in the queue); the
// partial result is returned with Interrupted set. A failed turn returns
// its error.
func (m *Manager) RunTurn(ctx context.Context, req TurnRequest) (TurnResult, error) {
	if err := checkSessionID(req.SessionID); err != nil {
		return TurnResult{}, err
	}
	if strings.TrimSpace(req.Text) == "" {
		return TurnResult{}, fmt.Errorf("%w: empty prompt", ErrInvalid)
	}
	if req.Model != "" {
		if err := m.checkModel(req.Model); err != nil {
			return TurnResult{}, err
		}
	}
	if !req.Ephemeral {
		if _, err := m.db.ensureSession(ctx, req.SessionID, req.Client); err != nil {
			return TurnResult{}, err
		}
	}
	done := make(chan serverResult, 1)
	t := &turn{
		SessionID: req.SessionID, ClientID: req.Client, RunKey: "s:" + req.SessionID, Text: req.Text,
		model: req.Model, system: req.System, ephemeral: req.Ephemeral, result: done,
	}
	if err := m.acceptServer(t); err != nil {
		return TurnResult{}, err
	}
	select {
	case r := <-done:
		return r.res, r.err
	case <-m.ctx.Done():
		return TurnResult{}, ErrStopped
	case <-ctx.Done():
	}
	if m.withdraw(t) {
		return TurnResult{Interrupted: true}, context.Cause(ctx)
	}
	select {
	case r := <-done:
		return r.res, r.err
	case <-m.ctx.Done():
		return TurnResult{}, ErrStopped
	}
}

// acceptServer queues t like a device's turn, without persisting it.
func (m *Manager) acceptServer(t *turn) error {
	limit := m.cfg.Current().Limits.QueueCap
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx == nil || m.ctx.Err() != nil {
		return errors.New("the agent is not running turns (starting or shutting down)")
	}
	if l := m.lanes[t.RunKey]; l != nil && l.active != nil && len(l.queue) >= limit {
		return fmt.Errorf("queue of session %s full", t.SessionID)
	}
	m.seq++
	t.Seq = m.seq
	m.enqueueLocked(t)
	return nil
}

// withdraw takes t out of its lane's queue (true), or stops it if it is the
// active run (false: its result is still coming).
func (m *Manager) withdraw(t *turn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.lanes[t.RunKey]
	if l == nil {
		return false
	}
	if i := slices.Index(l.queue, t); i >= 0 {
		l.queue = slices.Delete(l.queue, i, i+1)
		return true
	}
	if l.active != nil && l.active.turn == t {
		l.active.stop()
	}
	return false
}

// finishServer hands a server-side turn's outcome to RunTurn.
func finishServer(t *turn, text string, o outcome) {
	r := serverResult{err: o.Err, res: TurnResult{
		Text: text, Model: o.Model, Attachments: nonNil(o.Attachments), Interrupted: o.Interrupted,
		Usage: wire.Usage{
			PromptTokens: o.Usage.PromptTokens, CompletionTokens: o.Usage.CompletionTokens,
			TotalTokens: o.Usage.Total(), CostUSD: o.CostUSD,
		},
	}}
	t.result <- r
}

// CheckModel accepts the id of a known, enabled model (for pins that
// server-side clients store, e.g. a task's model).
func (m *Manager) CheckModel(id string) error { return m.checkModel(id) }
