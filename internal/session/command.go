package session

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/agentd/agentd/wire"
)

const helpText = `Commands:
  stop         interrupt the reply being generated and drop this session's queued messages
  clear        forget this session's history
  new          start a fresh session (its id is in new_session_id)
  reset        clear the history and unpin the model
  model [ID]   show the model, or pin this session to model ID
  voice on|off answer this session with speech too (voice turns always are)
  help         this text`

func (m *Manager) command(ctx context.Context, c *Client, f wire.Command) error {
	name := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(f.Name)), "/")
	if name == "help" {
		c.Sink.Send(wire.CommandResult{Text: helpText, SessionID: f.SessionID})
		return nil
	}
	switch name {
	case "stop", "clear", "new", "reset", "model", "voice":
	default:
		return fmt.Errorf("%w: unknown command %q; send \"help\" for the list", ErrInvalid, f.Name)
	}
	if name == "new" {
		sid := newSessionID(c.Identity)
		if _, err := m.access(ctx, c.Identity, sid, true, false); err != nil {
			return err
		}
		c.Sink.Send(wire.CommandResult{Text: "New session " + sid + ".", SessionID: f.SessionID, NewSessionID: sid})
		m.notify("created", sid)
		return nil
	}
	if f.SessionID == "" {
		return fmt.Errorf("%w: command %s needs a session_id", ErrInvalid, name)
	}
	row, err := m.access(ctx, c.Identity, f.SessionID, true, false)
	if err != nil {
		return err
	}
	var text string
	switch name {
	case "voice":
		if text, err = m.voiceCommand(f.SessionID, f.Args); err != nil {
			return err
		}
	case "stop":
		stopped, dropped, err := m.stopSession(ctx, c, f.SessionID)
		if err != nil {
			return err
		}
		text = stopText(stopped, dropped)
	case "clear":
		n, err := m.db.clearHistory(ctx, f.SessionID)
		if err != nil {
			return err
		}
		text = fmt.Sprintf("History cleared (%d messages).", n)
		m.notify("cleared", f.SessionID)
	case "reset":
		if _, err := m.db.clearHistory(ctx, f.SessionID); err != nil {
			return err
		}
		if err := m.db.pin(ctx, f.SessionID, ""); err != nil {
			return err
		}
		text = "Session reset: history cleared, model unpinned (now " + m.cfg.Current().Agent.DefaultModel + ")."
		m.notify("reset", f.SessionID)
	case "model":
		arg := strings.TrimSpace(f.Args)
		if arg == "" {
			text = m.describeModel(row.Pinned)
			break
		}
		if err := m.checkModel(arg); err != nil {
			return err
		}
		if err := m.db.pin(ctx, f.SessionID, arg); err != nil {
			return err
		}
		text = "Session pinned to model " + arg + "."
		m.notify("pinned", f.SessionID)
	}
	c.Sink.Send(wire.CommandResult{Text: text, SessionID: f.SessionID})
	return nil
}

func stopText(stopped bool, dropped int) string {
	switch {
	case stopped && dropped > 0:
		return fmt.Sprintf("Stopped; dropped %d queued message(s).", dropped)
	case stopped:
		return "Stopped."
	case dropped > 0:
		return fmt.Sprintf("Dropped %d queued message(s).", dropped)
	}
	return "Nothing to stop."
}

// stopSession interrupts the session's run and drops its queued turns.
func (m *Manager) stopSession(ctx context.Context, c *Client, sid string) (stopped bool, dropped int, err error) {
	key := runKey(c.Identity, sid)
	m.mu.Lock()
	defer m.mu.Unlock()
	// The rows first, in one transaction, then the queue: a failed delete
	// changes nothing, and a dropped turn cannot come back at a restart.
	var ids []int64
	l := m.lanes[key]
	if l != nil {
		for _, t := range l.queue {
			if t.SessionID == sid {
				ids = append(ids, t.ID)
			}
		}
	}
	if err := m.db.deleteTurns(ctx, ids); err != nil {
		return false, 0, err
	}
	if l != nil {
		l.queue = slices.DeleteFunc(l.queue, func(t *turn) bool { return t.SessionID == sid })
	}
	if r := m.activeRun(key, sid); r != nil {
		r.stop()
		stopped = true
	}
	return stopped, len(ids), nil
}

var errNoModel = errors.New("no model configured: set agent.default_model or pin one with the model command")
