package workflow

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Graph is a workflow's block graph (rest.md "Workflows", version 1).
type Graph struct {
	Version   int            `json:"version"`
	Nodes     []Node         `json:"nodes"`
	Edges     []Edge         `json:"edges"`
	Variables map[string]any `json:"variables"`
}

// Node is one block.
type Node struct {
	ID     string         `json:"id"`
	Type   string         `json:"type"`
	Label  string         `json:"label,omitempty"`
	Config map[string]any `json:"config"`
}

// Edge connects source to target; Branch names the source's outlet
// (true/false of if, body/done of loop, error of any block with
// on_error: branch), "" for the default one.
type Edge struct {
	Source string `json:"source"`
	Target string `json:"target"`
	Branch string `json:"branch,omitempty"`
}

// blockSpec says what a block type requires and which branches it has.
type blockSpec struct {
	required []string
	branches []string // allowed non-error branch names; nil: only ""
	trigger  bool
}

var blocks = map[string]blockSpec{
	"trigger-manual":   {trigger: true},
	"trigger-schedule": {trigger: true, required: []string{"cron"}},
	"ai-prompt":        {required: []string{"prompt"}},
	"mcp-tool":         {required: []string{"mcp", "tool"}},
	"http-request":     {required: []string{"url"}},
	"if":               {required: []string{"expr"}, branches: []string{"true", "false"}},
	"loop":             {required: []string{"items"}, branches: []string{"body", "done"}},
	"wait":             {required: []string{"duration"}},
	"parallel":         {},
	"merge":            {},
	"set-variable":     {required: []string{"name", "value"}},
	"deliver":          {required: []string{"sessions", "text"}},
}

// maxIterations bounds loop.max_iterations; maxNodes a graph.
const (
	maxIterations = 100
	maxNodes      = 500
)

var nodeIDRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// GraphError is a graph that cannot run, naming the node at fault.
type GraphError struct {
	Node string // "" when no one node is at fault
	Msg  string
}

func (e *GraphError) Error() string {
	if e.Node == "" {
		return e.Msg
	}
	return "node " + e.Node + ": " + e.Msg
}

func gerr(node, format string, a ...any) error {
	return &GraphError{Node: node, Msg: fmt.Sprintf(format, a...)}
}

// ToolLookup reports, for validation, whether an MCP server is known and
// running and whether it lists the tool.
type ToolLookup func(mcp, tool string) (known, running, listed bool)

// Validate checks g: version, known block types with their required config,
// the branches each block may have, no cycle except back into a loop from
// its body, a body that is entered only through its loop, at least one
// trigger, mcp-tool naming an existing tool. It returns the warnings (an
// MCP server that is down).
func (g *Graph) Validate(tools ToolLookup) (warnings []string, err error) {
	if g.Version != 1 {
		return nil, gerr("", "graph.version must be 1")
	}
	if len(g.Nodes) == 0 || len(g.Nodes) > maxNodes {
		return nil, gerr("", "a graph has 1 to %d nodes", maxNodes)
	}
	byID := map[string]*Node{}
	triggers := 0
	for i := range g.Nodes {
		n := &g.Nodes[i]
		if !nodeIDRe.MatchString(n.ID) {
			return nil, gerr(n.ID, "id must be a letter or _ then letters, digits or _ (it is used as {{nodes.<id>}})")
		}
		if byID[n.ID] != nil {
			return nil, gerr(n.ID, "duplicate node id")
		}
		byID[n.ID] = n
		spec, ok := blocks[n.Type]
		if !ok {
			return nil, gerr(n.ID, "unknown block type %q", n.Type)
		}
		if spec.trigger {
			triggers++
		}
		for _, k := range spec.required {
			if v, ok := n.Config[k]; !ok || v == nil || v == "" {
				return nil, gerr(n.ID, "%s needs config.%s", n.Type, k)
			}
		}
		w, err := checkConfig(n, tools)
		if err != nil {
			return nil, err
		}
		warnings = append(warnings, w...)
	}
	if triggers == 0 {
		return nil, gerr("", "a workflow needs at least one trigger (trigger-manual or trigger-schedule)")
	}
	for _, e := range g.Edges {
		src, dst := byID[e.Source], byID[e.Target]
		if src == nil {
			return nil, gerr(e.Source, "edge from an unknown node")
		}
		if dst == nil {
			return nil, gerr(e.Target, "edge (from %s) to an unknown node", e.Source)
		}
		if blocks[dst.Type].trigger {
			return nil, gerr(dst.ID, "a trigger has no inputs")
		}
		if e.Branch == "error" {
			if onError(src) != "branch" {
				return nil, gerr(src.ID, "an error edge needs config.on_error: branch")
			}
			continue
		}
		if allowed := blocks[src.Type].branches; allowed != nil {
			if !slices.Contains(allowed, e.Branch) {
				return nil, gerr(src.ID, "%s edges need branch %s (got %q)", src.Type, strings.Join(allowed, " or "), e.Branch)
			}
		} else if e.Branch != "" {
			return nil, gerr(src.ID, "%s has no branch %q", src.Type, e.Branch)
		}
	}
	for _, n := range g.Nodes {
		if onError(&n) == "branch" && !slices.ContainsFunc(g.Edges, func(e Edge) bool { return e.Source == n.ID && e.Branch == "error" }) {
			return nil, gerr(n.ID, "on_error: branch needs an edge with branch \"error\"")
		}
	}
	if err := g.checkLoops(); err != nil {
		return nil, err
	}
	return warnings, g.checkCycles()
}

