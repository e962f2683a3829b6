package vault

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// fileState is what decides whether a note must be read again: mtime and
// size first (cheap), the hash when they differ.
type fileState struct {
	mtime int64 // Unix nanoseconds
	size  int64
	hash  string // hex sha256 of the content
}

type indexRow struct {
	id int64
	fileState
}

// loadRows returns the indexed state of every note, by path.
func loadRows(ctx context.Context, db *sql.DB) (map[string]indexRow, error) {
	rows, err := db.QueryContext(ctx, `SELECT id, path, mtime_ns, size, hash FROM vault_notes`)
	if err != nil {
		return nil, fmt.Errorf("load vault index: %w", err)
	}
	defer rows.Close()
	out := map[string]indexRow{}
	for rows.Next() {
		var r indexRow
		var p string
		if err := rows.Scan(&r.id, &p, &r.mtime, &r.size, &r.hash); err != nil {
			return nil, fmt.Errorf("load vault index: %w", err)
		}
		out[p] = r
	}
	return out, rows.Err()
}

// indexTx batches index changes in one transaction with prepared
// statements (a cold build of 10,000 notes is ~150,000 statements).
type indexTx struct {
	tx    *sql.Tx
	stmts map[string]*sql.Stmt
	// fts holds the full-text changes until commit: FTS5 flushes its
	// pending terms to disk whenever a statement of the transaction opens
	// a savepoint while it has some, so interleaving them with the other
	// tables' statements would flush after every note (half of a cold
	// build went there).
	fts []ftsOp
}

type ftsOp struct {
	id                int64
	del               bool
	title, body, tags string
}

func beginIndex(ctx context.Context, db *sql.DB) (*indexTx, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("vault index: %w", err)
	}
	return &indexTx{tx: tx, stmts: map[string]*sql.Stmt{}}, nil
}

func (t *indexTx) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	st, err := t.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

func (t *indexTx) commit(ctx context.Context) error {
	for _, op := range t.fts {
		var err error
		if op.del {
			_, err = t.exec(ctx, `DELETE FROM vault_fts WHERE rowid = ?`, op.id)
		} else {
			_, err = t.exec(ctx, `INSERT INTO vault_fts(rowid, title, body, tags) VALUES (?, ?, ?, ?)`, op.id, op.title, op.body, op.tags)
		}
		if err != nil {
			t.rollback()
			return fmt.Errorf("full-text index: %w", err)
		}
	}
	for _, st := range t.stmts {
		st.Close()
	}
	return t.tx.Commit()
}

func (t *indexTx) rollback() {
	for _, st := range t.stmts {
		st.Close()
	}
	t.tx.Rollback()
}

// upsert writes one note's row, links, tags and text.
func (t *indexTx) upsert(ctx context.Context, rel string, st fileState, p *Parsed) error {
	tags, _ := json.Marshal(p.Tags)
	var id int64
	err := t.queryRow(ctx, `SELECT id FROM vault_notes WHERE path = ?`, rel).Scan(&id)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		err = t.queryRow(ctx, `INSERT INTO vault_notes(path, title, type, tags, mtime_ns, size, hash)
			VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`, rel, p.Title, p.Type, string(tags), st.mtime, st.size, st.hash).Scan(&id)
	case err == nil:
		t.fts = append(t.fts, ftsOp{id: id, del: true})
		for _, q := range []string{
			`DELETE FROM vault_links WHERE note_id = ?`,
			`DELETE FROM vault_tags WHERE note_id = ?`,
		} {
			if _, err = t.exec(ctx, q, id); err != nil {
				break
			}
		}
		if err == nil {
			_, err = t.exec(ctx, `UPDATE vault_notes SET title = ?, type = ?, tags = ?, mtime_ns = ?, size = ?, hash = ? WHERE id = ?`,
				p.Title, p.Type, string(tags), st.mtime, st.size, st.hash, id)
		}
	}
	if err != nil {
		return fmt.Errorf("index %s: %w", rel, err)
	}
	for _, l := range p.Links {
		if _, err := t.exec(ctx, `INSERT INTO vault_links(note_id, target, target_base, heading, alias, embed) VALUES (?, ?, ?, ?, ?, ?)`,
			id, l.Target, targetBase(l.Target), l.Heading, l.Alias, l.Embed); err != nil {
			return fmt.Errorf("index %s: %w", rel, err)
		}
	}
	for _, tag := range p.Tags {
		if _, err := t.exec(ctx, `INSERT OR IGNORE INTO vault_tags(note_id, tag) VALUES (?, ?)`, id, tag); err != nil {
			return fmt.Errorf("index %s: %w", rel, err)
		}
	}
	t.fts = append(t.fts, ftsOp{id: id, title: p.Title, body: p.Body, tags: strings.Join(p.Tags, " ")})
	return nil
}

func (t *indexTx) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	st, ok := t.stmts[q]
	if !ok {
		var err error
		if st, err = t.tx.PrepareContext(ctx, q); err != nil {
			return nil, err
		}
		t.stmts[q] = st
	}
	return st, nil
}

// errRow is a *sql.Row-like result for a statement that failed to prepare.
type rowScanner interface{ Scan(...any) error }

type errRow struct{ err error }

func (e errRow) Scan(...any) error { return e.err }

func (t *indexTx) queryRow(ctx context.Context, q string, args ...any) rowScanner {
	st, err := t.stmt(ctx, q)
	if err != nil {
		return errRow{err}
	}
	return st.QueryRowContext(ctx, args...)
}

// touch records a new mtime/size for a note whose content did not change.
func (t *indexTx) touch(ctx context.Context, rel string, st fileState) error {
	_, err := t.exec(ctx, `UPDATE vault_notes SET mtime_ns = ?, size = ? WHERE path = ?`, st.mtime, st.size, rel)
	return err
}

// remove drops a note from the index (links and tags cascade).
func (t *indexTx) remove(ctx context.Context, id int64) error {
	t.fts = append(t.fts, ftsOp{id: id, del: true})
	_, err := t.exec(ctx, `DELETE FROM vault_notes WHERE id = ?`, id)
	return err
}

// targetBase is the key backlinks are looked up by: the lower-case last
// element of a link target without ".md".
func targetBase(target string) string {
	t := strings.TrimSpace(target)
	if t == "" {
		return ""
	}
	return baseKey(t)
}

// ftsQuery turns a user's query into an FTS5 MATCH expression that cannot
// fail to parse: every term is quoted (so "-", ":", "(" or AND/NOT in the
// query are plain text) and the terms are ANDed; a trailing '*' keeps its
// meaning as a prefix search ("inbo*"). Terms with no letter or digit are
// dropped; "" means nothing to search for.
func ftsQuery(q string) string {
	var parts []string
	for _, term := range strings.Fields(q) {
		prefix := strings.HasSuffix(term, "*")
		core := strings.TrimRight(term, "*")
		if !strings.ContainsFunc(core, func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }) {
			continue
		}
		quoted := `"` + strings.ReplaceAll(core, `"`, `""`) + `"`
		if prefix {
			quoted += "*"
		}
		parts = append(parts, quoted)
	}
	return strings.Join(parts, " ")
}
