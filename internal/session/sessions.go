package session

import (
	"context"
	"time"

	"github.com/agentd/agentd/internal/auth"
)

// Info describes a session for the REST API.
type Info struct {
	ID          string    `json:"id"`
	Owner       string    `json:"owner"`
	PinnedModel string    `json:"pinned_model,omitempty"`
	Model       string    `json:"model"` // the model the next turn will use
	Messages    int       `json:"messages"`
	Queued      int       `json:"queued"` // accepted turns not finished yet, as persisted
	Active      bool      `json:"active"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// List returns the sessions id may see: all of them for admin, those with
// its prefix for a bridge, its own for a chat device.
func (m *Manager) List(ctx context.Context, id *auth.Identity) ([]Info, error) {
	owner, prefix := id.ClientID, ""
	switch {
	case id.Has(auth.CapAdmin):
		owner = ""
	case id.Has(auth.CapBridge):
		prefix = id.SessionPrefix() + ":"
	}
	rows, err := m.db.listSessions(ctx, owner, prefix)
	if err != nil {
		return nil, err
	}
	def := m.cfg.Current().Agent.DefaultModel
	m.mu.Lock()
	active := map[string]bool{}
	for _, l := range m.lanes {
		if l.active != nil {
			active[l.active.turn.SessionID] = true
		}
	}
	m.mu.Unlock()
	out := make([]Info, 0, len(rows))
	for _, r := range rows {
		model := r.Pinned
		if model == "" {
			model = def
		}
		out = append(out, Info{
			ID: r.ID, Owner: r.Owner, PinnedModel: r.Pinned, Model: model,
			Messages: r.Messages, Queued: r.Queued, Active: active[r.ID],
			CreatedAt: time.UnixMilli(r.Created).UTC(), UpdatedAt: time.UnixMilli(r.Updated).UTC(),
		})
	}
	return out, nil
}

// Pin binds session sid to model (a configured, enabled model id); "" unpins.
func (m *Manager) Pin(ctx context.Context, id *auth.Identity, sid, model string) error {
	if _, err := m.access(ctx, id, sid, false, true); err != nil {
		return err
	}
	if model != "" {
		if err := m.checkModel(model); err != nil {
			return err
		}
	}
	if err := m.db.pin(ctx, sid, model); err != nil {
		return err
	}
	m.notify("pinned", sid)
	return nil
}

// Clear forgets session sid's history.
func (m *Manager) Clear(ctx context.Context, id *auth.Identity, sid string) error {
	if _, err := m.access(ctx, id, sid, false, true); err != nil {
		return err
	}
	if _, err := m.db.clearHistory(ctx, sid); err != nil {
		return err
	}
	m.notify("cleared", sid)
	return nil
}
