package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/agentd/agentd/internal/provider"
)

// Tool is something the model can call: built-in tools (vault), MCP tools.
type Tool interface {
	// Spec describes the tool to the model. Spec().Name must be unique in a
	// Registry.
	Spec() provider.ToolSpec
	// Call runs the tool with the model's JSON arguments and returns the text
	// result fed back to the model. An error is also fed back (as an error
	// result); it never aborts the turn.
	Call(ctx context.Context, args json.RawMessage) (string, error)
}

// Limited is implemented by tools that bound their own calls (an MCP server
// row's timeout and result cap); others get ToolCallTimeout and
// MaxToolResultBytes. A zero value means the default.
type Limited interface {
	Limits() (timeout time.Duration, maxResultBytes int)
}

// ErrUnknownTool is returned by Registry.Call for a name nobody registered.
var ErrUnknownTool = errors.New("unknown tool")

// Registry is a thread-safe set of tools keyed by name.
type Registry struct {
	mu    sync.RWMutex
	tools map[string]Tool
}

// NewRegistry returns a registry holding tools (see Register).
func NewRegistry(tools ...Tool) (*Registry, error) {
	r := &Registry{tools: map[string]Tool{}}
	for _, t := range tools {
		if err := r.Register(t); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Register adds a tool; a second tool with the same name is refused.
func (r *Registry) Register(t Tool) error {
	name := t.Spec().Name
	if name == "" {
		return errors.New("tool registry: tool has no name")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tools == nil {
		r.tools = map[string]Tool{}
	}
	if _, dup := r.tools[name]; dup {
		return fmt.Errorf("tool registry: %q already registered", name)
	}
	r.tools[name] = t
	return nil
}

// Replace removes the tools named old and adds tools in one step, so a turn
// listing the registry meanwhile sees either set, never a mix (an MCP
// server whose tool list changed). A name clash refuses the whole change.
func (r *Registry) Replace(old []string, tools ...Tool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tools == nil {
		r.tools = map[string]Tool{}
	}
	gone := make(map[string]bool, len(old))
	for _, n := range old {
		gone[n] = true
	}
	seen := map[string]bool{}
	for _, t := range tools {
		name := t.Spec().Name
		if name == "" {
			return errors.New("tool registry: tool has no name")
		}
		if _, dup := r.tools[name]; (dup && !gone[name]) || seen[name] {
			return fmt.Errorf("tool registry: %q already registered", name)
		}
		seen[name] = true
	}
	for _, n := range old {
		delete(r.tools, n)
	}
	for _, t := range tools {
		r.tools[t.Spec().Name] = t
	}
	return nil
}

// Unregister removes a tool (e.g. when its MCP server goes away); it reports
// whether the tool was there.
func (r *Registry) Unregister(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.tools[name]
	delete(r.tools, name)
	return ok
}

// List returns the specs of all tools, sorted by name (a stable order keeps
// provider prompt caches warm).
func (r *Registry) List() []provider.ToolSpec {
	if r == nil {
		return nil
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	specs := make([]provider.ToolSpec, 0, len(r.tools))
	for _, t := range r.tools {
		specs = append(specs, t.Spec())
	}
	sort.Slice(specs, func(i, j int) bool { return specs[i].Name < specs[j].Name })
	return specs
}

// Call runs the named tool. Unknown names give ErrUnknownTool; a panicking
// tool is turned into an error.
func (r *Registry) Call(ctx context.Context, name string, args json.RawMessage) (out string, err error) {
	var t Tool
	if r != nil {
		r.mu.RLock()
		t = r.tools[name]
		r.mu.RUnlock()
	}
	if t == nil {
		return "", fmt.Errorf("%w %q", ErrUnknownTool, name)
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("tool %s panicked: %v", name, p)
		}
	}()
	return t.Call(ctx, args)
}

// FuncTool adapts a function to Tool.
type FuncTool struct {
	Def provider.ToolSpec
	Fn  func(ctx context.Context, args json.RawMessage) (string, error)
}

func (f FuncTool) Spec() provider.ToolSpec { return f.Def }

func (f FuncTool) Call(ctx context.Context, args json.RawMessage) (string, error) {
	return f.Fn(ctx, args)
}

// limits is the timeout and result cap of the named tool.
func (r *Registry) limits(name string) (time.Duration, int) {
	timeout, maxBytes := ToolCallTimeout, MaxToolResultBytes
	if r == nil {
		return timeout, maxBytes
	}
	r.mu.RLock()
	t := r.tools[name]
	r.mu.RUnlock()
	if l, ok := t.(Limited); ok {
		d, n := l.Limits()
		if d > 0 {
			timeout = d
		}
		if n > 0 {
			maxBytes = n
		}
	}
	return timeout, maxBytes
}
