package session

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/provider"
	"github.com/agentd/agentd/wire"
)

var tg = &auth.Identity{ClientID: "7e1e", Capabilities: []string{auth.CapBridge, auth.SessionPrefixCap + "tg"}}

// outboxRows returns "sent:session" for every outbox row of clientID, in order.
func (h *harness) outboxRows(t *testing.T, clientID string) []string {
	t.Helper()
	rows, err := h.st.DB().Query(`SELECT sent, session_id FROM outbox WHERE client_id = ? ORDER BY id`, clientID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var sent int
		var sid string
		if err := rows.Scan(&sent, &sid); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%d:%s", sent, sid))
	}
	return out
}

// connectAcking connects a new connection of id the way the gateway does
// for a client that sends auth{acks:true}: Connect, then SetAcks.
func (h *harness) connectAcking(t *testing.T, id *auth.Identity) (*Client, *recorder, func()) {
	t.Helper()
	rec := newRecorder()
	c := &Client{Identity: id, Sink: rec}
	disconnect := h.m.Connect(c)
	if err := h.m.SetAcks(context.Background(), c, true); err != nil {
		t.Fatal(err)
	}
	return c, rec, disconnect
}

// quiet asserts that rec gets no frame for a while.
func quiet(t *testing.T, rec *recorder) {
	t.Helper()
	time.Sleep(50 * time.Millisecond)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.frames) != 0 {
		t.Fatalf("unexpected frames: %#v", rec.frames)
	}
}

// An opted-in client gets a reply it took live again on every new
// connection until it acks the session; the ack deletes it.
func TestAckModeResendsUntilAcked(t *testing.T) {
	h := start(t, t.TempDir(), yamlWith("echo", ""))
	ctx := context.Background()
	c1, rec1, bye1 := h.connectAcking(t, tg)
	h.m.Handle(ctx, c1, wire.TextFinal{Text: "hi", SessionID: "tg:1"})
	rec1.wait(t, func(fs []wire.Message) bool { return len(responses(fs)) == 1 })
	waitRows(t, h, tg.ClientID, "[1:tg:1 1:tg:1]") // response, turn_complete: sent, awaiting
	bye1()                                         // killed before showing it

	for range 2 { // re-sent on each reconnect until acked
		_, rec, bye := h.connectAcking(t, tg)
		fs := rec.wait(t, func(fs []wire.Message) bool { return len(fs) == 2 })
		if r, ok := fs[0].(wire.Response); !ok || r.Text != provider.EchoReply("hi") {
			t.Fatalf("re-sent frames %#v", fs)
		}
		if _, ok := fs[1].(wire.TurnComplete); !ok {
			t.Fatalf("re-sent frames %#v", fs)
		}
		bye()
	}
	// session_open re-sends only what no connection took.
	c, rec, bye := h.connectAcking(t, tg)
	rec.wait(t, func(fs []wire.Message) bool { return len(fs) == 2 })
	h.m.Handle(ctx, c, wire.SessionOpen{SessionID: "tg:1"})
	h.m.Handle(ctx, c, wire.Ack{SessionID: "tg:1"})
	if got := fmt.Sprint(h.outboxRows(t, tg.ClientID)); got != "[]" {
		t.Fatalf("rows after ack: %s", got)
	}
	rec.mu.Lock()
	n := len(rec.frames)
	rec.mu.Unlock()
	if n != 2 {
		t.Fatalf("%d frames, want 2 (session_open sent awaiting rows again)", n)
	}
	bye()
	_, rec, bye = h.connectAcking(t, tg)
	defer bye()
	quiet(t, rec)
}

