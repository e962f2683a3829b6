package gateway

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/provider"
	"github.com/agentd/agentd/internal/provider/providertest"
	"github.com/agentd/agentd/internal/route"
	"github.com/agentd/agentd/wire"
)

func TestHealthAndAnonymous(t *testing.T) {
	e := newEnv(t, envOpts{})
	code, body := e.do("", "GET", "/api/health", "")
	if code != 200 || len(body) != 1 || body["status"] != "ok" {
		t.Fatalf("health: %d %v", code, body)
	}
	routes := [][2]string{
		{"GET", "/api/agent-info"}, {"GET", "/api/sessions"}, {"POST", "/api/sessions/s1/pin"},
		{"POST", "/api/sessions/s1/clear"}, {"GET", "/api/nope"}, {"DELETE", "/api/health"}, {"GET", "/ws"},
	}
	for _, r := range routes {
		if code, body := e.do("", r[0], r[1], `{"model":"echo"}`); code != 401 || errorCode(body) != "unauthorized" {
			t.Errorf("anonymous %s %s: %d %v", r[0], r[1], code, body)
		}
	}
}

func TestRouting(t *testing.T) {
	e := newEnv(t, envOpts{})
	tests := []struct {
		who, method, path string
		status            int
		code              string
	}{
		{"alice", "GET", "/api/nope", 404, "not_found"},
		{"alice", "DELETE", "/api/sessions", 405, "method_not_allowed"},
		{"alice", "GET", "/api/sessions/s1/pin", 405, "method_not_allowed"},
		{"noscap", "GET", "/api/sessions", 403, "forbidden"},
		{"noscap", "GET", "/api/agent-info", 403, "forbidden"},
		{"tg", "GET", "/api/agent-info", 403, "forbidden"},
	}
	for _, tt := range tests {
		code, body := e.do(tt.who, tt.method, tt.path, "")
		if code != tt.status || errorCode(body) != tt.code {
			t.Errorf("%s %s %s: %d %v, want %d %s", tt.who, tt.method, tt.path, code, body, tt.status, tt.code)
		}
	}
	code, body := e.do("alice", "GET", "/api/agent-info", "")
	if code != 200 || body["name"] != "test-agent" || body["version"] != "test-1" || body["dir"] != e.dir {
		t.Fatalf("agent-info: %d %v", code, body)
	}
	if _, ok := body["uptime_seconds"].(float64); !ok {
		t.Fatalf("agent-info has no uptime: %v", body)
	}
}

// Mounted routes get the same capability checks and can broadcast.
func TestMountBehindCapability(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.gw.Mount(route.Route{Pattern: "POST /api/widgets", Cap: auth.CapAdmin, Handler: httpFunc(func() { e.gw.ResourceEvent("widget", "created", "w1") })})
	watcher := e.dial("bob")
	if code, _ := e.do("alice", "POST", "/api/widgets", ""); code != 403 {
		t.Fatalf("chat device on an admin route: %d", code)
	}
	if code, _ := e.do("", "POST", "/api/widgets", ""); code != 401 {
		t.Fatalf("anonymous on an admin route: %d", code)
	}
	if code, _ := e.do("admin", "POST", "/api/widgets", ""); code != 200 {
		t.Fatalf("admin: %d", code)
	}
	ev, _ := until[wire.ResourceEvent](watcher)
	if ev != (wire.ResourceEvent{Resource: "widget", Action: "created", ID: "w1"}) {
		t.Fatalf("event %#v", ev)
	}
}

