package agent_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/agent"
	"github.com/agentd/agentd/internal/provider"
	"github.com/agentd/agentd/internal/provider/providertest"
)

func named(name string) agent.FuncTool {
	return agent.FuncTool{Def: provider.ToolSpec{Name: name}, Fn: func(context.Context, json.RawMessage) (string, error) { return name, nil }}
}

func TestRegistryReplace(t *testing.T) {
	r, _ := agent.NewRegistry(named("a__x"), named("a__y"), named("b__z"))
	if err := r.Replace([]string{"a__x", "a__y"}, named("a__y"), named("a__w")); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range r.List() {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "a__w,a__y,b__z" {
		t.Errorf("after replace: %v", names)
	}
	// A clash with a tool that stays refuses the whole change.
	if err := r.Replace([]string{"a__w"}, named("b__z")); err == nil {
		t.Error("clash accepted")
	}
	if err := r.Replace(nil, named("c"), named("c")); err == nil {
		t.Error("duplicate in the new set accepted")
	}
	if len(r.List()) != 3 {
		t.Errorf("a refused replace changed the registry: %v", r.List())
	}
}

// limited is a tool with its own timeout and result cap.
type limited struct {
	agent.FuncTool
	timeout time.Duration
	max     int
}

func (l limited) Limits() (time.Duration, int) { return l.timeout, l.max }

func TestToolLimits(t *testing.T) {
	slow := limited{FuncTool: agent.FuncTool{Def: provider.ToolSpec{Name: "slow"}, Fn: func(ctx context.Context, _ json.RawMessage) (string, error) {
		<-ctx.Done()
		return "", ctx.Err()
	}}, timeout: 50 * time.Millisecond}
	big := limited{FuncTool: agent.FuncTool{Def: provider.ToolSpec{Name: "big"}, Fn: func(context.Context, json.RawMessage) (string, error) {
		return strings.Repeat("x", 1000), nil
	}}, max: 100}
	reg, _ := agent.NewRegistry(slow, big)
	srv := providertest.NewOpenAI(t,
		providertest.Response{ToolCalls: []providertest.ToolCall{{ID: "1", Name: "slow", Arguments: `{}`}, {ID: "2", Name: "big", Arguments: `{}`}}},
		providertest.QuoteToolResults(),
	)
	p, err := provider.New(provider.Config{ID: "f", Kind: provider.KindOpenAI, BaseURL: srv.BaseURL(), APIKey: srv.APIKey, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	out, err := (&agent.Agent{Tools: reg, Logger: quiet}).Run(context.Background(), agent.Turn{Provider: p, Model: "m", UserText: "go"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.Text, "error: timed out after 50ms") {
		t.Errorf("timeout not reported: %q", out.Text)
	}
	if !strings.Contains(out.Text, "[truncated: 100 of 1000 bytes shown") {
		t.Errorf("result not cut at the tool's cap: %q", out.Text)
	}
}
