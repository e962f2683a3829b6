package gateway

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/agentd/agentd/internal/provider"
	"github.com/agentd/agentd/internal/provider/providertest"
	"github.com/agentd/agentd/wire"
)

func tokens(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("tok%d ", i)
	}
	return out
}

// Interrupt mid-stream: deltas stop at once, the partial reply is kept in
// history marked interrupted, the queued turn runs next.
func TestInterruptMidStream(t *testing.T) {
	fake := providertest.NewOpenAI(t,
		providertest.Response{Text: tokens(200), Delay: 20 * time.Millisecond},
		providertest.Response{Text: []string{"second ", "reply"}, Usage: &providertest.Usage{PromptTokens: 7, CompletionTokens: 2}},
	)
	e := newEnv(t, envOpts{openAI: fake.BaseURL(), model: "gpt"})
	c := e.dial("alice")
	c.send(wire.TextFinal{Text: "first", SessionID: "s1"})
	c.send(wire.TextFinal{Text: "second", SessionID: "s1"})
	var got strings.Builder
	deltas := 0
	for deltas < 3 {
		switch m := c.next().(type) {
		case wire.Delta:
			got.WriteString(m.Text)
			deltas++
		case wire.Queued:
			if m.Position != 1 {
				t.Fatalf("queued %d", m.Position)
			}
		default:
			t.Fatalf("unexpected %#v", m)
		}
	}
	c.send(wire.Interrupt{SessionID: "s1"})
	sent := time.Now()
	var resp wire.Response
	for resp.SessionID == "" {
		switch m := c.next().(type) {
		case wire.Delta: // already in flight when the interrupt arrived
			got.WriteString(m.Text)
		case wire.Response:
			resp = m
		default:
			t.Fatalf("unexpected %#v", m)
		}
	}
	if el := time.Since(sent); el > 500*time.Millisecond {
		t.Fatalf("interrupt took %v", el)
	}
	if !resp.Interrupted || resp.Text != strings.TrimSpace(got.String()) && resp.Text != got.String() {
		t.Fatalf("response %#v; deltas %q", resp, got.String())
	}
	if strings.Count(resp.Text, "tok") >= 200 {
		t.Fatal("the whole reply was streamed")
	}
	if _, ok := c.next().(wire.TurnComplete); !ok {
		t.Fatal("no turn_complete after the interrupted response")
	}
	second := c.readTurn()
	for _, d := range second.deltas {
		if strings.Contains(d.Text, "tok") {
			t.Fatalf("delta of the interrupted run after the interrupt: %q", d.Text)
		}
	}
	if second.response.Text != "second reply" || second.response.Interrupted {
		t.Fatalf("second turn %#v", second.response)
	}
	u := second.complete.Usage
	if u.PromptTokens != 7 || u.CompletionTokens != 2 || u.TotalTokens != 9 || u.CostUSD != (7*2+2*10)/1e6 {
		t.Fatalf("usage %+v", u)
	}
	// History: the partial reply is kept, marked interrupted, and the model
	// saw it as context for the next turn.
	var content string
	var interrupted bool
	if err := e.store.DB().QueryRow(`SELECT content, interrupted FROM messages WHERE session_id = 's1' AND role = 'assistant' ORDER BY id LIMIT 1`).
		Scan(&content, &interrupted); err != nil {
		t.Fatal(err)
	}
	if !interrupted || !strings.HasPrefix(content, "tok0") {
		t.Fatalf("stored partial %q interrupted=%v", content, interrupted)
	}
	reqs := fake.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d model calls", len(reqs))
	}
	req := reqs[1].OpenAI(t)
	msgs := req.Messages
	if n := len(msgs); n < 3 || !strings.HasPrefix(msgs[n-2].Text(), "tok0") || msgs[n-1].Text() != "second" {
		t.Fatalf("second call's messages: %+v", msgs)
	}
	// The configured system prompt and the model's upstream name.
	if msgs[0].Role != "system" || msgs[0].Text() != "You are a test." || req.Model != "model-a" {
		t.Fatalf("second call: model %q, first message %s %q", req.Model, msgs[0].Role, msgs[0].Text())
	}
	var cost float64
	var status, model string
	e.store.DB().QueryRow(`SELECT cost_usd, status, model FROM turn_usage ORDER BY id DESC LIMIT 1`).Scan(&cost, &status, &model)
	if status != "ok" || model != "gpt" || cost != u.CostUSD {
		t.Fatalf("usage row: %v %q %q", cost, status, model)
	}
}

