package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/agent"
	"github.com/agentd/agentd/internal/provider"
	"github.com/agentd/agentd/internal/provider/providertest"
)

// flavors are the two wire protocols the tests run against.
var flavors = providertest.Flavors

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newProvider(t testing.TB, f providertest.Flavor, srv *providertest.Server) provider.Provider {
	t.Helper()
	p, err := provider.New(provider.Config{
		ID: f.Name, Kind: f.Kind, BaseURL: srv.BaseURL(), APIKey: srv.APIKey, Logger: quiet,
		Retry: provider.RetryPolicy{BaseDelay: 5 * time.Millisecond, MaxDelay: 20 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// recorder collects sink events.
type recorder struct {
	mu     sync.Mutex
	events []agent.Event
}

func (r *recorder) sink(ev agent.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var parts []string
	for _, ev := range r.events {
		switch e := ev.(type) {
		case agent.Delta:
			parts = append(parts, "D:"+e.Text)
		case agent.Status:
			parts = append(parts, "S:"+e.Text)
		}
	}
	return strings.Join(parts, "|")
}

func (r *recorder) deltaText() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, ev := range r.events {
		if d, ok := ev.(agent.Delta); ok {
			b.WriteString(d.Text)
		}
	}
	return b.String()
}

// weatherTool records the arguments it was called with.
type weatherTool struct {
	mu   sync.Mutex
	args []string
}

func (w *weatherTool) Spec() provider.ToolSpec {
	return provider.ToolSpec{Name: "get_weather", Description: "Current weather",
		InputSchema: json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`)}
}

func (w *weatherTool) Call(_ context.Context, args json.RawMessage) (string, error) {
	w.mu.Lock()
	w.args = append(w.args, string(args))
	w.mu.Unlock()
	var in struct{ City string }
	if err := json.Unmarshal(args, &in); err != nil {
		return "", fmt.Errorf("bad arguments: %w", err)
	}
	return "sunny, 21C in " + in.City, nil
}

var history = []provider.Message{
	{Role: provider.RoleUser, Content: "hi"},
	{Role: provider.RoleAssistant, Content: "hello!"},
}

func TestToolRoundTrip(t *testing.T) {
	for _, f := range flavors {
		t.Run(f.Name, func(t *testing.T) {
			srv := f.New(t,
				providertest.Response{
					Text:      []string{"Checking", "."},
					ToolCalls: []providertest.ToolCall{{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Paris"}`}},
					Usage:     &providertest.Usage{PromptTokens: 10, CompletionTokens: 5},
				},
				providertest.Response{
					Text:  []string{"It is ", "sunny."},
					Usage: &providertest.Usage{PromptTokens: 20, CompletionTokens: 6},
				},
			)
			tool := &weatherTool{}
			reg, err := agent.NewRegistry(tool)
			if err != nil {
				t.Fatal(err)
			}
			a := &agent.Agent{Tools: reg, Logger: quiet}
			var rec recorder
			out, err := a.Run(context.Background(), agent.Turn{
				Provider: newProvider(t, f, srv), Model: "m1", System: "be brief",
				History: history, UserText: "weather in Paris?", Sink: rec.sink,
			})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if got, want := rec.String(), "D:Checking|D:.|S:using get_weather…|S:get_weather done|D:\n\nIt is |D:sunny."; got != want {
				t.Errorf("events = %q, want %q", got, want)
			}
			if out.Text != "Checking.\n\nIt is sunny." || rec.deltaText() != out.Text {
				t.Errorf("Text = %q, deltas = %q", out.Text, rec.deltaText())
			}
			if out.Usage != (provider.Usage{PromptTokens: 30, CompletionTokens: 11}) {
				t.Errorf("Usage = %+v", out.Usage)
			}
			if len(tool.args) != 1 || tool.args[0] != `{"city":"Paris"}` {
				t.Errorf("tool args = %q", tool.args)
			}
			roles := []provider.Role{}
			for _, m := range out.Messages {
				roles = append(roles, m.Role)
			}
			if fmt.Sprint(roles) != "[user assistant tool assistant]" || out.ToolRounds != 1 {
				t.Errorf("messages roles = %v rounds = %d", roles, out.ToolRounds)
			}
			if tm := out.Messages[2]; tm.ToolCallID != "call_1" || tm.Content != "sunny, 21C in Paris" {
				t.Errorf("tool message = %+v", tm)
			}

			reqs := srv.Requests()
			if len(reqs) != 2 {
				t.Fatalf("requests = %d", len(reqs))
			}
			switch f.Kind {
			case provider.KindOpenAI:
				first, second := reqs[0].OpenAI(t), reqs[1].OpenAI(t)
				if first.Messages[0].Text() != "be brief" || first.Messages[1].Text() != "hi" || first.Messages[3].Text() != "weather in Paris?" {
					t.Errorf("first request messages = %+v", first.Messages)
				}
				if len(first.Tools) != 1 || first.Tools[0].Function.Name != "get_weather" {
					t.Errorf("tools = %+v", first.Tools)
				}
				last := second.Messages[len(second.Messages)-1]
				prev := second.Messages[len(second.Messages)-2]
				if last.Role != "tool" || last.ToolCallID != "call_1" || last.Text() != "sunny, 21C in Paris" {
					t.Errorf("second request tool message = %+v", last)
				}
				if prev.Role != "assistant" || len(prev.ToolCalls) != 1 || prev.ToolCalls[0].Function.Arguments != `{"city":"Paris"}` {
					t.Errorf("second request assistant message = %+v", prev)
				}
			case provider.KindAnthropic:
				first, second := reqs[0].Anthropic(t), reqs[1].Anthropic(t)
				if first.SystemText() != "be brief" || len(first.Messages) != 3 {
					t.Errorf("first request = %+v", first)
				}
				last := second.Messages[len(second.Messages)-1]
				if last.Role != "user" || last.Content[0].Type != "tool_result" || last.Content[0].ToolUseID != "call_1" ||
					last.Content[0].ResultText() != "sunny, 21C in Paris" {
					t.Errorf("second request tool result = %+v", last)
				}
			}
		})
	}
}

