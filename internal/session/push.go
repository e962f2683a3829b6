package session

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/provider"
	"github.com/agentd/agentd/wire"
)

// BridgeResolver says which device currently holds a bridge session prefix
// ("tg" → the Telegram bridge's client id). ok is false when no active
// bridge holds it.
type BridgeResolver func(ctx context.Context, prefix string) (clientID string, ok bool, err error)

// Push puts a message that no turn produced — an operator alert, a
// scheduled reminder, a message another session sends — into session sid,
// as if the agent had said it there: it is stored in the session's history
// as an assistant message and delivered like a turn's final reply, a
// response frame (model "") followed by turn_complete, through the same
// outbox. So it reaches a device that is away when it connects again, and a
// device in ack mode (every bridge) keeps getting it until it acks, which
// makes it survive a bridge restart.
//
// Where it goes: a session "<p>:…" whose prefix p belongs to a bridge
// (Options.Bridges) goes to that bridge's device, and is created for it if
// the chat never talked to the agent (an alert to "tg:155490357" reaches
// that Telegram chat); any other session goes to the device that owns it
// and must exist. atts must be files inside the agent directory. A turn
// streaming in the same session meanwhile is not waited for.
func (m *Manager) Push(ctx context.Context, sid, text string, atts []wire.Attachment) error {
	if err := checkSessionID(sid); err != nil {
		return err
	}
	if strings.TrimSpace(text) == "" && len(atts) == 0 {
		return fmt.Errorf("%w: nothing to push (empty text, no attachments)", ErrInvalid)
	}
	for _, a := range atts {
		if err := m.checkAttachment(a.Path); err != nil {
			return err
		}
	}
	client, err := m.pushTarget(ctx, sid)
	if err != nil {
		return err
	}
	// A turn id of its own, so a bridge acks exactly this message.
	t := &turn{TurnID: newTurnID(), SessionID: sid, ClientID: client}
	final := []wire.Message{
		wire.Response{Text: text, SessionID: sid, Attachments: nonNil(atts), TurnID: t.TurnID},
		wire.TurnComplete{SessionID: sid, TurnID: t.TurnID},
	}
	// For a device in ack mode the frames are stored with the message, as
	// a turn's are (boxed).
	box := m.boxFor(t, final)
	if err := m.db.addPushed(ctx, t, text, atts, box); err != nil {
		return err
	}
	if testHookStored != nil {
		testHookStored()
	}
	t.box = box
	m.deliverFinal(t, final...)
	m.log.Info("message pushed into session", "session", sid, "client", client, "attachments", len(atts))
	return nil
}

// pushTarget returns the client id a pushed message of sid goes to,
// creating a bridge session that does not exist yet.
func (m *Manager) pushTarget(ctx context.Context, sid string) (string, error) {
	if p, _, ok := strings.Cut(sid, ":"); ok && m.bridges != nil {
		id, ok, err := m.bridges(ctx, p)
		if err != nil {
			return "", fmt.Errorf("push to %s: %w", sid, err)
		}
		if ok {
			_, err := m.db.session(ctx, sid)
			if err == errNoSession {
				if _, err = m.db.ensureSession(ctx, sid, id); err == nil {
					m.notify("created", sid)
				}
			}
			if err != nil {
				return "", err
			}
			return id, nil
		}
	}
	row, err := m.db.session(ctx, sid)
	if err == errNoSession {
		return "", fmt.Errorf("%w: %s (and %q is no bridge's session prefix)", ErrNotFound, sid, prefixOf(sid))
	}
	if err != nil {
		return "", err
	}
	return row.Owner, nil
}

func prefixOf(sid string) string {
	p, _, _ := strings.Cut(sid, ":")
	return p
}