func onError(n *Node) string {
	s, _ := n.Config["on_error"].(string)
	return s
}

// checkConfig checks the values of n's config beyond presence.
func checkConfig(n *Node, tools ToolLookup) ([]string, error) {
	switch oe := onError(n); oe {
	case "", "halt", "continue", "branch":
	default:
		return nil, gerr(n.ID, "on_error must be halt, continue or branch (got %q)", oe)
	}
	str := func(k string) (string, error) {
		v, ok := n.Config[k]
		if !ok {
			return "", nil
		}
		s, ok := v.(string)
		if !ok {
			return "", gerr(n.ID, "config.%s must be a string", k)
		}
		return s, nil
	}
	for k, v := range n.Config {
		if s, ok := v.(string); ok && strings.Contains(s, "{{") {
			if _, err := parseTemplate(n.ID+"."+k, s); err != nil {
				return nil, gerr(n.ID, "config.%s: %v", k, err)
			}
		}
	}
	switch n.Type {
	case "wait":
		s, err := str("duration")
		if err != nil {
			return nil, err
		}
		if !strings.Contains(s, "{{") {
			if d, err := time.ParseDuration(s); err != nil || d < 0 {
				return nil, gerr(n.ID, "duration %q: want e.g. 30s, 5m", s)
			}
		}
	case "loop":
		if v, ok := n.Config["max_iterations"]; ok {
			f, ok := v.(float64)
			if !ok || f < 1 || f > maxIterations || f != float64(int(f)) {
				return nil, gerr(n.ID, "max_iterations must be an integer from 1 to %d", maxIterations)
			}
		}
	case "merge":
		if m, err := str("mode"); err != nil {
			return nil, err
		} else if m != "" && m != "all" && m != "first" {
			return nil, gerr(n.ID, "merge mode must be all or first (got %q)", m)
		}
	case "ai-prompt":
		if s, err := str("session"); err != nil {
			return nil, err
		} else if strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' }) {
			return nil, gerr(n.ID, "session must be \"ephemeral\" or a session id")
		}
	case "http-request":
		if _, err := str("method"); err != nil {
			return nil, err
		}
		if v, ok := n.Config["timeout_s"]; ok {
			if f, ok := v.(float64); !ok || f <= 0 || f > maxHTTPTimeout.Seconds() {
				return nil, gerr(n.ID, "timeout_s must be a number from 0 to %v", maxHTTPTimeout.Seconds())
			}
		}
	case "deliver":
		if _, err := sessionsOf(n.Config["sessions"]); err != nil {
			return nil, gerr(n.ID, "%v", err)
		}
	case "set-variable":
		if _, err := str("name"); err != nil {
			return nil, err
		}
	case "mcp-tool":
		server, err := str("mcp")
		if err != nil {
			return nil, err
		}
		tool, err := str("tool")
		if err != nil {
			return nil, err
		}
		if a, ok := n.Config["args"]; ok && a != nil {
			if _, ok := a.(map[string]any); !ok {
				return nil, gerr(n.ID, "config.args must be an object")
			}
		}
		if tools == nil {
			return nil, gerr(n.ID, "no MCP servers on this agent")
		}
		known, running, listed := tools(server, tool)
		switch {
		case !known:
			return nil, gerr(n.ID, "unknown MCP server %q", server)
		case !running:
			return []string{fmt.Sprintf("node %s: MCP server %q is not running; tool %q is not checked", n.ID, server, tool)}, nil
		case !listed:
			return nil, gerr(n.ID, "MCP server %q has no tool %q", server, tool)
		}
	}
	return nil, nil
}