func TestSessionREST(t *testing.T) {
	e := newEnv(t, envOpts{})
	alice, bob, tg := e.dial("alice"), e.dial("bob"), e.dial("tg")
	alice.send(wire.TextFinal{Text: "hello", SessionID: "a1"})
	alice.readTurn()
	bob.send(wire.TextFinal{Text: "hello", SessionID: "b1"})
	bob.readTurn()
	tg.send(wire.TextFinal{Text: "hello", SessionID: "tg:42"})
	tg.readTurn()
	for _, m := range []wire.Message{
		wire.TextFinal{Text: "mine now", SessionID: "a1"},
		wire.Interrupt{SessionID: "a1"},
		wire.Command{Name: "clear", SessionID: "a1"},
		wire.SessionOpen{SessionID: "a1"},
	} {
		bob.send(m)
		if e, ok := bob.next().(wire.Error); !ok || !strings.Contains(e.Text, "belongs to another device") {
			t.Fatalf("bob's %s on alice's session: %#v", m.Type(), e)
		}
	}

	ids := func(who string) string {
		code, body := e.do(who, "GET", "/api/sessions", "")
		if code != 200 {
			t.Fatalf("list as %s: %d %v", who, code, body)
		}
		var out []string
		for _, s := range body["sessions"].([]any) {
			out = append(out, s.(map[string]any)["id"].(string))
		}
		return strings.Join(out, ",")
	}
	for who, want := range map[string]string{"alice": "a1", "bob": "b1", "tg": "tg:42"} {
		if got := ids(who); got != want {
			t.Errorf("%s sees %q, want %q", who, got, want)
		}
	}
	if got := ids("admin"); len(strings.Split(got, ",")) != 3 {
		t.Errorf("admin sees %q", got)
	}

	pins := []struct {
		who, sid, body string
		status         int
	}{
		{"alice", "a1", `{"model":"nope"}`, 400},
		{"alice", "a1", `{}`, 400},
		{"alice", "a1", `{"model":"echo2","x":1}`, 400},
		{"alice", "a1", `not json`, 400},
		{"alice", "zz", `{"model":"echo2"}`, 404},
		{"bob", "a1", `{"model":"echo2"}`, 403},
		{"tg", "a1", `{"model":"echo2"}`, 403},
		{"alice", "a1", `{"model":"echo2"}`, 200},
	}
	for _, p := range pins {
		code, body := e.do(p.who, "POST", "/api/sessions/"+p.sid+"/pin", p.body)
		if code != p.status {
			t.Fatalf("%s pins %s with %s: %d %v, want %d", p.who, p.sid, p.body, code, body, p.status)
		}
	}
	ev, _ := until[wire.ResourceEvent](bob) // every client hears about it
	if ev != (wire.ResourceEvent{Resource: "session", Action: "pinned", ID: "a1"}) {
		t.Fatalf("event %#v", ev)
	}
	alice.send(wire.TextFinal{Text: "again", SessionID: "a1"})
	if tf := alice.readTurn(); tf.response.Model != "echo2" {
		t.Fatalf("pinned session answered by %q", tf.response.Model)
	}

	if code, _ := e.do("bob", "POST", "/api/sessions/a1/clear", ""); code != 403 {
		t.Fatalf("bob cleared alice's session: %d", code)
	}
	if code, body := e.do("admin", "POST", "/api/sessions/a1/clear", ""); code != 200 {
		t.Fatalf("admin clear: %d %v", code, body)
	}
	if ev, _ := until[wire.ResourceEvent](bob); ev.Action != "cleared" || ev.ID != "a1" {
		t.Fatalf("event %#v", ev)
	}
	var n int
	e.store.DB().QueryRow(`SELECT COUNT(*) FROM messages WHERE session_id = 'a1'`).Scan(&n)
	if n != 0 {
		t.Fatalf("%d messages left after clear", n)
	}
	var m int
	e.store.DB().QueryRow(`SELECT COUNT(*) FROM messages WHERE session_id = 'b1'`).Scan(&m)
	if m != 2 {
		t.Fatalf("bob's session has %d messages: sessions are not isolated", m)
	}
	// Changes made with WebSocket commands are broadcast too.
	alice.send(wire.Command{Name: "reset", SessionID: "a1"})
	if ev, _ := until[wire.ResourceEvent](bob); ev != (wire.ResourceEvent{Resource: "session", Action: "reset", ID: "a1"}) {
		t.Fatalf("event %#v", ev)
	}
}

