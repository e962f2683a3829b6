package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentd/agentd/client/clienttest"
	"github.com/agentd/agentd/internal/alert"
	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/backoff"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/wire"
)

const twoBridges = `# agent config
agent:
  name: test
bridges:
  # the first bridge
  alpha:
    enabled: true   # keep this comment
    settings:
      mode: run
  beta:
    enabled: true
    settings:
      mode: run
`

func TestCrashRestartsOnlyThatBridge(t *testing.T) {
	bin := testPlugin(t, "")
	f := newFixture(t, twoBridges, Options{})
	link(t, f.dir, "alpha", bin)
	link(t, f.dir, "beta", bin)
	f.apply()
	a := f.waitFor("alpha", 5*time.Second, "running", running)
	b := f.waitFor("beta", 5*time.Second, "running", running)

	killed := time.Now()
	if err := syscall.Kill(a.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a2 := f.waitFor("alpha", time.Second, "running again", func(st Status) bool {
		return running(st) && st.PID != a.PID
	})
	t.Logf("SIGKILL to running again: %s", time.Since(killed))
	if a2.Restarts != 1 {
		t.Errorf("restarts = %d, want 1", a2.Restarts)
	}
	if !strings.Contains(a2.LastError, "signal: killed") {
		t.Errorf("last error %q does not say the process was killed", a2.LastError)
	}
	b2, _ := f.sup.Get("beta")
	if b2.PID != b.PID || b2.State != StateRunning || b2.Restarts != 0 || !alive(b.PID) {
		t.Errorf("beta was touched: before %+v, after %+v", b, b2)
	}
}

func TestCrashloop(t *testing.T) {
	bin := testPlugin(t, "")
	f := newFixture(t, `bridges:
  crashy:
    enabled: true
    settings: {mode: crash}
`, Options{})
	link(t, f.dir, "crashy", bin)
	start := time.Now()
	f.apply()
	// 200+400+800+1600 ms of backoff before the fifth failure.
	st := f.waitFor("crashy", 8*time.Second, "crashloop", func(st Status) bool { return st.State == StateCrashloop })
	t.Logf("crashloop after %s, %d restarts", time.Since(start), st.Restarts)
	if st.Restarts < CrashloopAfter {
		t.Errorf("restarts = %d, want at least %d", st.Restarts, CrashloopAfter)
	}
	for _, want := range []string{"exit status 1", "crashing at start as configured"} {
		if !strings.Contains(st.LastError, want) {
			t.Errorf("last error %q lacks %q", st.LastError, want)
		}
	}
	if st.PID != 0 {
		t.Errorf("pid = %d in crashloop, want 0", st.PID)
	}
}

func TestFailedPlatformIsRelaunched(t *testing.T) {
	bin := testPlugin(t, "")
	f := newFixture(t, `bridges:
  failing:
    enabled: true
    settings: {mode: fail}
`, Options{})
	link(t, f.dir, "failing", bin)
	f.apply()
	st := f.waitFor("failing", 5*time.Second, "backing off", func(st Status) bool { return st.Restarts >= 2 })
	if !strings.Contains(st.LastError, "platform failed as configured") {
		t.Errorf("last error %q does not carry the platform's error", st.LastError)
	}
}

// TestHungBridgeIsReplaced: a bridge that no longer answers (SIGSTOP) is
// killed after HealthFailures missed checks and relaunched.
func TestHungBridgeIsReplaced(t *testing.T) {
	bin := testPlugin(t, "")
	f := newFixture(t, "bridges:\n  frozen:\n    enabled: true\n", Options{})
	link(t, f.dir, "frozen", bin)
	f.apply()
	st := f.waitFor("frozen", 5*time.Second, "running", running)
	if err := syscall.Kill(st.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	st2 := f.waitFor("frozen", (HealthFailures+2)*HealthInterval, "replaced", func(n Status) bool {
		return running(n) && n.PID != st.PID
	})
	t.Logf("hung bridge replaced after %s: %s", time.Since(start), st2.LastError)
	if !strings.Contains(st2.LastError, "health checks") {
		t.Errorf("last error %q does not name the health checks", st2.LastError)
	}
	if alive(st.PID) {
		t.Errorf("hung process %d still exists", st.PID)
	}
}

func TestStopIgnoredIsKilled(t *testing.T) {
	bin := testPlugin(t, "")
	f := newFixture(t, `bridges:
  stuck:
    enabled: true
    settings: {mode: hang_stop}
`, Options{StopTimeout: 500 * time.Millisecond})
	link(t, f.dir, "stuck", bin)
	f.apply()
	st := f.waitFor("stuck", 5*time.Second, "running", running)
	start := time.Now()
	if err := f.sup.Disable("stuck"); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("disable of a bridge that ignores Stop took %s", took)
	if took < 500*time.Millisecond || took > 2*time.Second {
		t.Errorf("disable took %s, want the 500ms stop timeout and a kill", took)
	}
	if alive(st.PID) {
		t.Errorf("pid %d still alive after disable", st.PID)
	}
	if got, _ := f.sup.Get("stuck"); got.State != StateStopped || got.PID != 0 {
		t.Errorf("after disable: %+v", got)
	}
}

func TestNotABridge(t *testing.T) {
	script := func(t *testing.T, body string) string {
		p := filepath.Join(t.TempDir(), "script")
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name string
		bin  func(t *testing.T) string
		want string
	}{
		{"other magic cookie", func(t *testing.T) string { return testPlugin(t, "-X main.cookie=someone-else") },
			"another magic cookie"},
		{"other protocol version", func(t *testing.T) string { return testPlugin(t, "-X main.protocol=2") },
			"handshake version mismatch"},
		{"shell script", func(t *testing.T) string { return script(t, `echo "hello, I am a script"; sleep 30`) },
			"not an agentd bridge plugin"},
		{"silent program", func(t *testing.T) string { return script(t, `exec sleep 30`) },
			"no plugin handshake within"},
		{"missing binary", func(t *testing.T) string { return "/nonexistent/bridge-x" }, "binary /nonexistent/bridge-x"},
		{"not executable", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "f")
			os.WriteFile(p, []byte("x"), 0o644)
			return p
		}, "not an executable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := tc.bin(t)
			f := newFixture(t, "bridges:\n  odd:\n    enabled: true\n    path: "+bin+"\n", Options{})
			start := time.Now()
			f.apply()
			st := f.waitFor("odd", PluginStartTimeout+2*time.Second, "failed", func(st Status) bool { return st.State == StateFailed })
			t.Logf("failed after %s: %s", time.Since(start), st.LastError)
			if !strings.Contains(st.LastError, tc.want) {
				t.Errorf("last error %q lacks %q", st.LastError, tc.want)
			}
			if st.Restarts != 0 {
				t.Errorf("a bridge that cannot work was relaunched %d times", st.Restarts)
			}
		})
	}
}