func TestToolFailuresAreFedBack(t *testing.T) {
	cases := []struct {
		name    string
		tool    string
		args    string
		wantHas string
	}{
		{"unknown tool", "no_such_tool", `{}`, `unknown tool "no_such_tool"`},
		{"tool error", "get_weather", `{"city":`, "bad arguments"},
		{"tool panic", "explode", `{}`, "tool explode panicked: kaboom"},
	}
	for _, f := range flavors {
		for _, c := range cases {
			t.Run(f.Name+"/"+c.name, func(t *testing.T) {
				srv := f.New(t,
					providertest.Response{ToolCalls: []providertest.ToolCall{{ID: "c1", Name: c.tool, Arguments: c.args}}},
					providertest.Response{Text: []string{"sorry"}},
				)
				reg, _ := agent.NewRegistry(&weatherTool{}, agent.FuncTool{
					Def: provider.ToolSpec{Name: "explode"},
					Fn:  func(context.Context, json.RawMessage) (string, error) { panic("kaboom") },
				})
				a := &agent.Agent{Tools: reg, Logger: quiet}
				out, err := a.Run(context.Background(), agent.Turn{Provider: newProvider(t, f, srv), Model: "m", UserText: "go"})
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				tm := out.Messages[2]
				if tm.Role != provider.RoleTool || !tm.IsError || !strings.Contains(tm.Content, c.wantHas) {
					t.Errorf("tool message = %+v, want error containing %q", tm, c.wantHas)
				}
				if out.Text != "sorry" {
					t.Errorf("Text = %q", out.Text)
				}
				if got := len(srv.Requests()); got != 2 {
					t.Errorf("requests = %d", got)
				}
			})
		}
	}
}

func TestToolRoundLimit(t *testing.T) {
	loop := providertest.Response{ToolCalls: []providertest.ToolCall{{ID: "c", Name: "get_weather", Arguments: `{"city":"X"}`}}}
	srv := providertest.NewOpenAI(t, loop, loop, loop, loop)
	tool := &weatherTool{}
	reg, _ := agent.NewRegistry(tool)
	a := &agent.Agent{Tools: reg, MaxToolRounds: 2, Logger: quiet}
	var rec recorder
	out, err := a.Run(context.Background(), agent.Turn{Provider: newProvider(t, flavors[0], srv), Model: "m", UserText: "loop", Sink: rec.sink})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(srv.Requests()); n != 3 {
		t.Errorf("requests = %d, want 3 (initial + 2 tool rounds)", n)
	}
	if len(tool.args) != 2 || out.ToolRounds != 2 {
		t.Errorf("tool ran %d times, rounds %d", len(tool.args), out.ToolRounds)
	}
	if !strings.Contains(rec.String(), "S:stopped: the model kept calling tools after 2 rounds") || !strings.Contains(out.Text, "stopped") {
		t.Errorf("events = %q text = %q", rec.String(), out.Text)
	}
	// Every assistant tool call must have a result so the history stays valid.
	pending := map[string]int{}
	for _, m := range out.Messages {
		for _, c := range m.ToolCalls {
			pending[c.ID]++
		}
		if m.Role == provider.RoleTool {
			pending[m.ToolCallID]--
		}
	}
	for id, n := range pending {
		if n != 0 {
			t.Errorf("tool call %s has %d unanswered calls", id, n)
		}
	}
}

