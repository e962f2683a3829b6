package logfile

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFileRotatesKeepingBackups(t *testing.T) {
	path := filepath.Join(t.TempDir(), "logs", "x.log")
	l, err := Open(path, 100, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// 40-byte lines tagged by number: two fit per file.
	for i := range 7 {
		if _, err := fmt.Fprintf(l, "%d%s\n", i, strings.Repeat("a", 38)); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{path: "6", path + ".1": "45", path + ".2": "23"}
	for p, tags := range want {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var got string
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			got += line[:1]
		}
		if got != tags {
			t.Errorf("%s holds lines %q, want %q", filepath.Base(p), got, tags)
		}
		if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", p, fi.Mode().Perm())
		}
	}
	if _, err := os.Stat(path + ".3"); !os.IsNotExist(err) {
		t.Errorf("a third backup exists: %v", err)
	}
}

func TestRepeatsCountsIdenticalLines(t *testing.T) {
	var buf bytes.Buffer
	r := NewRepeats(slog.New(slog.NewTextHandler(&buf, nil)), time.Minute)
	now := time.Unix(1000, 0)
	r.now = func() time.Time { return now }
	for range 1000 {
		r.Info("bad cert", "stream refused", "err", "bad cert")
	}
	r.Info("expired", "stream refused", "err", "expired")
	if n := strings.Count(buf.String(), "\n"); n != 2 {
		t.Fatalf("1001 refusals wrote %d lines, want 2:\n%s", n, buf.String())
	}
	now = now.Add(2 * time.Minute)
	r.Info("bad cert", "stream refused", "err", "bad cert")
	if !strings.Contains(buf.String(), "repeated=999") {
		t.Errorf("the line after the window does not carry the count:\n%s", buf.String())
	}
	r.Info("bad cert", "stream refused", "err", "bad cert")
	r.Flush()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 4 || !strings.Contains(lines[3], "repeated=1") {
		t.Errorf("flush did not write the pending count:\n%s", buf.String())
	}
}

func TestRepeatsTickWritesEndedWindows(t *testing.T) {
	var buf bytes.Buffer
	r := NewRepeats(slog.New(slog.NewTextHandler(&buf, nil)), time.Minute)
	now := time.Unix(1000, 0)
	r.now = func() time.Time { return now }
	r.Info("k", "stream refused")
	r.Info("k", "stream refused")
	r.Tick() // window still open: nothing
	if n := strings.Count(buf.String(), "\n"); n != 1 {
		t.Fatalf("tick inside the window wrote: %s", buf.String())
	}
	now = now.Add(time.Minute)
	r.Tick()
	if !strings.Contains(buf.String(), "repeated=1") {
		t.Errorf("tick after the window did not write the count: %s", buf.String())
	}
}
