package integration

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentd/agentd/client"
	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/provider/providertest"
	"github.com/agentd/agentd/wire"
)

// mcpBin is an npm MCP server of testpeers/ (installed by make setup).
func mcpBin(t *testing.T, name string) string {
	t.Helper()
	needNodePeers(t)
	return filepath.Join(repoRoot(), "testpeers", "node_modules", ".bin", name)
}

// mcpRow is the part of an /api/mcps row the tests read.
type mcpRow struct {
	Name      string            `json:"name"`
	Kind      string            `json:"kind"`
	Status    string            `json:"status"`
	Tools     []string          `json:"tools"`
	Env       map[string]string `json:"env"`
	LastError string            `json:"last_error"`
	PID       int               `json:"pid"`
}

func getMCP(t *testing.T, d *client.Dialer, name string) mcpRow {
	t.Helper()
	var out struct {
		MCP mcpRow `json:"mcp"`
	}
	if err := d.GetJSON(ctx30(t), "/api/mcps/"+name, &out); err != nil {
		t.Fatalf("GET /api/mcps/%s: %v", name, err)
	}
	return out.MCP
}

func waitMCP(t *testing.T, d *client.Dialer, name, status string) mcpRow {
	t.Helper()
	var r mcpRow
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if r = getMCP(t, d, name); r.Status == status {
			return r
		}
	}
	t.Fatalf("MCP server %s not %s: %+v", name, status, r)
	return r
}

func mcpTools(t *testing.T, d *client.Dialer) []string {
	t.Helper()
	var out struct {
		Tools []struct {
			MCP, Name string
		} `json:"tools"`
	}
	if err := d.GetJSON(ctx30(t), "/api/mcp-tools", &out); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range out.Tools {
		names = append(names, tl.MCP+"/"+tl.Name)
	}
	return names
}

func offered(t *testing.T, fake *providertest.Server) []string {
	t.Helper()
	reqs := fake.Requests()
	var names []string
	for _, tl := range reqs[len(reqs)-1].OpenAI(t).Tools {
		names = append(names, tl.Function.Name)
	}
	return names
}

