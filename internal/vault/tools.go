package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/agentd/agentd/internal/agent"
	"github.com/agentd/agentd/internal/provider"
)

// Instructions tell the model the vault exists and how to use and cite it;
// the daemon adds them to every turn's system prompt.
const Instructions = `You have a vault: the owner's Markdown notes (an Obsidian vault, memories/), which is also your long-term memory. ` +
	`Search it (vault_search) before answering about the owner's projects, people, plans or earlier conversations, and read the notes you use (vault_read). ` +
	`Keep what is worth remembering in it: vault_append adds to a note, vault_write creates a note or replaces one. ` +
	`The owner edits the same notes: read a note in the same turn before replacing it; if vault_write says the note changed, read it again and merge instead of overwriting. ` +
	`Notes are Markdown with optional YAML frontmatter (properties such as tags); link notes with [[Note name]]. ` +
	`When an answer uses a note, cite it as [[path]] (the note's vault path without .md), e.g. [[Projects/Alpha]].`

// Tools returns the vault's built-in agent tools.
func Tools(v *Vault) []agent.Tool {
	t := &tools{v: v}
	return []agent.Tool{
		tool("vault_search", "Full-text search of the vault's notes (titles, text, tags). All words must match; end a word with * for a prefix. Returns the best notes first with a snippet.",
			`{"type":"object","properties":{"query":{"type":"string","description":"words to find"},"limit":{"type":"integer","description":"at most this many results (default 10)"}},"required":["query"]}`, t.search),
		tool("vault_read", "Read one note: its full text, frontmatter, tags, links and backlinks, and its version.",
			`{"type":"object","properties":{"path":{"type":"string","description":"vault path, e.g. Projects/Alpha (.md optional)"}},"required":["path"]}`, t.read),
		tool("vault_write", "Create a note, or replace one you read in this turn (refused if it changed since). Give content (the whole new text) and/or properties (frontmatter keys to set; null removes a key; other keys, their order and comments are kept).",
			`{"type":"object","properties":{"path":{"type":"string"},"content":{"type":"string","description":"the complete new text of the note"},"properties":{"type":"object","description":"frontmatter properties to set"}},"required":["path"]}`, t.write),
		tool("vault_append", "Append text to the end of a note (created if missing). Never overwrites anything.",
			`{"type":"object","properties":{"path":{"type":"string"},"text":{"type":"string"}},"required":["path","text"]}`, t.append),
		tool("vault_list", "List notes (path, title, tags), optionally only below a folder or with a tag.",
			`{"type":"object","properties":{"folder":{"type":"string"},"tag":{"type":"string"}}}`, t.list),
		tool("vault_links", "A note's outgoing links (with the notes they resolve to, or unresolved) and its backlinks.",
			`{"type":"object","properties":{"path":{"type":"string"}},"required":["path"]}`, t.links),
	}
}

func tool(name, desc, schema string, fn func(context.Context, json.RawMessage) (string, error)) agent.Tool {
	return agent.FuncTool{Def: provider.ToolSpec{Name: name, Description: desc, InputSchema: json.RawMessage(schema)}, Fn: fn}
}

type tools struct{ v *Vault }

// readMemo is the versions of the notes read in one turn.
type readMemo struct {
	mu sync.Mutex // mu guards m
	m  map[string]string
}

type memoKey struct{}

// memoOf returns the turn's memo (a throwaway one outside a turn).
func memoOf(ctx context.Context) *readMemo {
	st := agent.TurnStateOf(ctx)
	if m, ok := st.Get(memoKey{}).(*readMemo); ok {
		return m
	}
	m := &readMemo{m: map[string]string{}}
	st.Set(memoKey{}, m)
	return m
}

func (m *readMemo) get(p string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.m[p]
}

func (m *readMemo) set(p, hash string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.m[p] = hash
}

func decodeArgs(args json.RawMessage, v any) error {
	if len(args) == 0 {
		args = []byte("{}")
	}
	if err := json.Unmarshal(args, v); err != nil {
		return fmt.Errorf("invalid arguments: %w", err)
	}
	return nil
}

func asJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

func (t *tools) search(ctx context.Context, args json.RawMessage) (string, error) {
	var a struct {
		Query string `json:"query"`
		Limit int    `json:"limit"`
	}
	if err := decodeArgs(args, &a); err != nil {
		return "", err
	}
	if strings.TrimSpace(a.Query) == "" {
		return "", errors.New("query is empty")
	}
	if a.Limit <= 0 {
		a.Limit = 10
	}
	hits, err := t.v.Search(ctx, a.Query, min(a.Limit, 50))
	if err != nil {
		return "", err
	}
	if len(hits) == 0 {
		return "no notes match " + fmt.Sprintf("%q", a.Query), nil
	}
	return asJSON(map[string]any{"results": hits})
}

func (t *tools) read(ctx context.Context, args json.RawMessage) (string, error) {
	var a struct {
		Path string `json:"path"`
	}
	if err := decodeArgs(args, &a); err != nil {
		return "", err
	}
	n, err := t.v.Read(ctx, a.Path)
	if err != nil {
		return "", err
	}
	memoOf(ctx).set(n.Path, n.Hash)
	links := []string{}
	for _, l := range n.Links {
		if l.Unresolved {
			links = append(links, l.Target+" (no such note)")
		} else if l.Path != n.Path {
			links = append(links, l.Path)
		}
	}
	back := []string{}
	for _, b := range n.Backlinks {
		back = append(back, b.Path)
	}
	return asJSON(map[string]any{
		"path": n.Path, "title": n.Title, "tags": n.Tags, "frontmatter": n.Frontmatter,
		"content": n.Content, "links": links, "backlinks": back, "version": n.Hash,
	})
}

