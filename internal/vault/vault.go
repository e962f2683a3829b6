// Package vault owns memories/: Obsidian-compatible markdown notes that are
// the agent's long-term memory and the owner's notes at once. It parses
// notes (YAML frontmatter, tags, wikilinks and markdown links, code
// skipped), keeps a SQLite index (FTS5 full text, links, tags) current from
// the files — incrementally at start, then through a recursive fsnotify
// watcher with a periodic full rescan — and writes notes atomically with a
// version check, so an edit the owner made in Obsidian is never silently
// overwritten. REST routes and the agent's built-in tools sit on top.
package vault

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/agentd/agentd/internal/hook"
	"github.com/agentd/agentd/internal/vault/notepath"
)

// Errors of the vault API (REST maps them to statuses).
var (
	ErrNotFound       = errors.New("note not found")
	ErrConflict       = errors.New("the note changed since it was read")
	ErrExists         = errors.New("the note already exists")
	ErrInvalidContent = errors.New("invalid note content")
	ErrTooLarge       = errors.New("note too large")
)

// MaxNoteBytes bounds one note written through the vault.
const MaxNoteBytes = 4 << 20

// Defaults of Options.
const (
	DefaultRescan   = 5 * time.Minute
	DefaultDebounce = 50 * time.Millisecond
)

// Options configure Open.
type Options struct {
	// Rescan is the interval of the full rescan behind the watcher.
	Rescan time.Duration
	// Debounce is how long the watcher waits for a burst of events on a
	// path to settle (editors write a file in several steps).
	Debounce time.Duration
	Logger   *slog.Logger
}

// Vault is the notes folder and its index.
type Vault struct {
	dir  string   // absolute path of memories/
	root *os.Root // every file access goes through it: no symlink leaves the vault
	db   *sql.DB
	log  *slog.Logger
	opts Options

	names *names
	ready chan struct{} // closed when Run finished the first sync and watches

	// wmu serializes changes — file writes and index updates — so that a
	// write's version check and rename, and the watcher's reindexing, never
	// interleave.
	wmu sync.Mutex

	hooks hook.Changes
}

// Open opens the vault in dir (created if missing) with its index in db
// (tables of internal/store's migrations). It loads the index as it is;
// Run brings it up to date with the files and keeps it there.
func Open(ctx context.Context, db *sql.DB, dir string, opts Options) (*Vault, error) {
	if opts.Rescan <= 0 {
		opts.Rescan = DefaultRescan
	}
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open vault: %w", err)
	}
	// memories/ may itself be a symlink to the owner's Obsidian vault
	// elsewhere: work on the folder it names (a walk does not enter a
	// symlinked root, and watch events carry the real path).
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("open vault: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open vault: %w", err)
	}
	v := &Vault{dir: root.Name(), root: root, db: db, log: opts.Logger, opts: opts, names: newNames(), ready: make(chan struct{})}
	// The rank of ORDER BY rank is a persistent FTS5 setting.
	if _, err := db.ExecContext(ctx, `INSERT INTO vault_fts(vault_fts, rank) VALUES ('rank', ?)`, rankFunction); err != nil {
		root.Close()
		return nil, fmt.Errorf("open vault index: %w", err)
	}
	rows, err := loadRows(ctx, db)
	if err != nil {
		root.Close()
		return nil, err
	}
	for p := range rows {
		v.names.add(p)
	}
	return v, nil
}

// Close releases the folder handle.
func (v *Vault) Close() error { return v.root.Close() }

// Dir is the vault's folder.
func (v *Vault) Dir() string { return v.dir }

// Ready is closed once Run has indexed the folder and watches it.
func (v *Vault) Ready() <-chan struct{} { return v.ready }

// OnChange registers fn, called after every change to a note — through the
// vault or made outside agentd — with ("vault", created|updated|deleted,
// path). Hooks run synchronously after the index was updated.
func (v *Vault) OnChange(fn func(resource, action, id string)) {
	v.hooks.Add(fn)
}

type change struct{ action, path string }

func (v *Vault) notify(changes []change) {
	for _, c := range changes {
		v.hooks.Notify("vault", c.action, c.path)
	}
}

func hashOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func stateOf(fi fs.FileInfo, content []byte) fileState {
	return fileState{mtime: fi.ModTime().UnixNano(), size: fi.Size(), hash: hashOf(content)}
}

// seconds is a Unix time in nanoseconds as float seconds (rest.md's
// "modified").
func seconds(ns int64) float64 { return float64(ns) / 1e9 }

// NoteInfo is one entry of List.
type NoteInfo struct {
	Path     string   `json:"path"`
	Title    string   `json:"title"`
	Tags     []string `json:"tags"`
	Type     string   `json:"type"`
	Modified float64  `json:"modified"`
	Size     int64    `json:"size"`
}

// List returns every indexed note, sorted by path.
func (v *Vault) List(ctx context.Context) ([]NoteInfo, error) {
	rows, err := v.db.QueryContext(ctx, `SELECT path, title, tags, type, mtime_ns, size FROM vault_notes ORDER BY path`)
	if err != nil {
		return nil, fmt.Errorf("list notes: %w", err)
	}
	defer rows.Close()
	out := []NoteInfo{}
	for rows.Next() {
		var n NoteInfo
		var tags string
		var mtime int64
		if err := rows.Scan(&n.Path, &n.Title, &tags, &n.Type, &mtime, &n.Size); err != nil {
			return nil, fmt.Errorf("list notes: %w", err)
		}
		n.Tags = decodeTags(tags)
		n.Modified = seconds(mtime)
		out = append(out, n)
	}
	return out, rows.Err()
}

func decodeTags(s string) []string {
	tags := []string{}
	json.Unmarshal([]byte(s), &tags)
	if tags == nil {
		tags = []string{}
	}
	return tags
}

// Note is one note as read from disk, with its links resolved.
type Note struct {
	Path             string         `json:"path"`
	Title            string         `json:"title"`
	Type             string         `json:"type"`
	Tags             []string       `json:"tags"`
	Content          string         `json:"content"`
	Frontmatter      map[string]any `json:"frontmatter"`
	FrontmatterError string         `json:"frontmatter_error,omitempty"`
	Body             string         `json:"body"`
	Links            []OutLink      `json:"links"`
	Backlinks        []Backlink     `json:"backlinks"`
	Modified         float64        `json:"modified"`
	Size             int64          `json:"size"`
	// Hash is the note's version: send it back as If-Match or base_hash.
	Hash string `json:"hash"`
}

// OutLink is a link of a note with the note it resolves to.
type OutLink struct {
	Link
	// Path is the note the link resolves to; "" when Unresolved.
	Path       string `json:"path,omitempty"`
	Unresolved bool   `json:"unresolved,omitempty"`
}

// Backlink is a link from another note to this one.
type Backlink struct {
	// Path and Title are the linking note's.
	Path  string `json:"path"`
	Title string `json:"title"`
	Link
}

// Read returns the note at p (see CleanPath) fresh from disk.
func (v *Vault) Read(ctx context.Context, p string) (*Note, error) {
	rel, err := CleanPath(p)
	if err != nil {
		return nil, err
	}
	content, fi, err := v.readFile(rel)
	if err != nil {
		return nil, err
	}
	parsed := Parse(rel, content)
	n := &Note{
		Path: rel, Title: parsed.Title, Type: parsed.Type, Tags: parsed.Tags, Content: string(content),
		Frontmatter: parsed.Frontmatter, FrontmatterError: parsed.FrontmatterError, Body: parsed.Body,
		Modified: seconds(fi.ModTime().UnixNano()), Size: fi.Size(), Hash: hashOf(content),
	}
	if n.Frontmatter == nil {
		n.Frontmatter = map[string]any{}
	}
	n.Links = v.resolveLinks(rel, parsed.Links)
	if n.Backlinks, err = v.backlinks(ctx, rel); err != nil {
		return nil, err
	}
	return n, nil
}

