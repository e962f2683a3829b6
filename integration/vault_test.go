package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentd/agentd/client"
	"github.com/agentd/agentd/devicecert"
	"github.com/agentd/agentd/internal/provider/providertest"
	"github.com/agentd/agentd/internal/vault"
)

// vaultEnv is a running daemon with notes in memories/ and a WS connection
// watching resource events.
type vaultEnv struct {
	dir, mem string
	d        *client.Dialer
	events   *eventLog
}

func newVaultEnv(t *testing.T, notes map[string]string, fake *providertest.Server) *vaultEnv {
	t.Helper()
	dir := newAgent(t, false)
	mem := filepath.Join(dir, "memories")
	for p, body := range notes {
		writeNote(t, mem, p, body)
	}
	if fake != nil {
		useFakeOpenAI(t, dir, fake)
	}
	startServe(t, dir)
	id, err := devicecert.LoadIdentity(filepath.Join(dir, "keys", "owner.identity"))
	if err != nil {
		t.Fatal(err)
	}
	e := &vaultEnv{dir: dir, mem: mem, d: client.Unix(filepath.Join(dir, "agentd.sock"), id), events: watchEvents(ownerWS(t, dir))}
	t.Cleanup(e.d.CloseIdle)
	// The first index is built in the background: wait for every note.
	e.waitUntil(t, "the initial index", func() bool { return len(e.list(t)) == len(notes) })
	return e
}

func writeNote(t *testing.T, mem, p, body string) {
	t.Helper()
	full := filepath.Join(mem, filepath.FromSlash(p))
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (e *vaultEnv) waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *vaultEnv) get(t *testing.T, path string, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.d.GetJSON(ctx, path, out); err != nil {
		t.Fatal(err)
	}
}

func (e *vaultEnv) list(t *testing.T) []vault.NoteInfo {
	var out struct{ Notes []vault.NoteInfo }
	e.get(t, "/api/vault/notes", &out)
	return out.Notes
}

func (e *vaultEnv) search(t *testing.T, q string) []string {
	var out struct{ Results []vault.Hit }
	e.get(t, "/api/vault/search?q="+strings.ReplaceAll(q, " ", "+"), &out)
	var paths []string
	for _, h := range out.Results {
		paths = append(paths, h.Path)
	}
	return paths
}

func (e *vaultEnv) graph(t *testing.T) vault.Graph {
	var g vault.Graph
	e.get(t, "/api/vault/graph", &g)
	return g
}