func TestEnableDisableRestart(t *testing.T) {
	bin := testPlugin(t, "")
	f := newFixture(t, twoBridges, Options{})
	link(t, f.dir, "alpha", bin)
	link(t, f.dir, "beta", bin)
	f.apply()
	a := f.waitFor("alpha", 5*time.Second, "running", running)
	b := f.waitFor("beta", 5*time.Second, "running", running)

	if err := f.sup.Disable("alpha"); err != nil {
		t.Fatal(err)
	}
	if st, _ := f.sup.Get("alpha"); st.State != StateStopped || st.Enabled || alive(a.PID) {
		t.Fatalf("after disable: %+v (pid alive %v)", st, alive(a.PID))
	}
	data, _ := os.ReadFile(f.cfgPath)
	want := strings.Replace(twoBridges, "enabled: true   # keep this comment", "enabled: false   # keep this comment", 1)
	if string(data) != want {
		t.Errorf("config after disable:\n%s\nwant:\n%s", data, want)
	}
	// The hot reload of the file just written changes nothing.
	f.apply()
	if st, _ := f.sup.Get("alpha"); st.State != StateStopped {
		t.Errorf("reload after disable restarted alpha: %+v", st)
	}

	if err := f.sup.Enable("alpha"); err != nil {
		t.Fatal(err)
	}
	a2 := f.waitFor("alpha", 5*time.Second, "running", running)
	if data, _ := os.ReadFile(f.cfgPath); string(data) != twoBridges {
		t.Errorf("config after enable:\n%s\nwant:\n%s", data, twoBridges)
	}

	if err := f.sup.Restart("alpha"); err != nil {
		t.Fatal(err)
	}
	a3 := f.waitFor("alpha", 5*time.Second, "running", running)
	if a3.PID == a2.PID || alive(a2.PID) || a3.Restarts != 1 {
		t.Errorf("restart: before %+v after %+v", a2, a3)
	}
	if bs, _ := f.sup.Get("beta"); bs.PID != b.PID {
		t.Errorf("beta was touched: pid %d → %d", b.PID, bs.PID)
	}

	if err := f.sup.Enable("nope"); !errors.Is(err, ErrUnknown) {
		t.Errorf("enable unknown: %v, want ErrUnknown", err)
	}
	f.sup.Disable("beta")
	if err := f.sup.Restart("beta"); !errors.Is(err, ErrDisabled) {
		t.Errorf("restart disabled: %v, want ErrDisabled", err)
	}

	f.mu.Lock()
	changes := strings.Join(f.changes, " ")
	f.mu.Unlock()
	for _, w := range []string{"alpha:disabled", "alpha:enabled", "alpha:restarted", "alpha:running", "alpha:stopped", "beta:disabled"} {
		if !strings.Contains(changes, w) {
			t.Errorf("OnChange never got %s (got %s)", w, changes)
		}
	}
}

