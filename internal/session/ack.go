package session

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/agentd/agentd/wire"
)

// Acknowledged delivery (docs/protocol.md): a client that opted in with
// auth{acks:true} is in "ack mode". Its final frames are kept in the outbox
// even when a connection took them (sent = 1) until it acks their session,
// and every new connection of it receives them again, so a client that dies
// between receiving a reply and showing it loses nothing.
//
// Ack mode belongs to the client id, not to one connection, and is stored:
// a connection's outbox is flushed at connect, before its auth frame can
// arrive, so the flush must already know that the rows it sends are to be
// kept.

// Bounds of the rows awaiting an ack: a client that stops acking (a bug, a
// downgraded bridge that still sends auth{acks:true}) must not grow the
// outbox without end, nor get day-old replies again on every reconnect.
const (
	// ackKeepDefault is how long a sent reply waits for its ack before it
	// is dropped.
	ackKeepDefault = 24 * time.Hour
	// ackMaxDefault is how many sent rows per client wait for an ack; past
	// it the oldest are dropped.
	ackMaxDefault = 1000
)

// ackMode reports whether clientID opted into acknowledged delivery.
func (m *Manager) ackMode(clientID string) bool {
	m.ackMu.RLock()
	defer m.ackMu.RUnlock()
	return m.ackers[clientID]
}

// SetAcks records the acks flag of c's auth frame: on puts the client in
// ack mode, off takes it out (its rows still awaiting an ack are then sent
// once more and deleted, like any outbox row). Only a change is written.
// Then, if Connect deferred c's registration and outbox until this frame,
// it does them now, whether the write failed or not.
func (m *Manager) SetAcks(ctx context.Context, c *Client, on bool) error {
	err := m.setAcks(ctx, c.Identity.ClientID, on)
	c.mu.Lock()
	attach := c.pendingAttach
	c.pendingAttach = nil
	c.mu.Unlock()
	if attach != nil {
		attach()
	}
	return err
}

func (m *Manager) setAcks(ctx context.Context, id string, on bool) error {
	m.ackMu.Lock()
	defer m.ackMu.Unlock()
	if m.ackers[id] == on {
		return nil
	}
	if err := m.db.setAckClient(ctx, id, on); err != nil {
		return err
	}
	if on {
		m.ackers[id] = true
	} else {
		delete(m.ackers, id)
	}
	m.log.Info("client delivery mode changed", "client", id, "acks", on)
	return nil
}

// ack forgets the replies of session sid that were sent to c's client and
// await its ack: those of turn turnID, or with turnID "" (the older form)
// all of them. It holds the client's outbox lock: deliverFinal writes a
// reply's rows only after it handed the frames to the connections, so an
// ack that raced ahead of that write would otherwise miss them.
func (m *Manager) ack(ctx context.Context, c *Client, sid, turnID string) error {
	if err := checkSessionID(sid); err != nil {
		return err
	}
	defer m.out.lock(c.Identity.ClientID)()
	// Not cancelled with the connection or the gateway: an ack that
	// arrives during shutdown still counts (see the gateway's drain).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	if _, err := m.db.deleteAwaiting(ctx, c.Identity.ClientID, sid, turnID); err != nil {
		m.log.Error("ack", "client", c.Identity.ClientID, "session", sid, "err", err)
		return fmt.Errorf("ack not recorded (database error); the replies may be sent again")
	}
	return nil
}

// newTurnID returns a fresh turn id: random, so ids never repeat across
// restarts (turn seqs do), and an ack can never name another turn.
func newTurnID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "t" + hex.EncodeToString(b[:])
}

// logDropped reports rows dropped by the bounds.
func (m *Manager) logDropped(clientID string, n int64) {
	if n > 0 {
		m.log.Warn("replies awaiting an ack dropped (older than the limit, or too many)",
			"client", clientID, "dropped", n, "max_age", m.db.ackKeep, "max_rows", m.db.ackMax)
	}
}

// isFinal reports whether msg is kept for acknowledged delivery: the frames
// that end a turn, never deltas or status.
func isFinal(msg wire.Message) bool {
	switch msg.(type) {
	case wire.Response, wire.TurnComplete, wire.Error:
		return true
	}
	return false
}

// ackClients returns the clients in ack mode.
func (d *db) ackClients(ctx context.Context) (map[string]bool, error) {
	rows, err := d.sql.QueryContext(ctx, `SELECT client_id FROM outbox_ack_clients`)
	if err != nil {
		return nil, fmt.Errorf("read ack clients: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("read ack clients: %w", err)
		}
		out[id] = true
	}
	return out, rows.Err()
}

func (d *db) setAckClient(ctx context.Context, clientID string, on bool) error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	var err error
	if on {
		_, err = d.sql.ExecContext(ctx, `INSERT INTO outbox_ack_clients(client_id, updated_at) VALUES (?, ?)
			ON CONFLICT(client_id) DO UPDATE SET updated_at = excluded.updated_at`, clientID, d.ms())
	} else {
		_, err = d.sql.ExecContext(ctx, `DELETE FROM outbox_ack_clients WHERE client_id = ?`, clientID)
	}
	if err != nil {
		return fmt.Errorf("record delivery mode of %s: %w", clientID, err)
	}
	return nil
}