// raw sends one request with a raw (already escaped) path and headers and
// returns the status and body.
func (e *vaultEnv) raw(t *testing.T, method, rawPath string, body any, hdr map[string]string) (int, []byte, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, client.BaseURL+rawPath, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	// Redirects are not followed: ServeMux answers an unclean path
	// ("//x") with a redirect to the clean one, and the test looks at that.
	hc := *e.d.HTTPClient()
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

func hasEdge(g vault.Graph, src, dst string) bool {
	return slices.ContainsFunc(g.Edges, func(e vault.GraphEdge) bool { return e.Source == src && e.Target == dst && !e.Unresolved })
}

// TestVaultExternalEdits: files changed with plain os calls while the
// daemon runs show up in search, graph and resource events; renames and
// deletes are followed.
func TestVaultExternalEdits(t *testing.T) {
	e := newVaultEnv(t, map[string]string{
		"Home.md":           "# Home\nSee [[Projects/Alpha]].\n",
		"Projects/Alpha.md": "---\ntags: [project]\n---\nAlpha plan. Back to [[Home]].\n",
	}, nil)

	writeNote(t, e.mem, "Inbox/Ext.md", "External note about a zeppelin, links [[Home]].\n")
	e.events.waitFor(t, "vault", "created", "Inbox/Ext.md")
	if got := e.search(t, "zeppelin"); !slices.Equal(got, []string{"Inbox/Ext.md"}) {
		t.Fatalf("external note not searchable: %q", got)
	}
	if !hasEdge(e.graph(t), "Inbox/Ext.md", "Home.md") {
		t.Fatalf("graph lacks the external note's link")
	}
	var home vault.Note
	e.get(t, "/api/vault/notes/Home.md", &home)
	if !slices.ContainsFunc(home.Backlinks, func(b vault.Backlink) bool { return b.Path == "Inbox/Ext.md" }) {
		t.Errorf("Home's backlinks lack Inbox/Ext.md: %+v", home.Backlinks)
	}

	writeNote(t, e.mem, "Inbox/Ext.md", "Now about a dirigible, no links.\n")
	e.events.waitFor(t, "vault", "updated", "Inbox/Ext.md")
	if got := e.search(t, "dirigible"); !slices.Equal(got, []string{"Inbox/Ext.md"}) {
		t.Fatalf("edit not searchable: %q", got)
	}
	if got := e.search(t, "zeppelin"); len(got) != 0 {
		t.Fatalf("old text still found: %q", got)
	}
	if hasEdge(e.graph(t), "Inbox/Ext.md", "Home.md") {
		t.Fatalf("graph keeps a removed link")
	}

	// Rename a note into a new folder, then rename the folder.
	os.MkdirAll(filepath.Join(e.mem, "Archive"), 0o755)
	if err := os.Rename(filepath.Join(e.mem, "Inbox", "Ext.md"), filepath.Join(e.mem, "Archive", "Moved.md")); err != nil {
		t.Fatal(err)
	}
	e.events.waitFor(t, "vault", "deleted", "Inbox/Ext.md")
	e.events.waitFor(t, "vault", "created", "Archive/Moved.md")
	if err := os.Rename(filepath.Join(e.mem, "Projects"), filepath.Join(e.mem, "Work")); err != nil {
		t.Fatal(err)
	}
	e.events.waitFor(t, "vault", "deleted", "Projects/Alpha.md")
	e.events.waitFor(t, "vault", "created", "Work/Alpha.md")
	if got := e.search(t, "alpha plan"); !slices.Equal(got, []string{"Work/Alpha.md"}) {
		t.Fatalf("renamed folder: %q", got)
	}
	g := e.graph(t)
	// [[Projects/Alpha]] no longer resolves by path, but the suffix rule
	// does not apply either: it is unresolved now; Alpha still links Home.
	if !hasEdge(g, "Work/Alpha.md", "Home.md") || !slices.Contains(g.Edges, vault.GraphEdge{Source: "Home.md", Target: "Projects/Alpha", Unresolved: true}) {
		t.Fatalf("graph after the folder rename: %+v", g.Edges)
	}

	// Delete outside agentd.
	os.Remove(filepath.Join(e.mem, "Archive", "Moved.md"))
	e.events.waitFor(t, "vault", "deleted", "Archive/Moved.md")
	st, _, _ := e.raw(t, "GET", "/api/vault/notes/Archive/Moved.md", nil, nil)
	if st != http.StatusNotFound {
		t.Fatalf("deleted note: status %d", st)
	}
	if got := e.search(t, "dirigible"); len(got) != 0 {
		t.Fatalf("deleted note still found: %q", got)
	}
}

// TestVaultRESTWriteConflictAndTraversal: PUT/GET/DELETE, the 409 on a
// stale base version, and path traversal refused with nothing written.
func TestVaultRESTWriteConflictAndTraversal(t *testing.T) {
	e := newVaultEnv(t, map[string]string{"Home.md": "# Home\n"}, nil)

	st, body, _ := e.raw(t, "PUT", "/api/vault/notes/New%20Folder/First", map[string]any{"content": "---\ntitle: First one\ntags: [a]\n---\nHello [[Home]] #b\n"}, nil)
	if st != 200 || !strings.Contains(string(body), `"path":"New Folder/First.md"`) || !strings.Contains(string(body), `"ok":true`) {
		t.Fatalf("PUT: %d %s", st, body)
	}
	e.events.waitFor(t, "vault", "created", "New Folder/First.md")
	var n vault.Note
	e.get(t, "/api/vault/notes/New%20Folder/First.md", &n)
	if n.Title != "First one" || !slices.Equal(n.Tags, []string{"a", "b"}) || n.Frontmatter["title"] != "First one" ||
		len(n.Links) != 1 || n.Links[0].Path != "Home.md" || n.Body != "Hello [[Home]] #b\n" || n.Modified == 0 {
		t.Fatalf("GET: %+v", n)
	}
	var home vault.Note
	e.get(t, "/api/vault/notes/Home", &home)
	if len(home.Backlinks) != 1 || home.Backlinks[0].Path != "New Folder/First.md" {
		t.Fatalf("backlinks: %+v", home.Backlinks)
	}

	// The owner edits the note in Obsidian after the client read it.
	_, _, hdr := e.raw(t, "GET", "/api/vault/notes/New%20Folder/First.md", nil, nil)
	etag := hdr.Get("ETag")
	if etag != `"`+n.Hash+`"` {
		t.Fatalf("ETag %q, hash %q", etag, n.Hash)
	}
	owner := "Owner's edit in Obsidian.\n"
	writeNote(t, e.mem, "New Folder/First.md", owner)
	e.events.waitFor(t, "vault", "updated", "New Folder/First.md")
	for _, tc := range []struct {
		name string
		body map[string]any
		hdr  map[string]string
	}{
		{"If-Match", map[string]any{"content": "client text"}, map[string]string{"If-Match": etag}},
		{"base_hash", map[string]any{"content": "client text", "base_hash": n.Hash}, nil},
	} {
		st, body, _ := e.raw(t, "PUT", "/api/vault/notes/New%20Folder/First.md", tc.body, tc.hdr)
		if st != http.StatusConflict || !strings.Contains(string(body), `"code":"conflict"`) {
			t.Errorf("%s: stale PUT: %d %s", tc.name, st, body)
		}
	}
	st, body, _ = e.raw(t, "DELETE", "/api/vault/notes/New%20Folder/First.md", nil, map[string]string{"If-Match": etag})
	if st != http.StatusConflict {
		t.Errorf("stale DELETE: %d %s", st, body)
	}
	if b, _ := os.ReadFile(filepath.Join(e.mem, "New Folder", "First.md")); string(b) != owner {
		t.Fatalf("the owner's edit was overwritten: %q", b)
	}
	e.get(t, "/api/vault/notes/New%20Folder/First.md", &n)
	st, body, _ = e.raw(t, "PUT", "/api/vault/notes/New%20Folder/First.md", map[string]any{"content": owner + "Merged.\n"}, map[string]string{"If-Match": `"` + n.Hash + `"`})
	if st != 200 {
		t.Fatalf("PUT on the current version: %d %s", st, body)
	}
	e.events.waitFor(t, "vault", "updated", "New Folder/First.md")
	st, body, _ = e.raw(t, "PUT", "/api/vault/notes/Home.md", map[string]any{"content": "x"}, map[string]string{"If-None-Match": "*"})
	if st != http.StatusConflict {
		t.Errorf("create-only PUT over an existing note: %d %s", st, body)
	}

	// Content that is not a text note changes nothing.
	for _, tc := range []struct {
		content string
		status  int
		code    string
	}{
		{"nul\x00byte", http.StatusUnprocessableEntity, "invalid_content"},
		{strings.Repeat("a", vault.MaxNoteBytes+1), http.StatusRequestEntityTooLarge, "too_large"},
	} {
		st, body, _ := e.raw(t, "PUT", "/api/vault/notes/Bad", map[string]any{"content": tc.content}, nil)
		if st != tc.status || !strings.Contains(string(body), `"code":"`+tc.code+`"`) {
			t.Errorf("PUT %d bytes: %d %.200s", len(tc.content), st, body)
		}
	}
	if _, err := os.Stat(filepath.Join(e.mem, "Bad.md")); err == nil {
		t.Errorf("refused content was written")
	}

	// DELETE moves the note to .trash/ and tells everyone.
	st, body, _ = e.raw(t, "DELETE", "/api/vault/notes/New%20Folder/First.md", nil, nil)
	if st != 200 || !strings.Contains(string(body), `"ok":true`) {
		t.Fatalf("DELETE: %d %s", st, body)
	}
	e.events.waitFor(t, "vault", "deleted", "New Folder/First.md")
	if st, _, _ := e.raw(t, "DELETE", "/api/vault/notes/New%20Folder/First.md", nil, nil); st != http.StatusNotFound {
		t.Errorf("second DELETE: %d", st)
	}

	// Traversal: every attempt is refused and nothing is written anywhere.
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(e.mem, "escape")); err != nil {
		t.Fatal(err)
	}
	attempts := []string{
		"/api/vault/notes/..%2f..%2fpwned",
		"/api/vault/notes/%2e%2e%2f%2e%2e%2fpwned",
		"/api/vault/notes/%2e%2e/pwned",
		"/api/vault/notes/sub/%2e%2e/%2e%2e/pwned",
		"/api/vault/notes/..%5c..%5cpwned",
		"/api/vault/notes/%2fetc%2fpwned",
		"/api/vault/notes//tmp/pwned",
		"/api/vault/notes/pw%00ned",
		"/api/vault/notes/.obsidian/pwned",
		"/api/vault/notes/escape/pwned",
		"/api/vault/notes/escape/deeper/pwned",
		"/api/vault/notes/",
	}
	for _, p := range attempts {
		st, body, hdr := e.raw(t, "PUT", p, map[string]any{"content": "pwned"}, nil)
		if st == http.StatusTemporaryRedirect {
			// ServeMux cleans "//" before any handler runs; the redirect
			// stays inside the vault's routes.
			if loc := hdr.Get("Location"); !strings.HasPrefix(loc, "/api/vault/notes/") || strings.Contains(loc, "..") {
				t.Errorf("PUT %s redirects to %q", p, loc)
			}
			continue
		}
		if st != http.StatusBadRequest || !strings.Contains(string(body), `"code":"invalid_path"`) {
			t.Errorf("PUT %s: %d %s, want 400 invalid_path", p, st, body)
		}
	}
	for _, root := range []string{filepath.Dir(e.dir), outside} {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.Contains(d.Name(), "pwned") {
				t.Errorf("a traversal attempt wrote %s", p)
			}
			return nil
		})
	}
	if st, body, _ := e.raw(t, "GET", "/api/vault/notes/escape/secret", nil, nil); st != 400 {
		t.Errorf("GET through an escaping symlink: %d %s", st, body)
	}
}