func TestApplyReconciles(t *testing.T) {
	bin := testPlugin(t, "")
	f := newFixture(t, twoBridges, Options{})
	link(t, f.dir, "alpha", bin)
	link(t, f.dir, "beta", bin)
	f.apply()
	a := f.waitFor("alpha", 5*time.Second, "running", running)
	b := f.waitFor("beta", 5*time.Second, "running", running)

	// beta's settings change: beta restarts, alpha is not touched.
	f.writeConfig(strings.Replace(twoBridges, "beta:\n    enabled: true\n    settings:\n      mode: run",
		"beta:\n    enabled: true\n    allowed_users: [\"42\"]\n    settings:\n      mode: run", 1))
	f.apply()
	b2 := f.waitFor("beta", 5*time.Second, "running", running)
	if b2.PID == b.PID {
		t.Error("beta kept its process after its config changed")
	}
	if st, _ := f.sup.Get("alpha"); st.PID != a.PID {
		t.Errorf("alpha restarted on a change to beta: pid %d → %d", a.PID, st.PID)
	}

	// alpha leaves the file: it stops and is forgotten.
	f.writeConfig("bridges:\n  beta:\n    enabled: true\n    allowed_users: [\"42\"]\n    settings:\n      mode: run\n")
	f.apply()
	if _, err := f.sup.Get("alpha"); !errors.Is(err, ErrUnknown) {
		t.Errorf("alpha still listed after removal: %v", err)
	}
	if alive(a.PID) {
		t.Error("removed bridge's process still alive")
	}
	if st, _ := f.sup.Get("beta"); st.PID != b2.PID {
		t.Error("beta touched by alpha's removal")
	}
}

