package vault

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/store/storetest"
)

// events records resource_event calls.
type events struct {
	mu  sync.Mutex
	got []string
}

func (e *events) hook(resource, action, id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, resource+" "+action+" "+id)
}

func (e *events) take() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.got
	e.got = nil
	sort.Strings(out)
	return out
}

// copyFixture copies testdata/vault into a fresh memories/ folder.
func copyFixture(t testing.TB, dst string) {
	t.Helper()
	src := filepath.Join("testdata", "vault")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// openTest opens a vault in a temp dir with a real store; with fixture the
// fixture vault is copied in and synced first.
func openTest(t testing.TB, fixture bool) (*Vault, *events, string) {
	t.Helper()
	base := t.TempDir()
	dir := filepath.Join(base, "memories")
	if fixture {
		copyFixture(t, dir)
	}
	ctx := context.Background()
	st := storetest.Open(t, base)
	v, err := Open(ctx, st.DB(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	ev := &events{}
	v.OnChange(ev.hook)
	if _, err := v.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	return v, ev, dir
}

func TestFixtureGraph(t *testing.T) {
	v, ev, _ := openTest(t, true)
	if got := ev.take(); len(got) != 0 {
		t.Errorf("a cold build notified %d changes: %v", len(got), got)
	}
	g, err := v.Graph(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var nodes []string
	for _, n := range g.Nodes {
		nodes = append(nodes, n.ID)
	}
	wantNodes := []string{
		"A/Delta.md", "Archive/Projects/Alpha.md", "B/Delta.md", "Daily/2026-12-01.md", "Edge/Bad yaml.md",
		"Edge/Empty block.md", "Edge/No close.md", "Edge/Not first.md", "Edge/Properties.md", "Edge/Spaced fence.md",
		"Edge/Tag string.md", "Gamma.md", "Home.md", "Notizen/Über Café.md", "Projects/Alpha.md", "Projects/Beta.md",
		"Sub/Gamma.md", "Windows.md", "日本語メモ.md",
	}
	if !reflect.DeepEqual(nodes, wantNodes) {
		t.Errorf("nodes:\n got %q\nwant %q", nodes, wantNodes)
	}
	e := func(s, t string) GraphEdge { return GraphEdge{Source: s, Target: t} }
	u := func(s, t string) GraphEdge { return GraphEdge{Source: s, Target: t, Unresolved: true} }
	want := []GraphEdge{
		e("Archive/Projects/Alpha.md", "Projects/Alpha.md"), // [[Alpha]]: the one closer to the root; [[projects/alpha]]: from the root
		e("Daily/2026-12-01.md", "Home.md"),
		e("Edge/Bad yaml.md", "Home.md"),
		e("Edge/No close.md", "Home.md"),
		e("Edge/Properties.md", "A/Delta.md"), // links in frontmatter values
		e("Edge/Properties.md", "Gamma.md"),
		e("Home.md", "A/Delta.md"), // same depth: alphabetical
		e("Home.md", "Gamma.md"),   // root beats Sub/Gamma.md
		u("Home.md", "Missing note"),
		e("Home.md", "Notizen/Über Café.md"),
		e("Home.md", "Projects/Alpha.md"),
		e("Home.md", "Projects/Beta.md"),
		u("Home.md", "diagram.png"),
		e("Notizen/Über Café.md", "日本語メモ.md"),
		e("Projects/Alpha.md", "Home.md"),
		e("Projects/Beta.md", "Home.md"), // [[../Home]] relative
		e("Projects/Beta.md", "Projects/Alpha.md"),
		e("Sub/Gamma.md", "A/Delta.md"),
		e("Windows.md", "Home.md"),
		e("日本語メモ.md", "Notizen/Über Café.md"),
	}
	if len(g.Edges) != len(want) {
		t.Errorf("%d edges, want %d", len(g.Edges), len(want))
	}
	for i := range max(len(g.Edges), len(want)) {
		var got, w GraphEdge
		if i < len(g.Edges) {
			got = g.Edges[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if got != w {
			t.Errorf("edge %d: got %+v, want %+v", i, got, w)
		}
	}
}

func TestReadLinksAndBacklinks(t *testing.T) {
	v, _, _ := openTest(t, true)
	ctx := context.Background()
	n, err := v.Read(ctx, "Home")
	if err != nil {
		t.Fatal(err)
	}
	if n.Path != "Home.md" || n.Title != "Home page" || n.Frontmatter["type"] != "index" || !strings.HasPrefix(n.Body, "# Home") {
		t.Errorf("note = %+v", n)
	}
	var back []string
	for _, b := range n.Backlinks {
		back = append(back, b.Path)
	}
	wantBack := []string{"Daily/2026-12-01.md", "Edge/Bad yaml.md", "Edge/No close.md", "Projects/Alpha.md", "Projects/Beta.md", "Windows.md"}
	if !reflect.DeepEqual(back, wantBack) {
		t.Errorf("backlinks of Home = %q, want %q", back, wantBack)
	}
	self := n.Links[4]
	if self.Heading != "Local heading" || self.Path != "Home.md" || self.Unresolved {
		t.Errorf("[[#Local heading]] = %+v", self)
	}
	missing := n.Links[7]
	if missing.Target != "Missing note" || !missing.Unresolved || missing.Path != "" {
		t.Errorf("[[Missing note]] = %+v", missing)
	}
	out, back2, err := v.Links(ctx, "Projects/Alpha.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0].Path != "Home.md" {
		t.Errorf("links of Alpha = %+v", out)
	}
	var from []string
	for _, b := range back2 {
		from = append(from, b.Path)
	}
	// Home links it five times (path, alias, embed, markdown-free bare
	// names); Beta twice; the archive copy links it by [[Alpha]] and by path.
	if strings.Count(strings.Join(from, ","), "Home.md") != 4 || !contains(from, "Projects/Beta.md") || !contains(from, "Archive/Projects/Alpha.md") {
		t.Errorf("backlinks of Projects/Alpha = %q", from)
	}
	if _, _, err := v.Links(ctx, "Nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("links of a missing note: %v", err)
	}
	if _, err := v.Read(ctx, "Nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("read of a missing note: %v", err)
	}
}

func sorted(s []string) []string {
	out := append([]string{}, s...)
	sort.Strings(out)
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestSearch(t *testing.T) {
	v, _, _ := openTest(t, true)
	ctx := context.Background()
	paths := func(q string) []string {
		t.Helper()
		hits, err := v.Search(ctx, q, 10)
		if err != nil {
			t.Fatalf("search %q: %v", q, err)
		}
		var out []string
		for _, h := range hits {
			out = append(out, h.Path)
		}
		return out
	}
	if got := paths("kaffee kuchen"); !reflect.DeepEqual(got, []string{"Notizen/Über Café.md"}) {
		t.Errorf("two words: %q", got)
	}
	if got := paths("ship"); !reflect.DeepEqual(got, []string{"Projects/Beta.md"}) {
		t.Errorf("porter (shipping→ship): %q", got)
	}
	if got := paths("shipping"); !reflect.DeepEqual(got, []string{"Projects/Beta.md"}) {
		t.Errorf("porter stems the query too: %q", got)
	}
	if got := paths("kaff*"); !reflect.DeepEqual(got, []string{"Notizen/Über Café.md"}) {
		t.Errorf("prefix: %q", got)
	}
	if got := paths("CAFÉ"); len(got) == 0 || got[0] != "Notizen/Über Café.md" {
		t.Errorf("title match first, case-insensitive: %q", got)
	}
	for _, q := range []string{`"`, `a"b`, `NOT`, `(`, `a OR`, `-x`, `col:val`, `*`, `^`, `NEAR(a b)`, `'`, `""""`} {
		if _, err := v.Search(ctx, q, 10); err != nil {
			t.Errorf("search %q broke MATCH: %v", q, err)
		}
	}
	hits, _ := v.Search(ctx, "alpha", 10)
	if len(hits) == 0 || !strings.Contains(hits[0].Snippet, "**") || hits[0].Score <= 0 {
		t.Errorf("hits = %+v", hits)
	}
	// Tags weigh more than body text ("projects/alpha" stems to project).
	if got := paths("#project"); len(got) != 4 || !reflect.DeepEqual(sorted(got[:2]), []string{"Projects/Alpha.md", "Projects/Beta.md"}) {
		t.Errorf("tag search: %q", got)
	}
}

func TestWriteConflict(t *testing.T) {
	v, ev, dir := openTest(t, true)
	ctx := context.Background()
	n, err := v.Read(ctx, "Gamma")
	if err != nil {
		t.Fatal(err)
	}
	// The owner edits the note in Obsidian meanwhile.
	if err := os.WriteFile(filepath.Join(dir, "Gamma.md"), []byte("Owner's edit.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = v.Write(ctx, "Gamma", []byte("agent text"), Expect{Hash: n.Hash})
	var ce *ConflictError
	if !errors.Is(err, ErrConflict) || !errors.As(err, &ce) || ce.Current != hashOf([]byte("Owner's edit.\n")) {
		t.Fatalf("stale write: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "Gamma.md")); string(b) != "Owner's edit.\n" {
		t.Fatalf("the owner's edit was overwritten: %q", b)
	}
	res, err := v.Write(ctx, "Gamma", []byte("merged\n"), Expect{Hash: ce.Current})
	if err != nil || res.Created {
		t.Fatalf("write on the current version: %+v, %v", res, err)
	}
	if _, err := v.Write(ctx, "Gamma", []byte("x"), Expect{Absent: true}); !errors.Is(err, ErrExists) {
		t.Errorf("create over an existing note: %v", err)
	}
	res, err = v.Write(ctx, "New/Deep/Note", []byte("fresh [[Gamma]]\n"), Expect{Absent: true})
	if err != nil || !res.Created || res.Path != "New/Deep/Note.md" {
		t.Fatalf("create: %+v, %v", res, err)
	}
	if got := ev.take(); !reflect.DeepEqual(got, []string{"vault created New/Deep/Note.md", "vault updated Gamma.md"}) {
		t.Errorf("events = %q", got)
	}
	// No temp file is left behind.
	entries, _ := os.ReadDir(filepath.Join(dir, "New", "Deep"))
	if len(entries) != 1 {
		t.Errorf("folder holds %d entries", len(entries))
	}
	if err := v.Delete(ctx, "Gamma", Expect{Hash: n.Hash}); !errors.Is(err, ErrConflict) {
		t.Errorf("stale delete: %v", err)
	}
	if err := v.Delete(ctx, "Gamma", Expect{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".trash", "Gamma.md")); err != nil {
		t.Errorf("deleted note not in .trash: %v", err)
	}
	if err := v.Delete(ctx, "Gamma", Expect{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	if got := ev.take(); !reflect.DeepEqual(got, []string{"vault deleted Gamma.md"}) {
		t.Errorf("events = %q", got)
	}
	if hits, _ := v.Search(ctx, "root gamma", 5); len(hits) != 0 {
		t.Errorf("deleted note still found: %+v", hits)
	}
	for _, bad := range [][]byte{{0xff, 0xfe}, []byte("a\x00b"), make([]byte, MaxNoteBytes+1)} {
		if _, err := v.Write(ctx, "Bad", bad, Expect{}); !errors.Is(err, ErrInvalidContent) && !errors.Is(err, ErrTooLarge) {
			t.Errorf("bad content accepted: %v", err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "Bad.md")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("refused write left a file: %v", err)
	}
}

func TestSetPropertiesKeepsTheRest(t *testing.T) {
	v, _, dir := openTest(t, true)
	ctx := context.Background()
	_, err := v.SetProperties(ctx, "Home", map[string]any{"type": "hub", "status": "draft", "aliases": nil}, []string{"type", "status", "aliases"}, Expect{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "Home.md"))
	orig := string(readFixture(t, "Home.md"))
	want := strings.Replace(strings.Replace(orig, "aliases: [Start]\ntype: index\n", "type: hub\nstatus: draft\n", 1), "", "", 0)
	if string(b) != want {
		t.Errorf("edited note:\n%s\nwant:\n%s", b, want)
	}
	// CRLF stays CRLF.
	if _, err := v.SetProperties(ctx, "Windows", map[string]any{"title": "Renamed"}, []string{"title"}, Expect{}); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(filepath.Join(dir, "Windows.md"))
	if !strings.HasPrefix(string(b), "---\r\ntitle: Renamed\r\ntags: [crlf]\r\n---\r\n") {
		t.Errorf("CRLF note: %q", b)
	}
	// A note without frontmatter gets a block.
	if _, err := v.SetProperties(ctx, "Gamma", map[string]any{"tags": []string{"x", "y"}}, []string{"tags"}, Expect{}); err != nil {
		t.Fatal(err)
	}
	n, _ := v.Read(ctx, "Gamma")
	if !reflect.DeepEqual(n.Tags, []string{"x", "y"}) || n.Body != "Root gamma.\n" {
		t.Errorf("Gamma after adding tags: tags %q body %q content %q", n.Tags, n.Body, n.Content)
	}
}

func TestSymlinksOutOfTheVault(t *testing.T) {
	v, _, dir := openTest(t, false)
	ctx := context.Background()
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret.md"), []byte("secret words"), 0o644)
	if err := os.Symlink(outside, filepath.Join(dir, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret.md"), filepath.Join(dir, "leak.md")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "inside.md"), []byte("inside"), 0o644)
	os.Symlink("inside.md", filepath.Join(dir, "alias.md"))
	if _, err := v.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if hits, _ := v.Search(ctx, "secret", 5); len(hits) != 0 {
		t.Errorf("a symlink out of the vault was indexed: %+v", hits)
	}
	if _, err := v.Read(ctx, "leak"); !errors.Is(err, ErrInvalidPath) {
		t.Errorf("read through an escaping symlink: %v", err)
	}
	if _, err := v.Read(ctx, "escape/secret"); !errors.Is(err, ErrInvalidPath) {
		t.Errorf("read through an escaping folder symlink: %v", err)
	}
	for _, p := range []string{"escape/new", "escape/deeper/new", "leak"} {
		if _, err := v.Write(ctx, p, []byte("x"), Expect{}); !errors.Is(err, ErrInvalidPath) {
			t.Errorf("write %s: %v", p, err)
		}
	}
	if err := v.Delete(ctx, "leak", Expect{}); !errors.Is(err, ErrInvalidPath) {
		t.Errorf("delete through an escaping symlink: %v", err)
	}
	entries, _ := os.ReadDir(outside)
	if len(entries) != 1 {
		t.Errorf("something was written outside the vault: %d entries", len(entries))
	}
	if n, err := v.Read(ctx, "alias"); err != nil || n.Content != "inside" {
		t.Errorf("a symlink inside the vault: %+v, %v", n, err)
	}
}

func TestIncrementalSync(t *testing.T) {
	v, ev, dir := openTest(t, true)
	ctx := context.Background()
	p := filepath.Join(dir, "Gamma.md")
	// Touch: mtime moves, content does not → hashed, not reindexed, no event.
	later := time.Now().Add(time.Hour)
	os.Chtimes(p, later, later)
	st, err := v.Sync(ctx)
	if err != nil || st.Indexed != 0 || len(ev.take()) != 0 {
		t.Errorf("touch: %+v, %v", st, err)
	}
	os.WriteFile(p, []byte("gamma rewritten with zebra\n"), 0o644)
	os.Remove(filepath.Join(dir, "B", "Delta.md"))
	os.WriteFile(filepath.Join(dir, "Added.md"), []byte("[[Gamma]]"), 0o644)
	st, err = v.Sync(ctx)
	if err != nil || st.Indexed != 2 || st.Removed != 1 {
		t.Errorf("sync: %+v, %v", st, err)
	}
	if got := ev.take(); !reflect.DeepEqual(got, []string{"vault created Added.md", "vault deleted B/Delta.md", "vault updated Gamma.md"}) {
		t.Errorf("events = %q", got)
	}
	if hits, _ := v.Search(ctx, "zebra", 5); len(hits) != 1 {
		t.Errorf("edited text not found: %+v", hits)
	}
	// A reopened vault starts from the stored index.
	v2, err := Open(ctx, v.db, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	if st, _ := v2.Sync(ctx); st.Indexed != 0 || st.Removed != 0 {
		t.Errorf("resync of an unchanged folder: %+v", st)
	}
}

// TestVaultFolderIsASymlink: memories/ linked to an Obsidian vault kept
// elsewhere is indexed and watched like a plain folder.
func TestVaultFolderIsASymlink(t *testing.T) {
	base := t.TempDir()
	real := filepath.Join(base, "Obsidian", "My vault")
	copyFixture(t, real)
	link := filepath.Join(base, "memories")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(base, "test.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	v, err := Open(ctx, st.DB(), link, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	ev := &events{}
	v.OnChange(ev.hook)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- v.Run(rctx) }()
	defer func() { cancel(); <-done }()
	<-v.Ready()
	notes, _ := v.List(ctx)
	if len(notes) != 19 {
		t.Fatalf("%d notes indexed through the symlinked folder", len(notes))
	}
	os.WriteFile(filepath.Join(link, "Through link.md"), []byte("linked"), 0o644)
	ev.wait(t, "vault created Through link.md")
}