// A provider failure ends the turn with an error; the session stays usable
// and the failed turn is not sent to the model again.
func TestProviderFailure(t *testing.T) {
	fake := providertest.NewOpenAI(t,
		providertest.Response{Status: 401, ErrorMessage: "bad key"},
		providertest.Response{Text: []string{"fine"}},
	)
	e := newEnv(t, envOpts{openAI: fake.BaseURL(), model: "gpt"})
	c := e.dial("alice")
	c.send(wire.TextFinal{Text: "doomed", SessionID: "s1"})
	tf := c.readTurn()
	if tf.errFrame == nil || !strings.Contains(tf.errFrame.Text, "the turn failed") || tf.errFrame.SessionID != "s1" {
		t.Fatalf("failed turn frames %+v", tf)
	}
	c.send(wire.TextFinal{Text: "again", SessionID: "s1"})
	if tf := c.readTurn(); tf.response.Text != "fine" {
		t.Fatalf("after failure: %+v", tf)
	}
	var failed int
	e.store.DB().QueryRow(`SELECT COUNT(*) FROM messages WHERE session_id = 's1' AND failed = 1`).Scan(&failed)
	if failed != 2 {
		t.Fatalf("%d failed rows, want 2 (user + assistant)", failed)
	}
	var status string
	e.store.DB().QueryRow(`SELECT status FROM turn_usage ORDER BY id LIMIT 1`).Scan(&status)
	if status != "failed" {
		t.Fatalf("usage status %q", status)
	}
	msgs := fake.Requests()[1].OpenAI(t).Messages
	for _, m := range msgs {
		if m.Text() == "doomed" {
			t.Fatal("the failed turn was sent to the model again")
		}
	}
}

// A client that does not read is closed with 4008 instead of growing the
// server's memory.
func TestSlowConsumer(t *testing.T) {
	e := newEnv(t, envOpts{yaml: "limits:\n  write_queue: 8\n"})
	slow := e.dial("alice")
	fast := e.dial("bob")
	big := strings.Repeat("x", 64<<10)
	deadline := time.Now().Add(10 * time.Second)
	for e.gw.SlowConsumersClosed() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the slow consumer was never closed")
		}
		e.gw.ResourceEvent("test", "flood", big)
		if _, err := fast.read(5 * time.Second); err != nil { // bob keeps up
			t.Fatalf("fast reader: %v", err)
		}
	}
	var err error
	for err == nil {
		_, err = slow.read(5 * time.Second)
	}
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != CloseSlowConsumer || ce.Text != "slow consumer" {
		t.Fatalf("slow consumer saw %v, want close 4008", err)
	}
	fast.send(wire.Ping{})
	until[wire.Pong](fast)
	if e.gw.SlowConsumersClosed() != 1 {
		t.Fatalf("%d slow consumers", e.gw.SlowConsumersClosed())
	}
}

// Turns queued when the process dies run after restart and reach the client
// when it reconnects.
func TestQueuedTurnsSurviveCrash(t *testing.T) {
	fake := providertest.NewOpenAI(t, providertest.Response{Hang: true})
	dir := t.TempDir()
	e1 := newEnv(t, envOpts{dir: dir, openAI: fake.BaseURL(), model: "gpt"})
	c := e1.dial("alice")
	for _, s := range []string{"one", "two", "three"} {
		c.send(wire.TextFinal{Text: s, SessionID: "s1"})
	}
	for want := 1; want <= 2; want++ {
		if q, _ := until[wire.Queued](c); q.Position != want {
			t.Fatalf("queued %d, want %d", q.Position, want)
		}
	}
	waitFor(t, func() bool { return len(fake.Requests()) == 1 }) // "one" is running
	c.ws.Close()
	e1.crash()

	e2 := newEnv(t, envOpts{dir: dir}) // restarted with the echo model as default
	c2 := e2.dial("alice")
	for _, want := range []string{"one", "two", "three"} {
		r, _ := until[wire.Response](c2)
		if r.Text != provider.EchoReply(want) {
			t.Fatalf("after restart got %q, want the reply to %q", r.Text, want)
		}
		if _, ok := c2.next().(wire.TurnComplete); !ok {
			t.Fatal("no turn_complete")
		}
	}
	var turns, outbox, users int
	db := e2.store.DB()
	waitFor(t, func() bool { // frames are deleted once handed to the connection
		db.QueryRow(`SELECT COUNT(*) FROM outbox`).Scan(&outbox)
		return outbox == 0
	})
	db.QueryRow(`SELECT COUNT(*) FROM turns`).Scan(&turns)
	db.QueryRow(`SELECT COUNT(*) FROM messages WHERE role = 'user'`).Scan(&users)
	if turns != 0 || outbox != 0 || users != 3 {
		t.Fatalf("after delivery: %d turns, %d outbox frames, %d user messages", turns, outbox, users)
	}
}