// A reply to a client in ack mode is in the outbox from the commit that
// stores its turn: a process killed right after that commit, before the
// frames went out or anything else was written, leaves the reply for the
// client's next connection (the turn, finished, does not run again). Rows
// written as taken that no connection took are then marked as not taken.
func TestAckModeReplyStoredWithItsTurn(t *testing.T) {
	h := start(t, t.TempDir(), yamlWith("echo", ""))
	ctx := context.Background()
	atCommit, release := blockAtCommit(t)

	c1, rec1, bye1 := h.connectAcking(t, tg)
	h.m.Handle(ctx, c1, wire.TextFinal{Text: "hi", SessionID: "tg:1"})
	atCommit("hi")
	// What a process killed here leaves to the next one.
	if got := fmt.Sprint(h.outboxRows(t, tg.ClientID)); got != "[1:tg:1 1:tg:1]" {
		t.Fatalf("outbox right after the turn's commit: %s, want its response and turn_complete", got)
	}
	release()
	rec1.wait(t, func(fs []wire.Message) bool { return completes(fs) == 1 })
	waitRows(t, h, tg.ClientID, "[1:tg:1 1:tg:1]") // taken as assumed: unchanged
	h.m.Handle(ctx, c1, wire.Ack{SessionID: "tg:1"})
	waitRows(t, h, tg.ClientID, "[]")

	// The connection closes between the commit and the delivery.
	h.m.Handle(ctx, c1, wire.TextFinal{Text: "second", SessionID: "tg:1"})
	atCommit("second")
	bye1()
	release()
	waitRows(t, h, tg.ClientID, "[0:tg:1 0:tg:1]")
	_, rec2, bye2 := h.connectAcking(t, tg)
	defer bye2()
	fs := rec2.wait(t, func(fs []wire.Message) bool { return completes(fs) == 1 })
	if rs := responses(fs); len(rs) != 1 || rs[0].Text != provider.EchoReply("second") {
		t.Fatalf("next connection got %#v, want the reply to \"second\" once", fs)
	}
	waitRows(t, h, tg.ClientID, "[1:tg:1 1:tg:1]") // sent again, awaiting the ack
}

// blockAtCommit makes every turn (or push) stop right after its result is
// committed (testHookStored): atCommit waits for one to get there, release
// lets it go on.
func blockAtCommit(t *testing.T) (atCommit func(what string), release func()) {
	stored, next, ended := make(chan struct{}), make(chan struct{}), make(chan struct{})
	testHookStored = func() {
		select {
		case stored <- struct{}{}:
			select {
			case <-next:
			case <-ended:
			}
		case <-ended: // the test failed: let the manager stop
		}
	}
	// Before the harness's cleanup, which waits for the runs.
	t.Cleanup(func() {
		testHookStored = nil
		close(ended)
	})
	atCommit = func(what string) {
		t.Helper()
		select {
		case <-stored:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the result was never stored", what)
		}
	}
	return atCommit, func() { next <- struct{}{} }
}

// ack{session_id, turn_id} forgets exactly that turn: a second turn of
// the session that finished while the client was still posting the first
// stays until its own ack (the older ack{session_id} would forget both).
func TestAckByTurnForgetsOnlyThatTurn(t *testing.T) {
	h := start(t, t.TempDir(), yamlWith("echo", ""))
	ctx := context.Background()
	c1, rec1, bye1 := h.connectAcking(t, tg)
	h.m.Handle(ctx, c1, wire.TextFinal{Text: "first", SessionID: "tg:1"})
	h.m.Handle(ctx, c1, wire.TextFinal{Text: "second", SessionID: "tg:1"}) // queued behind the first
	fs := rec1.wait(t, func(fs []wire.Message) bool { return len(responses(fs)) == 2 && completes(fs) == 2 })
	rs := responses(fs)
	if rs[0].TurnID == "" || rs[1].TurnID == "" || rs[0].TurnID == rs[1].TurnID {
		t.Fatalf("turn ids %q and %q, want two different ones", rs[0].TurnID, rs[1].TurnID)
	}
	var done []string
	for _, f := range fs {
		if tc, ok := f.(wire.TurnComplete); ok {
			done = append(done, tc.TurnID)
		}
	}
	if fmt.Sprint(done) != fmt.Sprint([]string{rs[0].TurnID, rs[1].TurnID}) {
		t.Fatalf("turn_complete ids %q, want those of the responses", done)
	}
	waitRows(t, h, tg.ClientID, "[1:tg:1 1:tg:1 1:tg:1 1:tg:1]")
	// The first reply is shown; the second had reached the bridge but was
	// not posted yet when it acked the first, then died.
	h.m.Handle(ctx, c1, wire.Ack{SessionID: "tg:1", TurnID: rs[0].TurnID})
	waitRows(t, h, tg.ClientID, "[1:tg:1 1:tg:1]")
	bye1()
	c, rec, bye := h.connectAcking(t, tg)
	defer bye()
	again := rec.wait(t, func(fs []wire.Message) bool { return len(fs) == 2 })
	if r, ok := again[0].(wire.Response); !ok || r.TurnID != rs[1].TurnID || r.Text != provider.EchoReply("second") {
		t.Fatalf("re-sent %#v, want only the second turn", again)
	}
	// An ack naming a turn that is not there forgets nothing.
	h.m.Handle(ctx, c, wire.Ack{SessionID: "tg:1", TurnID: "t0000000000000000"})
	waitRows(t, h, tg.ClientID, "[1:tg:1 1:tg:1]")
	h.m.Handle(ctx, c, wire.Ack{SessionID: "tg:1", TurnID: rs[1].TurnID})
	waitRows(t, h, tg.ClientID, "[]")
}

