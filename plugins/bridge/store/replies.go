package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/agentd/agentd/wire"
)

// DoneKeep is how long a finished reply is remembered, so that the
// gateway sending it again (it keeps unacknowledged replies 24 h) is
// recognised instead of posted twice.
const DoneKeep = 48 * time.Hour

const replyCols = `id, session_id, turn_id, chat_id, text, attachments, files_sent, complete, state, created_at`

// AddReply puts r (SessionID, TurnID, ChatID, Text, Attachments) in the
// send queue as Sending, adopting the platform messages its session was
// streaming (Stream) as its parts. If the queue already has the reply of
// that turn — the gateway sent it again — it is returned unchanged with
// existing true.
func (s *Store) AddReply(ctx context.Context, r Reply) (out Reply, existing bool, err error) {
	att, err := json.Marshal(nonNil(r.Attachments))
	if err != nil {
		return Reply{}, false, err
	}
	err = s.tx(ctx, "queue reply", func(tx *sql.Tx) error {
		old, err := scanReply(tx.QueryRowContext(ctx, `SELECT `+replyCols+` FROM replies WHERE session_id = ? AND turn_id = ?`, r.SessionID, r.TurnID))
		if err == nil {
			out, existing = old, true
			out.Parts, err = parts(ctx, tx, old.ID)
			return err
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		now := time.Now()
		res, err := tx.ExecContext(ctx, `INSERT INTO replies(session_id, turn_id, chat_id, text, attachments, state, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, r.SessionID, r.TurnID, r.ChatID, r.Text, string(att), Sending, ms(now), ms(now))
		if err != nil {
			return err
		}
		id, err := res.LastInsertId()
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO reply_parts(reply_id, part, msg_id, shown)
			SELECT ?, part, msg_id, shown FROM stream_parts WHERE session_id = ?`, id, r.SessionID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM stream_parts WHERE session_id = ?`, r.SessionID); err != nil {
			return err
		}
		out = r
		out.ID, out.State, out.Created, out.FilesSent, out.Complete = id, Sending, now, 0, false
		out.Parts, err = parts(ctx, tx, id)
		return err
	})
	return out, existing, err
}

// FindReply returns the reply of a turn; ok is false if the queue has none.
func (s *Store) FindReply(ctx context.Context, sid, turnID string) (r Reply, ok bool, err error) {
	r, err = scanReply(s.db.QueryRowContext(ctx, `SELECT `+replyCols+` FROM replies WHERE session_id = ? AND turn_id = ?`, sid, turnID))
	if errors.Is(err, sql.ErrNoRows) {
		return Reply{}, false, nil
	}
	if err != nil {
		return Reply{}, false, fmt.Errorf("read reply: %w", err)
	}
	r.Parts, err = parts(ctx, s.db, r.ID)
	if err != nil {
		return Reply{}, false, fmt.Errorf("read reply: %w", err)
	}
	return r, true, nil
}

// Pending returns the replies not done (Sending or Acking), oldest first,
// with their parts: what a restarted bridge still has to show or ack.
func (s *Store) Pending(ctx context.Context) ([]Reply, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+replyCols+` FROM replies WHERE state != ? ORDER BY id`, Done)
	if err != nil {
		return nil, fmt.Errorf("read send queue: %w", err)
	}
	var out []Reply
	for rows.Next() {
		r, err := scanReply(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("read send queue: %w", err)
		}
		out = append(out, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read send queue: %w", err)
	}
	for i := range out {
		if out[i].Parts, err = parts(ctx, s.db, out[i].ID); err != nil {
			return nil, fmt.Errorf("read send queue: %w", err)
		}
	}
	return out, nil
}

// SetPart records that platform message p shows part i of reply id.
func (s *Store) SetPart(ctx context.Context, id int64, i int, p Part) error {
	return s.tx(ctx, "record reply part", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO reply_parts(reply_id, part, msg_id, shown) VALUES (?, ?, ?, ?)
			ON CONFLICT(reply_id, part) DO UPDATE SET msg_id = excluded.msg_id, shown = excluded.shown`, id, i, p.MsgID, p.Shown)
		return err
	})
}

// SetFilesSent records that the first n attachments of reply id are posted.
func (s *Store) SetFilesSent(ctx context.Context, id int64, n int) error {
	return s.update(ctx, "record posted attachment", `UPDATE replies SET files_sent = ?, updated_at = ? WHERE id = ?`, n, ms(time.Now()), id)
}

// SetComplete records that the turn of reply id has ended (turn_complete).
func (s *Store) SetComplete(ctx context.Context, id int64) error {
	return s.update(ctx, "record turn end", `UPDATE replies SET complete = 1, updated_at = ? WHERE id = ?`, ms(time.Now()), id)
}

// SetState moves reply id to st. Moving to Done also forgets done replies
// older than DoneKeep.
func (s *Store) SetState(ctx context.Context, id int64, st State) error {
	return s.tx(ctx, "record reply state", func(tx *sql.Tx) error {
		now := time.Now()
		if _, err := tx.ExecContext(ctx, `UPDATE replies SET state = ?, updated_at = ? WHERE id = ?`, st, ms(now), id); err != nil {
			return err
		}
		if st != Done {
			return nil
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM replies WHERE state = ? AND updated_at < ?`, Done, ms(now.Add(-DoneKeep)))
		return err
	})
}

func (s *Store) update(ctx context.Context, what, q string, args ...any) error {
	return s.tx(ctx, what, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, q, args...)
		return err
	})
}

// --- streaming -------------------------------------------------------------

// Stream returns the platform messages session sid is streaming its
// current reply into, by part.
func (s *Store) Stream(ctx context.Context, sid string) ([]Part, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT msg_id, shown FROM stream_parts WHERE session_id = ? ORDER BY part`, sid)
	if err != nil {
		return nil, fmt.Errorf("read streamed parts: %w", err)
	}
	defer rows.Close()
	var out []Part
	for rows.Next() {
		var p Part
		if err := rows.Scan(&p.MsgID, &p.Shown); err != nil {
			return nil, fmt.Errorf("read streamed parts: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// SetStreamPart records that platform message p of chatID shows part i of
// the reply session sid is streaming.
func (s *Store) SetStreamPart(ctx context.Context, sid, chatID string, i int, p Part) error {
	return s.tx(ctx, "record streamed part", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO stream_parts(session_id, part, chat_id, msg_id, shown) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT(session_id, part) DO UPDATE SET msg_id = excluded.msg_id, shown = excluded.shown`, sid, i, chatID, p.MsgID, p.Shown)
		return err
	})
}

// DropStream forgets the streamed parts of session sid (the stream ended
// without a final reply to adopt them).
func (s *Store) DropStream(ctx context.Context, sid string) error {
	return s.update(ctx, "forget streamed parts", `DELETE FROM stream_parts WHERE session_id = ?`, sid)
}

// --- helpers ---------------------------------------------------------------

type rowScanner interface{ Scan(...any) error }

func scanReply(row rowScanner) (Reply, error) {
	var r Reply
	var att string
	var created int64
	if err := row.Scan(&r.ID, &r.SessionID, &r.TurnID, &r.ChatID, &r.Text, &att, &r.FilesSent, &r.Complete, &r.State, &created); err != nil {
		return Reply{}, err
	}
	if err := json.Unmarshal([]byte(att), &r.Attachments); err != nil {
		return Reply{}, fmt.Errorf("reply %d: attachments: %w", r.ID, err)
	}
	r.Created = time.UnixMilli(created)
	return r, nil
}

type querier interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
}

func parts(ctx context.Context, q querier, id int64) ([]Part, error) {
	rows, err := q.QueryContext(ctx, `SELECT part, msg_id, shown FROM reply_parts WHERE reply_id = ? ORDER BY part`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Part
	for rows.Next() {
		var i int
		var p Part
		if err := rows.Scan(&i, &p.MsgID, &p.Shown); err != nil {
			return nil, err
		}
		// Parts are written in order, so indexes are dense; pad anyway so
		// Parts[i] is always part i.
		for len(out) < i {
			out = append(out, Part{})
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

func nonNil(a []wire.Attachment) []wire.Attachment {
	if a == nil {
		return []wire.Attachment{}
	}
	return a
}
