package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/provider"
	"github.com/agentd/agentd/wire"
)

func TestLegacyAuthAndPing(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.dial("alice")
	c.send(wire.Auth{Token: "anything", ClientID: "someone-else"})
	if m, ok := c.next().(wire.AuthOK); !ok || m.AgentName != "test-agent" {
		t.Fatalf("auth answered with %#v", m)
	}
	c.send(wire.Ping{})
	if m := c.next(); m != (wire.Pong{}) {
		t.Fatalf("ping answered with %#v", m)
	}
	// The legacy frame changed nothing: alice still owns what she creates.
	c.send(wire.TextFinal{Text: "hi", SessionID: "s1"})
	if tf := c.readTurn(); tf.response.Text != provider.EchoReply("hi") {
		t.Fatalf("reply %q", tf.response.Text)
	}
	if code, body := e.do("bob", "POST", "/api/sessions/s1/clear", ""); code != 403 {
		t.Fatalf("bob cleared alice's session: %d %v", code, body)
	}
}

func TestBadInputKeepsConnection(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.dial("alice")
	tests := []struct {
		name  string
		frame string
		want  string
	}{
		{"invalid json", `{"type":"text_final",`, "invalid JSON"},
		{"not an object", `"hello"`, "invalid JSON"},
		{"unknown type", `{"type":"launch_rockets"}`, `unknown message type "launch_rockets"`},
		{"server-only type", `{"type":"response","text":"x","session_id":"s"}`, `unknown message type "response"`},
		{"missing field", `{"type":"text_final","text":"hi"}`, `text_final: missing field "session_id"`},
		{"wrong type", `{"type":"text_final","text":42,"session_id":"s"}`, `field "text": want string, got number`},
		{"empty session id", `{"type":"text_final","text":"x","session_id":""}`, "session_id must not be empty"},
		{"session id with spaces", `{"type":"text_final","text":"x","session_id":"a b"}`, "must not contain spaces"},
		{"empty message", `{"type":"text_final","text":"  ","session_id":"s"}`, "empty message"},
		{"unknown command", `{"type":"command","name":"fly","session_id":"s"}`, `unknown command "fly"`},
		{"attachment outside agent dir", `{"type":"attachment","session_id":"s","path":"/etc/passwd"}`, "outside the agent directory"},
		{"relative attachment", `{"type":"attachment","session_id":"s","path":"x.txt"}`, "must be absolute"},
		{"voice chunk out of range", `{"type":"audio_chunk_in","session_id":"s","data":"AA==","seq":99999}`, "seq 99999 out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.sendRaw([]byte(tt.frame))
			m, ok := c.next().(wire.Error)
			if !ok || !strings.Contains(m.Text, tt.want) {
				t.Fatalf("got %#v, want error containing %q", m, tt.want)
			}
		})
	}
	t.Run("binary frame", func(t *testing.T) {
		if err := c.ws.WriteMessage(websocket.BinaryMessage, []byte{1, 2, 3}); err != nil {
			t.Fatal(err)
		}
		if m, ok := c.next().(wire.Error); !ok || !strings.Contains(m.Text, "binary frames") {
			t.Fatalf("got %#v", m)
		}
	})
	// Still usable, and nothing was created by the bad frames.
	c.send(wire.Ping{})
	if m := c.next(); m != (wire.Pong{}) {
		t.Fatalf("after bad input: %#v", m)
	}
	list, err := e.sessions.List(t.Context(), identities["admin"])
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list {
		if s.Messages > 0 || s.Queued > 0 {
			t.Fatalf("bad input left state behind: %+v", s)
		}
	}
}

func TestOversizeFrameClosesAfterError(t *testing.T) {
	e := newEnv(t, envOpts{yaml: "limits:\n  max_frame_bytes: 2048\n"})
	c := e.dial("alice")
	// Exactly at the limit is fine.
	pad := strings.Repeat("a", 2048-len(`{"type":"ping","x":""}`))
	c.sendRaw([]byte(`{"type":"ping","x":"` + pad + `"}`))
	if m := c.next(); m != (wire.Pong{}) {
		t.Fatalf("frame at the limit: %#v", m)
	}
	c.sendRaw([]byte(`{"type":"ping","x":"` + pad + `!!"}`))
	m, ok := c.next().(wire.Error)
	if !ok || !strings.Contains(m.Text, "larger than 2048 bytes") {
		t.Fatalf("got %#v", m)
	}
	_, err := c.read(5 * time.Second)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseMessageTooBig {
		t.Fatalf("after oversize frame: %v, want close 1009", err)
	}
}

func TestAnonymousAndCapabilityRefused(t *testing.T) {
	e := newEnv(t, envOpts{})
	for _, who := range []string{"", "noscap"} {
		h := map[string][]string{}
		if who != "" {
			h["X-Test-Identity"] = []string{who}
		}
		_, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(e.srv.URL, "http")+"/ws", h)
		want := 401
		if who != "" {
			want = 403
		}
		if err == nil || resp == nil || resp.StatusCode != want {
			t.Fatalf("dial as %q: err %v, resp %v; want %d", who, err, resp, want)
		}
	}
}