// TestMCPServersThroughTheDaemon: a config-seeded server runs at start; a
// chat certificate can read but not change MCP servers (nothing starts); a
// server added over REST is used in the next turn with no restart, its
// calls stream as status frames, and a follow-up turn sees the calls in
// history; disable takes its tools away from the next turn.
func TestMCPServersThroughTheDaemon(t *testing.T) {
	everything := mcpBin(t, "mcp-server-everything")
	fs := mcpBin(t, "mcp-server-filesystem")
	fake := providertest.NewOpenAI(t,
		providertest.Response{ToolCalls: []providertest.ToolCall{
			{ID: "c1", Name: "everything__echo", Arguments: `{"message":"sunny side"}`},
			{ID: "c2", Name: "everything__get-sum", Arguments: `{"a":1234,"b":4321}`},
		}},
		providertest.QuoteToolResults(),
		providertest.Response{Text: []string{"I remember."}},
		providertest.Response{Text: []string{"no tools now"}},
	)
	dir := newAgent(t, false)
	useFakeOpenAI(t, dir, fake)
	os.MkdirAll(filepath.Join(dir, "shared"), 0o700)
	appendConfig(t, dir, "mcps: {}", "mcps:\n  files:\n    command: "+fs+"\n    args: [shared]\n")
	chat := issueDevice(t, dir, "phone", auth.CapChat)
	startServe(t, dir, "OPENAI_API_KEY=sk-agentd-own-secret")
	owner := ownerClient(t, dir)

	// Seeded from the config at the first start.
	waitMCP(t, owner, "files", "running")

	// A chat certificate reads, and is refused every change.
	marker := filepath.Join(t.TempDir(), "started")
	evil := map[string]any{"name": "evil", "command": []string{"sh", "-c", "touch " + marker}}
	ctx := ctx30(t)
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/api/mcps", evil},
		{"PUT", "/api/mcps/files", map[string]any{"command": []string{"sh", "-c", "touch " + marker}}},
		{"DELETE", "/api/mcps/files", nil},
		{"POST", "/api/mcps/files/disable", nil},
		{"POST", "/api/mcps/time/enable", nil},
	} {
		if err := chat.DoJSON(ctx, c.method, c.path, c.body, nil); !client.IsStatus(err, 403) {
			t.Errorf("chat %s %s: %v, want 403", c.method, c.path, err)
		}
	}
	if err := chat.GetJSON(ctx, "/api/mcps", nil); err != nil {
		t.Errorf("chat GET /api/mcps: %v", err)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Errorf("a refused request started a process: %v", err)
	}
	if r := getMCP(t, owner, "files"); r.Status != "running" {
		t.Errorf("files after refused changes: %+v", r)
	}

	// Added over REST, used in the next turn.
	add := map[string]any{"name": "everything", "command": []string{everything}, "env": map[string]string{"SOME_TOKEN": "t0k3n"}}
	var created struct {
		OK  bool   `json:"ok"`
		MCP mcpRow `json:"mcp"`
	}
	if err := owner.PostJSON(ctx, "/api/mcps", add, &created); err != nil || !created.OK {
		t.Fatalf("POST /api/mcps: %v", err)
	}
	if created.MCP.Env["SOME_TOKEN"] != "***" {
		t.Errorf("env not masked: %v", created.MCP.Env)
	}
	if err := owner.PostJSON(ctx, "/api/mcps", add, nil); !client.IsStatus(err, 409) {
		t.Errorf("second POST: %v, want 409", err)
	}
	waitMCP(t, owner, "everything", "running")
	if tools := mcpTools(t, owner); !slices.Contains(tools, "everything/echo") || !slices.Contains(tools, "files/read_text_file") {
		t.Errorf("/api/mcp-tools: %v", tools)
	}

	ws := ownerWS(t, dir)
	resp, frames := wsTurn(t, ws, "mcp-turn", "add and echo")
	if !strings.Contains(resp.Text, "sunny side") || !strings.Contains(resp.Text, "5555") {
		t.Errorf("reply lacks the tool results: %q", resp.Text)
	}
	var status []string
	for _, f := range frames {
		if s, ok := f.(wire.Status); ok {
			status = append(status, s.Text)
		}
	}
	for _, want := range []string{"using everything__echo…", "everything__echo done", "using everything__get-sum…", "everything__get-sum done"} {
		if !slices.Contains(status, want) {
			t.Errorf("status frames %q lack %q", status, want)
		}
	}
	if o := offered(t, fake); !slices.Contains(o, "everything__echo") || !slices.Contains(o, "time_now") || !slices.Contains(o, "files__read_text_file") {
		t.Errorf("tools offered to the model: %v", o)
	}

	// The follow-up turn's history has the calls and their results.
	wsTurn(t, ws, "mcp-turn", "what did you do?")
	reqs := fake.Requests()
	var calls, results int
	for _, m := range reqs[len(reqs)-1].OpenAI(t).Messages {
		calls += len(m.ToolCalls)
		if m.Role == "tool" && (strings.Contains(m.Text(), "sunny side") || strings.Contains(m.Text(), "5555")) {
			results++
		}
	}
	if calls != 2 || results != 2 {
		t.Errorf("follow-up history: %d tool calls, %d results", calls, results)
	}

	// Disabled: its tools are gone from the next turn.
	if err := owner.PostJSON(ctx, "/api/mcps/everything/disable", nil, nil); err != nil {
		t.Fatal(err)
	}
	if r := getMCP(t, owner, "everything"); r.Status != "disabled" || len(r.Tools) != 0 {
		t.Errorf("after disable: %+v", r)
	}
	wsTurn(t, ws, "mcp-turn", "and now?")
	if o := offered(t, fake); slices.Contains(o, "everything__echo") || !slices.Contains(o, "files__read_text_file") {
		t.Errorf("tools offered after disable: %v", o)
	}
	if _, err := os.Stat(filepath.Join(dir, "logs", "mcp-everything.log")); err != nil {
		t.Errorf("no server log: %v", err)
	}
}

