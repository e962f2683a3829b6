package integration

// Shutdown loses nothing and is not held up by clients (issue 21 items 1,
// 2, 4 and 6): the order is stop starting turns, persist what was
// accepted, close the connections, then the bridges.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBridgeRestartDuringShutdown: a restart request that is still
// stopping the old process when agentd gets SIGTERM does not launch the
// bridge again: no plugin is started after the supervisor closed, and none
// outlives agentd.
func TestBridgeRestartDuringShutdown(t *testing.T) {
	slow := testPluginBinary(t, "slowstop", "")
	e := newBridgeEnv(t, testPluginYAML("slowstop", slow, "hang_stop"))
	e.waitBridge("slowstop", 20*time.Second, "running", func(b bridgeState) bool { return b.State == "running" })
	logPath := filepath.Join(e.dir, "logs", "bridge-slowstop.log")
	launches := func() int {
		b, _ := os.ReadFile(logPath)
		return strings.Count(string(b), "testplugin configured")
	}
	before := launches()
	res := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var st bridgeState
		res <- e.owner.PostJSON(ctx, "/api/bridges/slowstop/restart", nil, &st)
	}()
	// The plugin ignores Stop: the restart waits for the stop timeout (5 s)
	// before it kills the old process; SIGTERM comes meanwhile.
	time.Sleep(500 * time.Millisecond)
	if _, err := e.d.stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-res:
		if err == nil {
			t.Error("the restart cut by the shutdown answered success")
		}
	case <-time.After(10 * time.Second):
		t.Error("the restart request got no answer")
	}
	if n := launches(); n != before {
		t.Errorf("the bridge was launched %d more time(s) after SIGTERM", n-before)
	}
	if pids := processesOf(slow); len(pids) != 0 {
		t.Errorf("bridge processes %v outlived agentd", pids)
	}
}

// processesOf returns the pids of running processes of executable path.
func processesOf(path string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && exe == path {
			out = append(out, pid)
		}
	}
	return out
}