// readFile reads a note through the root: a missing file is ErrNotFound, a
// symlink out of the vault ErrInvalidPath.
func (v *Vault) readFile(rel string) ([]byte, fs.FileInfo, error) {
	fi, err := v.root.Stat(rel)
	if err == nil && fi.IsDir() {
		return nil, nil, fmt.Errorf("%w %q: a folder, not a note", ErrInvalidPath, rel)
	}
	if err == nil {
		var b []byte
		if b, err = v.root.ReadFile(rel); err == nil {
			return b, fi, nil
		}
	}
	switch {
	case notepath.Escapes(err):
		return nil, nil, fmt.Errorf("%w %q: a symlink leads out of the vault", ErrInvalidPath, rel)
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil, fmt.Errorf("%w: %s", ErrNotFound, rel)
	}
	return nil, nil, fmt.Errorf("read note %s: %w", rel, err)
}

func (v *Vault) resolveLinks(source string, links []Link) []OutLink {
	out := make([]OutLink, 0, len(links))
	for _, l := range links {
		o := OutLink{Link: l}
		if p, ok := v.names.resolve(source, l.Target); ok {
			o.Path = p
		} else {
			o.Unresolved = true
		}
		out = append(out, o)
	}
	return out
}

// backlinks finds the links of other notes that resolve to rel.
func (v *Vault) backlinks(ctx context.Context, rel string) ([]Backlink, error) {
	rows, err := v.db.QueryContext(ctx, `SELECT n.path, n.title, l.target, l.heading, l.alias, l.embed
		FROM vault_links l JOIN vault_notes n ON n.id = l.note_id
		WHERE l.target_base = ? ORDER BY n.path`, baseKey(rel))
	if err != nil {
		return nil, fmt.Errorf("backlinks of %s: %w", rel, err)
	}
	defer rows.Close()
	out := []Backlink{}
	for rows.Next() {
		var b Backlink
		if err := rows.Scan(&b.Path, &b.Title, &b.Target, &b.Heading, &b.Alias, &b.Embed); err != nil {
			return nil, fmt.Errorf("backlinks of %s: %w", rel, err)
		}
		if b.Path == rel {
			continue // a note naming itself is not a backlink
		}
		if p, ok := v.names.resolve(b.Path, b.Target); ok && p == rel {
			out = append(out, b)
		}
	}
	return out, rows.Err()
}

// Links returns a note's outgoing links and backlinks from the index (no
// file read).
func (v *Vault) Links(ctx context.Context, p string) ([]OutLink, []Backlink, error) {
	rel, err := CleanPath(p)
	if err != nil {
		return nil, nil, err
	}
	rows, err := v.db.QueryContext(ctx, `SELECT l.target, l.heading, l.alias, l.embed
		FROM vault_links l JOIN vault_notes n ON n.id = l.note_id WHERE n.path = ? ORDER BY l.rowid`, rel)
	if err != nil {
		return nil, nil, fmt.Errorf("links of %s: %w", rel, err)
	}
	var links []Link
	for rows.Next() {
		var l Link
		if err := rows.Scan(&l.Target, &l.Heading, &l.Alias, &l.Embed); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("links of %s: %w", rel, err)
		}
		links = append(links, l)
	}
	rows.Close()
	if !v.names.has(rel) {
		return nil, nil, fmt.Errorf("%w: %s", ErrNotFound, rel)
	}
	back, err := v.backlinks(ctx, rel)
	return v.resolveLinks(rel, links), back, err
}

// Hit is one search result.
type Hit struct {
	Path    string   `json:"path"`
	Title   string   `json:"title"`
	Tags    []string `json:"tags"`
	Snippet string   `json:"snippet"`
	Score   float64  `json:"score"`
}

// rankFunction weighs title matches most, then tags, then body text.
const rankFunction = "bm25(10.0, 1.0, 5.0)"

