package integration

// Shutdown loses nothing and is not held up by clients (issue 21 items 1,
// 2, 4 and 6): the order is stop starting turns, persist what was
// accepted, close the connections, then the bridges.

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/agentd/agentd/client"
	"github.com/agentd/agentd/devicecert"
	"github.com/agentd/agentd/internal/provider/providertest"
	"github.com/agentd/agentd/wire"
)

// rawWS is a WebSocket of the owner on dir's socket that the test reads
// (or does not read) itself.
func rawWS(t *testing.T, dir string) *websocket.Conn {
	t.Helper()
	id, err := devicecert.LoadIdentity(filepath.Join(dir, "keys", "owner.identity"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := client.Unix(filepath.Join(dir, "agentd.sock"), id).DialAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ws, _, err := websocket.NewClient(nc, &url.URL{Scheme: "ws", Host: "agentd", Path: "/ws"}, nil, 1024, 1024)
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}

// TestShutdownNotHeldByStuckClient: a WebSocket client that stopped
// reading (its socket full of a reply) does not hold agentd's shutdown: it
// is cut, and agentd exits in about 2 s. (The bound asserted is a generous
// liveness check; it took ~20 s before.)
func TestShutdownNotHeldByStuckClient(t *testing.T) {
	big := make([]string, 400)
	for i := range big {
		big[i] = strings.Repeat("y", 64<<10)
	}
	fake := providertest.NewOpenAI(t, providertest.Response{Text: big})
	dir := newAgent(t, false)
	useFakeOpenAI(t, dir, fake)
	d := startServe(t, dir)
	ws := rawWS(t, dir)
	b, _ := wire.Encode(wire.TextFinal{Text: "a very long answer please", SessionID: "stuck"})
	if err := ws.WriteMessage(websocket.TextMessage, b); err != nil {
		t.Fatal(err)
	}
	// From now on nothing is read: the reply fills the socket.
	time.Sleep(time.Second)
	took, err := d.stop()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("SIGTERM → exit with a stuck client: %v", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Fatalf("agentd took %v to stop with a client that stopped reading, want about 2 s", took)
	}
}

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