func TestEventsAndLogs(t *testing.T) {
	bin := testPlugin(t, "")
	f := newFixture(t, twoBridges, Options{})
	link(t, f.dir, "alpha", bin)
	link(t, f.dir, "beta", bin)
	f.apply()
	st := f.waitFor("alpha", 5*time.Second, "reporting events", func(st Status) bool { return len(st.Events) >= 2 })
	if st.Events[0].Kind != "qr" || st.Events[0].Text != "2@testplugin-qr-code" {
		t.Errorf("first event %+v, want the qr code", st.Events[0])
	}
	if st.PlatformStatus != "connected to testplatform" {
		t.Errorf("platform status %q", st.PlatformStatus)
	}
	if st.SessionPrefix != "alpha" || st.APIVersion != "v1" {
		t.Errorf("prefix %q api %q", st.SessionPrefix, st.APIVersion)
	}
	// The identity the coordinator issued is where the plugin loaded it.
	if fi, err := os.Stat(IdentityPath(f.dir, "alpha")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("identity file: %v %v", fi, err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		log, _ := os.ReadFile(LogPath(f.dir, "alpha"))
		if strings.Contains(string(log), "testplugin running") && strings.Contains(string(log), "kind=qr") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bridge log lacks the plugin's Log and Event lines:\n%s", log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBridgeReachesGateway: a supervised bridge dials the gateway with the
// identity it was issued, a platform message becomes a turn of session
// "<prefix>:<chat>", and the agent's reply reaches the platform.
func TestBridgeReachesGateway(t *testing.T) {
	bin := testPlugin(t, "")
	gw := clienttest.New(t)
	var dir string
	f := newFixture(t, `bridges:
  alpha:
    enabled: true
    allowed_users: ["u1"]
    settings:
      deliver: hi there
`, Options{
		Issuer:         gatewayIssuer{gw: gw, dir: func() string { return dir }},
		GatewayNetwork: "unix", GatewayAddress: gw.SocketPath(),
	})
	dir = f.dir
	link(t, f.dir, "alpha", bin)
	f.apply()
	gw.WaitReceived(5*time.Second, func(r clienttest.Received) bool {
		tf, ok := r.Msg.(wire.TextFinal)
		return ok && tf.SessionID == "alpha:1" && tf.Text == "hi there"
	})
	f.waitFor("alpha", HealthInterval+3*time.Second, "connected", func(st Status) bool { return st.GatewayConnected })
	deadline := time.Now().Add(5 * time.Second)
	for {
		log, _ := os.ReadFile(LogPath(f.dir, "alpha"))
		if strings.Contains(string(log), `msg="testplugin sent" chat_id=1 text="echo: hi there"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reply never reached the platform; bridge log:\n%s", log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPrefixCollision: two bridges whose plugins claim one session prefix
// cannot both run; the second says which bridge holds the prefix.
func TestPrefixCollision(t *testing.T) {
	bin := testPlugin(t, "")
	f := newFixture(t, `bridges:
  one:
    enabled: true
    path: bin/bridge-same
  two:
    enabled: true
    path: bin/bridge-same
`, Options{})
	link(t, f.dir, "same", bin)
	f.apply()
	var failed, ran Status
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		a, _ := f.sup.Get("one")
		b, _ := f.sup.Get("two")
		if running(a) && b.State == StateFailed {
			ran, failed = a, b
			break
		}
		if running(b) && a.State == StateFailed {
			ran, failed = b, a
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if failed.Name == "" {
		t.Fatal("not exactly one of two bridges with one prefix is running")
	}
	if want := `session prefix "same" is already used by bridge ` + ran.Name; !strings.Contains(failed.LastError, want) {
		t.Errorf("last error %q lacks %q", failed.LastError, want)
	}
}

func TestRoutes(t *testing.T) {
	bin := testPlugin(t, "")
	f := newFixture(t, twoBridges, Options{})
	link(t, f.dir, "alpha", bin)
	link(t, f.dir, "beta", bin)
	f.apply()
	f.waitFor("alpha", 5*time.Second, "running", running)
	mux := http.NewServeMux()
	for _, r := range Routes(f.sup) {
		mux.Handle(r.Pattern, r.Guarded())
	}
	admin := &auth.Identity{ClientID: "test", Capabilities: []string{auth.CapAdmin}}
	do := func(method, path string) (int, map[string]any) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(method, path, nil)
		mux.ServeHTTP(rec, req.WithContext(auth.WithIdentity(req.Context(), admin)))
		var body map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("%s %s: not JSON: %s", method, path, rec.Body)
		}
		return rec.Code, body
	}
	code, body := do("GET", "/api/bridges")
	if code != 200 || len(body["bridges"].([]any)) != 2 {
		t.Errorf("list: %d %v", code, body)
	}
	code, body = do("POST", "/api/bridges/nope/enable")
	if code != 404 || body["error"].(map[string]any)["code"] != "unknown_bridge" {
		t.Errorf("unknown: %d %v", code, body)
	}
	code, body = do("POST", "/api/bridges/beta/disable")
	if code != 200 || body["state"] != "stopped" || body["enabled"] != false {
		t.Errorf("disable: %d %v", code, body)
	}
	code, body = do("POST", "/api/bridges/beta/restart")
	if code != 409 {
		t.Errorf("restart disabled: %d %v", code, body)
	}
	code, body = do("POST", "/api/bridges/alpha/restart")
	if code != 200 || body["restarts"] != float64(1) {
		t.Errorf("restart: %d %v", code, body)
	}
}

// BenchmarkRestartAfterKill measures SIGKILL of a bridge to the bridge
// running again: crash detected, backoff.Initial waited, process relaunched,
// handshake, Info, identity, Configure, Start and Health done. Each round
// starts from a fresh Restart, so every kill is a first crash.
func BenchmarkRestartAfterKill(b *testing.B) {
	bin := testPlugin(b, "")
	f := newFixture(b, "bridges:\n  alpha:\n    enabled: true\n", Options{})
	link(b, f.dir, "alpha", bin)
	f.apply()
	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		if err := f.sup.Restart("alpha"); err != nil {
			b.Fatal(err)
		}
		st := f.waitFor("alpha", 5*time.Second, "running", running)
		b.StartTimer()
		start := time.Now()
		syscall.Kill(st.PID, syscall.SIGKILL)
		f.waitFor("alpha", 5*time.Second, "running again", func(n Status) bool { return running(n) && n.PID != st.PID })
		total += time.Since(start)
	}
	ms := float64(total.Microseconds()) / float64(b.N) / 1000
	b.ReportMetric(ms, "ms/restart")
	b.ReportMetric(ms-float64(backoff.Initial.Milliseconds()), "ms/restart-minus-backoff")
}

// A platform state (bridge.StateReporter) is the bridge's state, with the
// reason as its last error and an open alert, and nothing relaunches the
// process; enabling relaunches it, and the platform reporting running
// ends the state and the alert.
func TestPlatformStateIsTheBridgeState(t *testing.T) {
	bin := testPlugin(t, "")
	const cfg = `bridges:
  st:
    enabled: true
    settings:
      mode: state
      state: %s
      reason: %s
`
	alerts := alert.New(alert.Options{Push: func(context.Context, string, string, []wire.Attachment) error { return nil }})
	f := newFixture(t, fmt.Sprintf(cfg, "failed", "the token was refused"), Options{Alerts: alerts})
	link(t, f.dir, "st", bin)
	f.apply()
	st := f.waitFor("st", 20*time.Second, "failed with the reason", func(st Status) bool {
		return st.State == StateFailed && st.LastError == "the token was refused"
	})
	if st.PlatformStatus != "failed: the token was refused" || !slices.Contains(alerts.Open(), "bridge:st") || !alive(st.PID) {
		t.Fatalf("status %+v, open alerts %v: want the platform status, an open alert and the process alive", st, alerts.Open())
	}
	// Health (every 2 s) says failed too: the supervisor neither kills nor
	// relaunches the process for it.
	time.Sleep(2 * HealthInterval)
	if st2, _ := f.sup.Get("st"); st2.PID != st.PID || st2.Restarts != 0 || st2.State != StateFailed {
		t.Fatalf("after two health checks: %+v, want the same process, still failed", st2)
	}

	// needs_login, then enabled again: a new process.
	f.writeConfig(fmt.Sprintf(cfg, "needs_login", "scan the code"))
	f.apply()
	st = f.waitFor("st", 20*time.Second, "needs_login", func(st Status) bool {
		return st.State == StateNeedsLogin && st.LastError == "scan the code" && st.PID > 0
	})
	if err := f.sup.Enable("st"); err != nil {
		t.Fatal(err)
	}
	f.waitFor("st", 20*time.Second, "relaunched by enable", func(s Status) bool {
		return s.State == StateNeedsLogin && s.PID != st.PID && s.PID > 0
	})
	if !slices.Contains(alerts.Open(), "bridge:st") {
		t.Errorf("the alert ended while the bridge still needs a login: %v", alerts.Open())
	}

	// The platform connects: running, no last error, the alert ended.
	f.writeConfig(fmt.Sprintf(cfg, "running", "connected"))
	f.apply()
	f.waitFor("st", 20*time.Second, "running again", func(s Status) bool {
		return s.State == StateRunning && s.PlatformStatus == "connected" && s.LastError == ""
	})
	if slices.Contains(alerts.Open(), "bridge:st") {
		t.Errorf("alert still open once the platform is running: %v", alerts.Open())
	}
}

// A platform state whose event was lost on the way (a full host queue)
// still becomes the bridge's state: two health checks in a row report it.
func TestPlatformStateFromHealthAlone(t *testing.T) {
	bin := testPlugin(t, "")
	f := newFixture(t, `bridges:
  st:
    enabled: true
    settings:
      mode: state
      state: failed
      reason: the token was refused
      lose_event: "true"
`, Options{})
	link(t, f.dir, "st", bin)
	f.apply()
	st := f.waitFor("st", 20*time.Second, "failed from the health checks", func(st Status) bool {
		return st.State == StateFailed && st.LastError == "the token was refused"
	})
	if st.Restarts != 0 || !alive(st.PID) {
		t.Fatalf("status %+v: want the first process, alive", st)
	}
}

// A hot reload that read the file before Enable wrote it (it reaches
// Apply late, after the config's other subscribers) does not stop the
// bridge Enable started: the file as it is when the reload applies wins.
func TestStaleReloadDoesNotUndoEnable(t *testing.T) {
	bin := testPlugin(t, "")
	const cfg = "bridges:\n  a:\n    enabled: %v\n"
	f := newFixture(t, fmt.Sprintf(cfg, false), Options{})
	link(t, f.dir, "a", bin)
	f.apply()
	stale, err := config.Load(f.cfgPath) // read while a is disabled
	if err != nil {
		t.Fatal(err)
	}
	if err := f.sup.Enable("a"); err != nil {
		t.Fatal(err)
	}
	st := f.waitFor("a", 20*time.Second, "running", func(s Status) bool { return s.State == StateRunning })
	f.sup.Apply(stale)
	if st2, _ := f.sup.Get("a"); !st2.Enabled || st2.PID != st.PID || st2.State != StateRunning {
		t.Fatalf("after the stale reload: %+v, want the same process, enabled and running", st2)
	}
	// A reload of the file as the operator changed it still applies.
	f.writeConfig(fmt.Sprintf(cfg, false))
	f.apply()
	f.waitFor("a", 20*time.Second, "stopped by the edited file", func(s Status) bool { return !s.Enabled && s.State == StateStopped })
}