// pruneAwaitingTx drops clientID's rows that await an ack for longer than
// ackKeep, then all but the newest ackMax of them.
func (d *db) pruneAwaitingTx(ctx context.Context, tx *sql.Tx, clientID string) (int64, error) {
	res, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE client_id = ? AND sent = 1 AND created_at < ?`,
		clientID, d.now().Add(-d.ackKeep).UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("drop expired: %w", err)
	}
	old, _ := res.RowsAffected()
	res, err = tx.ExecContext(ctx, `DELETE FROM outbox WHERE id IN (
		SELECT id FROM outbox WHERE client_id = ? AND sent = 1 ORDER BY id DESC LIMIT -1 OFFSET ?)`,
		clientID, d.ackMax)
	if err != nil {
		return 0, fmt.Errorf("drop beyond the bound: %w", err)
	}
	many, _ := res.RowsAffected()
	return old + many, nil
}

// pruneAwaiting is pruneAwaitingTx as a write of its own.
func (d *db) pruneAwaiting(ctx context.Context, clientID string) (int64, error) {
	var n int64
	err := d.inGroup(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		n, err = d.pruneAwaitingTx(ctx, tx, clientID)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("bound replies awaiting an ack: %w", err)
	}
	return n, nil
}

// markSent marks rows as taken by a connection, now awaiting an ack.
func (d *db) markSent(ctx context.Context, ids []int64) error {
	return d.inGroup(ctx, func(ctx context.Context, tx *sql.Tx) error {
		for _, id := range ids {
			if _, err := tx.ExecContext(ctx, `UPDATE outbox SET sent = 1 WHERE id = ? AND sent = 0`, id); err != nil {
				return fmt.Errorf("mark outbox frame %d sent: %w", id, err)
			}
		}
		return nil
	})
}

// boxed are the outbox rows of a turn's final frames for a recipient in
// ack mode, which finishTurn writes in the transaction that stores the
// turn's result. Written after it, as storeFinal does for other clients,
// they would leave a window in which a crash keeps the reply in history
// and the turn finished, yet gives the client nothing to receive again: a
// bridge's user would never see that reply. Each row is written as taken
// when a connection of the client is open (the frames go to it right
// after the commit); settleBoxed corrects the rows the connections did
// not take as assumed.
type boxed struct {
	clientID string
	rows     []outboxRow
	frames   []int   // the index in the final frames of each row
	ids      []int64 // the rows' ids, set by finishTurn
	dropped  int64   // awaiting rows the bounds dropped, set by finishTurn
}

// boxFor returns the rows to store with t's result, or nil when its
// recipient is not in ack mode. It records the recipient in t for
// finishRun.
func (m *Manager) boxFor(t *turn, final []wire.Message) *boxed {
	if len(final) == 0 {
		return nil
	}
	t.to = m.recipient(t)
	if !m.ackMode(t.to) {
		return nil
	}
	open := len(m.sinksOf(t.to)) > 0
	box := &boxed{clientID: t.to}
	for i, msg := range final {
		if b, ok := m.outboxBytes(msg); ok {
			box.rows = append(box.rows, outboxRow{Frame: b, Sent: open})
			box.frames = append(box.frames, i)
		}
	}
	return box
}

// outboxBytes is msg as an outbox row keeps it; false for a frame never
// kept (liveOnly) or one that does not encode (logged).
func (m *Manager) outboxBytes(msg wire.Message) ([]byte, bool) {
	if _, ok := msg.(liveOnly); ok {
		return nil, false
	}
	b, err := wire.Encode(msg)
	if err != nil {
		m.log.Error("encode reply", "err", err)
		return nil, false
	}
	return b, true
}

// settleBoxed corrects box's rows after delivery: those written as taken
// that no connection took, and those written as not taken that one took
// (it connected between boxFor and the delivery).
func (m *Manager) settleBoxed(box *boxed, took []bool) {
	m.logDropped(box.clientID, box.dropped)
	var unsent, sent []int64
	for k, i := range box.frames {
		switch {
		case box.rows[k].Sent && !took[i]:
			unsent = append(unsent, box.ids[k])
		case !box.rows[k].Sent && took[i]:
			sent = append(sent, box.ids[k])
		}
	}
	if len(unsent)+len(sent) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(m.ctx), storeTimeout)
	defer cancel()
	if len(unsent) > 0 {
		if err := m.db.markUnsent(ctx, unsent); err != nil {
			m.log.Error("reply awaiting an ack not marked as undelivered; it waits for the next connection", "client", box.clientID, "err", err)
		}
	}
	if len(sent) > 0 {
		if err := m.db.markSent(ctx, sent); err != nil {
			m.log.Error("reply awaiting an ack not marked as delivered; it may be sent again", "client", box.clientID, "err", err)
		}
	}
}

// markUnsent marks rows as taken by no connection: a reply stored with its
// turn as sent that no connection took after all (see boxed).
func (d *db) markUnsent(ctx context.Context, ids []int64) error {
	return d.inGroup(ctx, func(ctx context.Context, tx *sql.Tx) error {
		for _, id := range ids {
			if _, err := tx.ExecContext(ctx, `UPDATE outbox SET sent = 0 WHERE id = ?`, id); err != nil {
				return fmt.Errorf("mark outbox frame %d not sent: %w", id, err)
			}
		}
		return nil
	})
}

// deleteAwaiting deletes clientID's rows of session sid that await an ack
// (of turn turnID only, unless it is "").
func (d *db) deleteAwaiting(ctx context.Context, clientID, sid, turnID string) (int64, error) {
	var n int64
	err := d.inGroup(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE client_id = ? AND session_id = ? AND sent = 1
		AND (? = '' OR turn_id = ?)`, clientID, sid, turnID, turnID)
		if err != nil {
			return fmt.Errorf("forget acknowledged replies of %s: %w", sid, err)
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}
