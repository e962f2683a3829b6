package integration

// End-to-end tests of the bridges: the real agentd binary supervising the
// real bridge-telegram binary (and builds of the test plugin), with the fake
// Telegram Bot API running inside the test process. Nothing here is an
// in-process shortcut: the bridge is a go-plugin child of agentd, holds its
// own device certificate, and reaches the gateway over agentd.sock.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentd/agentd/client"
	"github.com/agentd/agentd/devicecert"
	"github.com/agentd/agentd/wire"
)

func TestBridgeControl(t *testing.T) {
	other := testPluginBinary(t, "other", "")
	e := newBridgeEnv(t, testPluginYAML("other", other, "run"))
	otherPID := e.waitBridge("other", 20*time.Second, "running", func(b bridgeState) bool { return b.State == "running" }).PID
	cfg0 := e.config()

	ws, err := e.owner.DialWS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	evs := watchEvents(ws)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	post := func(path string) bridgeState {
		t.Helper()
		var st bridgeState
		if err := e.owner.PostJSON(ctx, path, nil, &st); err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		return st
	}
	// checkConfig: only telegram's enabled value differs from the original
	// file, and every comment is still there.
	checkConfig := func(enabled bool) {
		t.Helper()
		want := cfg0
		if !enabled {
			want = strings.Replace(cfg0, "    enabled: true   # trailing comment kept too", "    enabled: false   # trailing comment kept too", 1)
		}
		if got := e.config(); got != want {
			t.Errorf("openagent.yaml after telegram enabled=%v:\n%s\nwant:\n%s", enabled, got, want)
		}
	}
	checkOther := func(step string) {
		t.Helper()
		if b := e.bridge("other"); b.State != "running" || b.PID != otherPID || b.Restarts != 0 {
			t.Errorf("after %s: other bridge = %+v, want running as pid %d", step, b, otherPID)
		}
	}

	// REST: disable.
	st := post("/api/bridges/telegram/disable")
	if st.State != "stopped" || st.Enabled || st.PID != 0 {
		t.Errorf("disable answered %+v", st)
	}
	evs.wait(t, "disabled", "telegram")
	checkConfig(false)
	checkOther("disable")
	// Disabled means not answering: a message waits in Telegram…
	e.tg.Text(aliceChat, alice, "while disabled")
	time.Sleep(500 * time.Millisecond)
	if n := e.repliesTo("while disabled"); n != 0 {
		t.Errorf("a disabled bridge answered")
	}
	// …and restart of a disabled bridge is refused.
	var ae *client.APIError
	if err := e.owner.PostJSON(ctx, "/api/bridges/telegram/restart", nil, nil); !errors.As(err, &ae) || ae.Status != 409 {
		t.Errorf("restart of a disabled bridge: %v, want 409", err)
	}
	if err := e.owner.PostJSON(ctx, "/api/bridges/nope/restart", nil, nil); !client.IsStatus(err, 404) {
		t.Errorf("restart of an unknown bridge: %v, want 404", err)
	}

	// REST: enable. The waiting message is answered.
	st = post("/api/bridges/telegram/enable")
	if !st.Enabled {
		t.Errorf("enable answered %+v", st)
	}
	evs.wait(t, "enabled", "telegram")
	b := e.waitBridge("telegram", 10*time.Second, "running", func(b bridgeState) bool { return b.State == "running" })
	e.waitReply(15*time.Second, "while disabled")
	checkConfig(true)
	checkOther("enable")

	// REST: restart.
	st = post("/api/bridges/telegram/restart")
	evs.wait(t, "restarted", "telegram")
	b2 := e.waitBridge("telegram", 10*time.Second, "running", func(b bridgeState) bool { return b.State == "running" })
	if b2.PID == b.PID || b2.Restarts != b.Restarts+1 {
		t.Errorf("restart: pid %d → %d, restarts %d → %d", b.PID, b2.PID, b.Restarts, b2.Restarts)
	}
	checkConfig(true)
	checkOther("restart")

	// The same over the CLI.
	cli := func(args ...string) string {
		t.Helper()
		r := agentd(t, nil, append([]string{"bridge"}, args...)...)
		if r.code != 0 {
			t.Fatalf("agentd bridge %v: code %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
		return r.stdout
	}
	if out := cli("disable", e.dir, "telegram"); !strings.Contains(out, "bridge telegram: disabled and stopped") {
		t.Errorf("bridge disable: %q", out)
	}
	evs.wait(t, "disabled", "telegram")
	checkConfig(false)
	checkOther("CLI disable")
	out := cli("list", e.dir)
	if !regexpLine(out, `^telegram\s+stopped\s+0\s`) || !regexpLine(out, fmt.Sprintf(`^other\s+running\s+%d\s+0\s`, otherPID)) {
		t.Errorf("bridge list after CLI disable:\n%s", out)
	}
	cli("enable", e.dir, "telegram")
	evs.wait(t, "enabled", "telegram")
	b = e.waitBridge("telegram", 10*time.Second, "running", func(b bridgeState) bool { return b.State == "running" })
	checkConfig(true)
	out = cli("restart", e.dir, "telegram")
	evs.wait(t, "restarted", "telegram")
	b2 = e.waitBridge("telegram", 10*time.Second, "running", func(b bridgeState) bool { return b.State == "running" })
	if b2.PID == b.PID {
		t.Errorf("CLI restart kept pid %d", b.PID)
	}
	// It says what happened: the new process, and the one it replaced.
	if want := fmt.Sprintf("bridge telegram: restarted; running as pid %d (was pid %d)\n", b2.PID, b.PID); out != want {
		t.Errorf("bridge restart printed %q, want %q", out, want)
	}
	checkOther("CLI enable and restart")
	e.tg.Text(aliceChat, alice, "after the CLI round")
	e.waitReply(15*time.Second, "after the CLI round")

	// Editing the file by hand applies on hot reload, to that bridge only.
	tgPID := b2.PID
	p := filepath.Join(e.dir, "openagent.yaml")
	s := strings.Replace(e.config(), "  other:\n    enabled: true\n", "  other:\n    enabled: false\n", 1)
	if !strings.Contains(s, "  other:\n    enabled: false\n") {
		t.Fatalf("could not edit the other bridge's section:\n%s", s)
	}
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	e.waitBridge("other", 10*time.Second, "stopped by the hot reload", func(b bridgeState) bool { return b.State == "stopped" && !b.Enabled })
	if tg := e.bridge("telegram"); tg.PID != tgPID || tg.State != "running" {
		t.Errorf("hot reload of another bridge touched telegram: %+v (pid was %d)", tg, tgPID)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(s, "  other:\n    enabled: false\n", "  other:\n    enabled: true\n", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	e.waitBridge("other", 10*time.Second, "running after the hot reload", func(b bridgeState) bool { return b.State == "running" && b.Enabled })
	if tg := e.bridge("telegram"); tg.PID != tgPID {
		t.Errorf("hot reload of another bridge restarted telegram (pid %d → %d)", tgPID, tg.PID)
	}
}

// --- 5. security ------------------------------------------------------------

func TestBridgeSecurity(t *testing.T) {
	wrongCookie := testPluginBinary(t, "wrongcookie", "-X main.cookie=not-agentd")
	wrongProto := testPluginBinary(t, "wrongproto", "-X main.protocol=99")
	script := filepath.Join(t.TempDir(), "bridge-script")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho 'hello, I am not a plugin'\nsleep 30\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	extra := testPluginYAML("wrongcookie", wrongCookie, "run") +
		testPluginYAML("wrongproto", wrongProto, "run") +
		testPluginYAML("script", script, "run") +
		"  missing:\n    enabled: true\n    allowed_users: [\"*\"]\n"
	e := newBridgeEnv(t, extra)
	agentdPID := e.d.cmd.Process.Pid

	// The bridge's own certificate may chat on tg:… and nothing else.
	bid, err := devicecert.LoadIdentity(filepath.Join(e.dir, "keys", "bridge-telegram.identity"))
	if err != nil {
		t.Fatal(err)
	}
	bd := client.Unix(filepath.Join(e.dir, "agentd.sock"), bid)
	defer bd.CloseIdle()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, path := range []string{"/api/bridges", "/api/bridges/telegram", "/api/devices"} {
		if err := bd.GetJSON(ctx, path, nil); !client.IsStatus(err, 403) {
			t.Errorf("bridge identity GET %s: %v, want 403", path, err)
		}
	}
	for _, path := range []string{"/api/bridges/telegram/disable", "/api/bridges/telegram/restart"} {
		if err := bd.PostJSON(ctx, path, nil, nil); !client.IsStatus(err, 403) {
			t.Errorf("bridge identity POST %s: %v, want 403", path, err)
		}
	}
	if b := e.bridge("telegram"); b.State != "running" || b.Restarts != 0 {
		t.Errorf("telegram after its own identity's refused requests: %+v", b)
	}
	// Its session list holds its own prefix only, even though the owner
	// has another session.
	ws, err := e.owner.DialWS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	wsTurn(t, ws, "owner-private", "secret plans")
	e.tg.Text(aliceChat, alice, "hi")
	e.waitReply(15*time.Second, "hi")
	if ids := e.sessions(bd); !slices.Equal(ids, []string{fmt.Sprintf("tg:%d", aliceID)}) {
		t.Errorf("bridge identity's GET /api/sessions = %v, want only tg:%d", ids, aliceID)
	}

	bws, err := bd.DialWS(ctx)
	if err != nil {
		t.Fatalf("bridge identity WS: %v", err)
	}
	defer bws.Close()
	for _, sid := range []string{"dc:1", "owner-private", "tgx:1", "tg"} {
		if err := bws.Send(wire.TextFinal{Text: "sneaky", SessionID: sid}); err != nil {
			t.Fatal(err)
		}
		m, err := bws.Recv(ctx)
		// Skipped: broadcasts, and the frames of the bridge's own reply
		// to "hi" if it has not acked it yet — a new connection of a
		// client in ack mode gets its unacked replies.
		for err == nil && (m.Type() == "resource_event" || m.Type() == "system_snapshot" || isOwnReply(m, fmt.Sprintf("tg:%d", aliceID))) {
			m, err = bws.Recv(ctx)
		}
		if err != nil {
			t.Fatalf("session %s: %v", sid, err)
		}
		ef, ok := m.(wire.Error)
		if !ok || !strings.Contains(ef.Text, `"tg:"`) {
			t.Errorf("text_final on session %q from the bridge identity: %#v, want an error frame naming the tg: prefix", sid, m)
		}
	}
	if err := bws.Send(wire.Ping{}); err != nil {
		t.Fatal(err)
	}
	if m, err := bws.Recv(ctx); err != nil || m.Type() != "pong" {
		t.Errorf("after the refusals: %v %v, want pong (the connection survives)", m, err)
	}
	if ids := e.sessions(e.owner); slices.Contains(ids, "dc:1") || slices.Contains(ids, "tgx:1") {
		t.Errorf("refused sessions were created: %v", ids)
	}

	// Binaries that are not agentd bridges fail clearly and are not retried.
	for _, tc := range []struct{ name, want string }{
		{"wrongcookie", "handshake refused"},
		{"wrongproto", "version mismatch"},
		{"script", `not an agentd bridge plugin: it printed "hello, I am not a plugin"`},
		{"missing", "install bridge-missing beside agentd or set bridges.missing.path"},
	} {
		b := e.waitBridge(tc.name, 20*time.Second, "failed", func(b bridgeState) bool { return b.State == "failed" })
		t.Logf("%s: %s", tc.name, b.LastError)
		if !strings.Contains(b.LastError, tc.want) {
			t.Errorf("%s: last_error = %q, want it to contain %q", tc.name, b.LastError, tc.want)
		}
		if b.PID != 0 || b.Restarts != 0 {
			t.Errorf("%s: %+v, want no pid and no restarts (permanent failure)", tc.name, b)
		}
	}
	time.Sleep(500 * time.Millisecond)
	for _, name := range []string{"wrongcookie", "wrongproto", "script", "missing"} {
		if b := e.bridge(name); b.State != "failed" || b.Restarts != 0 {
			t.Errorf("%s relaunched: %+v", name, b)
		}
	}
	// The script's sleep must not be left behind.
	if out, _ := exec.Command("pgrep", "-f", script).Output(); len(out) > 0 {
		t.Errorf("processes of the failed script bridge still run: %s", out)
	}
	// agentd and telegram carried on.
	if e.d.cmd.ProcessState != nil || e.d.cmd.Process.Pid != agentdPID {
		t.Error("agentd died")
	}
	if r := agentd(t, nil, "status", e.dir); r.code != 0 {
		t.Errorf("status: %d %s", r.code, r.stderr)
	}
	e.tg.Text(aliceChat, alice, "still fine")
	e.waitReply(15*time.Second, "still fine")
}

// isOwnReply reports whether m is a frame of a turn of session sid.
func isOwnReply(m wire.Message, sid string) bool {
	switch f := m.(type) {
	case wire.Delta:
		return f.SessionID == sid
	case wire.Response:
		return f.SessionID == sid
	case wire.TurnComplete:
		return f.SessionID == sid
	}
	return false
}