func (t *tools) write(ctx context.Context, args json.RawMessage) (string, error) {
	var a struct {
		Path       string          `json:"path"`
		Content    *string         `json:"content"`
		Properties json.RawMessage `json:"properties"`
	}
	if err := decodeArgs(args, &a); err != nil {
		return "", err
	}
	rel, err := CleanPath(a.Path)
	if err != nil {
		return "", err
	}
	props, order, err := orderedProps(a.Properties)
	if err != nil {
		return "", err
	}
	if a.Content == nil && len(props) == 0 {
		return "", errors.New("give content, properties or both")
	}
	memo := memoOf(ctx)
	// Replacing needs the version read in this turn; without one, only a
	// new note may be written.
	exp := Expect{Hash: memo.get(rel), Absent: memo.get(rel) == ""}
	res, err := t.v.edit(ctx, rel, exp, func(cur []byte, exists bool) ([]byte, error) {
		next := cur
		if a.Content != nil {
			next = []byte(*a.Content)
		} else if !exists {
			return nil, fmt.Errorf("%w: %s (give content to create it)", ErrNotFound, rel)
		}
		if len(props) > 0 {
			out, err := setProperties(next, props, order)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrInvalidContent, err)
			}
			next = out
		}
		return next, nil
	})
	switch {
	case errors.Is(err, ErrExists):
		return "", fmt.Errorf("%s exists and was not read in this turn: read it with vault_read first (or use vault_append to add to it)", rel)
	case errors.Is(err, ErrConflict):
		return "", fmt.Errorf("%w; nothing was written: read it again with vault_read and merge your change into the current text", err)
	case err != nil:
		return "", err
	}
	memo.set(res.Path, res.Hash)
	verb := "replaced"
	if res.Created {
		verb = "created"
	}
	return fmt.Sprintf("%s %s (version %s); cite it as [[%s]]", verb, res.Path, res.Hash[:12], strings.TrimSuffix(res.Path, ".md")), nil
}

// orderedProps decodes a properties object keeping the model's key order
// (new keys are added to the frontmatter in that order).
func orderedProps(raw json.RawMessage) (map[string]any, []string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil, nil
	}
	props := map[string]any{}
	if err := json.Unmarshal(raw, &props); err != nil {
		return nil, nil, fmt.Errorf("properties must be an object: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.Token() // {
	var order []string
	for dec.More() {
		tk, err := dec.Token()
		if err != nil {
			break
		}
		order = append(order, tk.(string))
		var skip json.RawMessage
		dec.Decode(&skip)
	}
	return props, order, nil
}

func (t *tools) append(ctx context.Context, args json.RawMessage) (string, error) {
	var a struct {
		Path string `json:"path"`
		Text string `json:"text"`
	}
	if err := decodeArgs(args, &a); err != nil {
		return "", err
	}
	if a.Text == "" {
		return "", errors.New("text is empty")
	}
	rel, err := CleanPath(a.Path)
	if err != nil {
		return "", err
	}
	memo := memoOf(ctx)
	res, err := t.v.Append(ctx, rel, a.Text, Expect{})
	if err != nil {
		return "", err
	}
	// A note read in this turn stays writable after the model's own
	// append, but only if nobody else changed it in between.
	if read := memo.get(rel); read != "" && read == res.prevHash {
		memo.set(rel, res.Hash)
	}
	return fmt.Sprintf("appended to %s; cite it as [[%s]]", rel, strings.TrimSuffix(rel, ".md")), nil
}

func (t *tools) list(ctx context.Context, args json.RawMessage) (string, error) {
	var a struct {
		Folder string `json:"folder"`
		Tag    string `json:"tag"`
	}
	if err := decodeArgs(args, &a); err != nil {
		return "", err
	}
	notes, err := t.v.List(ctx)
	if err != nil {
		return "", err
	}
	folder := strings.Trim(a.Folder, "/")
	tag := normalizeTag(a.Tag)
	type entry struct {
		Path  string   `json:"path"`
		Title string   `json:"title"`
		Tags  []string `json:"tags,omitempty"`
	}
	out := []entry{}
	for _, n := range notes {
		if folder != "" && !strings.HasPrefix(strings.ToLower(n.Path), strings.ToLower(folder)+"/") {
			continue
		}
		if tag != "" && !hasTag(n.Tags, tag) {
			continue
		}
		out = append(out, entry{n.Path, n.Title, n.Tags})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	const max = 500
	res := map[string]any{"notes": out, "total": len(out)}
	if len(out) > max {
		res["notes"], res["truncated"] = out[:max], true
	}
	return asJSON(res)
}

// hasTag matches a tag and its nested tags (#project matches #project/alpha).
func hasTag(tags []string, tag string) bool {
	for _, t := range tags {
		if t == tag || strings.HasPrefix(t, tag+"/") {
			return true
		}
	}
	return false
}

func (t *tools) links(ctx context.Context, args json.RawMessage) (string, error) {
	var a struct {
		Path string `json:"path"`
	}
	if err := decodeArgs(args, &a); err != nil {
		return "", err
	}
	out, back, err := t.v.Links(ctx, a.Path)
	if err != nil {
		return "", err
	}
	return asJSON(map[string]any{"links": out, "backlinks": back})
}