// TestVaultAgentTurn: a turn with the OpenAI fake calls vault_search, then
// vault_write; the note is on disk and announced.
func TestVaultAgentTurn(t *testing.T) {
	fake := providertest.NewOpenAI(t,
		providertest.Response{ToolCalls: []providertest.ToolCall{{ID: "c1", Name: "vault_search", Arguments: `{"query":"launch plan"}`}}},
		providertest.Response{ToolCalls: []providertest.ToolCall{{ID: "c2", Name: "vault_write",
			Arguments: `{"path":"Inbox/Launch summary","content":"Launch is on Friday, see [[Projects/Rocket]].\n"}`}}},
		providertest.Response{Text: []string{"Saved it to [[Inbox/Launch summary]]."}},
	)
	e := newVaultEnv(t, map[string]string{
		"Projects/Rocket.md": "The launch plan: Friday at dawn.\n",
		"Other.md":           "Nothing here.\n",
	}, fake)
	ws := ownerWS(t, e.dir)
	resp, _ := wsTurn(t, ws, "vault-turn", "summarise the launch plan into my inbox")
	if !strings.Contains(resp.Text, "[[Inbox/Launch summary]]") {
		t.Fatalf("reply: %q", resp.Text)
	}
	b, err := os.ReadFile(filepath.Join(e.mem, "Inbox", "Launch summary.md"))
	if err != nil || string(b) != "Launch is on Friday, see [[Projects/Rocket]].\n" {
		t.Fatalf("note on disk: %q, %v", b, err)
	}
	e.events.waitFor(t, "vault", "created", "Inbox/Launch summary.md")
	if !hasEdge(e.graph(t), "Inbox/Launch summary.md", "Projects/Rocket.md") {
		t.Errorf("graph lacks the agent's link")
	}

	reqs := fake.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d model calls", len(reqs))
	}
	first := reqs[0].OpenAI(t)
	var tools []string
	for _, tl := range first.Tools {
		tools = append(tools, tl.Function.Name)
	}
	for _, want := range []string{"vault_search", "vault_read", "vault_write", "vault_append", "vault_list", "vault_links"} {
		if !slices.Contains(tools, want) {
			t.Errorf("tool %s not offered: %v", want, tools)
		}
	}
	if sys := first.Messages[0]; sys.Role != "system" || !strings.Contains(sys.Text(), "vault") || !strings.Contains(sys.Text(), "[[") {
		t.Errorf("system prompt: %+v", sys)
	}
	second := reqs[1].OpenAI(t)
	last := second.Messages[len(second.Messages)-1]
	if last.Role != "tool" || last.ToolCallID != "c1" || !strings.Contains(last.Text(), "Projects/Rocket.md") {
		t.Errorf("search result fed back: %+v", last)
	}
}
