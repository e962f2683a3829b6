package integration

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-telegram/bot/models"

	"github.com/agentd/agentd/client"
	"github.com/agentd/agentd/devicecert"
	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/plugins/bridge"
	"github.com/agentd/agentd/plugins/bridge/telegram/telegramtest"
)

// pairingCodeRe matches the code message as the chat shows it (Telegram
// renders the backticks as code).
var pairingCodeRe = regexp.MustCompile("^To talk to this agent, ask its owner to approve code ([2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4})$")

// pairingCodes are the codes the bot showed user id in its chat, in order.
func (e *bridgeEnv) pairingCodes(id int64) []string {
	var out []string
	for _, m := range e.tg.Messages(id) {
		if c := pairingCodeRe.FindStringSubmatch(m.Text); c != nil {
			out = append(out, c[1])
		}
	}
	return out
}

// say sends text from u in its private chat and waits until the bridge
// confirmed the update (it was handled: delivered, refused or answered).
func (e *bridgeEnv) say(u models.User, text string) {
	e.tb.Helper()
	e.tg.Text(telegramtest.PrivateChat(u), u, text)
	e.tg.Wait(15*time.Second, "the update of "+text+" confirmed", func() bool { return len(e.tg.Unconfirmed()) == 0 })
}

// nthText is the n-th bot message in chat id (waiting for it).
func (e *bridgeEnv) nthText(id int64, n int) string {
	e.tb.Helper()
	e.tg.Wait(15*time.Second, fmt.Sprintf("%d bot messages to %d", n, id), func() bool { return len(e.tg.Messages(id)) >= n })
	return e.tg.Messages(id)[n-1].Text
}

