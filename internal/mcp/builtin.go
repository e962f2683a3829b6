package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/agentd/agentd/internal/agent"
	"github.com/agentd/agentd/internal/provider"
)

// builtinSet is a named set of agentd's own tools (no process), shown as a
// row of kind "builtin" that can be enabled and disabled.
type builtinSet struct {
	desc  string
	tools []agent.Tool
}

// AddBuiltin registers a set of built-in tools under name (e.g. "time",
// "sessions", "vault"): a builtin row is created the first time (enabled),
// and the tools are in the registry while the row is enabled. Call it
// before Start; tool names must not contain "__".
func (p *Pool) AddBuiltin(ctx context.Context, name, desc string, tools ...agent.Tool) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.mu.Lock()
	e, exists := p.servers[name]
	p.mu.Unlock()
	if exists && e.row.Kind != KindBuiltin {
		return fmt.Errorf("built-in tools %s: an MCP server of that name exists; rename it", name)
	}
	if !exists {
		now := p.now()
		r := Server{Name: name, Kind: KindBuiltin, Enabled: true, CreatedAt: now, UpdatedAt: now}
		if err := insertRow(ctx, p.db, r); err != nil {
			return fmt.Errorf("built-in tools %s: %w", name, err)
		}
		e = &entry{name: name, row: r, status: Status{State: StateDisabled}}
	}
	p.mu.Lock()
	p.servers[name] = e
	p.builtins[name] = &builtinSet{desc: desc, tools: tools}
	started := p.started
	p.mu.Unlock()
	if started {
		e.op.Lock()
		p.applyBuiltin(e)
		e.op.Unlock()
	}
	return nil
}

// applyBuiltin puts a built-in set's tools into the registry or takes them
// out, to match its row; e.op held.
func (p *Pool) applyBuiltin(e *entry) {
	p.mu.Lock()
	set := p.builtins[e.name]
	on := e.row.Enabled && p.started && !p.closed && set != nil
	old := toolNames(e.status.Tools)
	p.mu.Unlock()
	var tools []agent.Tool
	var infos []ToolInfo
	if on {
		tools = set.tools
		for _, t := range tools {
			s := t.Spec()
			infos = append(infos, ToolInfo{MCP: e.name, Name: s.Name, Registered: s.Name, Description: s.Description, InputSchema: s.InputSchema})
		}
	}
	state, lastErr := StateDisabled, ""
	if err := p.reg.Replace(old, tools...); err != nil {
		infos, state, lastErr = nil, StateFailed, err.Error()
		_ = p.reg.Replace(old)
	} else if on {
		state = StateRunning
	} else if set == nil && e.row.Enabled {
		state, lastErr = StateFailed, "not provided by this agentd build"
	}
	p.setState(e, state, func(st *Status) { st.Tools, st.LastError = infos, lastErr })
	p.notify(ActionTools, e.name)
}

// TimeNow is the time_now built-in tool: the current time, in the zone the
// model names or the machine's.
func TimeNow(now func() time.Time) agent.Tool {
	if now == nil {
		now = time.Now
	}
	return agent.FuncTool{
		Def: provider.ToolSpec{
			Name:        "time_now",
			Description: "The current date and time (RFC 3339), weekday and Unix time; optionally in an IANA time zone such as Europe/Paris.",
			InputSchema: json.RawMessage(`{"type":"object","properties":{"timezone":{"type":"string","description":"IANA time zone, e.g. America/New_York; default: the agent's local zone"}}}`),
		},
		Fn: func(_ context.Context, args json.RawMessage) (string, error) {
			var in struct {
				Timezone string `json:"timezone"`
			}
			if len(args) > 0 {
				if err := json.Unmarshal(args, &in); err != nil {
					return "", fmt.Errorf("arguments: %w", err)
				}
			}
			t := now()
			if in.Timezone != "" {
				loc, err := time.LoadLocation(in.Timezone)
				if err != nil {
					return "", fmt.Errorf("unknown time zone %q", in.Timezone)
				}
				t = t.In(loc)
			}
			out, _ := json.Marshal(map[string]any{
				"time": t.Format(time.RFC3339), "weekday": t.Weekday().String(),
				"timezone": t.Location().String(), "unix": t.Unix(),
			})
			return string(out), nil
		},
	}
}

// SessionsSend is the sessions_send built-in tool: the agent sends a
// message into another session (a Telegram chat "tg:…", a CLI session),
// delivered like a reply there. Only sessions that allow() admits may be
// reached: the admin's tools.sessions_send.allow list (exact ids, or
// prefixes ending in *), read at every call so a config reload applies.
func SessionsSend(allow func() []string, push func(ctx context.Context, session, text string) error) agent.Tool {
	return &sessionsSend{allow: allow, push: push}
}

type sessionsSend struct {
	allow func() []string
	push  func(ctx context.Context, session, text string) error
}

func (s *sessionsSend) Spec() provider.ToolSpec {
	list := s.allow()
	targets := "none (the admin has not allowed any: tools.sessions_send.allow)"
	if len(list) > 0 {
		targets = strings.Join(list, ", ")
	}
	return provider.ToolSpec{
		Name: "sessions_send",
		Description: "Send a message to another chat session of this agent (e.g. a Telegram chat tg:<chat id>); " +
			"it arrives there as a message from the agent. Allowed sessions: " + targets + ".",
		InputSchema: json.RawMessage(`{"type":"object","properties":{` +
			`"session_id":{"type":"string","description":"the target session id, e.g. tg:155490357"},` +
			`"text":{"type":"string","description":"the message"}},"required":["session_id","text"]}`),
	}
}

func (s *sessionsSend) Call(ctx context.Context, args json.RawMessage) (string, error) {
	var in struct {
		SessionID string `json:"session_id"`
		Text      string `json:"text"`
	}
	if err := json.Unmarshal(args, &in); err != nil {
		return "", fmt.Errorf("arguments: %w", err)
	}
	if strings.TrimSpace(in.Text) == "" {
		return "", errors.New("text is empty")
	}
	if !Allowed(s.allow(), in.SessionID) {
		return "", fmt.Errorf("session %q is not in tools.sessions_send.allow; the admin decides where the agent may send messages", in.SessionID)
	}
	if err := s.push(ctx, in.SessionID, in.Text); err != nil {
		return "", err
	}
	return "sent to " + in.SessionID, nil
}

// Allowed reports whether session matches an entry of allow: the same id,
// or a prefix entry ending in "*".
func Allowed(allow []string, session string) bool {
	if session == "" {
		return false
	}
	for _, a := range allow {
		if p, ok := strings.CutSuffix(a, "*"); ok && p != "" && strings.HasPrefix(session, p) || a == session {
			return true
		}
	}
	return false
}
