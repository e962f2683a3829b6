package integration

// The real bridge-whatsapp binary under agentd's real supervisor, in its
// test-only build (-tags whatsappfake): whatsmeow is replaced by the
// whatsapptest fake, driven through files in bridges/whatsapp/fake, which
// emits the real events.* values whatsmeow would. No fake of WhatsApp's
// protocol exists; everything from the plugin handshake to the gateway,
// the send queue and the alerts is the real thing.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/agentd/agentd/plugins/bridge/whatsapp/whatsapptest"
)

const (
	waAlice  = "391234567" // the WhatsApp user the tests allow
	waBotLID = "200000000000001"
	waGroup  = "120363000000000001"
)

// whatsappFakeBinary builds bridge-whatsapp with the fake client once.
func whatsappFakeBinary(tb testing.TB) string {
	tb.Helper()
	pluginMu.Lock()
	defer pluginMu.Unlock()
	out := filepath.Join(binDir, "testplugins", "whatsappfake", "bridge-whatsapp")
	if _, err := os.Stat(out); err == nil {
		return out
	}
	cmd := exec.Command("go", "build", "-tags", "whatsappfake", "-o", out, "./cmd/bridge-whatsapp")
	cmd.Dir = repoRoot()
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build bridge-whatsapp (whatsappfake): %v\n%s", err, b)
	}
	return out
}

// waEnv is a bridgeEnv with the WhatsApp bridge beside Telegram.
type waEnv struct {
	*bridgeEnv
	fake string // bridges/whatsapp/fake
	seq  atomic.Int64
}

func newWAEnv(tb testing.TB, linked bool) *waEnv {
	tb.Helper()
	return newWAEnvAllowing(tb, linked, fmt.Sprint(aliceID), "+"+waAlice)
}

// newWAEnvAllowing is newWAEnv with Telegram's and WhatsApp's one allowed
// user ("*" for everyone).
func newWAEnvAllowing(tb testing.TB, linked bool, tgAllowed, waAllowed string) *waEnv {
	tb.Helper()
	return newWAEnvEditing(tb, linked, tgAllowed, waAllowed, nil)
}

// newWAEnvEditing is newWAEnvAllowing with edit applied to the agent
// directory before agentd starts (nil: none).
func newWAEnvEditing(tb testing.TB, linked bool, tgAllowed, waAllowed string, edit func(dir string)) *waEnv {
	tb.Helper()
	var fake string
	e := newBridgeEnvEditing(tb, tgAllowed, whatsappYAML(tb, waAllowed), func(dir string) {
		fake = whatsappFake(tb, dir, linked)
		replaceInConfig(tb, dir, "\nalerts:\n  deliver_to: []\n  after: 60s\n", alertsYAML("60s", fmt.Sprintf("tg:%d", aliceID)))
		if edit != nil {
			edit(dir)
		}
	})
	return &waEnv{bridgeEnv: e, fake: fake}
}

// whatsappYAML is a bridges.whatsapp section running the fake build.
func whatsappYAML(tb testing.TB, allowed string) string {
	return fmt.Sprintf(`  whatsapp:
    enabled: true
    path: %q
    allowed_users: ["%s"]
    settings:
      max_age: 10m
`, whatsappFakeBinary(tb), allowed)
}

// whatsappFake prepares the fake's directory in agent directory dir
// (linked: a session as if logged in) and returns it.
func whatsappFake(tb testing.TB, dir string, linked bool) string {
	tb.Helper()
	fake := filepath.Join(dir, "bridges", "whatsapp", "fake")
	if err := os.MkdirAll(filepath.Join(fake, "in"), 0o700); err != nil {
		tb.Fatal(err)
	}
	if linked {
		if err := os.WriteFile(filepath.Join(fake, "linked"), nil, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	return fake
}

// do hands the fake one command.
func (e *waEnv) do(c whatsapptest.Command) {
	e.tb.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		e.tb.Fatal(err)
	}
	name := filepath.Join(e.fake, "in", fmt.Sprintf("%06d.json", e.seq.Add(1)))
	if err := os.WriteFile(name+".tmp", b, 0o600); err != nil {
		e.tb.Fatal(err)
	}
	if err := os.Rename(name+".tmp", name); err != nil {
		e.tb.Fatal(err)
	}
}

// sent is every message the bridge sent, from the fake's log.
func (e *waEnv) sent() []whatsapptest.SentLine {
	f, err := os.Open(filepath.Join(e.fake, "sent.jsonl"))
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []whatsapptest.SentLine
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l whatsapptest.SentLine
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			out = append(out, l)
		}
	}
	return out
}

