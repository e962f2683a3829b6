package store

import (
	"context"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
)

// migrationsUpTo is the embedded migrations numbered up to n, as an older
// agentd shipped them.
func migrationsUpTo(t *testing.T, n int) fs.FS {
	t.Helper()
	sub, err := fs.Sub(migrationFS, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	ms, err := readMigrations(sub)
	if err != nil {
		t.Fatal(err)
	}
	out := fstest.MapFS{}
	for _, m := range ms {
		if m.version <= n {
			out[m.name] = &fstest.MapFile{Data: []byte(m.sql)}
		}
	}
	return out
}

// Migration 0014 rebuilds the turns queue without its seq index and without
// AUTOINCREMENT, keeping the turns an older agentd had accepted: they still
// run after the upgrade.
func TestTurnsQueueUpgradeKeepsTurns(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName)
	old, err := OpenWith(ctx, path, migrationsUpTo(t, 13))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO sessions(id, owner, created_at, updated_at) VALUES ('s', 'c', 1, 1)`,
		`INSERT INTO turns(seq, session_id, client_id, run_key, text, attachments, created_at) VALUES (7, 's', 'c', 'c/s', 'queued before the upgrade', '[]', 2)`,
		`INSERT INTO turns(seq, session_id, client_id, run_key, text, attachments, created_at) VALUES (8, 's', 'c', 'c/s', 'and this one', '[]', 3)`,
	} {
		if _, err := old.DB().ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	old.Close()

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rows, err := s.DB().QueryContext(ctx, `SELECT id, seq, text FROM turns ORDER BY seq, id`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var id, seq int
		var text string
		if err := rows.Scan(&id, &seq, &text); err != nil {
			t.Fatal(err)
		}
		got = append(got, strconv.Itoa(id)+" "+strconv.Itoa(seq)+" "+text)
	}
	rows.Close()
	if want := "1 7 queued before the upgrade|2 8 and this one"; strings.Join(got, "|") != want {
		t.Errorf("turns after the upgrade: %q, want %q", got, want)
	}
	var ddl string
	if err := s.DB().QueryRowContext(ctx, `SELECT sql FROM sqlite_master WHERE name = 'turns'`).Scan(&ddl); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(ddl, "AUTOINCREMENT") || !strings.Contains(ddl, "REFERENCES sessions(id) ON DELETE CASCADE") {
		t.Errorf("turns is %s", ddl)
	}
	var idx int
	s.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'turns'`).Scan(&idx)
	if idx != 0 {
		t.Errorf("%d indexes left on turns", idx)
	}
	// The cascade still holds: a deleted session takes its turns along.
	if _, err := s.DB().ExecContext(ctx, `DELETE FROM sessions WHERE id = 's'`); err != nil {
		t.Fatal(err)
	}
	var n int
	s.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM turns`).Scan(&n)
	if n != 0 {
		t.Errorf("%d turns left after their session was deleted", n)
	}
}
