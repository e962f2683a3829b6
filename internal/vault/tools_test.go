package vault

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentd/agentd/internal/agent"
	"github.com/agentd/agentd/internal/provider"
)

// scripted is a provider.Provider whose every model call runs the next
// step: it may change the vault between rounds (the owner editing in
// Obsidian) and returns the tool calls of that round.
type scripted struct {
	steps []func(req *provider.Request) []provider.ToolCall
	reqs  []*provider.Request
}

func (s *scripted) Name() string { return "scripted" }

func (s *scripted) ListModels(context.Context) ([]provider.ModelInfo, error) { return nil, nil }

func (s *scripted) Stream(_ context.Context, req *provider.Request, _ func(provider.Event) error) (*provider.Result, error) {
	s.reqs = append(s.reqs, req)
	n := len(s.reqs) - 1
	if n >= len(s.steps) {
		return &provider.Result{Text: "done"}, nil
	}
	return &provider.Result{ToolCalls: s.steps[n](req)}, nil
}

func call(id, name string, args any) provider.ToolCall {
	b, _ := json.Marshal(args)
	return provider.ToolCall{ID: id, Name: name, Arguments: b}
}

// results maps tool call ids to their result messages.
func results(out *agent.Outcome) map[string]provider.Message {
	m := map[string]provider.Message{}
	for _, msg := range out.Messages {
		if msg.Role == provider.RoleTool {
			m[msg.ToolCallID] = msg
		}
	}
	return m
}

func TestToolsInATurn(t *testing.T) {
	v, _, dir := openTest(t, true)
	reg, err := agent.NewRegistry(Tools(v)...)
	if err != nil {
		t.Fatal(err)
	}
	ag := &agent.Agent{Tools: reg, Instructions: []string{Instructions}}
	gamma := filepath.Join(dir, "Gamma.md")
	p := &scripted{steps: []func(*provider.Request) []provider.ToolCall{
		func(*provider.Request) []provider.ToolCall {
			return []provider.ToolCall{
				call("w-unread", "vault_write", map[string]any{"path": "Gamma", "content": "blind overwrite"}),
				call("r1", "vault_read", map[string]any{"path": "Gamma"}),
			}
		},
		func(*provider.Request) []provider.ToolCall {
			os.WriteFile(gamma, []byte("Root gamma, edited by the owner.\n"), 0o644)
			return []provider.ToolCall{
				call("w-stale", "vault_write", map[string]any{"path": "Gamma", "content": "stale overwrite"}),
				call("r2", "vault_read", map[string]any{"path": "Gamma.md"}),
			}
		},
		func(*provider.Request) []provider.ToolCall {
			return []provider.ToolCall{
				call("w-ok", "vault_write", map[string]any{"path": "Gamma", "content": "Root gamma, edited by the owner.\nAnd merged by the agent.\n"}),
				call("a1", "vault_append", map[string]any{"path": "Gamma", "text": "- appended line"}),
				call("w-props", "vault_write", map[string]any{"path": "Gamma", "properties": map[string]any{"status": "done", "tags": []string{"merged"}}}),
			}
		},
		func(*provider.Request) []provider.ToolCall {
			return []provider.ToolCall{
				call("s1", "vault_search", map[string]any{"query": "merged agent"}),
				call("l1", "vault_list", map[string]any{"folder": "projects"}),
				call("l2", "vault_list", map[string]any{"tag": "#project"}),
				call("k1", "vault_links", map[string]any{"path": "Projects/Alpha"}),
				call("n1", "vault_write", map[string]any{"path": "Inbox/Idea", "content": "An idea, see [[Gamma]].\n"}),
				call("bad", "vault_read", map[string]any{"path": "../openagent.yaml"}),
			}
		},
	}}
	out, err := ag.Run(context.Background(), agent.Turn{Provider: p, Model: "m", System: "Be brief.", UserText: "tidy my notes"})
	if err != nil {
		t.Fatal(err)
	}
	if sys := p.reqs[0].System; !strings.HasPrefix(sys, "Be brief.\n\n") || !strings.Contains(sys, "[[Projects/Alpha]]") {
		t.Errorf("system prompt = %q", sys)
	}
	var names []string
	for _, ts := range p.reqs[0].Tools {
		names = append(names, ts.Name)
	}
	if fmt.Sprint(names) != "[vault_append vault_links vault_list vault_read vault_search vault_write]" {
		t.Errorf("tools offered: %v", names)
	}
	res := results(out)
	for id, wantErr := range map[string]bool{"w-unread": true, "r1": false, "w-stale": true, "r2": false, "w-ok": false, "a1": false,
		"w-props": false, "s1": false, "l1": false, "l2": false, "k1": false, "n1": false, "bad": true} {
		if res[id].IsError != wantErr {
			t.Errorf("%s: error %v, want %v: %s", id, res[id].IsError, wantErr, res[id].Content)
		}
	}
	if !strings.Contains(res["w-unread"].Content, "not read in this turn") || !strings.Contains(res["w-stale"].Content, "changed since it was read") {
		t.Errorf("refusals: %q / %q", res["w-unread"].Content, res["w-stale"].Content)
	}
	if !strings.Contains(res["s1"].Content, `"path":"Gamma.md"`) || !strings.Contains(res["l1"].Content, "Projects/Beta.md") ||
		!strings.Contains(res["l2"].Content, `"total":2`) || !strings.Contains(res["k1"].Content, `"path":"Home.md"`) ||
		!strings.Contains(res["bad"].Content, "invalid path") {
		t.Errorf("results: %+v", res)
	}
	b, _ := os.ReadFile(gamma)
	want := "---\nstatus: done\ntags:\n  - merged\n---\nRoot gamma, edited by the owner.\nAnd merged by the agent.\n- appended line\n"
	if string(b) != want {
		t.Errorf("Gamma.md = %q, want %q", b, want)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "Inbox", "Idea.md")); string(b) != "An idea, see [[Gamma]].\n" {
		t.Errorf("Inbox/Idea.md = %q", b)
	}

	// The next turn starts with nothing read.
	p2 := &scripted{steps: []func(*provider.Request) []provider.ToolCall{
		func(*provider.Request) []provider.ToolCall {
			return []provider.ToolCall{call("w", "vault_write", map[string]any{"path": "Gamma", "content": "x"})}
		},
	}}
	out, _ = ag.Run(context.Background(), agent.Turn{Provider: p2, Model: "m", UserText: "again"})
	if r := results(out)["w"]; !r.IsError {
		t.Errorf("a write without a read in this turn was accepted: %s", r.Content)
	}
}
