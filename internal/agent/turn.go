package agent

import (
	"context"
	"strings"
	"sync"
)

// TurnState is scratch space shared by the tool calls of one turn, gone
// with the turn. Built-in tools use it for rules that span calls, e.g. the
// vault's "never overwrite a note that changed since you read it in this
// turn". The methods are safe on a nil *TurnState (outside a turn): Get
// finds nothing, Set keeps nothing.
type TurnState struct {
	mu sync.Mutex // mu guards m
	m  map[any]any
}

type turnKey struct{}

// TurnStateOf returns the state of the turn ctx belongs to (the ctx a tool
// is called with); nil outside a turn.
func TurnStateOf(ctx context.Context) *TurnState {
	s, _ := ctx.Value(turnKey{}).(*TurnState)
	return s
}

func withTurnState(ctx context.Context) context.Context {
	return context.WithValue(ctx, turnKey{}, &TurnState{m: map[any]any{}})
}

// Get returns the value stored under key (use an unexported key type).
func (s *TurnState) Get(key any) any {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[key]
}

// Set stores v under key.
func (s *TurnState) Set(key, v any) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key] = v
}

// systemPrompt is the turn's system prompt followed by the agent's
// standing instructions (what the built-in tools are and how to use them).
func systemPrompt(base string, extra []string) string {
	parts := make([]string, 0, 1+len(extra))
	if strings.TrimSpace(base) != "" {
		parts = append(parts, strings.TrimSpace(base))
	}
	for _, e := range extra {
		if strings.TrimSpace(e) != "" {
			parts = append(parts, strings.TrimSpace(e))
		}
	}
	return strings.Join(parts, "\n\n")
}
