package session

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/provider"
	"github.com/agentd/agentd/internal/provider/providertest"
)

// A server-side turn runs in its session with history, under a model
// override that does not pin the session; an ephemeral one keeps no
// history; usage rows are written for both.
func TestRunTurn(t *testing.T) {
	h := start(t, t.TempDir(), yamlWith("echo", ""))
	ctx := context.Background()
	res, err := h.m.RunTurn(ctx, TurnRequest{Client: "scheduler:t1", SessionID: "scheduler:t1", Text: "hello there", Model: "echo"})
	if err != nil || res.Text != provider.EchoReply("hello there") || res.Model != "echo" || res.Usage.TotalTokens == 0 {
		t.Fatalf("RunTurn = %+v, %v", res, err)
	}
	hist, err := h.m.db.history(ctx, "scheduler:t1")
	if err != nil || len(hist) != 2 {
		t.Fatalf("history %+v %v", hist, err)
	}
	row, _ := h.m.db.session(ctx, "scheduler:t1")
	if row.Owner != "scheduler:t1" || row.Pinned != "" {
		t.Fatalf("session %+v", row)
	}
	if _, err := h.m.RunTurn(ctx, TurnRequest{Client: "wf", SessionID: "workflow:r1", Text: "once", Ephemeral: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.db.session(ctx, "workflow:r1"); !errors.Is(err, errNoSession) {
		t.Fatalf("ephemeral turn created a session: %v", err)
	}
	var n int
	h.st.DB().QueryRow(`SELECT COUNT(*) FROM turn_usage WHERE session_id IN ('scheduler:t1', 'workflow:r1')`).Scan(&n)
	if n != 2 {
		t.Fatalf("%d usage rows", n)
	}
	if _, err := h.m.RunTurn(ctx, TurnRequest{Client: "x", SessionID: "s", Text: "hi", Model: "nope"}); !errors.Is(err, ErrUnknownModel) {
		t.Fatalf("unknown model: %v", err)
	}
}

// Cancelling the caller's context interrupts the active turn; a turn
// queued behind it is withdrawn without running.
func TestRunTurnCancel(t *testing.T) {
	fake := providertest.NewOpenAI(t, providertest.Response{Hang: true})
	h := start(t, t.TempDir(), yamlWith("gpt", fake.BaseURL()))
	ctx, cancel := context.WithCancel(context.Background())
	type out struct {
		res TurnResult
		err error
	}
	first, second := make(chan out, 1), make(chan out, 1)
	go func() {
		r, err := h.m.RunTurn(ctx, TurnRequest{Client: "c", SessionID: "s1", Text: "slow"})
		first <- out{r, err}
	}()
	// Wait for the first turn to be active before queueing the second.
	deadline := time.Now().Add(10 * time.Second)
	for len(fake.Requests()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	go func() {
		r, err := h.m.RunTurn(ctx, TurnRequest{Client: "c", SessionID: "s1", Text: "queued"})
		second <- out{r, err}
	}()
	for {
		h.m.mu.Lock()
		n := len(h.m.lanes["s:s1"].queue)
		h.m.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	a, b := <-first, <-second
	if !a.res.Interrupted {
		t.Fatalf("active turn: %+v", a)
	}
	if !b.res.Interrupted || !errors.Is(b.err, context.Canceled) {
		t.Fatalf("queued turn: %+v", b)
	}
	if n := len(fake.Requests()); n != 1 {
		t.Fatalf("%d model requests, want 1 (the queued turn must not run)", n)
	}
}
