package workflow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/agentd/agentd/internal/session"
)

// Limits of the http-request block.
const (
	defaultHTTPTimeout = 30 * time.Second
	maxHTTPTimeout     = 5 * time.Minute
	maxResponseBytes   = 1 << 20
)

// exec runs node n's block: it evaluates the config's templates (the
// evaluated config is the trace's input) and does the block's work.
func (x *execution) exec(ctx context.Context, n *Node, loop map[string]any) (any, result) {
	data := x.data(loop)
	cfgv, err := eval(configWithoutRaw(n), data)
	if err != nil {
		return nil, result{err: err}
	}
	cfg, _ := cfgv.(map[string]any)
	str := func(k string) string {
		s, _ := cfg[k].(string)
		if s == "" && cfg[k] != nil {
			s = fmt.Sprint(cfg[k])
		}
		return s
	}
	switch n.Type {
	case "trigger-manual":
		return cfg, result{output: x.run.Inputs}
	case "trigger-schedule":
		return cfg, result{output: map[string]any{"slot": x.run.StartedAt.Format(time.RFC3339)}}
	case "set-variable":
		name := str("name")
		x.mu.Lock()
		x.vars[name] = cfg["value"]
		x.mu.Unlock()
		return cfg, result{output: cfg["value"]}
	case "if":
		expr := n.Config["expr"].(string)
		if !strings.Contains(expr, "{{") {
			expr = "{{" + expr + "}}"
		}
		v, err := eval(expr, data)
		if err != nil {
			return cfg, result{err: err}
		}
		b := truthy(v)
		return cfg, result{output: b, branch: fmt.Sprint(b)}
	case "parallel":
		return cfg, result{}
	case "merge":
		return cfg, result{output: x.mergeInputs(n)}
	case "wait":
		d, err := time.ParseDuration(str("duration"))
		if err != nil || d < 0 {
			return cfg, result{err: fmt.Errorf("duration %q: want e.g. 30s, 5m", str("duration"))}
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return cfg, result{output: d.String()}
		case <-ctx.Done():
			return cfg, result{err: context.Cause(ctx)}
		}
	case "loop":
		items, err := listOf(cfg["items"])
		if err != nil {
			return cfg, result{err: err}
		}
		limit := maxIterations
		if f, ok := cfg["max_iterations"].(float64); ok {
			limit = int(f)
		}
		out, err := x.runLoop(ctx, n, items, limit)
		return cfg, result{output: out, branch: "done", err: err}
	case "ai-prompt":
		return cfg, x.aiPrompt(ctx, n, cfg, str)
	case "mcp-tool":
		if x.e.tools == nil {
			return cfg, result{err: errors.New("no MCP servers on this agent")}
		}
		args, _ := json.Marshal(cfg["args"])
		if cfg["args"] == nil {
			args = []byte("{}")
		}
		text, err := x.e.tools.Call(ctx, str("mcp"), str("tool"), args)
		var out any = text
		var structured any
		if json.Unmarshal([]byte(text), &structured) == nil {
			out = structured
		}
		return cfg, result{output: out, err: err}
	case "http-request":
		out, err := x.httpRequest(ctx, cfg, str)
		return cfg, result{output: out, err: err}
	case "deliver":
		sessions, err := sessionsOf(cfg["sessions"])
		if err != nil {
			return cfg, result{err: err}
		}
		text := str("text")
		var errs []error
		for _, sid := range sessions {
			if err := x.e.turns.Push(ctx, sid, text, nil); err != nil {
				errs = append(errs, fmt.Errorf("deliver to %s: %w", sid, err))
			}
		}
		return cfg, result{output: map[string]any{"sessions": sessions, "text": text}, err: errors.Join(errs...)}
	}
	return cfg, result{err: fmt.Errorf("unknown block type %q", n.Type)}
}

// configWithoutRaw is the config to evaluate: the if expression is read
// by the block itself (it may be written without braces).
func configWithoutRaw(n *Node) map[string]any {
	if n.Type != "if" {
		return n.Config
	}
	c := make(map[string]any, len(n.Config))
	for k, v := range n.Config {
		if k != "expr" {
			c[k] = v
		}
	}
	c["expr"] = n.Config["expr"]
	if s, ok := c["expr"].(string); ok && !strings.Contains(s, "{{") {
		c["expr"] = s // shown as written
	}
	return c
}

// listOf reads loop items: a list, or a JSON array in a string.
func listOf(v any) ([]any, error) {
	switch x := v.(type) {
	case []any:
		return x, nil
	case string:
		var l []any
		if err := json.Unmarshal([]byte(x), &l); err == nil {
			return l, nil
		}
		return nil, fmt.Errorf("items must be a list, got the text %q", x)
	}
	return nil, fmt.Errorf("items must be a list, got %T", v)
}

// mergeInputs is merge's output: the outputs of the blocks feeding it.
func (x *execution) mergeInputs(n *Node) map[string]any {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := map[string]any{}
	for _, e := range x.g.Edges {
		if e.Target == n.ID {
			if v, ok := x.outputs[e.Source]; ok {
				out[e.Source] = v
			}
		}
	}
	return out
}

func (x *execution) aiPrompt(ctx context.Context, n *Node, cfg map[string]any, str func(string) string) result {
	req := session.TurnRequest{Client: "workflow:" + x.run.WorkflowID, Text: str("prompt"), System: str("system"), Model: str("model")}
	switch sid := str("session"); sid {
	case "", "ephemeral":
		req.SessionID, req.Ephemeral = "workflow:"+x.run.ID, true
	default:
		req.SessionID = sid
	}
	res, err := x.e.turns.RunTurn(ctx, req)
	if err != nil {
		return result{err: err}
	}
	if res.Interrupted {
		return result{output: res.Text, err: errors.New("the turn was interrupted")}
	}
	return result{output: res.Text}
}

func (x *execution) httpRequest(ctx context.Context, cfg map[string]any, str func(string) string) (any, error) {
	method := strings.ToUpper(str("method"))
	if method == "" {
		method = http.MethodGet
	}
	timeout := defaultHTTPTimeout
	if f, ok := cfg["timeout_s"].(float64); ok {
		timeout = time.Duration(f * float64(time.Second))
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var body io.Reader
	switch b := cfg["body"].(type) {
	case nil:
	case string:
		body = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		body = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, str("url"), body)
	if err != nil {
		return nil, fmt.Errorf("http-request: %w", err)
	}
	if h, ok := cfg["headers"].(map[string]any); ok {
		for k, v := range h {
			req.Header.Set(k, fmt.Sprint(v))
		}
	}
	if _, ok := cfg["body"].(map[string]any); ok && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := x.e.http.Do(req)
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return nil, fmt.Errorf("http-request: no answer within %s", timeout)
		}
		return nil, fmt.Errorf("http-request: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("http-request: read response: %w", err)
	}
	if len(raw) > maxResponseBytes {
		return nil, fmt.Errorf("http-request: response larger than %d bytes", maxResponseBytes)
	}
	var parsed any = string(raw)
	if strings.Contains(resp.Header.Get("Content-Type"), "json") {
		var j any
		if json.Unmarshal(raw, &j) == nil {
			parsed = j
		}
	}
	out := map[string]any{"status": resp.StatusCode, "body": parsed}
	if resp.StatusCode >= 400 {
		return out, fmt.Errorf("http-request: %s answered %d", req.URL.Redacted(), resp.StatusCode)
	}
	return out, nil
}