// TestMCPCLI drives agentd mcp add/list/disable/enable/remove against the
// running daemon.
func TestMCPCLI(t *testing.T) {
	everything := mcpBin(t, "mcp-server-everything")
	dir := newAgent(t, false)
	startServe(t, dir)
	if r := agentd(t, nil, "mcp", "add", dir, "everything", "--env", "GREETING=hi", "--", everything); r.code != 0 || !strings.Contains(r.stdout, "mcp everything: running,") {
		t.Fatalf("mcp add: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := agentd(t, nil, "mcp", "add", dir, "broken", "--", "sh", "-c", "echo cannot start >&2; exit 1"); r.code != 0 {
		t.Fatalf("mcp add broken: %d %s", r.code, r.stderr)
	}
	owner := ownerClient(t, dir)
	waitMCP(t, owner, "broken", "failed")
	r := agentd(t, nil, "mcp", "list", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "everything") || !strings.Contains(r.stdout, "running") ||
		!strings.Contains(r.stdout, "cannot start") || !strings.Contains(r.stdout, "builtin") {
		t.Errorf("mcp list:\n%s%s", r.stdout, r.stderr)
	}
	if r := agentd(t, nil, "mcp", "disable", dir, "everything"); r.code != 0 || !strings.Contains(r.stdout, "disabled") {
		t.Errorf("mcp disable: %s%s", r.stdout, r.stderr)
	}
	if r := agentd(t, nil, "mcp", "remove", dir, "time"); r.code == 0 || !strings.Contains(r.stderr, "disable it instead") {
		t.Errorf("mcp remove builtin: %d %s", r.code, r.stderr)
	}
	if r := agentd(t, nil, "mcp", "remove", dir, "everything"); r.code != 0 {
		t.Errorf("mcp remove: %s", r.stderr)
	}
	if r := agentd(t, nil, "mcp", "list", dir, "--url", "x"); r.code != 2 {
		t.Errorf("mcp list --url: code %d", r.code)
	}
	if tools := mcpTools(t, owner); slices.ContainsFunc(tools, func(s string) bool { return strings.HasPrefix(s, "everything/") }) {
		t.Errorf("tools after remove: %v", tools)
	}
}

// appendConfig replaces old in openagent.yaml by new.
func appendConfig(t *testing.T, dir, old, repl string) {
	t.Helper()
	p := filepath.Join(dir, "openagent.yaml")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("openagent.yaml has no %q", old)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(string(b), old, repl, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestMCPInterruptAndRestart: an interrupt frame stops a running slow tool
// call (the turn ends interrupted at once, not after the hour the tool
// would take), and SIGKILL of the server brings it back under a new pid,
// usable in the next turn.
func TestMCPInterruptAndRestart(t *testing.T) {
	everything := mcpBin(t, "mcp-server-everything")
	fake := providertest.NewOpenAI(t,
		providertest.Response{ToolCalls: []providertest.ToolCall{
			{ID: "slow", Name: "everything__trigger-long-running-operation", Arguments: `{"duration":3600,"steps":2}`},
		}},
		providertest.Response{ToolCalls: []providertest.ToolCall{{ID: "e", Name: "everything__echo", Arguments: `{"message":"after the kill"}`}}},
		providertest.QuoteToolResults(),
	)
	dir := newAgent(t, false)
	useFakeOpenAI(t, dir, fake)
	appendConfig(t, dir, "mcps: {}", "mcps:\n  everything:\n    command: "+everything+"\n")
	startServe(t, dir)
	owner := ownerClient(t, dir)
	first := waitMCP(t, owner, "everything", "running")

	ws := ownerWS(t, dir)
	ctx := ctx30(t)
	if err := ws.Send(wire.TextFinal{Text: "take your time", SessionID: "slow"}); err != nil {
		t.Fatal(err)
	}
	interrupted, complete := false, false
	for !complete {
		m, err := ws.Recv(ctx)
		if err != nil {
			t.Fatalf("waiting for the slow turn: %v", err)
		}
		switch m := m.(type) {
		case wire.Status:
			if m.Text == "using everything__trigger-long-running-operation…" {
				if err := ws.Send(wire.Interrupt{SessionID: "slow"}); err != nil {
					t.Fatal(err)
				}
			}
		case wire.Response:
			if !m.Interrupted {
				t.Fatalf("response not interrupted: %+v", m)
			}
			interrupted = true
		case wire.TurnComplete:
			complete = interrupted
		case wire.Error:
			t.Fatalf("error frame: %+v", m)
		}
	}

	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var now mcpRow
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if now = getMCP(t, owner, "everything"); now.Status == "running" && now.PID != first.PID {
			break
		}
	}
	if now.Status != "running" || now.PID == first.PID {
		t.Fatalf("after SIGKILL: %+v", now)
	}
	resp, _ := wsTurn(t, ws, "after-kill", "echo please")
	if !strings.Contains(resp.Text, "after the kill") {
		t.Errorf("reply after the restart: %q", resp.Text)
	}
}

// TestSessionsSendTool: the agent, in one session, sends a message into
// another session through the built-in sessions_send; the owner's device
// gets it there. A session outside tools.sessions_send.allow is refused.
func TestSessionsSendTool(t *testing.T) {
	fake := providertest.NewOpenAI(t,
		providertest.Response{Text: []string{"inbox ready"}},
		providertest.Response{ToolCalls: []providertest.ToolCall{
			{ID: "s1", Name: "sessions_send", Arguments: `{"session_id":"inbox","text":"reminder: buy milk"}`},
			{ID: "s2", Name: "sessions_send", Arguments: `{"session_id":"elsewhere","text":"sneaky"}`},
		}},
		providertest.QuoteToolResults(),
	)
	dir := newAgent(t, false)
	useFakeOpenAI(t, dir, fake)
	appendConfig(t, dir, "    allow: []", "    allow: [inbox]")
	startServe(t, dir)
	ws := ownerWS(t, dir)
	wsTurn(t, ws, "inbox", "hello")
	if err := ws.Send(wire.TextFinal{Text: "remind me in my inbox", SessionID: "work"}); err != nil {
		t.Fatal(err)
	}
	// The pushed message and the turn's reply arrive in either order.
	got := map[string]string{}
	ctx := ctx30(t)
	for got["work"] == "" || got["inbox"] == "" {
		m, err := ws.Recv(ctx)
		if err != nil {
			t.Fatalf("waiting for the reply and the pushed message: %v (got %v)", err, got)
		}
		if r, ok := m.(wire.Response); ok {
			got[r.SessionID] = r.Text
		}
	}
	if got["inbox"] != "reminder: buy milk" {
		t.Errorf("pushed into inbox: %q", got["inbox"])
	}
	if !strings.Contains(got["work"], "sent to inbox") || !strings.Contains(got["work"], "not in tools.sessions_send.allow") {
		t.Errorf("reply in work: %q", got["work"])
	}
}