func TestInterruptKeepsPartialText(t *testing.T) {
	for _, f := range flavors {
		t.Run(f.Name, func(t *testing.T) {
			words := make([]string, 40)
			for i := range words {
				words[i] = fmt.Sprintf("w%d ", i)
			}
			srv := f.New(t, providertest.Response{Text: words, Delay: 80 * time.Millisecond})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var mu sync.Mutex
			cancelled := false
			var late []string
			n := 0
			var at time.Time
			out, err := (&agent.Agent{Logger: quiet}).Run(ctx, agent.Turn{
				Provider: newProvider(t, f, srv), Model: "m", UserText: "talk",
				Sink: func(ev agent.Event) {
					mu.Lock()
					defer mu.Unlock()
					if cancelled {
						late = append(late, fmt.Sprint(ev))
					}
					n++
					if n == 3 {
						cancelled, at = true, time.Now()
						cancel()
					}
				},
			})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if d := time.Since(at); d > 500*time.Millisecond { // the stream would run 3s more
				t.Errorf("Run returned %s after cancel", d)
			}
			if !out.Interrupted || out.Text != "w0 w1 w2 " {
				t.Errorf("Interrupted=%v Text=%q", out.Interrupted, out.Text)
			}
			if len(late) > 0 {
				t.Errorf("events after cancellation: %v", late)
			}
			if len(out.Messages) != 2 || out.Messages[1].Content != "w0 w1 w2 " {
				t.Errorf("messages = %+v", out.Messages)
			}
		})
	}
}

func TestProviderErrors(t *testing.T) {
	cases := []struct {
		name     string
		script   []providertest.Response
		want     error
		wantText string
	}{
		{"unauthorized", []providertest.Response{{Status: 401}}, provider.ErrUnauthorized, ""},
		{"cut mid-way", []providertest.Response{{Text: []string{"half ", "an ", "answer"}, Cut: true, CutAfter: 2}}, provider.ErrStreamCut, "half an "},
	}
	for _, f := range flavors {
		for _, c := range cases {
			t.Run(f.Name+"/"+c.name, func(t *testing.T) {
				srv := f.New(t, c.script...)
				out, err := (&agent.Agent{Logger: quiet}).Run(context.Background(), agent.Turn{Provider: newProvider(t, f, srv), Model: "m", UserText: "q"})
				if !errors.Is(err, c.want) {
					t.Fatalf("err = %v, want %v", err, c.want)
				}
				if out == nil || out.Text != c.wantText || out.Interrupted {
					t.Fatalf("outcome = %+v", out)
				}
				if out.Messages[0].Role != provider.RoleUser {
					t.Errorf("messages = %+v", out.Messages)
				}
			})
		}
	}
}

