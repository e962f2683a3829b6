package session

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/agentd/agentd/internal/agent"
	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/wire"
)

// maxPendingAttachments bounds the attachments waiting for a session's next
// turn, maxPendingSessions the sessions with attachments waiting.
const (
	maxPendingAttachments = 16
	maxPendingSessions    = 10_000
)

// Handle processes one session frame from c: session_open, text_final,
// attachment, interrupt, command, ack. Answers and errors go to c.Sink; the
// connection stays usable after any error.
func (m *Manager) Handle(ctx context.Context, c *Client, msg wire.Message) {
	var err error
	switch f := msg.(type) {
	case wire.SessionOpen:
		err = m.open(ctx, c, f)
	case wire.TextFinal:
		err = m.submit(ctx, c, f)
	case wire.AttachmentIn:
		err = m.attach(ctx, c, f)
	case wire.Interrupt:
		err = m.interrupt(ctx, c, f.SessionID)
	case wire.Command:
		err = m.command(ctx, c, f)
	case wire.Ack:
		err = m.ack(ctx, c, f.SessionID, f.TurnID)
	default:
		err = fmt.Errorf("%w: %s frames are not handled by sessions", ErrInvalid, msg.Type())
	}
	if err != nil {
		c.Sink.Send(wire.Error{Text: clientText(err), SessionID: sessionOf(msg)})
	}
}

// clientText is the error as the client sees it: the sentinel prefixes are
// for the gateway's status mapping, not for people.
func clientText(err error) string {
	s := err.Error()
	for _, p := range []error{ErrInvalid, ErrForbidden, ErrNotFound, ErrUnknownModel} {
		if errors.Is(err, p) {
			s = strings.TrimPrefix(s, p.Error()+": ")
		}
	}
	return s
}

func sessionOf(msg wire.Message) string {
	switch f := msg.(type) {
	case wire.SessionOpen:
		return f.SessionID
	case wire.TextFinal:
		return f.SessionID
	case wire.AttachmentIn:
		return f.SessionID
	case wire.Interrupt:
		return f.SessionID
	case wire.Command:
		return f.SessionID
	case wire.Ack:
		return f.SessionID
	}
	return ""
}

func (m *Manager) open(ctx context.Context, c *Client, f wire.SessionOpen) error {
	if _, err := m.access(ctx, c.Identity, f.SessionID, true, false); err != nil {
		return err
	}
	m.flushOutbox(c, f.SessionID)
	return nil
}

func (m *Manager) submit(ctx context.Context, c *Client, f wire.TextFinal) error {
	if strings.TrimSpace(f.Text) == "" && len(f.Attachments) == 0 {
		return fmt.Errorf("%w: empty message", ErrInvalid)
	}
	for _, a := range f.Attachments {
		if err := m.checkAttachment(a.Path); err != nil {
			return err
		}
	}
	if _, err := m.access(ctx, c.Identity, f.SessionID, true, false); err != nil {
		return err
	}
	t := &turn{
		TurnID:    newTurnID(),
		SessionID: f.SessionID,
		ClientID:  c.Identity.ClientID,
		RunKey:    runKey(c.Identity, f.SessionID),
		Text:      f.Text,
		bridge:    c.Identity.Has(auth.CapBridge),
	}
	return m.accept(ctx, c, t, f.Attachments)
}

// accept queues t behind its run key's active run (persisting it and
// answering queued{} first) or starts it at once (its row is written
// persistDelay later, see persist.go). During shutdown nothing starts: t
// is persisted and queued, to run after the restart, because the client
// handed it over (a bridge has moved its platform cursor past it).
func (m *Manager) accept(ctx context.Context, c *Client, t *turn, atts []wire.Attachment) error {
	limit := m.cfg.Current().Limits.QueueCap
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx == nil {
		return errors.New("the agent is not running turns yet (starting); try again")
	}
	shutdown := m.ctx.Err() != nil
	t.Attachments = append(slices.Clip(m.pending[t.SessionID]), atts...)
	l := m.lanes[t.RunKey]
	if !shutdown && (l == nil || l.active == nil) {
		m.seq++
		t.Seq = m.seq
		t.persisted = make(chan struct{})
		m.enqueueLocked(t)
		m.persist.add(t)
		delete(m.pending, t.SessionID)
		return nil
	}
	if l != nil && len(l.queue) >= limit {
		return errors.New("queue full")
	}
	m.seq++
	t.Seq = m.seq
	// Persist before acknowledging: a queued{} the client saw is a promise,
	// and it names its place behind the active run, so that run's turn is
	// written first if its delay has not passed yet (a crash must not keep
	// the queued turn and lose the one it waited for).
	if err := m.persistQueued(ctx, l, t); err != nil {
		m.log.Error("accept turn", "session", t.SessionID, "err", err)
		return errors.New("could not accept the message (database error); try again")
	}
	delete(m.pending, t.SessionID)
	var pos int
	if shutdown {
		// Kept in the lane too, so that a stop still drops it.
		if l == nil {
			l = &lane{key: t.RunKey}
			m.lanes[t.RunKey] = l
		}
		l.queue = append(l.queue, t)
		pos = len(l.queue)
	} else {
		pos = m.enqueueLocked(t)
	}
	// Sent under mu: the lane cannot start this turn (and stream its
	// deltas) before the client has its queued{}.
	c.Sink.Send(wire.Queued{Position: pos, SessionID: t.SessionID})
	return nil
}