// sessionsOf reads deliver's sessions: a list of session ids.
func sessionsOf(v any) ([]string, error) {
	list, ok := v.([]any)
	if !ok || len(list) == 0 {
		return nil, fmt.Errorf("sessions must be a non-empty list of session ids")
	}
	out := make([]string, 0, len(list))
	for _, x := range list {
		s, ok := x.(string)
		if !ok || s == "" || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' }) {
			return nil, fmt.Errorf("sessions: %v is not a session id", x)
		}
		out = append(out, s)
	}
	return out, nil
}

// bodyOf returns the nodes of loop l's body: those reachable from its body
// edges without passing through l.
func (g *Graph) bodyOf(l string) map[string]bool {
	body := map[string]bool{}
	var stack []string
	for _, e := range g.Edges {
		if e.Source == l && e.Branch == "body" {
			stack = append(stack, e.Target)
		}
	}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if n == l || body[n] {
			continue
		}
		body[n] = true
		for _, e := range g.Edges {
			if e.Source == n {
				stack = append(stack, e.Target)
			}
		}
	}
	return body
}

// checkLoops: a loop's body is entered only from the loop and leaves only
// back to it (the body runs as a unit, once per item).
func (g *Graph) checkLoops() error {
	for _, n := range g.Nodes {
		if n.Type != "loop" {
			continue
		}
		body := g.bodyOf(n.ID)
		for _, e := range g.Edges {
			if body[e.Target] && !body[e.Source] && e.Source != n.ID {
				return gerr(e.Target, "is in the body of loop %s and may only be entered from it (edge from %s)", n.ID, e.Source)
			}
			if body[e.Target] && e.Source == n.ID && e.Branch != "body" {
				return gerr(n.ID, "node %s is both in the loop body and after it", e.Target)
			}
		}
	}
	return nil
}

// checkCycles refuses cycles, except an edge from a loop's body back to
// the loop.
func (g *Graph) checkCycles() error {
	back := g.backEdges()
	adj := map[string][]string{}
	for i, e := range g.Edges {
		if !back[i] {
			adj[e.Source] = append(adj[e.Source], e.Target)
		}
	}
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var visit func(string) error
	visit = func(n string) error {
		color[n] = grey
		for _, m := range adj[n] {
			switch color[m] {
			case grey:
				return gerr(m, "is part of a cycle (only a loop's body may lead back to the loop)")
			case white:
				if err := visit(m); err != nil {
					return err
				}
			}
		}
		color[n] = black
		return nil
	}
	for _, n := range g.Nodes {
		if color[n.ID] == white {
			if err := visit(n.ID); err != nil {
				return err
			}
		}
	}
	return nil
}

// backEdges marks the edges from a loop's body back to the loop.
func (g *Graph) backEdges() map[int]bool {
	back := map[int]bool{}
	for _, n := range g.Nodes {
		if n.Type != "loop" {
			continue
		}
		body := g.bodyOf(n.ID)
		for i, e := range g.Edges {
			if e.Target == n.ID && body[e.Source] {
				back[i] = true
			}
		}
	}
	return back
}

// ParseGraph decodes a graph from JSON.
func ParseGraph(b []byte) (*Graph, error) {
	var g Graph
	if err := json.Unmarshal(b, &g); err != nil {
		return nil, err
	}
	return &g, nil
}