// Three messages from one client: queued{1}, queued{2}, then the replies
// in order.
func TestQueueOrder(t *testing.T) {
	reg, err := provider.NewRegistry([]provider.Config{{ID: "echo", Kind: "echo", EchoDelay: 20 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOpts{providers: reg})
	c := e.dial("alice")
	for i := 1; i <= 3; i++ {
		c.send(wire.TextFinal{Text: fmt.Sprintf("message %d", i), SessionID: "s1"})
	}
	var queued []int
	var replies []string
	for len(replies) < 3 {
		switch m := c.next().(type) {
		case wire.Queued:
			queued = append(queued, m.Position)
			if m.SessionID != "s1" {
				t.Fatalf("queued for %q", m.SessionID)
			}
		case wire.Response:
			replies = append(replies, m.Text)
			if m.Model != "echo" || m.SessionID != "s1" {
				t.Fatalf("response %#v", m)
			}
		case wire.Delta, wire.TurnComplete:
		default:
			t.Fatalf("unexpected %#v", m)
		}
	}
	if fmt.Sprint(queued) != "[1 2]" {
		t.Fatalf("queued positions %v, want [1 2]", queued)
	}
	for i, r := range replies {
		if want := provider.EchoReply(fmt.Sprintf("message %d", i+1)); r != want {
			t.Fatalf("reply %d = %q, want %q", i+1, r, want)
		}
	}
}

func TestQueueFull(t *testing.T) {
	reg, err := provider.NewRegistry([]provider.Config{{ID: "echo", Kind: "echo", EchoDelay: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOpts{providers: reg, yaml: "limits:\n  queue_cap: 1\n"})
	c := e.dial("alice")
	c.send(wire.TextFinal{Text: "one two three", SessionID: "s1"})
	c.send(wire.TextFinal{Text: "second", SessionID: "s1"})
	c.send(wire.TextFinal{Text: "third", SessionID: "s1"})
	q, _ := until[wire.Queued](c)
	if q.Position != 1 {
		t.Fatalf("queued %d", q.Position)
	}
	m, _ := until[wire.Error](c)
	if m.Text != "queue full" {
		t.Fatalf("error %q, want queue full", m.Text)
	}
	for _, want := range []string{"one two three", "second"} {
		r, _ := until[wire.Response](c)
		if r.Text != provider.EchoReply(want) {
			t.Fatalf("reply %q", r.Text)
		}
	}
}

// Two clients run at the same time: neither is queued behind the other.
func TestTwoClientsConcurrent(t *testing.T) {
	reg, err := provider.NewRegistry([]provider.Config{{ID: "echo", Kind: "echo", EchoDelay: 30 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOpts{providers: reg})
	a, b := e.dial("alice"), e.dial("bob")
	text := "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10"
	start := time.Now()
	a.send(wire.TextFinal{Text: text, SessionID: "sa"})
	b.send(wire.TextFinal{Text: text, SessionID: "sb"})
	done := make(chan turnFrames, 2)
	go func() { done <- a.readTurn() }()
	go func() { done <- b.readTurn() }()
	for range 2 {
		tf := <-done
		if tf.response.Text != provider.EchoReply(text) || tf.text() != tf.response.Text {
			t.Fatalf("turn %+v", tf)
		}
	}
	// One reply takes ~16 words × 30 ms ≈ 0.5 s; serialised would be ~1 s.
	words := len(strings.Fields(provider.EchoReply(text)))
	one := time.Duration(words-1) * 30 * time.Millisecond
	if el := time.Since(start); el > one*3/2 {
		t.Fatalf("two clients took %v, one reply takes %v: they were serialised", el, one)
	}
}

// An outside client, the npm ws package under Node, speaks the protocol.
func TestNodeWSClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	script, _ := filepath.Abs("../../testpeers/ws-client.mjs")
	if _, err := os.Stat(filepath.Join(filepath.Dir(script), "node_modules", "ws")); err != nil {
		t.Skip("testpeers/node_modules/ws not installed (npm install in testpeers)")
	}
	e := newEnv(t, envOpts{})
	// The Node client cannot present a test header; this server gives
	// every request alice's identity, as the auth listener would.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.gw.ServeHTTP(w, r.WithContext(auth.WithIdentity(r.Context(), identities["alice"])))
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws",
		"--session", "node-1", "--message", "hi from node", "--timeout-ms", "20000")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node client: %v\n%s", err, stderr.String())
	}
	if got := strings.TrimSpace(string(out)); got != provider.EchoReply("hi from node") {
		t.Fatalf("node client printed %q", got)
	}
	if !strings.Contains(stderr.String(), "connected to test-agent (test-1)") {
		t.Fatalf("node client stderr: %s", stderr.String())
	}
}
