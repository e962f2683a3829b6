package mcp

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/agent"
	"github.com/agentd/agentd/internal/provider"
	"github.com/agentd/agentd/internal/provider/providertest"
)

// Turns of the real agent loop against the OpenAI-compatible fake, calling
// tools of a real server-everything.

func fakeModel(t testing.TB, script ...providertest.Response) (provider.Provider, *providertest.Server) {
	t.Helper()
	srv := providertest.NewOpenAI(t, script...)
	p, err := provider.New(provider.Config{ID: "fake", Kind: provider.KindOpenAI, BaseURL: srv.BaseURL(), APIKey: srv.APIKey,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return p, srv
}

type statuses struct {
	mu   sync.Mutex
	list []string
	seen chan string
}

func (s *statuses) sink(ev agent.Event) {
	if st, ok := ev.(agent.Status); ok {
		s.mu.Lock()
		s.list = append(s.list, st.Text)
		s.mu.Unlock()
		if s.seen != nil {
			select {
			case s.seen <- st.Text:
			default:
			}
		}
	}
}

func (s *statuses) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.list, " / ")
}

func runningEverything(t *testing.T, timeoutS float64) *fixture {
	f := newFixture(t, nil)
	f.pool.Start(context.Background())
	if _, err := f.pool.Create(context.Background(), Input{Name: "everything", Command: []string{peerBin(t, "mcp-server-everything")}, TimeoutS: timeoutS}); err != nil {
		t.Fatal(err)
	}
	f.waitState("everything", StateRunning)
	return f
}

func TestTurnCallsTwoToolsInOneRound(t *testing.T) {
	f := runningEverything(t, 0)
	prov, srv := fakeModel(t,
		providertest.Response{ToolCalls: []providertest.ToolCall{
			{ID: "c1", Name: "everything__echo", Arguments: `{"message":"sunny side"}`},
			{ID: "c2", Name: "everything__get-sum", Arguments: `{"a":1234,"b":4321}`},
		}},
		providertest.QuoteToolResults(),
	)
	st := &statuses{}
	a := &agent.Agent{Tools: f.reg}
	out, err := a.Run(context.Background(), agent.Turn{Provider: prov, Model: "m", UserText: "go", Sink: st.sink})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.Text, "sunny side") || !strings.Contains(out.Text, "5555") {
		t.Errorf("reply lacks the tool results: %q", out.Text)
	}
	want := "using everything__echo… / everything__echo done / using everything__get-sum… / everything__get-sum done"
	if st.String() != want {
		t.Errorf("status frames %q, want %q", st.String(), want)
	}
	// The tools were offered to the model under their registry names.
	req := srv.Requests()[0].OpenAI(t)
	names := map[string]bool{}
	for _, tl := range req.Tools {
		names[tl.Function.Name] = true
	}
	if !names["everything__echo"] || !names["everything__get-sum"] {
		t.Errorf("tools offered: %v", names)
	}
	// History keeps the calls and results for the next turn.
	var calls, results int
	for _, m := range out.Messages {
		calls += len(m.ToolCalls)
		if m.Role == provider.RoleTool && !m.IsError {
			results++
		}
	}
	if calls != 2 || results != 2 {
		t.Errorf("history has %d calls and %d results: %+v", calls, results, out.Messages)
	}
}

func TestToolPastItsTimeoutIsAnErrorResult(t *testing.T) {
	f := runningEverything(t, 0.5)
	prov, _ := fakeModel(t,
		providertest.Response{ToolCalls: []providertest.ToolCall{
			{ID: "slow", Name: "everything__trigger-long-running-operation", Arguments: `{"duration":30,"steps":3}`},
		}},
		providertest.QuoteToolResults(),
	)
	st := &statuses{}
	a := &agent.Agent{Tools: f.reg}
	out, err := a.Run(context.Background(), agent.Turn{Provider: prov, Model: "m", UserText: "go", Sink: st.sink})
	if err != nil {
		t.Fatal(err)
	}
	if out.Interrupted || !strings.Contains(out.Text, "timed out after 500ms") {
		t.Errorf("reply %q (interrupted %v)", out.Text, out.Interrupted)
	}
	if !strings.Contains(st.String(), "everything__trigger-long-running-operation failed: timed out") {
		t.Errorf("status frames %q", st.String())
	}
	// The server is still usable.
	if got, err := f.call(context.Background(), "everything__echo", map[string]any{"message": "still here"}); err != nil || !strings.Contains(got, "still here") {
		t.Errorf("echo after a timed-out call: %q, %v", got, err)
	}
}

func TestInterruptStopsARunningToolCall(t *testing.T) {
	f := runningEverything(t, 0)
	prov, _ := fakeModel(t,
		providertest.Response{ToolCalls: []providertest.ToolCall{
			// Far longer than the test may take: only the interrupt ends it.
			{ID: "slow", Name: "everything__trigger-long-running-operation", Arguments: `{"duration":3600,"steps":2}`},
		}},
	)
	st := &statuses{seen: make(chan string, 8)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for s := range st.seen {
			if strings.HasPrefix(s, "using ") {
				cancel()
				return
			}
		}
	}()
	a := &agent.Agent{Tools: f.reg}
	done := make(chan *agent.Outcome, 1)
	go func() {
		out, err := a.Run(ctx, agent.Turn{Provider: prov, Model: "m", UserText: "go", Sink: st.sink})
		if err != nil {
			t.Error(err)
		}
		done <- out
	}()
	select {
	case out := <-done:
		if out == nil || !out.Interrupted {
			t.Fatalf("outcome %+v", out)
		}
		last := out.Messages[len(out.Messages)-1]
		if last.Role != provider.RoleTool || !last.IsError {
			t.Errorf("the cancelled call has no error result: %+v", last)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the interrupt did not stop the running tool call")
	}
	if got, err := f.call(context.Background(), "everything__echo", map[string]any{"message": "after"}); err != nil || !strings.Contains(got, "after") {
		t.Errorf("echo after the interrupt: %q, %v", got, err)
	}
}

func TestToolRoundLimit(t *testing.T) {
	f := runningEverything(t, 0)
	loop := providertest.Response{ToolCalls: []providertest.ToolCall{{ID: "x", Name: "everything__echo", Arguments: `{"message":"again"}`}}}
	prov, srv := fakeModel(t, loop, loop, loop, loop)
	a := &agent.Agent{Tools: f.reg}
	out, err := a.Run(context.Background(), agent.Turn{Provider: prov, Model: "m", UserText: "go", MaxToolRounds: 2})
	if err != nil {
		t.Fatal(err)
	}
	if out.ToolRounds != 2 || len(srv.Requests()) != 3 || !strings.Contains(out.Text, "after 2 rounds") {
		t.Errorf("rounds %d, model calls %d, text %q", out.ToolRounds, len(srv.Requests()), out.Text)
	}
}
