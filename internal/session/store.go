package session

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentd/agentd/internal/provider"
	"github.com/agentd/agentd/internal/usage"
	"github.com/agentd/agentd/wire"
)

// db wraps the session tables of migrations 0003 and 0005. The statements on the
// turn path are prepared once: preparing costs more than running them.
type db struct {
	sql *sql.DB
	now func() time.Time

	getSession, insSession, insTurn, getHistory, insMsg, insMsg2, insUsage, delTurn, touch *sql.Stmt

	// metaMu guards meta, a cache of session owner and pin, and metaGen:
	// a session's owner never changes, so only pin and delete change it.
	// metaGen counts those; a read caches its row only if no pin
	// committed since the read began, or a read that raced with a pin could
	// cache the old pin after the pin's invalidation.
	metaMu  sync.Mutex
	meta    map[string]sessionMeta
	metaGen uint64

	hist *histCache

	// ackKeep and ackMax bound the rows awaiting an ack (ackKeepDefault,
	// ackMaxDefault; tests shrink them).
	ackKeep time.Duration
	ackMax  int

	// group batches the writes of the turn path (group.go).
	group group

	// wmu serialises this package's writes. SQLite has one writer; when
	// several collide, its busy handler backs off in sleeps of up to
	// 100 ms, which shows up as a long latency tail.
	wmu sync.Mutex
}

// histCacheBytes bounds the memory of cached histories.
const histCacheBytes = 32 << 20

type sessionMeta struct{ owner, pinned string }

// maxMeta bounds the session cache; past it the cache starts over.
const maxMeta = 100_000

// cached returns id's cached row, or on a miss the generation to pass to
// remember.
func (d *db) cached(id string) (sessionMeta, uint64, bool) {
	d.metaMu.Lock()
	defer d.metaMu.Unlock()
	m, ok := d.meta[id]
	return m, d.metaGen, ok
}

// remember caches a row read since cached returned gen, unless a pin
// committed meanwhile.
func (d *db) remember(id string, gen uint64, m sessionMeta) {
	d.metaMu.Lock()
	defer d.metaMu.Unlock()
	if d.metaGen != gen {
		return
	}
	if d.meta == nil || len(d.meta) >= maxMeta {
		d.meta = map[string]sessionMeta{}
	}
	d.meta[id] = m
}

func openDB(ctx context.Context, sqlDB *sql.DB, now func() time.Time) (*db, error) {
	d := &db{sql: sqlDB, now: now, hist: newHistCache(histCacheBytes), ackKeep: ackKeepDefault, ackMax: ackMaxDefault}
	for _, p := range []struct {
		st *(*sql.Stmt)
		q  string
	}{
		{&d.getSession, `SELECT id, owner, pinned_model, created_at, updated_at FROM sessions WHERE id = ?`},
		{&d.insSession, `INSERT INTO sessions(id, owner, created_at, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT(id) DO NOTHING`},
		{&d.insTurn, `INSERT INTO turns(seq, session_id, client_id, run_key, text, attachments, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)`},
		{&d.getHistory, `SELECT role, content, tool_calls, tool_call_id, is_error FROM messages WHERE session_id = ? AND failed = 0 ORDER BY id`},
		{&d.insMsg, insMessages + msgValues},
		{&d.insMsg2, insMessages + msgValues + ", " + msgValues},
		{&d.insUsage, `INSERT INTO turn_usage(session_id, client_id, model, prompt_tokens, completion_tokens, cost_usd, status, created_at,
			input_price_per_mtok, output_price_per_mtok, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`},
		{&d.delTurn, `DELETE FROM turns WHERE id = ?`},
		{&d.touch, `UPDATE sessions SET updated_at = ? WHERE id = ?`},
	} {
		st, err := sqlDB.PrepareContext(ctx, p.q)
		if err != nil {
			return nil, fmt.Errorf("prepare session statements: %w", err)
		}
		*p.st = st
	}
	return d, nil
}

