package mcp

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/agentd/agentd/internal/config"
)

// seededKey is the meta row saying the config has seeded the table.
const seededKey = "mcps_seeded"

const rowColumns = `name, kind, command, url, env, headers, enabled, timeout_ms, max_result_bytes, created_at, updated_at`

// seed inserts the config's mcps: section once, at the first start of an
// agent directory; later starts and reloads leave the table alone.
func (p *Pool) seed(ctx context.Context, cfg *config.Config) error {
	tx, err := p.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("seed MCP servers: %w", err)
	}
	defer tx.Rollback()
	var v string
	err = tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, seededKey).Scan(&v)
	if err == nil {
		return nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("seed MCP servers: %w", err)
	}
	names := make([]string, 0, len(cfg.MCPs))
	for n := range cfg.MCPs {
		names = append(names, n)
	}
	sort.Strings(names)
	now := p.now()
	for _, n := range names {
		r := FromConfig(n, cfg.MCPs[n])
		r.CreatedAt, r.UpdatedAt = now, now
		if err := insertRow(ctx, tx, r); err != nil {
			return fmt.Errorf("seed MCP server %s: %w", n, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO meta(key, value) VALUES (?, ?)`, seededKey, now.UTC().Format(time.RFC3339)); err != nil {
		return fmt.Errorf("seed MCP servers: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("seed MCP servers: %w", err)
	}
	if len(names) > 0 {
		p.log.Info("MCP servers seeded from the config", "servers", names)
	}
	return nil
}

// FromConfig is the row an mcps: entry seeds.
func FromConfig(name string, m config.MCP) Server {
	r := Server{
		Name: name, Kind: KindCustom, URL: m.URL, Env: m.Env, Headers: m.Headers,
		Enabled: m.IsEnabled(), Timeout: m.Timeout.D(), MaxResultBytes: m.MaxResultBytes,
	}
	if m.Command != "" {
		r.Command = append([]string{m.Command}, m.Args...)
	}
	return r
}

type execer interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
}

func insertRow(ctx context.Context, db execer, r Server) error {
	cmd, env, hdr := marshalRow(r)
	_, err := db.ExecContext(ctx, `INSERT INTO mcps(`+rowColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.Name, r.Kind, cmd, r.URL, env, hdr, r.Enabled, r.Timeout.Milliseconds(), r.MaxResultBytes,
		r.CreatedAt.UnixMilli(), r.UpdatedAt.UnixMilli())
	return err
}

func updateRow(ctx context.Context, db execer, r Server) error {
	cmd, env, hdr := marshalRow(r)
	_, err := db.ExecContext(ctx, `UPDATE mcps SET command = ?, url = ?, env = ?, headers = ?, enabled = ?,
		timeout_ms = ?, max_result_bytes = ?, updated_at = ? WHERE name = ?`,
		cmd, r.URL, env, hdr, r.Enabled, r.Timeout.Milliseconds(), r.MaxResultBytes, r.UpdatedAt.UnixMilli(), r.Name)
	return err
}

func marshalRow(r Server) (cmd, env, hdr string) {
	b := func(v any) string {
		out, _ := json.Marshal(v) // string slices and maps always marshal
		return string(out)
	}
	c := r.Command
	if c == nil {
		c = []string{}
	}
	e, h := r.Env, r.Headers
	if e == nil {
		e = map[string]string{}
	}
	if h == nil {
		h = map[string]string{}
	}
	return b(c), b(e), b(h)
}

func (p *Pool) loadRows(ctx context.Context) ([]Server, error) {
	rows, err := p.db.QueryContext(ctx, `SELECT `+rowColumns+` FROM mcps ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("load MCP servers: %w", err)
	}
	defer rows.Close()
	var out []Server
	for rows.Next() {
		var r Server
		var cmd, env, hdr string
		var timeoutMS, created, updated int64
		if err := rows.Scan(&r.Name, &r.Kind, &cmd, &r.URL, &env, &hdr, &r.Enabled, &timeoutMS,
			&r.MaxResultBytes, &created, &updated); err != nil {
			return nil, fmt.Errorf("load MCP servers: %w", err)
		}
		for _, f := range []struct {
			s string
			v any
		}{{cmd, &r.Command}, {env, &r.Env}, {hdr, &r.Headers}} {
			if err := json.Unmarshal([]byte(f.s), f.v); err != nil {
				return nil, fmt.Errorf("load MCP server %s: %w", r.Name, err)
			}
		}
		if len(r.Command) == 0 {
			r.Command = nil
		}
		r.Timeout = time.Duration(timeoutMS) * time.Millisecond
		r.CreatedAt, r.UpdatedAt = time.UnixMilli(created), time.UnixMilli(updated)
		out = append(out, r)
	}
	return out, rows.Err()
}
