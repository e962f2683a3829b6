package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/agent"
	"github.com/agentd/agentd/internal/config"
)

func everything(t testing.TB, f *fixture, name string, env map[string]string) View {
	t.Helper()
	v, err := f.pool.Create(context.Background(), Input{Name: name, Command: []string{peerBin(t, "mcp-server-everything")}, Env: env})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestStdioServerToolsAndCalls(t *testing.T) {
	t.Setenv("AGENTD_TEST_PROVIDER_KEY", "sk-must-not-leak")
	f := newFixture(t, nil)
	f.env["TOKEN_SOURCE"] = "from-agentd-env"
	f.pool.Start(context.Background())
	everything(t, f, "everything", map[string]string{"GREETING": "hello", "TOKEN": "${TOKEN_SOURCE}"})
	v := f.waitState("everything", StateRunning)
	for _, want := range []string{"everything__echo", "everything__get-sum", "everything__get-env"} {
		if !hasTool(f.reg, want) || !strings.Contains(strings.Join(v.Tools, ","), want) {
			t.Errorf("tool %s missing: registry %v, row %v", want, f.reg.List(), v.Tools)
		}
	}
	if v.PID == 0 {
		t.Error("no pid for a running stdio server")
	}
	ctx := context.Background()
	out, err := f.call(ctx, "everything__echo", map[string]any{"message": "ping 42"})
	if err != nil || !contains(out, "ping 42") {
		t.Errorf("echo = %q, %v", out, err)
	}
	out, err = f.call(ctx, "everything__get-sum", map[string]any{"a": 19, "b": 23})
	if err != nil || !contains(out, "42") {
		t.Errorf("get-sum = %q, %v", out, err)
	}
	// The server's environment is PATH, HOME and its own env, nothing else.
	out, err = f.call(ctx, "everything__get-env", map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	var env map[string]string
	if err := json.Unmarshal([]byte(out), &env); err != nil {
		t.Fatalf("get-env: %v\n%s", err, out)
	}
	if env["GREETING"] != "hello" || env["TOKEN"] != "from-agentd-env" || env["PATH"] == "" {
		t.Errorf("server env lacks its own variables: %v", env)
	}
	for k := range env {
		switch k {
		case "PATH", "HOME", "GREETING", "TOKEN":
		default:
			// Node itself may add nothing; anything else leaked from agentd.
			t.Errorf("server env has %s (leaked from agentd's environment)", k)
		}
	}
	// Env values are masked in every answer; a ${NAME} is shown as written.
	if got := v.Env; got["GREETING"] != Masked || got["TOKEN"] != "${TOKEN_SOURCE}" {
		t.Errorf("masked env = %v", got)
	}
	if _, err := os.Stat(LogPath(f.dir, "everything")); err != nil {
		t.Errorf("no server log: %v", err)
	}
}

func TestFilesystemServerConfinedToItsDirectory(t *testing.T) {
	f := newFixture(t, nil)
	f.pool.Start(context.Background())
	allowed := filepath.Join(f.dir, "shared")
	os.MkdirAll(allowed, 0o700)
	os.WriteFile(filepath.Join(allowed, "note.txt"), []byte("inside the allowed dir"), 0o600)
	outside := filepath.Join(t.TempDir(), "secret.txt")
	os.WriteFile(outside, []byte("outside"), 0o600)
	// Both the command and "shared" are relative: the server runs in the
	// agent directory, where npm servers are installed (node_modules/.bin).
	bin := peerBin(t, "mcp-server-filesystem")
	if err := os.Symlink(filepath.Dir(filepath.Dir(bin)), filepath.Join(f.dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.pool.Create(context.Background(), Input{Name: "filesystem", Command: []string{"node_modules/.bin/mcp-server-filesystem", "shared"}}); err != nil {
		t.Fatal(err)
	}
	f.waitState("filesystem", StateRunning)
	ctx := context.Background()
	out, err := f.call(ctx, "filesystem__read_text_file", map[string]any{"path": filepath.Join(allowed, "note.txt")})
	if err != nil || !contains(out, "inside the allowed dir") {
		t.Errorf("read inside = %q, %v", out, err)
	}
	out, err = f.call(ctx, "filesystem__read_text_file", map[string]any{"path": outside})
	if err == nil || contains(out, "outside") || !strings.Contains(strings.ToLower(err.Error()), "denied") {
		t.Errorf("read outside = %q, %v; want the server's refusal", out, err)
	}
}

func TestServerExitingAtOnceFailsWithStderr(t *testing.T) {
	f := newFixture(t, nil)
	f.pool.Start(context.Background())
	_, err := f.pool.Create(context.Background(), Input{Name: "broken", Command: []string{"sh", "-c", "echo 'fatal: no config here' >&2; exit 3"}})
	if err != nil {
		t.Fatal(err)
	}
	v := f.waitState("broken", StateFailed)
	if !contains(v.LastError, "fatal: no config here") || !contains(v.LastError, "exit status 3") {
		t.Errorf("last_error = %q", v.LastError)
	}
	if v.Restarts < CrashloopAfter {
		t.Errorf("restarts = %d", v.Restarts)
	}
	if !contains(f.log("broken"), "fatal: no config here") {
		t.Errorf("stderr not in the server log:\n%s", f.log("broken"))
	}
}

func TestMissingCommandFailsAtOnce(t *testing.T) {
	f := newFixture(t, nil)
	f.pool.Start(context.Background())
	f.pool.Create(context.Background(), Input{Name: "nope", Command: []string{"no-such-mcp-server-binary"}})
	v := f.waitState("nope", StateFailed)
	if !contains(v.LastError, "no-such-mcp-server-binary") {
		t.Errorf("last_error = %q", v.LastError)
	}
	f.pool.Create(context.Background(), Input{Name: "noenv", Command: []string{"true"}, Env: map[string]string{"K": "${NOT_SET_ANYWHERE}"}})
	v = f.waitState("noenv", StateFailed)
	if !contains(v.LastError, "NOT_SET_ANYWHERE is not set") {
		t.Errorf("last_error = %q", v.LastError)
	}
}

func TestKilledServerIsRestarted(t *testing.T) {
	f := newFixture(t, nil)
	f.pool.Start(context.Background())
	everything(t, f, "everything", nil)
	v := f.waitState("everything", StateRunning)
	if err := syscall.Kill(v.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	var now View
	for time.Now().Before(deadline) {
		now, _ = f.pool.Get("everything")
		if now.Status == StateRunning && now.PID != v.PID {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if now.Status != StateRunning || now.PID == v.PID || now.Restarts != 1 {
		t.Fatalf("after SIGKILL: %+v", now)
	}
	out, err := f.call(context.Background(), "everything__echo", map[string]any{"message": "back"})
	if err != nil || !contains(out, "back") {
		t.Errorf("echo after restart = %q, %v", out, err)
	}
}

func TestDisableRemovesToolsEnableRestores(t *testing.T) {
	f := newFixture(t, nil)
	f.pool.Start(context.Background())
	everything(t, f, "everything", nil)
	f.waitState("everything", StateRunning)
	ctx := context.Background()
	if _, err := f.pool.SetEnabled(ctx, "everything", false); err != nil {
		t.Fatal(err)
	}
	if v, _ := f.pool.Get("everything"); v.Status != StateDisabled || len(v.Tools) != 0 {
		t.Errorf("disabled: %+v", v)
	}
	if hasTool(f.reg, "everything__echo") {
		t.Error("tools of a disabled server are still in the registry")
	}
	if _, err := f.pool.SetEnabled(ctx, "everything", true); err != nil {
		t.Fatal(err)
	}
	f.waitState("everything", StateRunning)
	if !hasTool(f.reg, "everything__echo") {
		t.Error("tools not back after enable")
	}
	if err := f.pool.Delete(ctx, "everything"); err != nil {
		t.Fatal(err)
	}
	if hasTool(f.reg, "everything__echo") || len(f.pool.List()) != 0 {
		t.Error("delete left the server behind")
	}
}

func TestStreamableHTTPServer(t *testing.T) {
	url, _, _ := startHTTPEverything(t, 0)
	f := newFixture(t, nil)
	f.env["REMOTE_TOKEN"] = "s3cret"
	f.pool.Start(context.Background())
	v, err := f.pool.Create(context.Background(), Input{Name: "remote", URL: url, Headers: map[string]string{"Authorization": "Bearer ${REMOTE_TOKEN}", "X-Plain": "literal"}})
	if err != nil {
		t.Fatal(err)
	}
	if v.Headers["Authorization"] != Masked || v.Headers["X-Plain"] != Masked {
		t.Errorf("headers not masked: %v", v.Headers)
	}
	f.waitState("remote", StateRunning)
	out, err := f.call(context.Background(), "remote__echo", map[string]any{"message": "over http"})
	if err != nil || !contains(out, "over http") {
		t.Errorf("echo over Streamable HTTP = %q, %v", out, err)
	}
	out, err = f.call(context.Background(), "remote__get-sum", map[string]any{"a": 1, "b": 2})
	if err != nil || !contains(out, "3") {
		t.Errorf("get-sum over Streamable HTTP = %q, %v", out, err)
	}
}

func TestConfigSeedsOnce(t *testing.T) {
	on := true
	seed := config.Default()
	seed.MCPs = map[string]config.MCP{
		"files": {Enabled: &on, Command: "mcp-server-filesystem", Args: []string{"."}, Env: map[string]string{"A": "1"}, Timeout: config.Duration(5 * time.Second)},
		"web":   {URL: "https://mcp.example.com/mcp", Headers: map[string]string{"Authorization": "Bearer x"}},
	}
	f := newFixture(t, seed)
	got := f.pool.List()
	if len(got) != 2 || got[0].Name != "files" || strings.Join(got[0].Command, " ") != "mcp-server-filesystem ." ||
		got[0].TimeoutS != 5 || got[1].URL == nil || *got[1].URL != "https://mcp.example.com/mcp" || !got[1].Enabled {
		t.Fatalf("seeded rows: %+v", got)
	}
	// The table is the truth from now on: a removed server stays removed
	// although the config still names it, and a new config entry is not
	// added.
	if err := f.pool.Delete(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	seed.MCPs["other"] = config.MCP{Command: "x"}
	p2 := f.open(seed)
	if got := p2.List(); len(got) != 1 || got[0].Name != "files" {
		t.Errorf("after reopen with the config: %+v", got)
	}
}

func TestCreateUpdateValidation(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	off := false
	if _, err := f.pool.Create(ctx, Input{Name: "a", Command: []string{"x"}, Enabled: &off, Env: map[string]string{"KEY": "v1", "KEEP": "k"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.pool.Create(ctx, Input{Name: "a", Command: []string{"y"}}); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate create: %v", err)
	}
	for _, in := range []Input{
		{Name: "bad name", Command: []string{"x"}},
		{Name: "a__b", Command: []string{"x"}},
		{Name: "b"},
		{Name: "b", Command: []string{"x"}, URL: "http://h/mcp"},
		{Name: "b", URL: "ftp://h/mcp"},
		{Name: "b", URL: "http://user:pw@h/mcp"},
		{Name: "b", Command: []string{"x"}, Env: map[string]string{"PATH": "/evil"}},
		{Name: "b", Command: []string{"x"}, Env: map[string]string{"A": "***"}},
		{Name: "b", Command: []string{"x"}, Headers: map[string]string{"A": "1"}},
		{Name: "b", URL: "http://h/mcp", Headers: map[string]string{"Bad Header": "1"}},
		{Name: "b", Command: []string{"x"}, TimeoutS: -1},
	} {
		if _, err := f.pool.Create(ctx, in); !errors.Is(err, ErrInvalid) {
			t.Errorf("create %+v: %v, want invalid", in, err)
		}
	}
	if len(f.pool.List()) != 1 {
		t.Errorf("refused creates left rows: %+v", f.pool.List())
	}
	// PUT merges: Masked keeps a value, a missing key is dropped.
	env := map[string]string{"KEY": "v2", "KEEP": Masked}
	if _, err := f.pool.Update(ctx, "a", Patch{Env: &env}); err != nil {
		t.Fatal(err)
	}
	f.pool.mu.Lock()
	got := f.pool.servers["a"].row
	f.pool.mu.Unlock()
	if got.Env["KEY"] != "v2" || got.Env["KEEP"] != "k" || strings.Join(got.Command, " ") != "x" {
		t.Errorf("after merge: %+v", got)
	}
	bad := "not a url"
	if _, err := f.pool.Update(ctx, "a", Patch{URL: &bad}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad update: %v", err)
	}
	if _, err := f.pool.Update(ctx, "missing", Patch{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("update missing: %v", err)
	}
}

func TestBuiltinsCanBeDisabledNotDeleted(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	if err := f.pool.AddBuiltin(ctx, "time", "the time", TimeNow(nil)); err != nil {
		t.Fatal(err)
	}
	f.pool.Start(ctx)
	if !hasTool(f.reg, "time_now") {
		t.Fatal("time_now not registered")
	}
	out, err := f.call(ctx, "time_now", map[string]any{"timezone": "Asia/Tokyo"})
	if err != nil || !contains(out, "Asia/Tokyo") || !contains(out, "+09:00") {
		t.Errorf("time_now = %q, %v", out, err)
	}
	if err := f.pool.Delete(ctx, "time"); !errors.Is(err, ErrBuiltin) {
		t.Errorf("delete builtin: %v", err)
	}
	cmd := []string{"x"}
	if _, err := f.pool.Update(ctx, "time", Patch{Command: &cmd}); !errors.Is(err, ErrBuiltin) {
		t.Errorf("update builtin command: %v", err)
	}
	if _, err := f.pool.SetEnabled(ctx, "time", false); err != nil {
		t.Fatal(err)
	}
	if hasTool(f.reg, "time_now") {
		t.Error("disabled builtin still registered")
	}
	// The state survives a restart.
	f.pool.Close()
	f.reg, _ = agent.NewRegistry()
	p2 := f.open(nil)
	p2.AddBuiltin(ctx, "time", "the time", TimeNow(nil))
	p2.Start(ctx)
	if v, _ := p2.Get("time"); v.Enabled || v.Kind != KindBuiltin || hasTool(f.reg, "time_now") {
		t.Errorf("builtin after reopen: %+v", v)
	}
}

func TestToolName(t *testing.T) {
	for _, c := range []struct{ server, tool, want string }{
		{"everything", "echo", "everything__echo"},
		{"everything", "get-sum", "everything__get-sum"},
		{"fs", "read.file", "fs__read_file_"},
		{"s", strings.Repeat("a", 80), "s__" + strings.Repeat("a", 50)},
	} {
		got := ToolName(c.server, c.tool)
		if !strings.HasPrefix(got, c.want) || len(got) > maxToolName || toolNameBad.MatchString(got) {
			t.Errorf("ToolName(%q, %q) = %q", c.server, c.tool, got)
		}
	}
	if ToolName("fs", "a.b") == ToolName("fs", "a_b") || ToolName("fs", "a.b") == ToolName("fs", "a/b") {
		t.Error("sanitised names collide")
	}
}

func TestWaitStarted(t *testing.T) {
	seed := config.Default()
	seed.MCPs = map[string]config.MCP{
		"everything": {Command: peerBin(t, "mcp-server-everything")},
		"mute":       {Command: "sleep", Args: []string{"600"}}, // never answers the handshake
	}
	f := newFixture(t, seed)
	f.pool.Start(context.Background())
	f.pool.WaitStarted(context.Background(), 200*time.Millisecond)
	if v, _ := f.pool.Get("mute"); v.Status != StateStarting {
		t.Errorf("mute: %+v", v)
	}
	f.pool.Delete(context.Background(), "mute")
	f.pool.WaitStarted(context.Background(), time.Minute)
	if v, _ := f.pool.Get("everything"); v.Status != StateRunning || !hasTool(f.reg, "everything__echo") {
		t.Errorf("everything after WaitStarted: %+v", v)
	}
}