// checkAttachment accepts existing regular files inside the attachment
// roots (AttachRoots, or the whole agent directory), symlinks resolved,
// never inside keys/.
func (m *Manager) checkAttachment(p string) error {
	if m.agentDir == "" {
		if p == "" || !filepath.IsAbs(p) {
			return fmt.Errorf("%w: attachment path must be absolute", ErrInvalid)
		}
		return fmt.Errorf("%w: attachments are not accepted by this agent", ErrInvalid)
	}
	roots := m.attachRoots
	if len(roots) == 0 {
		roots = []string{m.agentDir}
	}
	_, err := agent.InboundAttachment(p, roots, []string{filepath.Join(m.agentDir, "keys")})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, agent.ErrAttachRelative):
		return fmt.Errorf("%w: attachment path must be absolute", ErrInvalid)
	case errors.Is(err, agent.ErrAttachMissing):
		return fmt.Errorf("%w: attachment %s does not exist", ErrInvalid, p)
	case errors.Is(err, agent.ErrAttachTooLong):
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	case errors.Is(err, agent.ErrAttachNotRegular):
		return fmt.Errorf("%w: attachment %s is not a regular file", ErrInvalid, p)
	case len(m.attachRoots) > 0:
		return fmt.Errorf("%w: attachment %s is outside the agent directory's attachment folders (%s)", ErrInvalid, p, strings.Join(m.attachRoots, ", "))
	default:
		return fmt.Errorf("%w: attachment %s is outside the agent directory (or in keys/)", ErrInvalid, p)
	}
}

// local reports whether rel (from filepath.Rel) stays below its base.
func local(rel string) bool {
	return rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

func (m *Manager) attach(ctx context.Context, c *Client, f wire.AttachmentIn) error {
	if err := m.checkAttachment(f.Path); err != nil {
		return err
	}
	switch f.Kind {
	case "", "image", "file", "voice", "video":
	default:
		return fmt.Errorf("%w: attachment kind %q (want image, file, voice or video)", ErrInvalid, f.Kind)
	}
	if _, err := m.access(ctx, c.Identity, f.SessionID, true, false); err != nil {
		return err
	}
	kind := f.Kind
	if kind == "" {
		kind = "file"
	}
	name := f.Filename
	if name == "" {
		name = filepath.Base(f.Path)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.pending[f.SessionID]) >= maxPendingAttachments {
		return fmt.Errorf("%w: at most %d attachments per turn", ErrInvalid, maxPendingAttachments)
	}
	if _, ok := m.pending[f.SessionID]; !ok && len(m.pending) >= maxPendingSessions {
		return errors.New("too many sessions with attachments waiting for a message; send the messages first")
	}
	m.pending[f.SessionID] = append(m.pending[f.SessionID], wire.Attachment{Kind: kind, Path: f.Path, Filename: name})
	return nil
}

// interrupt cancels the session's active run. Nothing running is not an
// error: the run may just have finished.
func (m *Manager) interrupt(ctx context.Context, c *Client, sid string) error {
	if _, err := m.access(ctx, c.Identity, sid, false, false); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	}
	m.mu.Lock()
	r := m.activeRun(runKey(c.Identity, sid), sid)
	m.mu.Unlock()
	if r != nil {
		r.stop()
	}
	return nil
}

// activeRun returns the run of session sid in lane key, if one is active.
func (m *Manager) activeRun(key, sid string) *run {
	l := m.lanes[key]
	if l == nil || l.active == nil || l.active.turn.SessionID != sid {
		return nil
	}
	return l.active
}

// stop cancels the run; after it returns no further delta is delivered.
// Cancelling first releases a delivery that waits for a slow reader.
func (r *run) stop() {
	r.cancel(errInterrupted)
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
}