func TestAttachmentsFromReply(t *testing.T) {
	root := t.TempDir()
	img := filepath.Join(root, "cat.png")
	if err := os.WriteFile(img, []byte("png"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The marker is split across deltas: it must never show in the stream.
	srv := providertest.NewOpenAI(t, providertest.Response{Text: []string{
		"Here it is: [IMA", "GE:" + img[:5], img[5:] + "] and [FILE:/etc/passwd] done. Arrays [0] stay.",
	}})
	var rec recorder
	a := &agent.Agent{AllowedRoots: []string{root}, Logger: quiet}
	out, err := a.Run(context.Background(), agent.Turn{Provider: newProvider(t, flavors[0], srv), Model: "m", UserText: "cat?", Sink: rec.sink})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(rec.deltaText(), "[IMAGE") || strings.Contains(rec.deltaText(), "[FILE") {
		t.Errorf("marker leaked into deltas: %q", rec.deltaText())
	}
	if out.Text != "Here it is: and done. Arrays [0] stay." {
		t.Errorf("Text = %q", out.Text)
	}
	resolvedImg, _ := filepath.EvalSymlinks(img)
	if len(out.Attachments) != 1 || out.Attachments[0] != (agent.Attachment{Type: "image", Path: resolvedImg, Filename: "cat.png"}) {
		t.Errorf("Attachments = %+v", out.Attachments)
	}
	if !strings.Contains(rec.String(), "S:attachment /etc/passwd dropped: outside the allowed folders") {
		t.Errorf("no status note for refused attachment: %q", rec.String())
	}
	if !strings.Contains(out.Messages[1].Content, "[IMAGE:"+img+"]") {
		t.Errorf("history should keep the raw marker: %q", out.Messages[1].Content)
	}
}

func TestUserAttachmentsAndEcho(t *testing.T) {
	var rec recorder
	out, err := (&agent.Agent{Logger: quiet}).Run(context.Background(), agent.Turn{
		Provider: provider.NewEcho("echo", 0), Model: "echo", UserText: "look at this",
		Attachments: []agent.Attachment{{Type: "image", Path: "/srv/agent/uploads/a.png", Filename: "a.png"}},
		Sink:        rec.sink,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `echo: look at this [user attached image "a.png" at /srv/agent/uploads/a.png] ` + provider.EchoNotice
	if out.Text != want || rec.deltaText() != want {
		t.Errorf("Text = %q\ndeltas = %q\nwant %q", out.Text, rec.deltaText(), want)
	}
	if out.Usage.CompletionTokens != len(strings.Fields(want)) {
		t.Errorf("usage = %+v", out.Usage)
	}
}

func TestCost(t *testing.T) {
	cases := []struct {
		u       provider.Usage
		in, out float64
		want    float64
	}{
		{provider.Usage{}, 3, 15, 0},
		{provider.Usage{PromptTokens: 1_000_000, CompletionTokens: 0}, 3, 15, 3},
		{provider.Usage{PromptTokens: 1000, CompletionTokens: 500}, 3, 15, 0.003 + 0.0075},
		{provider.Usage{PromptTokens: 123, CompletionTokens: 456}, 0, 0, 0},
	}
	for _, c := range cases {
		if got := agent.Cost(c.u, c.in, c.out); got < c.want-1e-12 || got > c.want+1e-12 {
			t.Errorf("Cost(%+v, %v, %v) = %v, want %v", c.u, c.in, c.out, got, c.want)
		}
	}
}

func TestRegistry(t *testing.T) {
	reg, err := agent.NewRegistry(&weatherTool{})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(&weatherTool{}); err == nil {
		t.Error("duplicate accepted")
	}
	if err := reg.Register(agent.FuncTool{}); err == nil {
		t.Error("nameless tool accepted")
	}
	if _, err := reg.Call(context.Background(), "nope", nil); !errors.Is(err, agent.ErrUnknownTool) {
		t.Errorf("unknown tool err = %v", err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("t%d", i)
			_ = reg.Register(agent.FuncTool{Def: provider.ToolSpec{Name: name}, Fn: func(context.Context, json.RawMessage) (string, error) { return name, nil }})
			_ = reg.List()
			if out, err := reg.Call(context.Background(), name, nil); err != nil || out != name {
				t.Errorf("call %s = %q %v", name, out, err)
			}
		}()
	}
	wg.Wait()
	specs := reg.List()
	if len(specs) != 9 || specs[0].Name != "get_weather" || specs[1].Name != "t0" {
		t.Errorf("List = %d specs, first %q", len(specs), specs[0].Name)
	}
	if !reg.Unregister("t0") || reg.Unregister("t0") {
		t.Error("Unregister")
	}
}

// BenchmarkTurnEcho measures a whole turn (history, filter, attachment pass)
// on the offline echo provider.
func BenchmarkTurnEcho(b *testing.B) {
	a := &agent.Agent{Logger: quiet}
	p := provider.NewEcho("echo", 0)
	text := strings.Repeat("lorem ipsum ", 100)
	deltas := 0
	b.ReportAllocs()
	for b.Loop() {
		_, err := a.Run(context.Background(), agent.Turn{Provider: p, Model: "echo", History: history, UserText: text,
			Sink: func(agent.Event) { deltas++ }})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(deltas)/b.Elapsed().Seconds(), "deltas/s")
}
