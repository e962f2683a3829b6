package vault

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// waitEvent waits until the hook saw want (events are collected, not
// timed: the deadline only stops a hung test).
func (e *events) wait(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		e.mu.Lock()
		ok := slices.Contains(e.got, want)
		e.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no event %q; got %q", want, e.take())
}

func TestWatcher(t *testing.T) {
	v, ev, dir := openTest(t, true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	<-v.Ready()
	bg := context.Background()
	search := func(q string) []string {
		hits, err := v.Search(bg, q, 10)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, h := range hits {
			out = append(out, h.Path)
		}
		return out
	}

	// An external edit (Obsidian) of an existing note.
	os.WriteFile(filepath.Join(dir, "Gamma.md"), []byte("gamma now mentions xylophone\n"), 0o644)
	ev.wait(t, "vault updated Gamma.md")
	if got := search("xylophone"); !slices.Equal(got, []string{"Gamma.md"}) {
		t.Errorf("external edit not searchable: %q", got)
	}

	// A new folder with a note written at once.
	os.MkdirAll(filepath.Join(dir, "Fresh", "Inner"), 0o755)
	os.WriteFile(filepath.Join(dir, "Fresh", "Inner", "Quick.md"), []byte("quokka [[Gamma]]"), 0o644)
	ev.wait(t, "vault created Fresh/Inner/Quick.md")
	// …and a note in it later, through the watch on the new folder.
	os.WriteFile(filepath.Join(dir, "Fresh", "Inner", "Later.md"), []byte("later"), 0o644)
	ev.wait(t, "vault created Fresh/Inner/Later.md")

	// Rename a note, then a whole folder.
	os.Rename(filepath.Join(dir, "Fresh", "Inner", "Quick.md"), filepath.Join(dir, "Fresh", "Inner", "Renamed.md"))
	ev.wait(t, "vault deleted Fresh/Inner/Quick.md")
	ev.wait(t, "vault created Fresh/Inner/Renamed.md")
	os.Rename(filepath.Join(dir, "Fresh"), filepath.Join(dir, "Moved"))
	ev.wait(t, "vault deleted Fresh/Inner/Renamed.md")
	ev.wait(t, "vault created Moved/Inner/Renamed.md")
	ev.wait(t, "vault created Moved/Inner/Later.md")
	// The moved folder is still watched under its new name.
	os.WriteFile(filepath.Join(dir, "Moved", "Inner", "After.md"), []byte("after the move"), 0o644)
	ev.wait(t, "vault created Moved/Inner/After.md")
	if got := search("quokka"); !slices.Equal(got, []string{"Moved/Inner/Renamed.md"}) {
		t.Errorf("renamed note: %q", got)
	}
	g, _ := v.Graph(bg)
	if !slices.Contains(g.Edges, GraphEdge{Source: "Moved/Inner/Renamed.md", Target: "Gamma.md"}) {
		t.Errorf("graph lacks the moved note's link")
	}

	// Delete.
	os.Remove(filepath.Join(dir, "Moved", "Inner", "Later.md"))
	ev.wait(t, "vault deleted Moved/Inner/Later.md")
	os.RemoveAll(filepath.Join(dir, "Archive"))
	ev.wait(t, "vault deleted Archive/Projects/Alpha.md")

	// Our own write is notified once: the watcher recognises it by hash.
	ev.take()
	if _, err := v.Write(bg, "Own", []byte("own write"), Expect{}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "Marker.md"), []byte("marker"), 0o644)
	ev.wait(t, "vault created Marker.md")
	got := ev.take()
	if !slices.Equal(got, []string{"vault created Marker.md", "vault created Own.md"}) {
		t.Errorf("events after an own write = %q", got)
	}

	// Dot-folders and temp files are ignored.
	os.WriteFile(filepath.Join(dir, ".obsidian", "workspace.md"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, ".Gamma.md.swp"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, "Marker2.md"), []byte("m"), 0o644)
	ev.wait(t, "vault created Marker2.md")
	if got := ev.take(); len(got) != 1 {
		t.Errorf("hidden files notified: %q", got)
	}
}