// insMessages inserts messages rows, msgValues each, msgCols values a row
// (a turn's user message and reply go in one statement: insMsg2).
const (
	insMessages = `INSERT INTO messages(session_id, role, content, tool_calls, tool_call_id, is_error,
			attachments, model, interrupted, failed, error, created_at) VALUES `
	msgValues = `(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	msgCols   = 12
)

func (d *db) ms() int64 { return d.now().UnixMilli() }

// sessionRow is one row of sessions.
type sessionRow struct {
	ID, Owner, Pinned string
	Created, Updated  int64
	Messages, Queued  int
}

var errNoSession = errors.New("no such session")

// session returns the session's owner and pin (from the cache when known;
// then Created/Updated are zero). A read from SQLite is bounded by
// storeTimeout whatever ctx is: a turn passes one without a deadline.
func (d *db) session(ctx context.Context, id string) (sessionRow, error) {
	m, gen, ok := d.cached(id)
	if ok {
		return sessionRow{ID: id, Owner: m.owner, Pinned: m.pinned}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	var r sessionRow
	err := d.getSession.QueryRowContext(ctx, id).Scan(&r.ID, &r.Owner, &r.Pinned, &r.Created, &r.Updated)
	if errors.Is(err, sql.ErrNoRows) {
		return r, errNoSession
	}
	if err != nil {
		return r, fmt.Errorf("read session %s: %w", id, err)
	}
	d.remember(id, gen, sessionMeta{owner: r.Owner, pinned: r.Pinned})
	return r, nil
}

// ensureSession creates the session owned by owner if it does not exist and
// returns its row. A session it created is cached with its empty history,
// so the turn that created it reads neither back.
func (d *db) ensureSession(ctx context.Context, id, owner string) (sessionRow, error) {
	if r, err := d.session(ctx, id); err != errNoSession {
		return r, err
	}
	_, gen, _ := d.cached(id)
	_, token, _ := d.hist.get(id)
	now := d.ms()
	created := false
	err := d.inGroup(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.StmtContext(ctx, d.insSession).ExecContext(ctx, id, owner, now, now)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		created = n == 1
		return err
	})
	if err != nil {
		return sessionRow{}, fmt.Errorf("create session %s: %w", id, err)
	}
	if !created { // another caller created it first
		return d.session(ctx, id)
	}
	d.remember(id, gen, sessionMeta{owner: owner})
	d.hist.put(id, token, nil)
	return sessionRow{ID: id, Owner: owner, Created: now, Updated: now}, nil
}

// listSessions returns sessions, newest first. owner "" means all; prefix
// "" means any id.
func (d *db) listSessions(ctx context.Context, owner, prefix string) ([]sessionRow, error) {
	q := `SELECT s.id, s.owner, s.pinned_model, s.created_at, s.updated_at,
		(SELECT COUNT(*) FROM messages m WHERE m.session_id = s.id),
		(SELECT COUNT(*) FROM turns t WHERE t.session_id = s.id)
		FROM sessions s WHERE (? = '' OR s.owner = ?) AND (? = '' OR substr(s.id, 1, length(?)) = ?)
		ORDER BY s.updated_at DESC, s.id`
	rows, err := d.sql.QueryContext(ctx, q, owner, owner, prefix, prefix, prefix)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	defer rows.Close()
	var out []sessionRow
	for rows.Next() {
		var r sessionRow
		if err := rows.Scan(&r.ID, &r.Owner, &r.Pinned, &r.Created, &r.Updated, &r.Messages, &r.Queued); err != nil {
			return nil, fmt.Errorf("list sessions: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func (d *db) pin(ctx context.Context, id, model string) error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	_, err := d.sql.ExecContext(ctx, `UPDATE sessions SET pinned_model = ?, updated_at = ? WHERE id = ?`, model, d.ms(), id)
	// After the update (even a failed one: unsure means forget): a read
	// that began before this point is not cached (remember), one that
	// begins after it sees the committed pin.
	d.metaMu.Lock()
	d.metaGen++
	delete(d.meta, id)
	d.metaMu.Unlock()
	if err != nil {
		return fmt.Errorf("pin session %s: %w", id, err)
	}
	return nil
}

func (d *db) clearHistory(ctx context.Context, id string) (int64, error) {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	res, err := d.sql.ExecContext(ctx, `DELETE FROM messages WHERE session_id = ?`, id)
	if err != nil {
		return 0, fmt.Errorf("clear session %s: %w", id, err)
	}
	n, _ := res.RowsAffected()
	d.hist.drop(id)
	_, err = d.sql.ExecContext(ctx, `UPDATE sessions SET updated_at = ? WHERE id = ?`, d.ms(), id)
	return n, err
}

// history returns the messages to send to the model: failed turns and
// empty interrupted replies are left out. Like session, it bounds a read
// from SQLite itself.
func (d *db) history(ctx context.Context, id string) ([]provider.Message, error) {
	msgs, token, ok := d.hist.get(id)
	if ok {
		return msgs, nil
	}
	msgs, err := d.readHistory(ctx, id)
	if err == nil {
		d.hist.put(id, token, msgs)
	}
	return msgs, err
}

func (d *db) readHistory(ctx context.Context, id string) ([]provider.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	rows, err := d.getHistory.QueryContext(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("read history of %s: %w", id, err)
	}
	defer rows.Close()
	var out []provider.Message
	for rows.Next() {
		var m provider.Message
		var calls string
		if err := rows.Scan(&m.Role, &m.Content, &calls, &m.ToolCallID, &m.IsError); err != nil {
			return nil, fmt.Errorf("read history of %s: %w", id, err)
		}
		if calls != "" {
			if err := json.Unmarshal([]byte(calls), &m.ToolCalls); err != nil {
				return nil, fmt.Errorf("read history of %s: tool calls: %w", id, err)
			}
		}
		if m.Role == provider.RoleAssistant && m.Content == "" && len(m.ToolCalls) == 0 {
			continue
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// turn is an accepted user turn, persisted until it finishes.
type turn struct {
	ID          int64
	Seq         int64  // acceptance order, assigned under Manager.mu
	TurnID      string // names the turn on the wire (response, turn_complete, ack)
	SessionID   string
	ClientID    string
	RunKey      string
	Text        string
	Attachments []wire.Attachment

	// bridge: a bridge sent it; its final frames go to whichever key holds
	// the bridge's prefix when it ends (recipient). Not persisted: a turn
	// run again after a restart belongs to the key adopt gave it.
	bridge bool

	// Set for server-side turns only (server.go), never persisted: model
	// and system override the session's pin and the system prompt,
	// ephemeral runs without history, result receives the outcome
	// instead of the client's connections.
	model, system string
	ephemeral     bool
	result        chan serverResult

	// persisted, when set, is closed once the turn of a run that started
	// at once is settled (persist.go): its row written (ID valid from then
	// on) or known not to be needed.
	persisted chan struct{}
	persistState
	// cut, set before the run settles, says the run was cut by shutdown:
	// the turn is persisted even though it ended.
	cut atomic.Bool

	// to is the recipient of the final frames (boxFor), and box their rows
	// once stored with the result (nil: storeFinal writes what is needed
	// after delivery).
	to  string
	box *boxed
}

func (d *db) insertTurn(ctx context.Context, t *turn) error {
	return d.insertTurns(ctx, []*turn{t})
}

// deleteTurns deletes the queued turns ids, all or none.
func (d *db) deleteTurns(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	err := d.inGroup(ctx, func(ctx context.Context, tx *sql.Tx) error {
		del := tx.StmtContext(ctx, d.delTurn)
		for _, id := range ids {
			if _, err := del.ExecContext(ctx, id); err != nil {
				return fmt.Errorf("turn %d: %w", id, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("drop queued turns: %w", err)
	}
	return nil
}

// pendingTurns returns every persisted turn in acceptance order.
func (d *db) pendingTurns(ctx context.Context) ([]*turn, error) {
	rows, err := d.sql.QueryContext(ctx, `SELECT id, seq, session_id, client_id, run_key, text, attachments FROM turns ORDER BY seq, id`)
	if err != nil {
		return nil, fmt.Errorf("read queued turns: %w", err)
	}
	defer rows.Close()
	var out []*turn
	for rows.Next() {
		t := &turn{TurnID: newTurnID()}
		var att string
		if err := rows.Scan(&t.ID, &t.Seq, &t.SessionID, &t.ClientID, &t.RunKey, &t.Text, &att); err != nil {
			return nil, fmt.Errorf("read queued turns: %w", err)
		}
		if err := json.Unmarshal([]byte(att), &t.Attachments); err != nil {
			return nil, fmt.Errorf("read queued turn %d: %w", t.ID, err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// outcome is what a finished turn stores.
type outcome struct {
	// Messages are the turn's history entries, user message first.
	Messages    []provider.Message
	Attachments []wire.Attachment // of the reply, stored on the last assistant row
	Model       string
	Interrupted bool
	Err         error // the turn failed
	Usage       provider.Usage
	CostUSD     float64
	Price       usage.Price // the model's prices when the turn ran
}

func (o outcome) status() string {
	switch {
	case o.Err != nil:
		return "failed"
	case o.Interrupted:
		return "interrupted"
	}
	return "ok"
}

// finishTurn stores the turn's messages and usage and forgets the queued
// turn, atomically: a crash leaves either the queued turn (it runs again) or
// its result, never both. The outbox rows of box, if any, are part of the
// same transaction (see boxed).
func (d *db) finishTurn(ctx context.Context, t *turn, o outcome, box *boxed) error {
	now := d.ms()
	msgs := o.Messages
	if len(msgs) == 0 || msgs[0].Role != provider.RoleUser {
		msgs = append([]provider.Message{{Role: provider.RoleUser, Content: t.Text}}, msgs...)
	}
	lastAssistant := -1
	for i, m := range msgs {
		if m.Role == provider.RoleAssistant {
			lastAssistant = i
		}
	}
	if lastAssistant < 0 && (o.Interrupted || o.Err != nil) {
		// Keep a visible trace of the reply that never came.
		msgs = append(msgs, provider.Message{Role: provider.RoleAssistant})
		lastAssistant = len(msgs) - 1
	}
	errText := ""
	if o.Err != nil {
		errText = o.Err.Error()
	}
	if t.ephemeral {
		msgs = nil // usage only
	}
	args := make([]any, 0, msgCols*len(msgs))
	for i, m := range msgs {
		calls := ""
		if len(m.ToolCalls) > 0 {
			b, _ := json.Marshal(m.ToolCalls)
			calls = string(b)
		}
		var att []wire.Attachment
		if i == 0 {
			att = t.Attachments
		}
		model, interrupted, rowErr := "", false, ""
		if i == lastAssistant {
			att, model, interrupted, rowErr = o.Attachments, o.Model, o.Interrupted, errText
		}
		args = append(args, t.SessionID, string(m.Role), m.Content, calls, m.ToolCallID, m.IsError, attachmentsJSON(att), model,
			interrupted, o.Err != nil, rowErr, now)
	}
	err := d.inGroup(ctx, func(ctx context.Context, tx *sql.Tx) error {
		// Two rows per statement (the user message and the reply of a
		// turn without tools), the odd one alone.
		for rest := args; len(rest) > 0; {
			st, n := d.insMsg2, 2*msgCols
			if len(rest) == msgCols {
				st, n = d.insMsg, msgCols
			}
			if _, err := tx.StmtContext(ctx, st).ExecContext(ctx, rest[:n]...); err != nil {
				return err
			}
			rest = rest[n:]
		}
		// The usage row also touches the session (migration 0013).
		if _, err := tx.StmtContext(ctx, d.insUsage).ExecContext(ctx, t.SessionID, t.ClientID, o.Model, o.Usage.PromptTokens, o.Usage.CompletionTokens, o.CostUSD, o.status(), now,
			o.Price.Input, o.Price.Output, usage.Source(t.SessionID)); err != nil {
			return err
		}
		if t.ID != 0 { // 0: it ended before it was to be persisted
			if _, err := tx.StmtContext(ctx, d.delTurn).ExecContext(ctx, t.ID); err != nil {
				return err
			}
		}
		return d.storeBoxTx(ctx, tx, box, t, now)
	})
	if err != nil {
		d.hist.drop(t.SessionID)
		return fmt.Errorf("finish turn %d: %w", t.ID, err)
	}
	if !t.ephemeral {
		d.hist.appendTurn(t.SessionID, modelView(msgs, o.Err != nil))
	}
	return nil
}

// storeBoxTx writes box's rows for turn t, if there is a box, then applies
// the bounds of the rows awaiting an ack (pruneAwaitingTx), as addOutbox
// does.
func (d *db) storeBoxTx(ctx context.Context, tx *sql.Tx, box *boxed, t *turn, now int64) error {
	if box == nil {
		return nil
	}
	var err error
	if box.ids, err = d.insertOutboxTx(ctx, tx, box.clientID, t.SessionID, t.TurnID, box.rows, now); err != nil {
		return err
	}
	if box.dropped, err = d.pruneAwaitingTx(ctx, tx, box.clientID); err != nil {
		return fmt.Errorf("bound replies awaiting an ack: %w", err)
	}
	return nil
}

// insertOutboxTx writes rows for clientID and returns their ids.
func (d *db) insertOutboxTx(ctx context.Context, tx *sql.Tx, clientID, sessionID, turnID string, rows []outboxRow, now int64) ([]int64, error) {
	ids := make([]int64, len(rows))
	for i, r := range rows {
		res, err := tx.ExecContext(ctx, `INSERT INTO outbox(client_id, session_id, turn_id, frame, sent, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
			clientID, sessionID, turnID, string(r.Frame), r.Sent, now)
		if err != nil {
			return nil, err
		}
		if ids[i], err = res.LastInsertId(); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// outboxFrame is a frame waiting for its client.
type outboxFrame struct {
	ID    int64
	Frame []byte
}

// outboxRow is a frame to store: Sent marks one a connection already took
// (kept only for clients in ack mode, until their ack).
type outboxRow struct {
	Frame []byte
	Sent  bool
}

// addOutbox stores rows of turn turnID for clientID; with ackMode it then applies the
// bounds of awaiting rows (see pruneAwaitingTx) in the same transaction and
// returns how many it dropped.
func (d *db) addOutbox(ctx context.Context, clientID, sessionID, turnID string, rows []outboxRow, ackMode bool) (dropped int64, err error) {
	now := d.ms()
	err = d.inGroup(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := d.insertOutboxTx(ctx, tx, clientID, sessionID, turnID, rows, now); err != nil {
			return err
		}
		if !ackMode {
			return nil
		}
		var err error
		if dropped, err = d.pruneAwaitingTx(ctx, tx, clientID); err != nil {
			return fmt.Errorf("bound replies awaiting an ack: %w", err)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store reply for later: %w", err)
	}
	return dropped, nil
}

// outbox returns the frames waiting for clientID (of one session if
// sessionID is set; only those no connection took yet if unsentOnly),
// oldest first.
func (d *db) outbox(ctx context.Context, clientID, sessionID string, unsentOnly bool) ([]outboxFrame, error) {
	rows, err := d.sql.QueryContext(ctx, `SELECT id, frame FROM outbox WHERE client_id = ? AND (? = '' OR session_id = ?)
		AND (? = 0 OR sent = 0) ORDER BY id`,
		clientID, sessionID, sessionID, unsentOnly)
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	defer rows.Close()
	var out []outboxFrame
	for rows.Next() {
		var f outboxFrame
		var s string
		if err := rows.Scan(&f.ID, &s); err != nil {
			return nil, fmt.Errorf("read outbox: %w", err)
		}
		f.Frame = []byte(s)
		out = append(out, f)
	}
	return out, rows.Err()
}

func (d *db) deleteOutbox(ctx context.Context, ids []int64) error {
	return d.inGroup(ctx, func(ctx context.Context, tx *sql.Tx) error {
		for _, id := range ids {
			if _, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE id = ?`, id); err != nil {
				return fmt.Errorf("delete outbox frame %d: %w", id, err)
			}
		}
		return nil
	})
}

// attachmentsJSON is the attachments column: most rows have none, and
// json.Marshal is not needed to write "[]".
func attachmentsJSON(a []wire.Attachment) string {
	if len(a) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(a) // a list of plain strings always encodes
	return string(b)
}

func nonNil(a []wire.Attachment) []wire.Attachment {
	if a == nil {
		return []wire.Attachment{}
	}
	return a
}