// TestPairing: strangers in direct chats get a code from agentd through
// the real Telegram bridge under the real supervisor; the owner approves,
// denies and revokes with the CLI; approvals reach the running bridge at
// once; the cap, expiry, capability and alert rules hold.
func TestPairing(t *testing.T) {
	var phone *client.Dialer
	e := newBridgeEnvEditing(t, fmt.Sprint(aliceID), "", func(dir string) {
		replaceInConfig(t, dir, "\nalerts:\n  deliver_to: []\n  after: 60s\n", alertsYAML("60s", fmt.Sprintf("tg:%d", aliceID)))
		phone = issueDevice(t, dir, "phone", auth.CapChat)
	})
	events := watchEvents(ownerWS(t, e.dir))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bob := telegramtest.User(2001, "Bob")
	var code string

	t.Run("stranger gets one code, the same on repeats, the agent sees nothing", func(t *testing.T) {
		e.say(bob, "hello?")
		first := e.nthText(2001, 1)
		codes := e.pairingCodes(2001)
		if len(codes) != 1 || !strings.Contains(e.tg.Messages(2001)[0].Raw, "<code>"+codes[0]+"</code>") {
			t.Fatalf("bob's chat %q, want one pairing code message", first)
		}
		code = codes[0]
		e.say(bob, "hello again?")
		e.nthText(2001, 2)
		if codes := e.pairingCodes(2001); len(codes) != 2 || codes[1] != code {
			t.Fatalf("codes shown %v, want %s twice", codes, code)
		}
		if ids := e.sessions(e.owner); slices.Contains(ids, "tg:2001") {
			t.Errorf("the stranger's message reached the agent: sessions %v", ids)
		}
		events.waitFor(t, "pairing", "requested", code)
		// The operator alert reaches alerts.deliver_to (alice's chat).
		alert := e.chatHas(t, aliceID, "the pairing alert", func(m telegramtest.Msg) bool { return strings.Contains(m.Text, code) })
		if !strings.HasPrefix(alert.Text, "Bob @bob (telegram 2001) asks to talk to the agent") || !strings.Contains(alert.Text, "agentd pairing approve") {
			t.Errorf("alert %q", alert.Text)
		}
		r := agentd(t, nil, "pairing", "list", e.dir)
		if r.code != 0 || !regexpLine(r.stdout, `^telegram\s+2001\s+Bob @bob\s+`+code+`\s+pending\s+\d+s$`) {
			t.Errorf("pairing list: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("only an admin certificate decides", func(t *testing.T) {
		path := "/api/pairing/" + code + "/approve"
		if err := phone.PostJSON(ctx, path, nil, nil); !client.IsStatus(err, 403) {
			t.Errorf("chat certificate POST %s: %v, want 403", path, err)
		}
		bid, err := devicecert.LoadIdentity(filepath.Join(e.dir, "keys", "bridge-telegram.identity"))
		if err != nil {
			t.Fatal(err)
		}
		bd := client.Unix(filepath.Join(e.dir, "agentd.sock"), bid)
		defer bd.CloseIdle()
		if err := bd.PostJSON(ctx, path, nil, nil); !client.IsStatus(err, 403) {
			t.Errorf("bridge certificate POST %s: %v, want 403", path, err)
		}
		if err := phone.GetJSON(ctx, "/api/pairing", nil); !client.IsStatus(err, 403) {
			t.Errorf("chat certificate GET /api/pairing: %v, want 403", err)
		}
	})

	t.Run("approve via CLI: welcomed, allowed at once, answered", func(t *testing.T) {
		pid := e.bridge("telegram").PID
		r := agentd(t, nil, "pairing", "approve", e.dir, strings.ToLower(code))
		if r.code != 0 || !strings.Contains(r.stdout, "Bob @bob (2001) approved on telegram") {
			t.Fatalf("approve: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		events.waitFor(t, "pairing", "approved", code)
		if got := e.nthText(2001, 3); got != bridge.PairingWelcome {
			t.Errorf("after approval bob got %q, want %q", got, bridge.PairingWelcome)
		}
		b := e.bridge("telegram")
		if b.PID != pid {
			t.Errorf("bridge restarted (pid %d → %d); the approval must apply to the running one", pid, b.PID)
		}
		var st struct {
			AllowedUsers  []string `json:"allowed_users"`
			ApprovedUsers []string `json:"approved_users"`
		}
		if err := e.owner.GetJSON(ctx, "/api/bridges/telegram", &st); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(st.AllowedUsers, []string{fmt.Sprint(aliceID), "2001"}) || !slices.Equal(st.ApprovedUsers, []string{"2001"}) {
			t.Errorf("GET /api/bridges/telegram allowed %v approved %v", st.AllowedUsers, st.ApprovedUsers)
		}
		if r := agentd(t, nil, "bridge", "list", e.dir); !strings.Contains(r.stdout, "1001,2001") {
			t.Errorf("bridge list does not show the approved user:\n%s", r.stdout)
		}
		e.say(bob, "am I in?")
		e.tg.Wait(15*time.Second, "the agent's answer to bob", func() bool {
			return slices.ContainsFunc(e.tg.Messages(2001), func(m telegramtest.Msg) bool { return isEchoOf(m, "am I in?") })
		})
		if r := agentd(t, nil, "pairing", "approve", e.dir, code); r.code == 0 || !strings.Contains(r.stderr, "no pairing request has this code") {
			t.Errorf("approving twice: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("revoke: refused again", func(t *testing.T) {
		r := agentd(t, nil, "pairing", "revoke", e.dir, "telegram", "2001")
		if r.code != 0 {
			t.Fatalf("revoke: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		n := len(e.tg.Messages(2001))
		e.say(bob, "still there?")
		got := e.nthText(2001, n+1)
		if !pairingCodeRe.MatchString(got) {
			t.Errorf("after revoke bob got %q, want a new pairing code", got)
		}
		if c := pairingCodeRe.FindStringSubmatch(got); c != nil && c[1] == code {
			t.Errorf("the approved code %s was shown again", code)
		}
		if slices.ContainsFunc(e.tg.Messages(2001), func(m telegramtest.Msg) bool { return isEchoOf(m, "still there?") }) {
			t.Error("a revoked user was answered by the agent")
		}
		if r := agentd(t, nil, "pairing", "revoke", e.dir, "telegram", "2001"); r.code == 0 || !strings.Contains(r.stderr, "not approved") {
			t.Errorf("revoking twice: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("a stranger in a group never starts a pairing", func(t *testing.T) {
		grace := telegramtest.User(2006, "Grace")
		group := telegramtest.GroupChat(-100777, "friends")
		e.tg.Text(group, grace, "@agentd_test_bot let me in")
		got := e.chatHas(t, -100777, "the refusal in the group", func(m telegramtest.Msg) bool { return true })
		if got.Text != fmt.Sprintf(bridge.Refusal, "2006") {
			t.Errorf("group stranger got %q", got.Text)
		}
		var list struct {
			Requests []struct {
				UserID string `json:"user_id"`
			} `json:"requests"`
		}
		if err := e.owner.GetJSON(ctx, "/api/pairing", &list); err != nil {
			t.Fatal(err)
		}
		if len(list.Requests) != 1 || list.Requests[0].UserID != "2001" {
			t.Errorf("pairing requests %+v, want only bob's", list.Requests)
		}
	})

	carol, dave, erin := telegramtest.User(2002, "Carol"), telegramtest.User(2003, "Dave"), telegramtest.User(2004, "Erin")
	t.Run("4th pending request: try later", func(t *testing.T) {
		for _, u := range []models.User{carol, dave, erin} {
			e.say(u, "hi")
			e.nthText(u.ID, 1)
		}
		if got := e.nthText(2004, 1); got != bridge.PairingFullText {
			t.Errorf("4th stranger got %q, want %q", got, bridge.PairingFullText)
		}
	})

	t.Run("deny: refused politely", func(t *testing.T) {
		carolCode := e.pairingCodes(2002)
		if len(carolCode) != 1 {
			t.Fatalf("carol's codes %v", carolCode)
		}
		r := agentd(t, nil, "pairing", "deny", e.dir, carolCode[0])
		if r.code != 0 || !strings.Contains(r.stdout, "Carol @carol (2002) denied") {
			t.Fatalf("deny: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		events.waitFor(t, "pairing", "denied", carolCode[0])
		e.say(carol, "please?")
		if got := e.nthText(2002, 2); got != bridge.PairingDenied {
			t.Errorf("denied user got %q, want %q", got, bridge.PairingDenied)
		}
		if r := agentd(t, nil, "pairing", "approve", e.dir, carolCode[0]); r.code == 0 || !strings.Contains(r.stderr, "denied already") {
			t.Errorf("approving a denied code: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("expired code: clear error; after expiry a new request", func(t *testing.T) {
		// A short expiry, applied by hot reload (no bridge restart).
		logPath := filepath.Join(e.dir, "logs", "agentd.log")
		reloads := func() int { b, _ := os.ReadFile(logPath); return strings.Count(string(b), "config reloaded") }
		before := reloads()
		replaceInConfig(t, e.dir, "\npairing:\n  expiry: 1h\n", "\npairing:\n  expiry: 1s\n")
		e.tg.Wait(15*time.Second, "the config reloaded", func() bool { return reloads() > before })
		frank := telegramtest.User(2005, "Frank")
		e.say(frank, "hi") // the third pending: bob, dave, frank
		e.nthText(2005, 1)
		codes := e.pairingCodes(2005)
		if len(codes) != 1 {
			t.Fatalf("frank's codes %v (chat %+v)", codes, e.tg.Messages(2005))
		}
		type request struct {
			Code string `json:"code"`
		}
		e.tg.Wait(15*time.Second, "frank's code to expire", func() bool {
			var list struct {
				Requests []request `json:"requests"`
			}
			if err := e.owner.GetJSON(ctx, "/api/pairing", &list); err != nil {
				t.Fatal(err)
			}
			return !slices.Contains(list.Requests, request{codes[0]})
		})
		r := agentd(t, nil, "pairing", "approve", e.dir, codes[0])
		if r.code == 0 || !strings.Contains(r.stderr, "pairing code expired: "+codes[0]+" expired at") || !strings.Contains(r.stderr, "ask Frank @frank to write to the bot again") {
			t.Errorf("approving an expired code: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if err := e.owner.PostJSON(ctx, "/api/pairing/"+url.PathEscape(codes[0])+"/approve", nil, nil); !client.IsStatus(err, 410) {
			t.Errorf("REST approve of an expired code: %v, want 410", err)
		}
		// After expiry frank may ask again, and gets a new code.
		e.say(frank, "hi again")
		e.nthText(2005, 2)
		if again := e.pairingCodes(2005); len(again) != 2 || again[1] == codes[0] {
			t.Errorf("after expiry frank's codes %v, want a new second one", again)
		}
	})
}