// echoes counts the complete echo replies of text sent to the JID to.
func (e *waEnv) echoes(to, text string) int {
	n := 0
	for _, l := range e.sent() {
		if l.To == to && strings.HasPrefix(l.Text, "echo: "+text) && strings.HasSuffix(l.Text, "real answers)") {
			n++
		}
	}
	return n
}

func (e *waEnv) waitEcho(to, text string) {
	e.tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for e.echoes(to, text) == 0 {
		if time.Now().After(deadline) {
			e.tb.Fatalf("no echo of %q to %s; sent %+v\nlog:\n%s", text, to, e.sent(), e.bridgeLog("whatsapp"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *waEnv) waitConnected() {
	e.tb.Helper()
	e.waitBridge("whatsapp", 30*time.Second, "running, connected to WhatsApp and the gateway", func(b bridgeState) bool {
		return b.State == "running" && b.GatewayConnected && strings.HasPrefix(b.PlatformStatus, "connected as +")
	})
}

func TestWhatsAppDMGroupsAndBacklogUnderSupervisor(t *testing.T) {
	e := newWAEnv(t, true)
	e.waitConnected()
	dmJID := waAlice + "@s.whatsapp.net"
	groupJID := waGroup + "@g.us"
	// A backlog message older than max_age and a group message without a
	// mention come first; then a fresh DM and a LID mention in the group.
	e.do(whatsapptest.Command{Op: "dm", ID: "OLD1", From: waAlice, Text: "a day-old question", AgeSec: 86400})
	e.do(whatsapptest.Command{Op: "group", ID: "G1", From: waAlice, Group: waGroup, Text: "chatter without mention"})
	e.do(whatsapptest.Command{Op: "dm", ID: "M1", From: waAlice, Text: "hello from whatsapp"})
	e.do(whatsapptest.Command{Op: "group", ID: "G2", From: waAlice, Group: waGroup, Text: "@" + waBotLID + " hi group",
		Mention: waBotLID + "@lid"})
	e.waitEcho(dmJID, "hello from whatsapp")
	e.waitEcho(groupJID, "hi group")
	for _, l := range e.sent() {
		if strings.Contains(l.Text, "day-old") || strings.Contains(l.Text, "chatter") {
			t.Errorf("answered an ignored message: %+v", l)
		}
	}
	ids := e.sessions(e.owner)
	for _, want := range []string{"wa:" + waAlice, "wa:" + groupJID} {
		if !contains(ids, want) {
			t.Errorf("sessions %q lack %q", ids, want)
		}
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func TestWhatsAppLoggedOutAlertThroughTelegram(t *testing.T) {
	e := newWAEnv(t, true)
	e.waitConnected()
	before := e.bridge("whatsapp")
	e.do(whatsapptest.Command{Op: "event", Event: "logged_out"})
	var alert string
	e.tg.Wait(30*time.Second, "the logged-out alert in alice's Telegram chat", func() bool {
		for _, m := range e.tg.Messages(aliceID) {
			if strings.Contains(m.Text, "logged out") && strings.Contains(m.Text, "agentd bridge login") {
				alert = m.Text
				return true
			}
		}
		return false
	})
	if !strings.Contains(alert, "agentd bridge login "+e.dir+" whatsapp") || !strings.HasPrefix(alert, "WhatsApp needs a login since ") {
		t.Errorf("alert %q: want \"WhatsApp needs a login since …\" with the login command for this directory", alert)
	}
	// One state, needs_login, with one reason, on every surface.
	b := e.waitBridge("whatsapp", 10*time.Second, "needs_login with the reason", func(b bridgeState) bool {
		return b.State == "needs_login" && strings.HasPrefix(b.LastError, "WhatsApp was logged out (")
	})
	reason := b.LastError
	if b.PlatformStatus != "needs_login: "+reason || !strings.Contains(reason, "agentd bridge login "+e.dir+" whatsapp") {
		t.Errorf("platform status %q, last error %q: want needs_login: <the reason with the login command>", b.PlatformStatus, reason)
	}
	if b.PID != before.PID || b.Restarts != before.Restarts {
		t.Errorf("the bridge was restarted after a logout (pid %d→%d): it must wait for a login", before.PID, b.PID)
	}
	var one bridgeState
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.owner.GetJSON(ctx, "/api/bridges/whatsapp", &one); err != nil || one.State != "needs_login" || one.LastError != reason {
		t.Errorf("GET /api/bridges/whatsapp: %v, state %q, last error %q", err, one.State, one.LastError)
	}
	list := e.cli("bridge", "list", e.dir)
	if row := lineWith(list, "whatsapp"); !strings.Contains(row, "needs_login") || strings.Count(row, reason) != 1 {
		t.Errorf("bridge list row %q: want needs_login and the reason once\n%s", row, list)
	}
	status := e.cli("status", e.dir)
	if row := lineWith(status, "bridge whatsapp"); !strings.Contains(row, "needs_login") || strings.Count(row, reason) != 1 {
		t.Errorf("status row %q: want needs_login and the reason once\n%s", row, status)
	}
	// `agentd bridge login` works from there: a new round, linked, running.
	out, _, done := loginCmd(t, nil, "bridge", "login", e.dir, "whatsapp")
	e.waitRestarted(before.PID)
	e.do(whatsapptest.Command{Op: "qr", Text: "2@after-logout"})
	waitOut(t, out, "QR code 1:", 1)
	e.do(whatsapptest.Command{Op: "link"})
	waitDone(t, done, out, "linked as +15550001111")
	e.waitConnected()
	if b := e.bridge("whatsapp"); b.LastError != "" {
		t.Errorf("last error %q once linked again", b.LastError)
	}
}

func TestWhatsAppQRRoundsVisibleInAPI(t *testing.T) {
	e := newWAEnv(t, false)
	e.waitNeedsLogin()
	e.do(whatsapptest.Command{Op: "qr", Text: "2@first-code"})
	e.do(whatsapptest.Command{Op: "qr", Text: "2@second-code"})
	e.waitBridge("whatsapp", 10*time.Second, "both QR payloads in the events", func(b bridgeState) bool {
		var n int
		for _, ev := range b.Events {
			if ev.Kind == "qr" && (ev.Text == "2@first-code" || ev.Text == "2@second-code") {
				n++
			}
		}
		return n == 2
	})
	var raw struct {
		PlatformStatus string `json:"platform_status"`
		LoginQR        string `json:"login_qr"`
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.owner.GetJSON(ctx, "/api/bridges/whatsapp", &raw); err != nil {
		t.Fatal(err)
	}
	if raw.LoginQR != "2@second-code" || !strings.HasPrefix(raw.PlatformStatus, "needs_login") {
		t.Errorf("GET /api/bridges/whatsapp: status %q, login_qr %q; want needs_login and the current code", raw.PlatformStatus, raw.LoginQR)
	}
	e.do(whatsapptest.Command{Op: "qr_timeout"})
	e.waitBridge("whatsapp", 10*time.Second, "the expiry said", func(b bridgeState) bool {
		return strings.Contains(b.PlatformStatus, "QR codes expired")
	})
	raw.LoginQR = "" // absent from the answer when cleared
	if err := e.owner.GetJSON(ctx, "/api/bridges/whatsapp", &raw); err != nil {
		t.Fatal(err)
	}
	if raw.LoginQR != "" {
		t.Errorf("login_qr %q after the codes expired", raw.LoginQR)
	}
}

func TestWhatsAppKillMidReplyDeliveredOnce(t *testing.T) {
	e := newWAEnv(t, true)
	e.waitConnected()
	before := e.bridge("whatsapp")
	e.do(whatsapptest.Command{Op: "slow_sends", DelayMS: 60000})
	e.do(whatsapptest.Command{Op: "dm", ID: "K1", From: waAlice, Text: "killed mid reply"})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(filepath.Join(e.fake, "sending.log")); err == nil && len(b) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reply's send never started\n%s", e.bridgeLog("whatsapp"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e.waitConnected()
	e.waitBridge("whatsapp", 10*time.Second, "restarted", func(b bridgeState) bool { return b.PID != before.PID })
	e.waitEcho(waAlice+"@s.whatsapp.net", "killed mid reply")
	// A second copy (a re-run turn, a resent reply) would be out by now.
	time.Sleep(time.Second)
	if n := e.echoes(waAlice+"@s.whatsapp.net", "killed mid reply"); n != 1 {
		t.Errorf("%d replies, want 1: %+v", n, e.sent())
	}
}

// waitNeedsLogin waits for the whatsapp bridge to run, unlinked.
func (e *waEnv) waitNeedsLogin() bridgeState {
	e.tb.Helper()
	return e.waitBridge("whatsapp", 30*time.Second, "needs_login", func(b bridgeState) bool {
		return b.State == "needs_login" && strings.HasPrefix(b.PlatformStatus, "needs_login")
	})
}

// waitRestarted waits for the whatsapp bridge to run as a pid other than old.
func (e *waEnv) waitRestarted(old int) bridgeState {
	e.tb.Helper()
	return e.waitBridge("whatsapp", 30*time.Second, "relaunched for a login round", func(b bridgeState) bool {
		return b.State == "needs_login" && b.PID != old && b.PID != 0 && strings.HasPrefix(b.PlatformStatus, "needs_login")
	})
}

// `agentd bridge login DIR whatsapp`: QR codes shown in the terminal as
// they come, a timeout and a new round on Enter, then "linked as +…".
func TestWhatsAppLoginCLIQRRounds(t *testing.T) {
	e := newWAEnv(t, false)
	loginQRRounds(t, e, nil, "bridge", "login", e.dir, "whatsapp")
}

// loginCmd starts agentd with args (and env) as an operator in a terminal
// would, its output collected; it is killed at cleanup if still running.
func loginCmd(t *testing.T, env []string, args ...string) (out *syncBuffer, stdin io.Writer, done chan error) {
	t.Helper()
	cmd := exec.Command(agentdBin(), args...)
	cmd.Env = append(os.Environ(), env...)
	out = &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := make(chan error, 1)
	go func() { ch <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-ch })
	return out, in, ch
}

// waitOut waits for what in a command's output.
func waitOut(t *testing.T, out *syncBuffer, what string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(out.String(), what) < n {
		if time.Now().After(deadline) {
			t.Fatalf("no %q (×%d) in the login output:\n%s", what, n, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitDone waits for a login command to exit 0 and checks its last word.
func waitDone(t *testing.T, done chan error, out *syncBuffer, last string) {
	t.Helper()
	select {
	case err := <-done:
		done <- err // for loginCmd's cleanup
		if err != nil {
			t.Fatalf("login: %v\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("login did not end:\n%s", out.String())
	}
	if !strings.HasSuffix(strings.TrimSpace(out.String()), last) {
		t.Errorf("output does not end with %q:\n%s", last, out.String())
	}
}

// loginQRRounds runs a login command (args, env) against e's unlinked
// bridge: two QR codes drawn, their expiry said, a new round on Enter, a
// code of that round, then the link.
func loginQRRounds(t *testing.T, e *waEnv, env []string, args ...string) {
	t.Helper()
	first := e.waitNeedsLogin()
	out, stdin, done := loginCmd(t, env, args...)
	second := e.waitRestarted(first.PID)
	e.do(whatsapptest.Command{Op: "qr", Text: "2@round-one-a"})
	e.do(whatsapptest.Command{Op: "qr", Text: "2@round-one-b"})
	waitOut(t, out, "QR code 2:", 1)
	e.do(whatsapptest.Command{Op: "qr_timeout"})
	waitOut(t, out, "The QR codes expired.", 1)
	waitOut(t, out, "Press Enter for a new round", 1)
	if _, err := stdin.Write([]byte("\n")); err != nil {
		t.Fatal(err)
	}
	e.waitRestarted(second.PID)
	e.do(whatsapptest.Command{Op: "qr", Text: "2@round-two"})
	waitOut(t, out, "QR code 1:", 2)
	e.do(whatsapptest.Command{Op: "link"})
	waitDone(t, done, out, "linked as +15550001111")
	if strings.Count(out.String(), "█") == 0 && strings.Count(out.String(), "▀") == 0 {
		t.Errorf("no QR code drawn:\n%s", out.String())
	}
	e.waitConnected()
}

// --phone: a pair code instead of QR codes, for that launch only.
func TestWhatsAppLoginCLIPairCode(t *testing.T) {
	e := newWAEnv(t, false)
	loginPairCode(t, e, nil, "bridge", "login", e.dir, "whatsapp", "--phone", "+1 555 000 1111")
	bad := exec.Command(agentdBin(), "bridge", "login", e.dir, "whatsapp", "--phone", "call me")
	if b, err := bad.CombinedOutput(); err == nil || !strings.Contains(string(b), "international number") {
		t.Errorf("bad phone: %v %s", err, b)
	}
}

// loginPairCode runs a pair-code login command (args with --phone, env)
// against e's unlinked bridge: the code printed, then the link.
func loginPairCode(t *testing.T, e *waEnv, env []string, args ...string) {
	t.Helper()
	first := e.waitNeedsLogin()
	out, _, done := loginCmd(t, env, args...)
	e.waitRestarted(first.PID)
	waitOut(t, out, "pair code ABCD-1234", 1)
	e.do(whatsapptest.Command{Op: "link"})
	waitDone(t, done, out, "linked as +15550001111")
	if strings.Contains(out.String(), "QR code") {
		t.Errorf("QR codes shown in a pair-code login:\n%s", out.String())
	}
	e.waitConnected()
}
