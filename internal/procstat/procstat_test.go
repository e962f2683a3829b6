package procstat

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestStateOfFiles(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		content string
		want    byte
	}{
		{"123 (agentd) S 1 123", 'S'},
		{"123 (a (b) c) Z 1", 'Z'}, // comm with spaces and parentheses
		{"123 (agentd)", 0},
		{"123 (agentd) ", 0},
		{"garbage", 0},
	} {
		p := filepath.Join(dir, "stat")
		if err := os.WriteFile(p, []byte(c.content), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := State(p); err != nil || got != c.want {
			t.Errorf("State(%q) = %q, %v; want %q", c.content, got, err, c.want)
		}
	}
	if _, err := State(filepath.Join(dir, "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err %v, want os.ErrNotExist", err)
	}
}

// A real process: sleeping, stopped by SIGSTOP, then a zombie.
func TestStateOfAProcess(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	pid := cmd.Process.Pid
	waitState := func(want byte) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
			got, err := State(Path(pid))
			if err == nil && got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("state %q (%v), want %q", got, err, want)
			}
		}
	}
	waitState('S')
	syscall.Kill(pid, syscall.SIGSTOP)
	waitState('T')
	syscall.Kill(pid, syscall.SIGKILL)
	waitState('Z') // not reaped yet
	cmd.Wait()
	if _, err := State(Path(pid)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("reaped: err %v, want os.ErrNotExist", err)
	}
}
