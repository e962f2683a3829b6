package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/agent"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/store/storetest"
)

// peerBin is an npm MCP server installed in testpeers/ by `make setup`.
func peerBin(t testing.TB, name string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "..", "..", "testpeers", "node_modules", ".bin", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is not installed (run make setup): %v", name, err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node not found (Node.js 20 is needed): %v", err)
	}
	abs, _ := filepath.Abs(p)
	return abs
}

type fixture struct {
	t    testing.TB
	dir  string
	st   *store.Store
	reg  *agent.Registry
	pool *Pool
	env  map[string]string
}

func newFixture(t testing.TB, seed *config.Config) *fixture {
	t.Helper()
	f := &fixture{t: t, dir: t.TempDir(), env: map[string]string{}}
	f.st = storetest.Open(t, f.dir)
	f.reg, _ = agent.NewRegistry()
	f.pool = f.open(seed)
	return f
}

func (f *fixture) open(seed *config.Config) *Pool {
	f.t.Helper()
	p, err := Open(context.Background(), Options{
		DB: f.st.DB(), Dir: f.dir, Tools: f.reg, Seed: seed,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		LookupEnv: func(k string) (string, bool) { v, ok := f.env[k]; return v, ok },
	})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(p.Close)
	return p
}

// waitState polls until the server is in state (or fails the test after
// a minute: a bound against hangs, not a timing assertion).
func (f *fixture) waitState(name string, state State) View {
	f.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var v View
	for time.Now().Before(deadline) {
		var err error
		v, err = f.pool.Get(name)
		if err == nil && v.Status == state {
			return v
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.t.Fatalf("%s not %s: %+v\nlog:\n%s", name, state, v, f.log(name))
	return v
}

func (f *fixture) log(name string) string {
	b, _ := os.ReadFile(LogPath(f.dir, name))
	return string(b)
}

// call runs a registered tool as the agent would.
func (f *fixture) call(ctx context.Context, name string, args any) (string, error) {
	b, _ := json.Marshal(args)
	return f.reg.Call(ctx, name, b)
}

func hasTool(reg *agent.Registry, name string) bool {
	for _, s := range reg.List() {
		if s.Name == name {
			return true
		}
	}
	return false
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// waitTool polls until the registry has (or lacks) the tool.
func (f *fixture) waitTool(name string, present bool) {
	f.t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if hasTool(f.reg, name) == present {
			return
		}
	}
	f.t.Fatalf("tool %s present=%v never happened: %v", name, present, f.reg.List())
}

// startHTTPEverything runs server-everything in streamableHttp mode on
// port (0: a free one) and returns its /mcp URL, port and a stop func.
func startHTTPEverything(t *testing.T, port int) (string, int, func()) {
	t.Helper()
	if port == 0 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
	}
	srv := exec.Command(peerBin(t, "mcp-server-everything"), "streamableHttp")
	srv.Env = append(os.Environ(), fmt.Sprintf("PORT=%d", port))
	srv.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	stop := func() { syscall.Kill(-srv.Process.Pid, syscall.SIGKILL); srv.Wait() }
	t.Cleanup(stop)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			break
		}
	}
	return fmt.Sprintf("http://127.0.0.1:%d/mcp", port), port, stop
}
