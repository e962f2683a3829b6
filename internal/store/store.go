// Package store owns the agent's SQLite database (modernc.org/sqlite, no
// cgo): opening it with WAL, busy timeout and foreign keys, and applying the
// embedded, numbered schema migrations.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"

	_ "modernc.org/sqlite" // registers driver "sqlite"
)

// FileName is the database's name inside an agent directory.
const FileName = "openagent.db"

//go:embed migrations/*.sql
var migrationFS embed.FS

// ErrNewerSchema is returned when the database was written by a newer agentd.
var ErrNewerSchema = errors.New("database schema is newer than this agentd")

// Store is the agent's database.
type Store struct {
	db   *sql.DB
	fsys fs.FS // the migrations: files N_name.sql at its root
}

// DB returns the underlying handle for packages that own their tables.
func (s *Store) DB() *sql.DB { return s.db }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// maxConns bounds the connections of one database (see OpenWith).
const maxConns = 16

// DSN returns the modernc DSN for path with the pragmas agentd relies on.
func DSN(p string) string {
	q := url.Values{}
	for _, pr := range []string{"journal_mode(WAL)", "busy_timeout(5000)", "foreign_keys(1)", "synchronous(NORMAL)"} {
		q.Add("_pragma", pr)
	}
	q.Set("_txlock", "immediate")
	return "file:" + p + "?" + q.Encode()
}

// Open opens (creating if needed) the database at p and migrates it.
func Open(ctx context.Context, p string) (*Store, error) {
	sub, err := fs.Sub(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	return OpenWith(ctx, p, sub)
}

// OpenWith opens (creating if needed) the SQLite database at p, with the
// same pragmas as the agent's, and applies the numbered migrations of
// migrations (files N_name.sql at its root, e.g. an embed.FS through
// fs.Sub). Bridges keep their own state this way (plugins/bridge/store).
func OpenWith(ctx context.Context, p string, migrations fs.FS) (*Store, error) {
	// SQLite creates the file with 0644 (less the umask) and gives the -wal
	// and -shm files the database file's mode: creating it 0600 first
	// keeps all three private.
	if f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
		f.Close()
	} else if !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("open database %s: %w", p, err)
	}
	db, err := sql.Open("sqlite", DSN(p))
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", p, err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open database %s: %w", p, err)
	}
	// Every turn touches the database from several goroutines. Opening a
	// SQLite connection (pragmas, schema parse) costs ~0.5 ms: with more
	// open connections than idle ones, a burst of first turns opened and
	// closed hundreds. SQLite's single writer and its CPU-bound reads gain
	// nothing from more connections than this; callers wait for one.
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	s := &Store{db: db, fsys: migrations}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate database %s: %w", p, err)
	}
	return s, nil
}

type migration struct {
	version int
	name    string
	sql     string
}

// Migrations returns the agent database's embedded migrations in order.
func Migrations() ([]migration, error) {
	sub, err := fs.Sub(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	return readMigrations(sub)
}

func readMigrations(fsys fs.FS) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, err
	}
	var out []migration
	seen := map[int]string{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".sql") {
			continue
		}
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must start with a positive number and _", name)
		}
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrations %s and %s share number %d", prev, name, v)
		}
		seen[v] = name
		body, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: name, sql: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

// Version returns the schema version recorded in the database.
func (s *Store) Version(ctx context.Context) (int, error) {
	var v int
	err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&v)
	return v, err
}

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		version INTEGER PRIMARY KEY,
		name TEXT NOT NULL,
		applied_at INTEGER NOT NULL DEFAULT (unixepoch())
	)`); err != nil {
		return err
	}
	ms, err := readMigrations(s.fsys)
	if err != nil {
		return err
	}
	cur, err := s.Version(ctx)
	if err != nil {
		return err
	}
	latest := 0
	if len(ms) > 0 {
		latest = ms[len(ms)-1].version
	}
	if cur > latest {
		return fmt.Errorf("%w: database is at version %d, this program knows up to %d; upgrade it", ErrNewerSchema, cur, latest)
	}
	for _, m := range ms {
		if m.version <= cur {
			continue
		}
		if err := s.apply(ctx, m); err != nil {
			return fmt.Errorf("apply %s: %w", m.name, err)
		}
	}
	return nil
}

func (s *Store) apply(ctx context.Context, m migration) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version(version, name) VALUES (?, ?)`, m.version, m.name); err != nil {
		return err
	}
	return tx.Commit()
}

// Meta returns the value of key in the meta table, or "" if unset.
func (s *Store) Meta(ctx context.Context, key string) (string, error) {
	var v string
	err := s.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return v, err
}

// SetMeta sets key in the meta table.
func (s *Store) SetMeta(ctx context.Context, key, value string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO meta(key, value) VALUES (?, ?)
		ON CONFLICT(key) DO UPDATE SET value = excluded.value`, key, value)
	return err
}
