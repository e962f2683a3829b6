package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/wire"
)

// ErrBusy refuses deleting a session with a turn running or queued.
var ErrBusy = errors.New("session busy")

// MaxHistoryLimit bounds GET /api/sessions/{id}/messages?limit=.
const MaxHistoryLimit = 1000

// HistoryMessage is one message of a session for the REST API: what the
// user and the agent said (tool calls and results are left out).
type HistoryMessage struct {
	ID          int64             `json:"id"`
	Role        string            `json:"role"`
	Text        string            `json:"text"`
	Attachments []wire.Attachment `json:"attachments"`
	Model       string            `json:"model,omitempty"`
	CreatedAt   time.Time         `json:"created_at"`
	Interrupted bool              `json:"interrupted,omitempty"`
	Failed      bool              `json:"failed,omitempty"`
	Error       string            `json:"error,omitempty"`
}

// Messages returns the last limit messages of session sid, oldest first,
// under the WebSocket's ownership rules (a device its own sessions, a
// bridge its prefix, admin all).
func (m *Manager) Messages(ctx context.Context, id *auth.Identity, sid string, limit int) ([]HistoryMessage, error) {
	if _, err := m.access(ctx, id, sid, false, true); err != nil {
		return nil, err
	}
	rows, err := m.db.sql.QueryContext(ctx, `SELECT id, role, content, attachments, model, interrupted, failed, error, created_at FROM (
		SELECT * FROM messages WHERE session_id = ? AND role IN ('user', 'assistant') AND (content != '' OR attachments != '[]' OR error != '')
		ORDER BY id DESC LIMIT ?) ORDER BY id`, sid, limit)
	if err != nil {
		return nil, fmt.Errorf("read messages of %s: %w", sid, err)
	}
	defer rows.Close()
	out := []HistoryMessage{}
	for rows.Next() {
		var h HistoryMessage
		var atts string
		var created int64
		if err := rows.Scan(&h.ID, &h.Role, &h.Text, &atts, &h.Model, &h.Interrupted, &h.Failed, &h.Error, &created); err != nil {
			return nil, fmt.Errorf("read messages of %s: %w", sid, err)
		}
		h.CreatedAt = time.UnixMilli(created).UTC()
		if err := json.Unmarshal([]byte(atts), &h.Attachments); err != nil || h.Attachments == nil {
			h.Attachments = []wire.Attachment{}
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

// Delete removes session sid with its history, under the same rules. A
// session with a turn running or queued is refused (ErrBusy): stop it
// first.
func (m *Manager) Delete(ctx context.Context, id *auth.Identity, sid string) error {
	if _, err := m.access(ctx, id, sid, false, true); err != nil {
		return err
	}
	// m.mu is held across the insert of a new turn, so none can slip in
	// between the check and the delete.
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, l := range m.lanes {
		busy := l.active != nil && l.active.turn.SessionID == sid
		for _, t := range l.queue {
			busy = busy || t.SessionID == sid
		}
		if busy {
			return fmt.Errorf("%w: session %s has a turn running or queued; stop it first", ErrBusy, sid)
		}
	}
	if err := m.db.deleteSession(ctx, sid); err != nil {
		return err
	}
	m.notify("deleted", sid)
	return nil
}

func (d *db) deleteSession(ctx context.Context, id string) error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	_, err := d.sql.ExecContext(ctx, `DELETE FROM sessions WHERE id = ?`, id)
	d.metaMu.Lock()
	d.metaGen++
	delete(d.meta, id)
	d.metaMu.Unlock()
	d.hist.drop(id)
	if err != nil {
		return fmt.Errorf("delete session %s: %w", id, err)
	}
	return nil
}