// A turn that ends while the opted-in client is away is stored unsent,
// sent on connect and then kept (awaiting) until acked; an ack sent before
// the auth frame, as the bridge does for acks its last connection could
// not send, is applied before anything is re-sent.
func TestAckBeforeAuthAppliesFirst(t *testing.T) {
	h := start(t, t.TempDir(), yamlWith("echo", ""))
	ctx := context.Background()
	c1, rec1, bye1 := h.connectAcking(t, tg)
	h.m.Handle(ctx, c1, wire.TextFinal{Text: "one", SessionID: "tg:1"})
	rec1.wait(t, func(fs []wire.Message) bool { return len(responses(fs)) == 1 })
	waitRows(t, h, tg.ClientID, "[1:tg:1 1:tg:1]")
	bye1()

	rec := newRecorder()
	c := &Client{Identity: tg, Sink: rec}
	bye := h.m.Connect(c) // deferred until auth: tg is in ack mode
	defer bye()
	h.m.Handle(ctx, c, wire.Ack{SessionID: "tg:1"})
	if err := h.m.SetAcks(ctx, c, true); err != nil {
		t.Fatal(err)
	}
	quiet(t, rec)
	if got := fmt.Sprint(h.outboxRows(t, tg.ClientID)); got != "[]" {
		t.Fatalf("rows: %s", got)
	}
}

// A connection of a client in ack mode that never sends auth still gets
// its outbox, after authWait.
func TestAckModeWithoutAuthFlushesLater(t *testing.T) {
	h := start(t, t.TempDir(), yamlWith("echo", ""))
	ctx := context.Background()
	c1, _, bye1 := h.connectAcking(t, tg)
	bye1()
	h.m.Handle(ctx, c1, wire.TextFinal{Text: "away", SessionID: "tg:1"})
	waitRows(t, h, tg.ClientID, "[0:tg:1 0:tg:1]") // nobody took them
	rec := newRecorder()
	start := time.Now()
	defer h.m.Connect(&Client{Identity: tg, Sink: rec})()
	rec.wait(t, func(fs []wire.Message) bool { return len(responses(fs)) == 1 })
	if d := time.Since(start); d < authWait/2 {
		t.Fatalf("flushed after %v, want about authWait", d)
	}
	waitRows(t, h, tg.ClientID, "[1:tg:1 1:tg:1]") // sent, kept until acked
}

