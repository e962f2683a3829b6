package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzLayout is an agent directory with the traps a path can fall into:
// links from the allowed folders to keys/ and the database, a link loop,
// a linked directory, dot-dot and odd names.
func fuzzLayout(f *testing.F) (dir string, roots, denied []string) {
	dir = f.TempDir()
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	mk := func(p string) {
		if err := os.MkdirAll(filepath.Join(dir, p), 0o700); err != nil {
			f.Fatal(err)
		}
	}
	file := func(p string) {
		if err := os.WriteFile(filepath.Join(dir, p), []byte("x"), 0o600); err != nil {
			f.Fatal(err)
		}
	}
	link := func(target, p string) {
		if err := os.Symlink(target, filepath.Join(dir, p)); err != nil {
			f.Fatal(err)
		}
	}
	for _, d := range []string{"uploads/sub", "memories/notes", "keys"} {
		mk(d)
	}
	for _, p := range []string{"uploads/a.txt", "uploads/sub/b.png", "memories/notes/n.md", "keys/coordinator.key", "openagent.db", "openagent.yaml"} {
		file(p)
	}
	link(filepath.Join(dir, "keys", "coordinator.key"), "uploads/key.png")
	link("../openagent.db", "uploads/db.txt")
	link("../keys", "memories/keys")
	link("sub/b.png", "uploads/ok-link.png")
	link("loop", "uploads/loop")
	roots = []string{filepath.Join(dir, "uploads"), filepath.Join(dir, "memories")}
	return dir, roots, []string{filepath.Join(dir, "keys")}
}

// FuzzAttachmentPaths: whatever path a client or a model names, an
// accepted inbound attachment is a regular file inside uploads/ or
// memories/ after resolving every link, and never inside keys/; the same
// holds for reply markers.
func FuzzAttachmentPaths(f *testing.F) {
	dir, roots, denied := fuzzLayout(f)
	for _, s := range []string{
		"uploads/a.txt", "uploads/sub/b.png", "memories/notes/n.md", "keys/coordinator.key",
		"uploads/key.png", "uploads/db.txt", "memories/keys/coordinator.key", "uploads/ok-link.png",
		"uploads/loop", "uploads/../keys/coordinator.key", "uploads/./a.txt", "uploads//a.txt",
		"openagent.db", "uploads", "uploads/missing", "/etc/passwd", "uploads/a.txt\x00", "uploads/sub/",
	} {
		f.Add(s)
	}
	inside := func(p string, dirs []string) bool {
		for _, d := range dirs {
			if within(p, d) {
				return true
			}
		}
		return false
	}
	check := func(t *testing.T, what, p string) {
		if !inside(p, roots) || inside(p, denied) {
			t.Fatalf("%s: accepted %q, outside uploads/ and memories/ or inside keys/", what, p)
		}
		if real, err := filepath.EvalSymlinks(p); err != nil || real != p {
			t.Fatalf("%s: accepted %q, which is not fully resolved (%q, %v)", what, p, real, err)
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, p := range []string{dir + "/" + s, s} {
			if real, err := InboundAttachment(p, roots, denied); err == nil {
				check(t, "inbound", real)
				if fi, err := os.Stat(real); err != nil || !fi.Mode().IsRegular() {
					t.Fatalf("inbound: accepted %q, not a regular file", real)
				}
			}
		}
		if strings.ContainsAny(s, "]\n") {
			return
		}
		_, atts, _ := ExtractAttachments("see [FILE:"+dir+"/"+s+"]", roots)
		for _, a := range atts {
			if inside(a.Path, denied) {
				continue // the agent drops these with DeniedRoots
			}
			if !inside(a.Path, roots) {
				t.Fatalf("reply marker: accepted %q", a.Path)
			}
		}
	})
}
