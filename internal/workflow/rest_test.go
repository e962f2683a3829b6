package workflow

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/agent"
	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/mcp"
	"github.com/agentd/agentd/internal/route/routetest"
)

const napGraph = `{"version":1,
	"nodes":[{"id":"start","type":"trigger-manual","config":{}},{"id":"nap","type":"wait","config":{"duration":"3s"}}],
	"edges":[{"source":"start","target":"nap"}]}`

// wait:true with a timeout shorter than the run answers 202 and the run
// goes on to success; a chat device reads but cannot create or run; a bad
// graph is 422 naming the node; a duplicate name 409.
func TestRESTRunOutlivesTimeout(t *testing.T) {
	ev := startEnv(t, t.TempDir(), nil)
	c := routetest.Serve(t, Routes(ev.e))
	body := `{"name":"nap","graph":` + napGraph + `}`
	if st, out := c.Do(auth.CapChat, "POST", "/api/workflows", body); st != http.StatusForbidden {
		t.Fatalf("chat create: %d %v", st, out)
	}
	st, out := c.Do(auth.CapAdmin, "POST", "/api/workflows", body)
	if st != http.StatusCreated {
		t.Fatalf("create: %d %v", st, out)
	}
	id := out["workflow"].(map[string]any)["id"].(string)
	if st, out := c.Do(auth.CapAdmin, "POST", "/api/workflows", body); st != http.StatusConflict {
		t.Fatalf("duplicate name: %d %v", st, out)
	}
	bad := `{"name":"bad","graph":{"version":1,"nodes":[{"id":"start","type":"trigger-manual","config":{}},{"id":"zap","type":"laser","config":{}}],"edges":[]}}`
	st, out = c.Do(auth.CapAdmin, "POST", "/api/workflows", bad)
	if e, _ := out["error"].(map[string]any); st != http.StatusUnprocessableEntity || e["node_id"] != "zap" || e["message"] != `node zap: unknown block type "laser"` {
		t.Fatalf("bad graph: %d %v", st, out)
	}
	if st, _ := c.Do(auth.CapChat, "POST", "/api/workflows/nap/run", `{}`); st != http.StatusForbidden {
		t.Fatalf("chat run: %d", st)
	}
	st, out = c.Do(auth.CapAdmin, "POST", "/api/workflows/nap/run", `{"wait":true,"timeout_s":1}`)
	if st != http.StatusAccepted || out["run_id"] == nil {
		t.Fatalf("run: %d %v", st, out)
	}
	runID := out["run_id"].(string)
	if !ev.e.Await(context.Background(), runID, time.Minute) {
		t.Fatal("run did not end")
	}
	st, out = c.Do(auth.CapChat, "GET", "/api/workflow-runs/"+runID, "")
	if st != 200 || out["status"] != "success" || len(out["trace"].([]any)) != 2 {
		t.Fatalf("run after the timeout: %d %v", st, out)
	}
	st, out = c.Do(auth.CapChat, "GET", "/api/workflows/"+id+"/runs", "")
	if st != 200 || len(out["runs"].([]any)) != 1 {
		t.Fatalf("runs: %d %v", st, out)
	}
	// A run that ends within the wait is answered whole.
	fast := `{"graph":{"version":1,"nodes":[{"id":"start","type":"trigger-manual","config":{}},{"id":"v","type":"set-variable","config":{"name":"x","value":"{{inputs.x}}"}}],"edges":[{"source":"start","target":"v"}]}}`
	if st, out := c.Do(auth.CapAdmin, "PUT", "/api/workflows/nap", fast); st != 200 {
		t.Fatalf("update: %d %v", st, out)
	}
	st, out = c.Do(auth.CapAdmin, "POST", "/api/workflows/nap/run", `{"inputs":{"x":"42"}}`)
	if st != 200 || out["status"] != "success" || out["outputs"].(map[string]any)["vars"].(map[string]any)["x"] != "42" {
		t.Fatalf("waited run: %d %v", st, out)
	}
	if st, _ := c.Do(auth.CapAdmin, "POST", "/api/workflow-runs/"+runID+"/cancel", ""); st != http.StatusConflict {
		t.Fatalf("cancel of a finished run: %d", st)
	}
	if st, _ := c.Do(auth.CapAdmin, "DELETE", "/api/workflows/nap", ""); st != 200 {
		t.Fatal("delete")
	}
	if st, _ := c.Do(auth.CapChat, "GET", "/api/workflow-runs/"+runID, ""); st != 404 {
		t.Fatal("run of a deleted workflow still there")
	}
}