// A client that never opted in keeps the plain outbox: nothing is stored
// for replies it took, and stored ones are deleted once sent.
func TestNoAckModeUnchanged(t *testing.T) {
	h := start(t, t.TempDir(), yamlWith("echo", ""))
	ctx := context.Background()
	rec := newRecorder()
	c := &Client{Identity: alice, Sink: rec}
	bye := h.m.Connect(c)
	if err := h.m.SetAcks(ctx, c, false); err != nil { // a plain auth frame
		t.Fatal(err)
	}
	h.m.Handle(ctx, c, wire.TextFinal{Text: "live", SessionID: "s1"})
	rec.wait(t, func(fs []wire.Message) bool { return len(responses(fs)) == 1 })
	time.Sleep(20 * time.Millisecond)
	if got := fmt.Sprint(h.outboxRows(t, alice.ClientID)); got != "[]" {
		t.Fatalf("rows after a live reply: %s", got)
	}
	bye()
	h.m.Handle(ctx, c, wire.TextFinal{Text: "away", SessionID: "s1"})
	waitRows(t, h, alice.ClientID, "[0:s1 0:s1]")
	rec2 := newRecorder()
	defer h.m.Connect(&Client{Identity: alice, Sink: rec2})() // flushed at once
	rec2.wait(t, func(fs []wire.Message) bool { return len(responses(fs)) == 1 })
	waitRows(t, h, alice.ClientID, "[]")
}

// Opting out sends the awaiting rows once more, then deletes them; ack mode
// survives a restart.
func TestAckModeOptOutAndRestart(t *testing.T) {
	dir := t.TempDir()
	h := start(t, dir, yamlWith("echo", ""))
	ctx := context.Background()
	c1, rec1, bye1 := h.connectAcking(t, tg)
	h.m.Handle(ctx, c1, wire.TextFinal{Text: "x", SessionID: "tg:1"})
	rec1.wait(t, func(fs []wire.Message) bool { return len(responses(fs)) == 1 })
	waitRows(t, h, tg.ClientID, "[1:tg:1 1:tg:1]")
	bye1()
	h.cancel()
	h.m.Wait()
	h.st.Close()

	h2 := start(t, dir, yamlWith("echo", ""))
	if !h2.m.ackMode(tg.ClientID) {
		t.Fatal("ack mode lost across a restart")
	}
	rec := newRecorder()
	c := &Client{Identity: tg, Sink: rec}
	defer h2.m.Connect(c)()
	if err := h2.m.SetAcks(ctx, c, false); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, func(fs []wire.Message) bool { return len(fs) == 2 })
	waitRows(t, h2, tg.ClientID, "[]")
	if h2.m.ackMode(tg.ClientID) {
		t.Fatal("still in ack mode after auth without acks")
	}
}

// Awaiting rows are bounded by age and by count per client.
func TestAckBounds(t *testing.T) {
	h := start(t, t.TempDir(), yamlWith("echo", ""))
	h.m.db.ackMax = 4
	ctx := context.Background()
	c, rec, bye := h.connectAcking(t, tg)
	for i := range 3 {
		h.m.Handle(ctx, c, wire.TextFinal{Text: fmt.Sprint("turn ", i), SessionID: "tg:1"})
		rec.wait(t, func(fs []wire.Message) bool { return len(responses(fs)) == i+1 })
	}
	// Rows are written after the live delivery: wait for all 6 inserts.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var last int
		h.st.DB().QueryRow(`SELECT COALESCE(MAX(id), 0) FROM outbox`).Scan(&last)
		if last == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("last outbox row id %d, want 6", last)
		}
		time.Sleep(5 * time.Millisecond)
	}
	waitRows(t, h, tg.ClientID, "[1:tg:1 1:tg:1 1:tg:1 1:tg:1]") // 6 rows capped to the newest 4
	bye()
	// Age: every row is made older than ackKeep; the next connect drops
	// them instead of re-sending day-old replies.
	old := time.Now().Add(-ackKeepDefault - time.Minute).UnixMilli()
	if _, err := h.st.DB().Exec(`UPDATE outbox SET created_at = ?`, old); err != nil {
		t.Fatal(err)
	}
	_, rec2, bye2 := h.connectAcking(t, tg)
	defer bye2()
	quiet(t, rec2)
	waitRows(t, h, tg.ClientID, "[]")
}

func waitRows(t *testing.T, h *harness, clientID, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := fmt.Sprint(h.outboxRows(t, clientID))
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("outbox rows %s, want %s", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