// Replies produced while the client is away wait in the outbox; session_open
// (or reconnecting) delivers them.
func TestOutboxOnSessionOpen(t *testing.T) {
	reg, err := provider.NewRegistry([]provider.Config{{ID: "echo", Kind: "echo", EchoDelay: 20 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOpts{providers: reg})
	c := e.dial("alice")
	c.send(wire.TextFinal{Text: "while away", SessionID: "s1"})
	until[wire.Delta](c)
	c.ws.Close()
	waitFor(t, func() bool {
		var n int
		e.store.DB().QueryRow(`SELECT COUNT(*) FROM outbox`).Scan(&n)
		return n == 2
	})
	c2 := e.dial("alice") // connect flushes
	r, _ := until[wire.Response](c2)
	if r.Text != provider.EchoReply("while away") {
		t.Fatalf("got %q", r.Text)
	}
	c2.send(wire.SessionOpen{SessionID: "s1"})
	c2.send(wire.Ping{})
	if _, skipped := until[wire.Pong](c2); len(skipped) != 1 { // the turn_complete
		t.Fatalf("frames delivered twice: %#v", skipped)
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// An outbox longer than the write queue is delivered with flow control, not
// refused as a slow consumer.
func TestLongOutbox(t *testing.T) {
	reg, err := provider.NewRegistry([]provider.Config{{ID: "echo", Kind: "echo", EchoDelay: 2 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOpts{providers: reg, yaml: "limits:\n  write_queue: 8\n"})
	c := e.dial("alice")
	for i := range 12 {
		c.send(wire.TextFinal{Text: fmt.Sprintf("m%d", i), SessionID: "s1"})
	}
	for { // all accepted before the client goes away
		if q, _ := until[wire.Queued](c); q.Position == 11 {
			break
		}
	}
	c.ws.Close()
	waitFor(t, func() bool {
		var n int
		e.store.DB().QueryRow(`SELECT COUNT(*) FROM turns`).Scan(&n)
		return n == 0
	})
	c2 := e.dial("alice")
	got := map[string]bool{}
	for len(got) < 11 { // the first reply may have reached the old connection
		m, err := c2.read(10 * time.Second)
		if err != nil {
			t.Fatalf("after %d replies: %v", len(got), err)
		}
		if r, ok := m.(wire.Response); ok {
			got[r.Text] = true
		}
	}
	if e.gw.SlowConsumersClosed() != 0 {
		t.Fatal("outbox flush overflowed the write queue")
	}
}

// A client that stops reading mid-reply throttles only its own run, is
// closed as a slow consumer after the write timeout (with 4008 when the
// close frame can still get through its full socket, else by a plain
// close), and finds the reply in its outbox later; other clients are not
// slowed down.
func TestStalledReaderMidReply(t *testing.T) {
	// Far more than socket buffers hold (~4 MB on loopback), in deltas too
	// large to be merged while the client does not read.
	big := make([]string, 400)
	for i := range big {
		big[i] = strings.Repeat("w", 32<<10)
	}
	fake := providertest.NewOpenAI(t, providertest.Response{Text: big}, providertest.Response{Text: []string{"quick ", "reply"}})
	e := newEnv(t, envOpts{writeTimeout: 500 * time.Millisecond, openAI: fake.BaseURL(), model: "gpt"})
	stalled, bob := e.dial("alice"), e.dial("bob")
	stalled.send(wire.TextFinal{Text: "a long answer", SessionID: "big"})
	waitFor(t, func() bool { return fake.Remaining() == 1 })
	start := time.Now()
	bob.send(wire.TextFinal{Text: "quick", SessionID: "b"})
	if tf := bob.readTurn(); tf.response.Text != "quick reply" {
		t.Fatalf("bob: %+v", tf)
	}
	if el := time.Since(start); el > 300*time.Millisecond {
		t.Fatalf("bob's turn took %v beside a stalled client", el)
	}
	waitFor(t, func() bool { return e.gw.SlowConsumersClosed() == 1 })
	var err error
	for err == nil {
		_, err = stalled.read(5 * time.Second)
	}
	var ce *websocket.CloseError
	if errors.As(err, &ce) && ce.Code != CloseSlowConsumer && ce.Code != websocket.CloseAbnormalClosure {
		t.Fatalf("stalled client saw %v, want 4008 or a dropped connection", err)
	}
	waitFor(t, func() bool {
		var n int
		e.store.DB().QueryRow(`SELECT COUNT(*) FROM outbox WHERE session_id = 'big'`).Scan(&n)
		return n == 2
	})
	again := e.dial("alice")
	r, _ := until[wire.Response](again)
	if r.SessionID != "big" || !strings.HasPrefix(r.Text, "wwww") {
		t.Fatalf("reply from the outbox: %.60q", r.Text)
	}
}