func TestBridgePrefix(t *testing.T) {
	reg, err := provider.NewRegistry([]provider.Config{{ID: "echo", Kind: "echo", EchoDelay: 20 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOpts{providers: reg})
	tg := e.dial("tg")
	for _, sid := range []string{"dc:1", "tg", "tgx:1", "s1"} {
		tg.send(wire.TextFinal{Text: "hi", SessionID: sid})
		m, ok := tg.next().(wire.Error)
		if !ok || !strings.Contains(m.Text, `only use session ids starting with "tg:"`) {
			t.Fatalf("%s: got %#v", sid, m)
		}
	}
	tg.send(wire.Interrupt{SessionID: "dc:1"})
	if m, ok := tg.next().(wire.Error); !ok {
		t.Fatalf("interrupt on a foreign prefix: %#v", m)
	}
	// Two platform users of one bridge do not queue behind each other.
	tg.send(wire.TextFinal{Text: "user one", SessionID: "tg:1"})
	tg.send(wire.TextFinal{Text: "user two", SessionID: "tg:2"})
	got := map[string]string{}
	for len(got) < 2 {
		switch m := tg.next().(type) {
		case wire.Queued:
			t.Fatalf("bridge session queued behind another: %#v", m)
		case wire.Response:
			got[m.SessionID] = m.Text
		}
	}
	if got["tg:1"] != provider.EchoReply("user one") || got["tg:2"] != provider.EchoReply("user two") {
		t.Fatalf("replies %v", got)
	}
	tg.send(wire.Command{Name: "new", SessionID: "tg:1"})
	r, _ := until[wire.CommandResult](tg)
	if !strings.HasPrefix(r.NewSessionID, "tg:") {
		t.Fatalf("new session for a bridge: %q", r.NewSessionID)
	}
}

func TestCommands(t *testing.T) {
	reg, err := provider.NewRegistry([]provider.Config{{ID: "echo", Kind: "echo", EchoDelay: 30 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOpts{providers: reg})
	c := e.dial("alice")
	cmd := func(name, args string) wire.Message {
		c.send(wire.Command{Name: name, SessionID: "s1", Args: args})
		for {
			switch m := c.next().(type) {
			case wire.CommandResult, wire.Error:
				return m
			}
		}
	}
	if r, ok := cmd("help", "").(wire.CommandResult); !ok || !strings.Contains(r.Text, "model [ID]") {
		t.Fatalf("help: %#v", r)
	}
	if r, ok := cmd("model", "").(wire.CommandResult); !ok || !strings.Contains(r.Text, "echo (default)") {
		t.Fatalf("model: %#v", r)
	}
	if r, ok := cmd("model", "gpt-9").(wire.Error); !ok || !strings.Contains(r.Text, `unknown model "gpt-9"`) || !strings.Contains(r.Text, "echo2") {
		t.Fatalf("model gpt-9: %#v", r)
	}
	if r, ok := cmd("model", "echo2").(wire.CommandResult); !ok || !strings.Contains(r.Text, "pinned to model echo2") {
		t.Fatalf("model echo2: %#v", r)
	}
	c.send(wire.TextFinal{Text: "a b c d e f g h", SessionID: "s1"})
	c.send(wire.TextFinal{Text: "queued one", SessionID: "s1"})
	c.send(wire.TextFinal{Text: "queued two", SessionID: "s1"})
	until[wire.Delta](c)
	// The stopped turn's response and the command's result race: the
	// result is sent after the queue is dropped in the DB. Take both in
	// either order.
	c.send(wire.Command{Name: "stop", SessionID: "s1"})
	var r wire.CommandResult
	var resp wire.Response
	gotR, gotResp, gotDone := false, false, false
	for !gotR || !gotResp || !gotDone {
		switch m := c.next().(type) {
		case wire.CommandResult:
			r, gotR = m, true
		case wire.Response:
			resp, gotResp = m, true
		case wire.TurnComplete:
			gotDone = true
		case wire.Error:
			t.Fatalf("stop: %#v", m)
		}
	}
	if r.Text != "Stopped; dropped 2 queued message(s)." {
		t.Fatalf("stop: %#v", r)
	}
	if !resp.Interrupted || resp.Model != "echo2" {
		t.Fatalf("stopped turn: %#v", resp)
	}
	var queued int
	e.store.DB().QueryRow(`SELECT COUNT(*) FROM turns`).Scan(&queued)
	if queued != 0 {
		t.Fatalf("%d turns left after stop", queued)
	}
	if r, ok := cmd("clear", "").(wire.CommandResult); !ok || r.Text != "History cleared (2 messages)." {
		t.Fatalf("clear: %#v", r)
	}
	if r, ok := cmd("reset", "").(wire.CommandResult); !ok || !strings.Contains(r.Text, "unpinned") {
		t.Fatalf("reset: %#v", r)
	}
	if r, ok := cmd("model", "").(wire.CommandResult); !ok || !strings.Contains(r.Text, "echo (default)") {
		t.Fatalf("model after reset: %#v", r)
	}
	r, ok := cmd("new", "").(wire.CommandResult)
	if !ok || len(r.NewSessionID) != 16 || r.NewSessionID == "s1" {
		t.Fatalf("new: %#v", r)
	}
	c.send(wire.TextFinal{Text: "fresh", SessionID: r.NewSessionID})
	if tf := c.readTurn(); tf.response.SessionID != r.NewSessionID {
		t.Fatalf("turn in the new session: %#v", tf.response)
	}
	c.send(wire.Command{Name: "clear"})
	if m, ok := c.next().(wire.Error); !ok || !strings.Contains(m.Text, "needs a session_id") {
		t.Fatalf("clear without session: %#v", m)
	}
}

func TestAttachmentGoesWithNextTurn(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.dial("alice")
	p := filepath.Join(e.dir, "note.txt")
	if err := os.WriteFile(p, []byte("hi"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/hostname", filepath.Join(e.dir, "escape")); err != nil {
		t.Fatal(err)
	}
	c.send(wire.AttachmentIn{SessionID: "s1", Path: filepath.Join(e.dir, "escape"), Kind: "file"})
	if m, ok := c.next().(wire.Error); !ok || !strings.Contains(m.Text, "outside the agent directory") {
		t.Fatalf("symlink out of the agent dir: %#v", m)
	}
	c.send(wire.AttachmentIn{SessionID: "s1", Path: filepath.Join(e.dir, "missing.txt"), Kind: "file"})
	if m, ok := c.next().(wire.Error); !ok || !strings.Contains(m.Text, "does not exist") {
		t.Fatalf("missing file: %#v", m)
	}
	c.send(wire.AttachmentIn{SessionID: "s1", Path: p, Filename: "note.txt", Kind: "file"})
	c.send(wire.TextFinal{Text: "see file", SessionID: "s1"})
	tf := c.readTurn()
	if !strings.Contains(tf.response.Text, "note.txt") {
		t.Fatalf("the model did not see the attachment: %q", tf.response.Text)
	}
	var att string
	e.store.DB().QueryRow(`SELECT attachments FROM messages WHERE role = 'user'`).Scan(&att)
	if !strings.Contains(att, p) {
		t.Fatalf("stored user attachments %s", att)
	}
}

func TestSystemSnapshotAndConfigReload(t *testing.T) {
	e := newEnv(t, envOpts{yaml: "limits:\n  snapshot_interval: 1s\n"})
	c := e.dial("alice")
	s, _ := until[wire.SystemSnapshot](c)
	if s.RAMPercent <= 0 || s.DiskPercent <= 0 || s.CPUPercent < 0 {
		t.Fatalf("snapshot %#v", s)
	}
	path := filepath.Join(e.dir, config.FileName)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(data), "name: test-agent", "name: renamed", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.cfg.Reload(); err != nil {
		t.Fatal(err)
	}
	ev, _ := until[wire.ResourceEvent](c)
	if ev.Resource != "config" || ev.Action != "updated" {
		t.Fatalf("event %#v", ev)
	}
	c.send(wire.Auth{})
	if ok, _ := until[wire.AuthOK](c); ok.AgentName != "renamed" {
		t.Fatalf("after reload: %#v", ok)
	}
}

func TestIdleTimeout(t *testing.T) {
	e := newEnv(t, envOpts{yaml: "limits:\n  idle_timeout: 1s\n  ping_interval: 200ms\n"})
	live := e.dial("alice")
	go func() { // reading answers the server's pings
		for {
			if _, err := live.read(time.Minute); err != nil {
				return
			}
		}
	}()
	mute := e.dial("bob") // never reads, so never answers a ping
	_ = mute
	waitFor(t, func() bool { return e.gw.ClientsConnected() == 1 })
	time.Sleep(1200 * time.Millisecond)
	if n := e.gw.ClientsConnected(); n != 1 {
		t.Fatalf("%d clients after the idle timeout, want the live one", n)
	}
}

func httpFunc(f func()) httpHandlerFunc { return httpHandlerFunc(f) }

type httpHandlerFunc func()

type (
	responseWriter = http.ResponseWriter
	request        = http.Request
)

func (f httpHandlerFunc) ServeHTTP(w responseWriter, _ *request) {
	f()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprint(w, `{"ok":true}`)
}

func TestSessionHistoryAndDelete(t *testing.T) {
	slow := providertest.NewOpenAI(t, providertest.Response{Text: []string{"one"}}, providertest.Response{Text: []string{"two"}},
		providertest.Response{Text: strings.Split(strings.Repeat("slow ", 40), " "), Delay: 50 * time.Millisecond})
	e := newEnv(t, envOpts{openAI: slow.BaseURL(), model: "gpt"})
	alice, bob := e.dial("alice"), e.dial("bob")
	for _, text := range []string{"first", "second"} {
		alice.send(wire.TextFinal{Text: text, SessionID: "h1"})
		alice.readTurn()
	}
	for _, tc := range []struct {
		who, query string
		code       int
		want       string // the texts, joined
	}{
		{"alice", "", 200, "first|one|second|two"},
		{"alice", "?limit=1", 200, "two"},
		{"admin", "?limit=3", 200, "one|second|two"},
		{"bob", "", 403, ""},
		{"tg", "", 403, ""},
		{"alice", "?limit=0", 400, ""},
		{"alice", "?limit=x", 400, ""},
	} {
		code, body := e.do(tc.who, "GET", "/api/sessions/h1/messages"+tc.query, "")
		if code != tc.code {
			t.Fatalf("%s GET messages%s: %d %v, want %d", tc.who, tc.query, code, body, tc.code)
		}
		if code != 200 {
			continue
		}
		var texts []string
		for _, m := range body["messages"].([]any) {
			texts = append(texts, m.(map[string]any)["text"].(string))
		}
		if got := strings.Join(texts, "|"); got != tc.want {
			t.Errorf("%s GET messages%s = %q, want %q", tc.who, tc.query, got, tc.want)
		}
	}
	if code, _ := e.do("alice", "GET", "/api/sessions/nope/messages", ""); code != 404 {
		t.Errorf("unknown session: %d", code)
	}

	// A session with a turn running is not deleted under it.
	alice.send(wire.TextFinal{Text: "slow one", SessionID: "h1"})
	until[wire.Delta](alice)
	if code, body := e.do("alice", "DELETE", "/api/sessions/h1", ""); code != 409 {
		t.Fatalf("delete of a busy session: %d %v", code, body)
	}
	alice.send(wire.Interrupt{SessionID: "h1"})
	until[wire.TurnComplete](alice)
	if code, _ := e.do("bob", "DELETE", "/api/sessions/h1", ""); code != 403 {
		t.Fatalf("bob deleted alice's session: %d", code)
	}
	if code, body := e.do("alice", "DELETE", "/api/sessions/h1", ""); code != 200 {
		t.Fatalf("delete: %d %v", code, body)
	}
	if ev, _ := until[wire.ResourceEvent](bob); ev != (wire.ResourceEvent{Resource: "session", Action: "deleted", ID: "h1"}) {
		t.Fatalf("event %#v", ev)
	}
	var n int
	e.store.DB().QueryRow(`SELECT COUNT(*) FROM messages WHERE session_id = 'h1'`).Scan(&n)
	if code, _ := e.do("alice", "GET", "/api/sessions/h1/messages", ""); code != 404 || n != 0 {
		t.Errorf("after delete: GET %d, %d messages left", code, n)
	}
	// The id can be used again, as a new session.
	slow.Push(providertest.Response{Text: []string{"fresh reply"}})
	alice.send(wire.TextFinal{Text: "fresh", SessionID: "h1"})
	if tf := alice.readTurn(); tf.errFrame != nil {
		t.Fatalf("new turn on a deleted id: %+v", tf.errFrame)
	}
}
