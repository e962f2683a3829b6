package provider_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/provider"
	"github.com/agentd/agentd/internal/provider/providertest"
)

// flavors are the two wire protocols the tests run against.
var flavors = providertest.Flavors

// fastRetry keeps retry tests quick while exercising the real backoff path.
var fastRetry = provider.RetryPolicy{MaxAttempts: 3, BaseDelay: 10 * time.Millisecond, MaxDelay: 40 * time.Millisecond}

func newProvider(t testing.TB, f providertest.Flavor, srv *providertest.Server, mod ...func(*provider.Config)) provider.Provider {
	t.Helper()
	cfg := provider.Config{
		ID: "p-" + f.Name, Kind: f.Kind, BaseURL: srv.BaseURL(), APIKey: srv.APIKey,
		Retry:  fastRetry,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, m := range mod {
		m(&cfg)
	}
	p, err := provider.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

// collector records streamed events.
type collector struct{ events []provider.Event }

func (c *collector) on(ev provider.Event) error { c.events = append(c.events, ev); return nil }

func (c *collector) deltas() []string {
	var out []string
	for _, e := range c.events {
		if e.Type == provider.EventTextDelta {
			out = append(out, e.Text)
		}
	}
	return out
}

func (c *collector) toolStarts() []string {
	var out []string
	for _, e := range c.events {
		if e.Type == provider.EventToolCallStart {
			out = append(out, e.ToolName)
		}
	}
	return out
}

func simpleRequest() *provider.Request {
	return &provider.Request{
		Model:  "test-model",
		System: "You are terse.",
		Messages: []provider.Message{
			{Role: provider.RoleUser, Content: "earlier question"},
			{Role: provider.RoleAssistant, Content: "earlier answer"},
			{Role: provider.RoleUser, Content: "hello there"},
		},
		Tools: []provider.ToolSpec{{
			Name: "get_weather", Description: "Weather for a city",
			InputSchema: json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`),
		}},
		MaxTokens: 256,
	}
}

func TestStreamTextDeltasUsageAndRequest(t *testing.T) {
	for _, f := range flavors {
		t.Run(f.Name, func(t *testing.T) {
			srv := f.New(t, providertest.Response{
				Text:  []string{"Hel", "lo", ", ", "world"},
				Usage: &providertest.Usage{PromptTokens: 21, CompletionTokens: 4},
			})
			p := newProvider(t, f, srv)
			var c collector
			res, err := p.Stream(context.Background(), simpleRequest(), c.on)
			if err != nil {
				t.Fatalf("Stream: %v", err)
			}
			if got, want := strings.Join(c.deltas(), "|"), "Hel|lo|, |world"; got != want {
				t.Errorf("deltas = %q, want %q", got, want)
			}
			if res.Text != "Hello, world" {
				t.Errorf("Text = %q", res.Text)
			}
			if res.Usage != (provider.Usage{PromptTokens: 21, CompletionTokens: 4}) {
				t.Errorf("Usage = %+v", res.Usage)
			}
			if res.FinishReason != provider.FinishStop {
				t.Errorf("FinishReason = %q", res.FinishReason)
			}
			reqs := srv.Requests()
			if len(reqs) != 1 {
				t.Fatalf("requests = %d", len(reqs))
			}
			switch f.Kind {
			case provider.KindOpenAI:
				r := reqs[0].OpenAI(t)
				if !r.Stream || r.StreamOptions == nil || !r.StreamOptions.IncludeUsage {
					t.Errorf("stream/include_usage not requested: %+v", r)
				}
				if r.Model != "test-model" || r.MaxTokens != 256 {
					t.Errorf("model/max_tokens = %q/%d", r.Model, r.MaxTokens)
				}
				wantRoles := []string{"system", "user", "assistant", "user"}
				if len(r.Messages) != len(wantRoles) {
					t.Fatalf("messages = %+v", r.Messages)
				}
				for i, m := range r.Messages {
					if m.Role != wantRoles[i] {
						t.Errorf("message %d role = %q, want %q", i, m.Role, wantRoles[i])
					}
				}
				if r.Messages[0].Text() != "You are terse." || r.Messages[3].Text() != "hello there" {
					t.Errorf("system/user text wrong: %q %q", r.Messages[0].Text(), r.Messages[3].Text())
				}
				if len(r.Tools) != 1 || r.Tools[0].Function.Name != "get_weather" || !strings.Contains(string(r.Tools[0].Function.Parameters), `"city"`) {
					t.Errorf("tools = %+v", r.Tools)
				}
			case provider.KindAnthropic:
				r := reqs[0].Anthropic(t)
				if !r.Stream || r.Model != "test-model" || r.MaxTokens != 256 {
					t.Errorf("stream/model/max_tokens = %v/%q/%d", r.Stream, r.Model, r.MaxTokens)
				}
				if r.SystemText() != "You are terse." {
					t.Errorf("system = %q", r.SystemText())
				}
				if len(r.Messages) != 3 || r.Messages[2].Content[0].Text != "hello there" {
					t.Errorf("messages = %+v", r.Messages)
				}
				if len(r.Tools) != 1 || r.Tools[0].Name != "get_weather" ||
					!strings.Contains(string(r.Tools[0].InputSchema), `"required":["city"]`) {
					t.Errorf("tools = %+v", r.Tools)
				}
				if got := reqs[0].Header.Get("X-Api-Key"); got != srv.APIKey {
					t.Errorf("x-api-key = %q", got)
				}
			}
		})
	}
}

func TestToolCallsAssembledFromDeltas(t *testing.T) {
	for _, f := range flavors {
		t.Run(f.Name, func(t *testing.T) {
			srv := f.New(t, providertest.Response{
				Text: []string{"Let me check."},
				ToolCalls: []providertest.ToolCall{
					{ID: "call_a", Name: "get_weather", Arguments: `{"city":"Paris"}`},
					{ID: "call_b", Name: "get_time", Arguments: `{"tz":"Europe/Paris","fmt":"24h"}`},
				},
				Usage: &providertest.Usage{PromptTokens: 50, CompletionTokens: 20},
			})
			p := newProvider(t, f, srv)
			var c collector
			res, err := p.Stream(context.Background(), simpleRequest(), c.on)
			if err != nil {
				t.Fatalf("Stream: %v", err)
			}
			if got := strings.Join(c.toolStarts(), ","); got != "get_weather,get_time" {
				t.Errorf("tool starts = %q", got)
			}
			if res.FinishReason != provider.FinishToolCalls {
				t.Errorf("FinishReason = %q", res.FinishReason)
			}
			if len(res.ToolCalls) != 2 {
				t.Fatalf("ToolCalls = %+v", res.ToolCalls)
			}
			want := []struct{ id, name, args string }{
				{"call_a", "get_weather", `{"city":"Paris"}`},
				{"call_b", "get_time", `{"tz":"Europe/Paris","fmt":"24h"}`},
			}
			for i, w := range want {
				tc := res.ToolCalls[i]
				if tc.ID != w.id || tc.Name != w.name || string(tc.Arguments) != w.args {
					t.Errorf("tool call %d = %s %s %s, want %+v", i, tc.ID, tc.Name, tc.Arguments, w)
				}
			}
			if res.Text != "Let me check." {
				t.Errorf("Text = %q", res.Text)
			}
		})
	}
}

func TestToolResultsSentInWireShape(t *testing.T) {
	req := &provider.Request{
		Model: "m",
		Messages: []provider.Message{
			{Role: provider.RoleUser, Content: "weather in Paris and time?"},
			{Role: provider.RoleAssistant, Content: "checking", ToolCalls: []provider.ToolCall{
				{ID: "call_a", Name: "get_weather", Arguments: json.RawMessage(`{"city":"Paris"}`)},
				{ID: "call_b", Name: "get_time", Arguments: json.RawMessage(`{}`)},
			}},
			{Role: provider.RoleTool, ToolCallID: "call_a", Content: "sunny, 21C"},
			{Role: provider.RoleTool, ToolCallID: "call_b", Content: "error: clock broken", IsError: true},
		},
	}
	for _, f := range flavors {
		t.Run(f.Name, func(t *testing.T) {
			srv := f.New(t, providertest.Response{Text: []string{"ok"}})
			p := newProvider(t, f, srv)
			if _, err := p.Stream(context.Background(), req, nil); err != nil {
				t.Fatalf("Stream: %v", err)
			}
			rec := srv.Requests()[0]
			switch f.Kind {
			case provider.KindOpenAI:
				r := rec.OpenAI(t)
				if len(r.Messages) != 4 {
					t.Fatalf("messages = %d", len(r.Messages))
				}
				a := r.Messages[1]
				if a.Role != "assistant" || len(a.ToolCalls) != 2 || a.ToolCalls[0].Function.Arguments != `{"city":"Paris"}` ||
					a.ToolCalls[1].ID != "call_b" || a.ToolCalls[0].Type != "function" {
					t.Errorf("assistant message = %+v", a)
				}
				if r.Messages[2].Role != "tool" || r.Messages[2].ToolCallID != "call_a" || r.Messages[2].Text() != "sunny, 21C" {
					t.Errorf("tool message = %+v", r.Messages[2])
				}
				if r.Messages[3].ToolCallID != "call_b" {
					t.Errorf("tool message 2 = %+v", r.Messages[3])
				}
			case provider.KindAnthropic:
				r := rec.Anthropic(t)
				if len(r.Messages) != 3 {
					t.Fatalf("messages = %+v (tool results must be merged into one user message)", r.Messages)
				}
				a := r.Messages[1]
				if a.Role != "assistant" || len(a.Content) != 3 || a.Content[1].Type != "tool_use" ||
					a.Content[1].ID != "call_a" || string(a.Content[1].Input) != `{"city":"Paris"}` {
					t.Errorf("assistant message = %+v", a)
				}
				u := r.Messages[2]
				if u.Role != "user" || len(u.Content) != 2 || u.Content[0].Type != "tool_result" ||
					u.Content[0].ToolUseID != "call_a" || u.Content[0].ResultText() != "sunny, 21C" ||
					!u.Content[1].IsError || u.Content[0].IsError {
					t.Errorf("tool results = %+v", u)
				}
			}
		})
	}
}

func TestFailuresAndRetries(t *testing.T) {
	type tc struct {
		name      string
		script    []providertest.Response
		wantErr   error // nil: success
		wantReqs  int
		wantText  string
		minElapse time.Duration
		errHas    string
	}
	cases := []tc{
		{
			name:     "401 is final with a clear message",
			script:   []providertest.Response{{Status: 401}, {Text: []string{"never"}}},
			wantErr:  provider.ErrUnauthorized,
			wantReqs: 1,
			errHas:   "unauthorized (401): check the API key",
		},
		{
			name:      "429 honours Retry-After then succeeds",
			script:    []providertest.Response{{Status: 429, RetryAfter: "1"}, {Text: []string{"after ", "wait"}}},
			wantReqs:  2,
			wantText:  "after wait",
			minElapse: 950 * time.Millisecond,
		},
		{
			name:     "429 with a Retry-After beyond our limit fails at once",
			script:   []providertest.Response{{Status: 429, RetryAfter: "3600"}, {Text: []string{"never"}}},
			wantErr:  provider.ErrRateLimited,
			wantReqs: 1,
			errHas:   "server asked to wait 1h0m0s",
		},
		{
			name:     "500 then success is retried",
			script:   []providertest.Response{{Status: 500}, {Text: []string{"recovered"}}},
			wantReqs: 2,
			wantText: "recovered",
		},
		{
			name:     "500 forever fails after MaxAttempts",
			script:   []providertest.Response{{Status: 500}, {Status: 502}, {Status: 503}, {Text: []string{"too late"}}},
			wantErr:  provider.ErrServer,
			wantReqs: 3,
			errHas:   "after 3 attempts",
		},
		{
			name:     "400 is final",
			script:   []providertest.Response{{Status: 400, ErrorMessage: "messages: field required"}},
			wantErr:  provider.ErrBadRequest,
			wantReqs: 1,
			errHas:   "messages: field required",
		},
		{
			name:     "connection cut before any output is retried",
			script:   []providertest.Response{{Text: []string{"x"}, Cut: true, CutAfter: 0}, {Text: []string{"second try"}}},
			wantReqs: 2,
			wantText: "second try",
		},
		{
			name:     "in-stream error before any output is retried",
			script:   []providertest.Response{{ErrorEvent: "Overloaded"}, {Text: []string{"fine"}}},
			wantReqs: 2,
			wantText: "fine",
		},
		{
			name:     "stream cut mid-way is reported with partial text and not retried",
			script:   []providertest.Response{{Text: []string{"one ", "two ", "three"}, Cut: true, CutAfter: 2}, {Text: []string{"retry!"}}},
			wantErr:  provider.ErrStreamCut,
			wantReqs: 1,
			wantText: "one two ",
			errHas:   "stream cut mid-way after 8 bytes",
		},
		{
			name:     "in-stream error after output is a cut, not retried",
			script:   []providertest.Response{{Text: []string{"partial"}, ErrorEvent: "Overloaded"}, {Text: []string{"retry!"}}},
			wantErr:  provider.ErrStreamCut,
			wantReqs: 1,
			wantText: "partial",
			errHas:   "Overloaded",
		},
	}
	for _, f := range flavors {
		for _, c := range cases {
			t.Run(f.Name+"/"+c.name, func(t *testing.T) {
				srv := f.New(t, c.script...)
				p := newProvider(t, f, srv)
				var col collector
				start := time.Now()
				res, err := p.Stream(context.Background(), simpleRequest(), col.on)
				elapsed := time.Since(start)
				if err != nil {
					t.Logf("error text: %v", err)
				}
				if got := len(srv.Requests()); got != c.wantReqs {
					t.Errorf("requests = %d, want %d", got, c.wantReqs)
				}
				if elapsed < c.minElapse {
					t.Errorf("elapsed %s, want >= %s (Retry-After not honoured)", elapsed, c.minElapse)
				}
				if c.wantErr == nil {
					if err != nil {
						t.Fatalf("Stream: %v", err)
					}
				} else {
					if !errors.Is(err, c.wantErr) {
						t.Fatalf("err = %v, want %v", err, c.wantErr)
					}
					if !strings.HasPrefix(err.Error(), "provider p-"+f.Name+": ") || !strings.Contains(err.Error(), c.errHas) {
						t.Errorf("err text %q lacks %q", err.Error(), c.errHas)
					}
				}
				if res == nil {
					t.Fatal("nil Result")
				}
				if res.Text != c.wantText {
					t.Errorf("Text = %q, want %q", res.Text, c.wantText)
				}
				if c.wantErr == provider.ErrStreamCut {
					if provider.PartialText(err) != c.wantText {
						t.Errorf("PartialText = %q", provider.PartialText(err))
					}
					if strings.Join(col.deltas(), "") != c.wantText {
						t.Errorf("deltas = %q", col.deltas())
					}
				}
			})
		}
	}
}

func TestCancelSlowStreamStopsPromptly(t *testing.T) {
	for _, f := range flavors {
		t.Run(f.Name, func(t *testing.T) {
			words := make([]string, 50)
			for i := range words {
				words[i] = "w "
			}
			srv := f.New(t, providertest.Response{Text: words, Delay: 100 * time.Millisecond})
			p := newProvider(t, f, srv)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var got []string
			var cancelledAt time.Time
			res, err := p.Stream(ctx, simpleRequest(), func(ev provider.Event) error {
				if !cancelledAt.IsZero() {
					t.Errorf("delta %q after cancellation", ev.Text)
				}
				got = append(got, ev.Text)
				if len(got) == 3 {
					cancelledAt = time.Now()
					cancel()
				}
				return nil
			})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
			if d := time.Since(cancelledAt); d > 500*time.Millisecond { // the stream would run 5s more
				t.Errorf("Stream returned %s after cancel", d)
			}
			if res == nil || res.Text != "w w w " {
				t.Errorf("partial = %+v", res)
			}
			if n := len(srv.Requests()); n != 1 {
				t.Errorf("requests = %d (cancellation must not retry)", n)
			}
		})
	}
}

func TestStallAndHangUseIdleTimeout(t *testing.T) {
	for _, f := range flavors {
		t.Run(f.Name+"/hang before headers is retried then fails", func(t *testing.T) {
			srv := f.New(t, providertest.Response{Hang: true}, providertest.Response{Hang: true}, providertest.Response{Hang: true})
			p := newProvider(t, f, srv, func(c *provider.Config) { c.IdleTimeout = 150 * time.Millisecond })
			_, err := p.Stream(context.Background(), simpleRequest(), nil)
			if !errors.Is(err, provider.ErrStalled) {
				t.Fatalf("err = %v, want ErrStalled", err)
			}
			if n := len(srv.Requests()); n != 3 {
				t.Errorf("requests = %d", n)
			}
		})
		t.Run(f.Name+"/stall after output is a cut", func(t *testing.T) {
			srv := f.New(t, providertest.Response{Text: []string{"a", "b", "c"}, Stall: true, StallAfter: 2})
			p := newProvider(t, f, srv, func(c *provider.Config) { c.IdleTimeout = 150 * time.Millisecond })
			res, err := p.Stream(context.Background(), simpleRequest(), nil)
			if !errors.Is(err, provider.ErrStreamCut) || res.Text != "ab" {
				t.Fatalf("err = %v text = %q", err, res.Text)
			}
		})
		t.Run(f.Name+"/ctx deadline on a hung server", func(t *testing.T) {
			srv := f.New(t, providertest.Response{Hang: true})
			p := newProvider(t, f, srv)
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := p.Stream(ctx, simpleRequest(), nil)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v", err)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("took %s", d)
			}
		})
	}
}

func TestCallbackErrorAbortsWithoutRetry(t *testing.T) {
	for _, f := range flavors {
		t.Run(f.Name, func(t *testing.T) {
			srv := f.New(t, providertest.Response{Text: []string{"a", "b", "c"}}, providertest.Response{Text: []string{"x"}})
			p := newProvider(t, f, srv)
			boom := errors.New("client went away")
			_, err := p.Stream(context.Background(), simpleRequest(), func(provider.Event) error { return boom })
			if !errors.Is(err, boom) {
				t.Fatalf("err = %v", err)
			}
			if n := len(srv.Requests()); n != 1 {
				t.Errorf("requests = %d", n)
			}
		})
	}
}

func TestListModels(t *testing.T) {
	for _, f := range flavors {
		t.Run(f.Name, func(t *testing.T) {
			srv := f.New(t)
			srv.Models = []string{"alpha", "beta"}
			p := newProvider(t, f, srv)
			models, err := p.ListModels(context.Background())
			if err != nil {
				t.Fatalf("ListModels: %v", err)
			}
			if len(models) != 2 || models[0].ID != "alpha" || models[1].ID != "beta" {
				t.Errorf("models = %+v", models)
			}
			bad := newProvider(t, f, srv, func(c *provider.Config) { c.APIKey = "wrong" })
			_, err = bad.ListModels(context.Background())
			if !errors.Is(err, provider.ErrUnauthorized) || !strings.Contains(err.Error(), "check the API key") {
				t.Errorf("wrong key: err = %v", err)
			}
		})
	}
}

func TestConnectionRefusedIsRetriedThenFails(t *testing.T) {
	for _, f := range flavors {
		t.Run(f.Name, func(t *testing.T) {
			srv := f.New(t)
			base := srv.BaseURL()
			srv.Close() // nothing listens there any more
			p, err := provider.New(provider.Config{ID: "down", Kind: f.Kind, BaseURL: base, APIKey: "k", Retry: fastRetry,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			_, err = p.Stream(context.Background(), simpleRequest(), nil)
			if !errors.Is(err, provider.ErrUnavailable) || !strings.Contains(err.Error(), "unreachable after 3 attempts") {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestOpenAIWithoutAPIKey(t *testing.T) {
	// Local servers (Ollama, llama.cpp) need no key.
	srv := providertest.NewOpenAI(t, providertest.Response{Text: []string{"local"}})
	srv.APIKey = ""
	p := newProvider(t, flavors[0], srv, func(c *provider.Config) { c.APIKey = "" })
	res, err := p.Stream(context.Background(), simpleRequest(), nil)
	if err != nil || res.Text != "local" {
		t.Fatalf("res=%+v err=%v", res, err)
	}
}

func TestNewRejectsUnknownKind(t *testing.T) {
	for _, kind := range []string{"", "gemini"} {
		if _, err := provider.New(provider.Config{ID: "x", Kind: kind}); err == nil {
			t.Errorf("kind %q accepted", kind)
		}
	}
	reg, err := provider.NewRegistry([]provider.Config{{ID: "e", Kind: "echo"}, {ID: "o", Kind: "openai", BaseURL: "http://127.0.0.1:1/v1"}})
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := reg.Get("e"); !ok || p.Name() != "e" {
		t.Errorf("Get(e) = %v %v", p, ok)
	}
	if got := strings.Join(reg.IDs(), ","); got != "e,o" {
		t.Errorf("IDs = %q", got)
	}
	if _, err := provider.NewRegistry([]provider.Config{{ID: "e", Kind: "echo"}, {ID: "e", Kind: "echo"}}); err == nil {
		t.Error("duplicate id accepted")
	}
}

func TestKeepAliveCommentsKeepSlowStreamAlive(t *testing.T) {
	for _, f := range flavors {
		t.Run(f.Name, func(t *testing.T) {
			idle := func(c *provider.Config) { c.IdleTimeout = 150 * time.Millisecond }
			slow := providertest.Response{Text: []string{"slow ", "but ", "alive"}, Delay: 350 * time.Millisecond}
			withKA := slow
			withKA.KeepAlive = 40 * time.Millisecond

			srv := f.New(t, withKA)
			res, err := newProvider(t, f, srv, idle).Stream(context.Background(), simpleRequest(), nil)
			if err != nil || res.Text != "slow but alive" {
				t.Fatalf("with keep-alive: text %q err %v", res.Text, err)
			}

			srv = f.New(t, slow)
			res, err = newProvider(t, f, srv, idle).Stream(context.Background(), simpleRequest(), nil)
			if !errors.Is(err, provider.ErrStreamCut) || res.Text != "slow " {
				t.Fatalf("without keep-alive: text %q err %v, want a cut after the idle timeout", res.Text, err)
			}
		})
	}
}