// addPushed stores a pushed message as an assistant row of its session's
// history, with box's outbox rows if any, in one transaction.
func (d *db) addPushed(ctx context.Context, t *turn, text string, atts []wire.Attachment, box *boxed) error {
	sid, now := t.SessionID, d.ms()
	err := d.inGroup(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.StmtContext(ctx, d.insMsg).ExecContext(ctx, sid, string(provider.RoleAssistant), text, "", "", false, attachmentsJSON(atts), "",
			false, false, "", now); err != nil {
			return err
		}
		if _, err := tx.StmtContext(ctx, d.touch).ExecContext(ctx, now, sid); err != nil {
			return err
		}
		return d.storeBoxTx(ctx, tx, box, t, now)
	})
	if err != nil {
		return fmt.Errorf("store pushed message in %s: %w", sid, err)
	}
	d.hist.appendTurn(sid, modelView([]provider.Message{{Role: provider.RoleAssistant, Content: text}}, false))
	return nil
}

// adoptBridgeSessions hands the sessions of a bridge's prefix to the
// bridge's current device. A bridge whose certificate was revoked gets a
// new key, hence a new client id, from the supervisor; its chats
// ("tg:1001") must stay its own, with their history, queued turns and the
// replies that wait in the outbox. Only the device that holds the prefix
// now (Options.Bridges) adopts; the prefix belongs to one bridge.
func (m *Manager) adoptBridgeSessions(id *auth.Identity) {
	p := id.SessionPrefix()
	if m.bridges == nil || !id.Has(auth.CapBridge) || p == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	holder, ok, err := m.bridges(ctx, p)
	if err != nil || !ok || holder != id.ClientID {
		return
	}
	// The old keys' outbox locks: a reply handed to an old key's
	// connection whose rows are still being written is moved, not left
	// behind under that key.
	old, err := m.db.otherOwners(ctx, p+":", id.ClientID)
	if err != nil {
		m.log.Error("bridge sessions not handed to the bridge's new key", "prefix", p, "client", id.ClientID, "err", err)
		return
	}
	for _, o := range old { // sorted: one order for every adopt
		defer m.out.lock(o)()
	}
	n, err := m.db.adopt(ctx, p+":", id.ClientID)
	if err != nil {
		m.log.Error("bridge sessions not handed to the bridge's new key", "prefix", p, "client", id.ClientID, "err", err)
		return
	}
	if n > 0 {
		m.log.Info("bridge sessions handed to the bridge's new key", "prefix", p, "client", id.ClientID, "sessions", n)
	}
}

// otherOwners returns, sorted, the owners other than owner of the sessions
// starting with prefix.
func (d *db) otherOwners(ctx context.Context, prefix, owner string) ([]string, error) {
	rows, err := d.sql.QueryContext(ctx, `SELECT DISTINCT owner FROM sessions WHERE substr(id, 1, length(?)) = ? AND owner != ?
		ORDER BY owner`, prefix, prefix, owner)
	if err != nil {
		return nil, fmt.Errorf("read owners of sessions %s*: %w", prefix, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var o string
		if err := rows.Scan(&o); err != nil {
			return nil, fmt.Errorf("read owners of sessions %s*: %w", prefix, err)
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// adopt makes owner the owner of every session starting with prefix, and
// moves their queued turns and outbox rows along.
func (d *db) adopt(ctx context.Context, prefix, owner string) (int64, error) {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	tx, err := d.sql.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("adopt sessions %s*: %w", prefix, err)
	}
	defer tx.Rollback()
	match := `substr(session_id, 1, length(?)) = ? AND client_id != ?`
	res, err := tx.ExecContext(ctx, `UPDATE sessions SET owner = ? WHERE substr(id, 1, length(?)) = ? AND owner != ?`, owner, prefix, prefix, owner)
	if err != nil {
		return 0, fmt.Errorf("adopt sessions %s*: %w", prefix, err)
	}
	n, _ := res.RowsAffected()
	if n == 0 {
		return 0, nil
	}
	for _, table := range []string{"outbox", "turns"} {
		if _, err := tx.ExecContext(ctx, `UPDATE `+table+` SET client_id = ? WHERE `+match, owner, prefix, prefix, owner); err != nil {
			return 0, fmt.Errorf("adopt sessions %s*: %w", prefix, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("adopt sessions %s*: %w", prefix, err)
	}
	d.metaMu.Lock()
	d.meta = nil // owners changed; the cache refills from the table
	d.metaMu.Unlock()
	return n, nil
}
