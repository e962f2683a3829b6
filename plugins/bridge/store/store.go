// Package store is a bridge's own persistent state, one SQLite file
// (modernc.org/sqlite, no cgo) in the bridge's DataDir, so that a bridge
// killed at any moment neither loses nor doubles a reply:
//
//   - the send queue: final replies the gateway handed over, and which
//     platform messages already show which part of them, until the platform
//     accepted every part and the gateway has the ack (Reply, Part);
//   - the parts of a reply still streaming (Stream), adopted by its final
//     reply, so a restarted bridge edits the same message;
//   - a bounded window of platform message ids already handed to the agent
//     (Handled), so a redelivered message is not answered twice;
//   - the chat → session mapping of chats moved with /new (ChatSessions);
//   - free values for the platform itself (Value, SetValue).
//
// The SDK's Runner uses it; a platform gets the same *Store in
// bridge.PlatformConfig for its own values. Methods are safe for
// concurrent use.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	istore "github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/wire"
)

// FileName is the database's name inside the bridge's DataDir.
const FileName = "bridge.db"

// DedupWindow is how many handled message ids are kept per chat.
const DedupWindow = 10_000

// pruneEvery: the dedup window is trimmed every this many marks per chat.
const pruneEvery = 100

//go:embed migrations/*.sql
var migrationFS embed.FS

// State is where a reply is in the send queue.
type State string

const (
	// Sending: some part or attachment is not accepted by the platform yet.
	Sending State = "sending"
	// Acking: shown completely; the gateway's ack is not confirmed sent.
	Acking State = "acking"
	// Done: shown and acknowledged; kept to recognise a redelivery.
	Done State = "done"
)

// Reply is one final reply of a turn (a response, or a failed turn's
// error) and how far it is shown.
type Reply struct {
	ID          int64
	SessionID   string
	TurnID      string
	ChatID      string
	Text        string
	Attachments []wire.Attachment
	FilesSent   int  // attachments the platform accepted, in order
	Complete    bool // the turn's turn_complete arrived
	State       State
	Parts       []Part // platform messages showing the text, by part index
	Created     time.Time
}

// Part is one platform message showing one part of a reply.
type Part struct {
	MsgID string // the platform's id of the message
	Shown string // the text it shows now
}

// Store is a bridge's database.
type Store struct {
	db   *sql.DB
	st   *istore.Store
	path string

	// wmu serialises writes (SQLite has one writer; colliding writers
	// back off in sleeps).
	wmu sync.Mutex
	// marks counts MarkHandled per chat since the last trim; under wmu.
	marks map[string]int
}

// Open opens (creating, mode 0600) dir/bridge.db and applies the embedded
// migrations.
func Open(ctx context.Context, dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("bridge store: no data directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("bridge store: %w", err)
	}
	p := filepath.Join(dir, FileName) // created 0600 by OpenWith
	sub, err := fs.Sub(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	st, err := istore.OpenWith(ctx, p, sub)
	if err != nil {
		return nil, fmt.Errorf("bridge store: %w", err)
	}
	return &Store{db: st.DB(), st: st, path: p, marks: map[string]int{}}, nil
}

// Path is the database file.
func (s *Store) Path() string { return s.path }

// Close closes the database.
func (s *Store) Close() error { return s.st.Close() }

func ms(t time.Time) int64 { return t.UnixMilli() }

// --- dedup window ------------------------------------------------------

// Handled reports whether platform message msgID of chatID was already
// handed to the agent.
func (s *Store) Handled(ctx context.Context, chatID, msgID string) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM handled WHERE chat_id = ? AND msg_id = ?`, chatID, msgID).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("read handled messages: %w", err)
	}
	return n > 0, nil
}

// MarkHandled records msgID of chatID as handed to the agent. Only the
// newest DedupWindow ids per chat are kept.
func (s *Store) MarkHandled(ctx context.Context, chatID, msgID string) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err := s.db.ExecContext(ctx, `INSERT INTO handled(chat_id, msg_id, seq)
		VALUES (?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM handled WHERE chat_id = ?))
		ON CONFLICT(chat_id, msg_id) DO NOTHING`, chatID, msgID, chatID)
	if err != nil {
		return fmt.Errorf("record handled message: %w", err)
	}
	s.marks[chatID]++
	if s.marks[chatID] < pruneEvery {
		return nil
	}
	s.marks[chatID] = 0
	_, err = s.db.ExecContext(ctx, `DELETE FROM handled WHERE chat_id = ? AND seq <=
		(SELECT MAX(seq) FROM handled WHERE chat_id = ?) - ?`, chatID, chatID, DedupWindow)
	if err != nil {
		return fmt.Errorf("trim handled messages: %w", err)
	}
	return nil
}

// --- chat → session ----------------------------------------------------

// ChatSessions returns the chats that moved to another session (/new),
// chat id → session id.
func (s *Store) ChatSessions(ctx context.Context) (map[string]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT chat_id, session_id FROM chat_sessions`)
	if err != nil {
		return nil, fmt.Errorf("read chat sessions: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var c, sid string
		if err := rows.Scan(&c, &sid); err != nil {
			return nil, fmt.Errorf("read chat sessions: %w", err)
		}
		out[c] = sid
	}
	return out, rows.Err()
}

// SetChatSession records that chatID now talks on session sid.
func (s *Store) SetChatSession(ctx context.Context, chatID, sid string) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err := s.db.ExecContext(ctx, `INSERT INTO chat_sessions(chat_id, session_id, updated_at) VALUES (?, ?, ?)
		ON CONFLICT(chat_id) DO UPDATE SET session_id = excluded.session_id, updated_at = excluded.updated_at`,
		chatID, sid, ms(time.Now()))
	if err != nil {
		return fmt.Errorf("record session of chat %s: %w", chatID, err)
	}
	return nil
}

// --- values --------------------------------------------------------------

// Value returns the platform value of key; ok is false if unset.
func (s *Store) Value(ctx context.Context, key string) (v string, ok bool, err error) {
	err = s.db.QueryRowContext(ctx, `SELECT value FROM kv WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read value %s: %w", key, err)
	}
	return v, true, nil
}

// Values returns the values whose key starts with prefix.
func (s *Store) Values(ctx context.Context, prefix string) (map[string]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT key, value FROM kv WHERE substr(key, 1, length(?)) = ?`, prefix, prefix)
	if err != nil {
		return nil, fmt.Errorf("read values %s*: %w", prefix, err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, fmt.Errorf("read values %s*: %w", prefix, err)
		}
		out[k] = v
	}
	return out, rows.Err()
}

// SetValue sets the platform value of key.
func (s *Store) SetValue(ctx context.Context, key, value string) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err := s.db.ExecContext(ctx, `INSERT INTO kv(key, value) VALUES (?, ?)
		ON CONFLICT(key) DO UPDATE SET value = excluded.value`, key, value)
	if err != nil {
		return fmt.Errorf("write value %s: %w", key, err)
	}
	return nil
}

// tx runs fn in a write transaction.
func (s *Store) tx(ctx context.Context, what string, fn func(*sql.Tx) error) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
