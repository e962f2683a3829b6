package session

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/provider"
	"github.com/agentd/agentd/internal/provider/providertest"
	"github.com/agentd/agentd/wire"
)

// turnRows is the text of every persisted turn, in seq order.
func turnRows(t *testing.T, h *harness) []string {
	t.Helper()
	rows, err := h.st.DB().Query(`SELECT text FROM turns ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		rows.Scan(&s)
		out = append(out, s)
	}
	return out
}

// Many runs that outlast persistDelay at once all get their rows (written
// together by the persist loop), and every one of them runs again after a
// crash.
func TestRunningTurnsPersistedThenResumed(t *testing.T) {
	const n = 40
	fake := providertest.NewOpenAI(t, providertest.Response{Hang: true})
	dir := t.TempDir()
	h1 := start(t, dir, yamlWith("gpt", fake.BaseURL()))
	ids := make([]*auth.Identity, n)
	for i := range ids {
		ids[i] = &auth.Identity{ClientID: fmt.Sprintf("c%02d", i), Capabilities: []string{auth.CapChat}}
		h1.m.Handle(context.Background(), &Client{Identity: ids[i], Sink: newRecorder()},
			wire.TextFinal{Text: fmt.Sprintf("long %d", i), SessionID: fmt.Sprintf("s%d", i)})
	}
	got := waitTurnRows(t, h1, n)
	for i, text := range got {
		if want := fmt.Sprintf("long %d", i); text != want {
			t.Fatalf("row %d is %q, want %q (start order)", i, text, want)
		}
	}
	h1.st.Close() // crash: the runs still hang

	h2 := start(t, dir, yamlWith("echo", ""))
	for i, id := range ids {
		rec := newRecorder()
		h2.m.Connect(&Client{Identity: id, Sink: rec})
		fs := rec.wait(t, func(fs []wire.Message) bool { return len(responses(fs)) == 1 })
		if r := responses(fs)[0]; r.Text != provider.EchoReply(fmt.Sprintf("long %d", i)) {
			t.Fatalf("client %d after restart: %q", i, r.Text)
		}
	}
	waitTurnRows(t, h2, 0)
}

// A run cut by shutdown is persisted whether its delay had passed or not
// (the run writes it itself when the loop has not), and runs after the
// restart.
func TestCutRunPersistedWhateverItsDelay(t *testing.T) {
	fake := providertest.NewOpenAI(t, providertest.Response{Hang: true})
	dir := t.TempDir()
	h1 := start(t, dir, yamlWith("gpt", fake.BaseURL()))
	h1.m.Handle(context.Background(), &Client{Identity: alice, Sink: newRecorder()}, wire.TextFinal{Text: "cut", SessionID: "s1"})
	for len(fake.Requests()) == 0 {
		time.Sleep(50 * time.Microsecond)
	}
	h1.cancel() // shutdown, most likely before "cut" reached its delay
	h1.m.Wait()
	if got := turnRows(t, h1); fmt.Sprint(got) != "[cut]" {
		t.Fatalf("persisted after shutdown: %v, want [cut]", got)
	}
	if rs := restartReplies(t, h1, dir, 1); rs[0].Text != provider.EchoReply("cut") {
		t.Fatalf("after restart: %q", rs[0].Text)
	}
}

// restartReplies crashes h1 (its runs may still hang), starts the manager
// again on its directory with the echo model, and returns the first n
// replies alice gets.
func restartReplies(t *testing.T, h1 *harness, dir string, n int) []wire.Response {
	t.Helper()
	h1.st.Close()
	h2 := start(t, dir, yamlWith("echo", ""))
	rec := newRecorder()
	h2.m.Connect(&Client{Identity: alice, Sink: rec})
	fs := rec.wait(t, func(fs []wire.Message) bool { return len(responses(fs)) == n })
	return responses(fs)
}

// waitTurnRows waits until n turns are persisted and returns them.
func waitTurnRows(t *testing.T, h *harness, n int) []string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		got := turnRows(t, h)
		if len(got) == n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("persisted turns %v, want %d", got, n)
		}
	}
}

// A session created by a turn is cached with its empty history, and the
// cache follows the turns that come after: no read goes back to SQLite,
// and what it returns is what SQLite holds.
func TestNewSessionCachedEmpty(t *testing.T) {
	h := start(t, t.TempDir(), yamlWith("echo", ""))
	d := h.m.db
	ctx := context.Background()
	row, err := d.ensureSession(ctx, "fresh", "a11ce")
	if err != nil || row.Owner != "a11ce" || row.Created == 0 {
		t.Fatalf("ensureSession: %+v, %v", row, err)
	}
	if m, _, ok := d.cached("fresh"); !ok || m.owner != "a11ce" {
		t.Fatalf("session not cached: %+v %v", m, ok)
	}
	if msgs, _, ok := d.hist.get("fresh"); !ok || len(msgs) != 0 {
		t.Fatalf("history not cached empty: %v %v", msgs, ok)
	}
	again, err := d.ensureSession(ctx, "fresh", "b0b")
	if err != nil || again.Owner != "a11ce" {
		t.Fatalf("second ensureSession by another device: %+v, %v", again, err)
	}
	rec := newRecorder()
	c := &Client{Identity: alice, Sink: rec}
	h.m.Connect(c)
	h.m.Handle(ctx, c, wire.TextFinal{Text: "hello", SessionID: "fresh"})
	rec.wait(t, func(fs []wire.Message) bool { return len(responses(fs)) == 1 })
	cached, err := d.history(ctx, "fresh")
	if err != nil {
		t.Fatal(err)
	}
	stored, err := d.readHistory(ctx, "fresh")
	if err != nil || fmt.Sprint(cached) != fmt.Sprint(stored) || len(stored) != 2 {
		t.Fatalf("cached history %v, stored %v (%v)", cached, stored, err)
	}
}

// A turn_complete means the lane is free: a message sent as soon as it
// arrives starts at once, never queued{} behind the turn that is over.
func TestTurnCompleteFreesTheLane(t *testing.T) {
	h := start(t, t.TempDir(), yamlWith("echo", ""))
	rec := newRecorder()
	c := &Client{Identity: alice, Sink: rec}
	h.m.Connect(c)
	const turns = 300
	var fs []wire.Message
	for i := range turns {
		h.m.Handle(context.Background(), c, wire.TextFinal{Text: fmt.Sprintf("turn %d", i), SessionID: "s1"})
		fs = rec.wait(t, func(fs []wire.Message) bool {
			n := 0
			for _, f := range fs {
				if _, ok := f.(wire.TurnComplete); ok {
					n++
				}
			}
			return n == i+1
		})
	}
	for _, f := range fs {
		if q, ok := f.(wire.Queued); ok {
			t.Fatalf("queued %+v after the turn before it was complete", q)
		}
	}
}
