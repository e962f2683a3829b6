package supervisor

import (
	"os"
	"strings"
	"testing"
)

func TestBridgeLogRotates(t *testing.T) {
	dir := t.TempDir()
	l, err := openBridgeLog(dir, "x")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.limit = 100
	line := []byte(strings.Repeat("a", 39) + "\n") // 40 bytes
	for range 5 {
		if _, err := l.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	cur, _ := os.ReadFile(LogPath(dir, "x"))
	old, _ := os.ReadFile(LogPath(dir, "x") + ".1")
	// 40+40 fit, the third rotates; 40+40 again, the fifth rotates.
	if len(cur) != 40 || len(old) != 80 {
		t.Errorf("after 5 lines: current %d bytes, rotated %d bytes; want 40 and 80", len(cur), len(old))
	}
	if fi, _ := os.Stat(LogPath(dir, "x")); fi.Mode().Perm() != 0o600 {
		t.Errorf("new log mode %v", fi.Mode().Perm())
	}
}
