package integration

// WhatsApp login from another machine: devices enrolled by invitation run
// `agentd bridge login --remote …` over real iroh, or drive the login
// routes through the real `agentd proxy`, against the real daemon and
// the whatsappfake bridge under its supervisor.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/agentd/agentd/plugins/bridge/whatsapp/whatsapptest"
)

// waNeedsLoginRow is the whatsapp row of `agentd bridge list` while the
// bridge waits for a login (whatever the state column calls that).
const waNeedsLoginRow = `^whatsapp\s+\S+\s+[1-9]\d*\s+\d+\s+\S+\s+needs_login`

// notAdmin is what a chat-only device is told by an admin command.
const notAdmin = "is not an admin: enroll with an admin invitation (agentd invite DIR --role admin)"

// newWAEnvIroh is an unlinked newWAEnv whose agent devices reach over iroh.
func newWAEnvIroh(t *testing.T) (*waEnv, *irohAgent) {
	t.Helper()
	e := newWAEnvEditing(t, false, fmt.Sprint(aliceID), "+"+waAlice, func(dir string) { irohTestConfig(t, dir) })
	return e, irohAgentOf(t, e.dir, e.d)
}

// An admin device logs the bridge in over iroh (QR rounds, an expiry and
// a new round, the link); a chat-only device is refused, clearly, and
// changes nothing.
func TestWhatsAppLoginRemoteQRRounds(t *testing.T) {
	e, a := newWAEnvIroh(t)
	admin := enrollDevice(t, a.invite(t, "--role", "admin"))
	chat := enrollDevice(t, a.invite(t, "--role", "chat"))
	before := e.waitNeedsLogin()

	for _, args := range [][]string{
		{"bridge", "login", "--remote", "enrolled", "whatsapp"},
		{"bridge", "restart", "--remote", a.nodeID, "whatsapp"},
		{"bridge", "list", "--remote", "enrolled"},
	} {
		r := agentd(t, chat.env, args...)
		if r.code != 1 || !strings.Contains(r.stderr, "this device "+notAdmin) {
			t.Errorf("chat device: agentd %s: code %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	if b := e.bridge("whatsapp"); b.PID != before.PID || b.Restarts != before.Restarts {
		t.Errorf("a refused device restarted the bridge (pid %d→%d)", before.PID, b.PID)
	}
	// A DIR with --remote is a usage error: the agent is elsewhere.
	if r := agentd(t, admin.env, "bridge", "login", "--remote", "enrolled", e.dir, "whatsapp"); r.code != 2 || !strings.Contains(r.stderr, "no DIR") {
		t.Errorf("--remote with a DIR: code %d, stderr %q", r.code, r.stderr)
	}

	// A revoked device hears that its certificate is refused.
	if err := a.owner.PostJSON(context.Background(), "/api/devices/"+chat.id.ClientID()+"/revoke", nil, nil); err != nil {
		t.Fatal(err)
	}
	if r := agentd(t, chat.env, "bridge", "list", "--remote", "enrolled"); r.code != 1 || !strings.Contains(r.stderr, "refused this device's certificate") {
		t.Errorf("revoked device: bridge list --remote: code %d, stderr %q", r.code, r.stderr)
	}

	// The admin device: list by NodeId and by a ticket, restart another bridge.
	for _, target := range []string{a.nodeID, a.invite(t)} {
		r := agentd(t, admin.env, "bridge", "list", "--remote", target)
		if r.code != 0 || !regexpLine(r.stdout, waNeedsLoginRow) {
			t.Fatalf("admin: bridge list --remote %.16s…: code %d\n%s\n%s", target, r.code, r.stdout, r.stderr)
		}
	}
	tg := e.bridge("telegram")
	r := agentd(t, admin.env, "bridge", "restart", "--remote", "enrolled", "telegram")
	if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf("bridge telegram: restarted; running as pid %d (was pid %d)", e.bridge("telegram").PID, tg.PID)) {
		t.Errorf("admin: bridge restart --remote: code %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	loginQRRounds(t, e, admin.env, "bridge", "login", "--remote", a.nodeID, "whatsapp")
}

// Pair-code login over iroh with --phone.
func TestWhatsAppLoginRemotePairCode(t *testing.T) {
	e, a := newWAEnvIroh(t)
	admin := enrollDevice(t, a.invite(t, "--role", "admin"))
	loginPairCode(t, e, admin.env, "bridge", "login", "--remote", "enrolled", "whatsapp", "--phone", "+1 555 000 1111")
}

// The login routes through `agentd proxy` with curl: an admin proxy starts
// a round and reads the QR payload from the bridge's events, the web app's
// bridges page draws that code, a chat-only proxy is refused; then
// `agentd bridge login --proxy` finishes a pair-code login.
func TestWhatsAppLoginThroughProxy(t *testing.T) {
	e, a := newWAEnvIroh(t)
	admin := enrollDevice(t, a.invite(t, "--role", "admin"))
	chat := enrollDevice(t, a.invite(t, "--role", "chat"))
	base, cbase := startProxy(t, admin), startProxy(t, chat)
	first := e.waitNeedsLogin()

	// The chat-only proxy's device may neither start a login nor read it.
	for _, req := range [][]string{
		{"-X", "POST", "-H", "Content-Type: application/json", "-d", `{"phone":""}`, cbase + "/api/bridges/whatsapp/login"},
		{cbase + "/api/bridges/whatsapp"},
	} {
		if code, body := curl(t, req...); code != 403 || !strings.Contains(body, `"forbidden"`) {
			t.Errorf("chat proxy: curl %v: %d %s", req, code, body)
		}
	}
	if b := e.bridge("whatsapp"); b.PID != first.PID {
		t.Fatalf("a chat-only proxy restarted the bridge (pid %d→%d)", first.PID, b.PID)
	}
	r := agentd(t, nil, "bridge", "login", "--proxy", cbase, "whatsapp")
	if r.code != 1 || !strings.Contains(r.stderr, "the proxy's device "+notAdmin) {
		t.Errorf("bridge login --proxy (chat): code %d, stderr %q", r.code, r.stderr)
	}
	if r := agentd(t, nil, "bridge", "list", "--proxy", base); r.code != 0 || !regexpLine(r.stdout, waNeedsLoginRow) {
		t.Errorf("bridge list --proxy (admin): code %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, bad := range []struct{ args, want string }{
		{"--proxy http://192.0.2.1:8765", "not a loopback address"},
		{"--proxy https://127.0.0.1:8765", "want the URL agentd proxy printed"},
		{"--proxy " + base + " --remote enrolled", "give one"},
	} {
		r := agentd(t, nil, append([]string{"bridge", "list"}, strings.Fields(bad.args)...)...)
		if r.code != 2 || !strings.Contains(r.stderr, bad.want) {
			t.Errorf("bridge list %s: code %d, stderr %q; want usage error %q", bad.args, r.code, r.stderr, bad.want)
		}
	}

	// Admin: POST …/login answers with the relaunched bridge.
	code, body := curl(t, "-X", "POST", "-H", "Content-Type: application/json", "-d", `{"phone":""}`, base+"/api/bridges/whatsapp/login")
	var st bridgeState
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || st.PID == first.PID || st.PID == 0 {
		t.Fatalf("admin proxy: POST login: %d %s", code, body)
	}
	e.waitRestarted(first.PID)
	e.do(whatsapptest.Command{Op: "qr", Text: "2@through-the-proxy"})
	var got struct {
		bridgeState
		LoginQR string `json:"login_qr"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for got.LoginQR == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no login_qr through the proxy; last %d %s", code, body)
		}
		code, body = curl(t, base+"/api/bridges/whatsapp")
		if code != 200 || json.Unmarshal([]byte(body), &got) != nil {
			t.Fatalf("admin proxy: GET bridge: %d %s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	qrEvent := false
	for _, ev := range got.Events {
		qrEvent = qrEvent || (ev.Kind == "qr" && ev.Text == "2@through-the-proxy")
	}
	if got.LoginQR != "2@through-the-proxy" || !qrEvent || !strings.HasPrefix(got.PlatformStatus, "needs_login") {
		t.Fatalf("GET /api/bridges/whatsapp through the proxy: login_qr %q, qr event %v, status %q", got.LoginQR, qrEvent, got.PlatformStatus)
	}

	// The web app's bridges page, through the same proxy, draws that code:
	// its pixels are those of the payload's code, not of another one.
	ctx := browser(t)
	run(t, ctx, "bridges page", chromedp.Navigate(base+"/#/bridges"), chromedp.WaitVisible(chromedp.CSS(`section[aria-label="Log in whatsapp"] img`)))
	same := eval[string](t, ctx, `(async () => {
		const pixels = async src => {
			const im = new Image(); im.src = src; await im.decode();
			const c = document.createElement('canvas'); c.width = im.naturalWidth; c.height = im.naturalHeight;
			const g = c.getContext('2d'); g.drawImage(im, 0, 0);
			return c.width + 'x' + c.height + ':' + g.getImageData(0, 0, c.width, c.height).data.join(',');
		};
		const code = async text => {
			const res = await fetch('/api/qr', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({text})});
			return pixels(URL.createObjectURL(await res.blob()));
		};
		const shown = await pixels(document.querySelector('section[aria-label="Log in whatsapp"] img').src);
		return (shown === await code('2@through-the-proxy')) + ' ' + (shown === await code('2@another-code'));
	})()`, chromedp.EvalAwaitPromise)
	if same != "true false" {
		t.Fatalf("the bridges page does not draw the bridge's QR code (same as its payload's, same as another's: %s)", same)
	}
	screenshot(t, ctx, "bridges-login-qr")

	// The CLI through the proxy: a pair-code login to the link.
	loginPairCode(t, e, nil, "bridge", "login", "--proxy", base, "whatsapp", "--phone", "+1 555 000 1111")
}