// peerBin is an npm binary of testpeers/ (make setup installs them).
func peerBin(t *testing.T, name string) string {
	_, file, _, _ := runtime.Caller(0)
	p, _ := filepath.Abs(filepath.Join(filepath.Dir(file), "..", "..", "testpeers", "node_modules", ".bin", name))
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is not installed (run make setup): %v", name, err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node not found: %v", err)
	}
	return p
}

// mcp-tool calls get-sum of the real server-everything through the MCP
// pool; validation knows its tools.
func TestMCPToolEverything(t *testing.T) {
	dir := t.TempDir()
	ev := startEnv(t, dir, nil)
	reg, err := agent.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	pool, err := mcp.Open(context.Background(), mcp.Options{DB: ev.Store.DB(), Dir: dir, Tools: reg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	pool.Start(ctx)
	t.Cleanup(func() { cancel(); pool.Close() })
	if _, err := pool.Create(ctx, mcp.Input{Name: "everything", Command: []string{peerBin(t, "mcp-server-everything")}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for v, _ := pool.Get("everything"); v.Status != mcp.StateRunning; v, _ = pool.Get("everything") {
		if time.Now().After(deadline) {
			t.Fatalf("server-everything not running: %+v", v)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ev.e.tools = PoolTools{Pool: pool, Registry: reg}
	wf := ev.create(t, "sum", graph(t, `{"version":1,
		"nodes":[{"id":"start","type":"trigger-manual","config":{}},
			{"id":"add","type":"mcp-tool","config":{"mcp":"everything","tool":"get-sum","args":{"a":"{{inputs.a}}","b":19}}}],
		"edges":[{"source":"start","target":"add"}]}`))
	r := ev.runToEnd(t, wf, map[string]any{"a": 23})
	if r.Status != "success" || len(r.Trace) != 2 || !strings.Contains(r.Trace[1].Output.(string), "42") {
		t.Fatalf("run %+v", r)
	}
	if args := r.Trace[1].Input.(map[string]any)["args"].(map[string]any); args["a"] != 23.0 {
		t.Fatalf("args as sent: %v", args)
	}
	name := "nosuch"
	for _, tt := range []struct{ cfg, msg string }{
		{`{"mcp":"everything","tool":"teleport"}`, `MCP server "everything" has no tool "teleport"`},
		{`{"mcp":"nowhere","tool":"x"}`, `unknown MCP server "nowhere"`},
	} {
		g := graph(t, `{"version":1,"nodes":[{"id":"start","type":"trigger-manual","config":{}},{"id":"m","type":"mcp-tool","config":`+tt.cfg+`}],"edges":[]}`)
		if _, err := ev.e.Create(context.Background(), Input{Name: &name, Graph: g}); !isGraphError(err, "m") || !strings.Contains(err.Error(), tt.msg) {
			t.Fatalf("%s: %v", tt.cfg, err)
		}
	}
	// A server that is down is a warning, not an error.
	off := false
	if _, err := pool.SetEnabled(ctx, "everything", off); err != nil {
		t.Fatal(err)
	}
	g := graph(t, `{"version":1,"nodes":[{"id":"start","type":"trigger-manual","config":{}},{"id":"m","type":"mcp-tool","config":{"mcp":"everything","tool":"whatever"}}],"edges":[]}`)
	s, err := ev.e.Create(context.Background(), Input{Name: &name, Graph: g})
	if err != nil || len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], `MCP server "everything" is not running`) {
		t.Fatalf("down server: %+v %v", s, err)
	}
}