// Search runs a full-text query (terms ANDed, "word*" for a prefix) over
// titles, bodies and tags, best first (bm25, see rankFunction). Matches in
// the snippet are wrapped in **…**.
func (v *Vault) Search(ctx context.Context, q string, limit int) ([]Hit, error) {
	if limit <= 0 || limit > 500 {
		limit = 50
	}
	out := []Hit{}
	match := ftsQuery(q)
	if match == "" {
		return out, nil
	}
	// ORDER BY rank on the FTS table lets FTS5 sort by itself and run the
	// path lookup only for the rows returned, not for every match (a join
	// with vault_notes would defeat that: 5× slower). The rank function is
	// configured at Open; title and tags come from the FTS row itself.
	terms := queryTerms(q)
	rows, err := v.db.QueryContext(ctx, `SELECT (SELECT path FROM vault_notes WHERE id = vault_fts.rowid), title, tags, body, rank
		FROM vault_fts WHERE vault_fts MATCH ? ORDER BY rank LIMIT ?`, match, limit)
	if err != nil {
		return nil, fmt.Errorf("search %q: %w", q, err)
	}
	defer rows.Close()
	for rows.Next() {
		var h Hit
		var tags, body string
		var p sql.NullString
		if err := rows.Scan(&p, &h.Title, &tags, &body, &h.Score); err != nil {
			return nil, fmt.Errorf("search %q: %w", q, err)
		}
		if !p.Valid {
			continue // an FTS row without its note: never written so, but never shown
		}
		h.Path, h.Tags = p.String, strings.Fields(tags)
		h.Snippet = snippet(body, terms)
		h.Score = -h.Score // bm25 is lower-is-better; clients expect higher-is-better
		out = append(out, h)
	}
	return out, rows.Err()
}

// Graph is the link graph of the whole vault.
type Graph struct {
	Nodes []GraphNode `json:"nodes"`
	Edges []GraphEdge `json:"edges"`
}

// GraphNode is a note.
type GraphNode struct {
	ID    string   `json:"id"`
	Label string   `json:"label"`
	Tags  []string `json:"tags"`
	Type  string   `json:"type"`
}

// GraphEdge links two notes; Unresolved edges point at a target as
// written that no note matches.
type GraphEdge struct {
	Source     string `json:"source"`
	Target     string `json:"target"`
	Unresolved bool   `json:"unresolved,omitempty"`
}

// Graph builds the graph from the index: no duplicate edges, no
// self-links, unresolved links listed once per source and target.
func (v *Vault) Graph(ctx context.Context) (*Graph, error) {
	g := &Graph{Nodes: []GraphNode{}, Edges: []GraphEdge{}}
	rows, err := v.db.QueryContext(ctx, `SELECT id, path, title, tags, type FROM vault_notes ORDER BY path`)
	if err != nil {
		return nil, fmt.Errorf("vault graph: %w", err)
	}
	byID := map[int64]string{}
	for rows.Next() {
		var id int64
		var n GraphNode
		var tags string
		if err := rows.Scan(&id, &n.ID, &n.Label, &tags, &n.Type); err != nil {
			rows.Close()
			return nil, fmt.Errorf("vault graph: %w", err)
		}
		n.Tags = decodeTags(tags)
		byID[id] = n.ID
		g.Nodes = append(g.Nodes, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("vault graph: %w", err)
	}
	lrows, err := v.db.QueryContext(ctx, `SELECT note_id, target FROM vault_links`)
	if err != nil {
		return nil, fmt.Errorf("vault graph: %w", err)
	}
	defer lrows.Close()
	seen := map[GraphEdge]bool{}
	for lrows.Next() {
		var id int64
		var target string
		if err := lrows.Scan(&id, &target); err != nil {
			return nil, fmt.Errorf("vault graph: %w", err)
		}
		src, ok := byID[id]
		if !ok {
			continue
		}
		e := GraphEdge{Source: src}
		if p, ok := v.names.resolve(src, target); ok {
			e.Target = p
		} else {
			e.Target, e.Unresolved = target, true
		}
		if e.Target == src || seen[e] {
			continue
		}
		seen[e] = true
		g.Edges = append(g.Edges, e)
	}
	sort.Slice(g.Edges, func(i, j int) bool {
		a, b := g.Edges[i], g.Edges[j]
		if a.Source != b.Source {
			return a.Source < b.Source
		}
		return a.Target < b.Target
	})
	return g, lrows.Err()
}
