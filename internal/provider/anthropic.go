package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/anthropics/anthropic-sdk-go"
	"github.com/anthropics/anthropic-sdk-go/option"
)

// anthropicProvider speaks the Anthropic Messages API with streaming.
// BaseURL is the API root without the version ("https://api.anthropic.com");
// a trailing "/v1" is tolerated and removed, since the SDK adds it.
type anthropicProvider struct {
	id     string
	client anthropic.Client
	call   caller
}

func newAnthropic(cfg Config) *anthropicProvider {
	base := strings.TrimRight(cfg.BaseURL, "/")
	base = strings.TrimSuffix(base, "/v1")
	if base == "" {
		base = DefaultAnthropicBaseURL
	}
	client := anthropic.NewClient(
		// Credentials come from agentd's config only, never from ambient
		// ANTHROPIC_* variables or ~/.config profiles.
		option.WithoutEnvironmentDefaults(),
		option.WithBaseURL(base),
		option.WithAPIKey(cfg.APIKey),
		option.WithHTTPClient(cfg.HTTPClient),
		// Retries are ours (retry.go), which know whether output was
		// already streamed; the SDK's would double up.
		option.WithMaxRetries(0),
	)
	return &anthropicProvider{
		id:     cfg.ID,
		client: client,
		call:   caller{id: cfg.ID, policy: cfg.Retry, idle: cfg.IdleTimeout, log: cfg.Logger},
	}
}

func (p *anthropicProvider) Name() string { return p.id }

// Stream implements Provider.
func (p *anthropicProvider) Stream(ctx context.Context, req *Request, onEvent func(Event) error) (*Result, error) {
	return stream(ctx, &p.call, "anthropic", req, onEvent, anthropicParams, p.streamOnce)
}

type anthropicBlock struct {
	kind     string // "text", "tool_use", others ignored
	id, name string
	input    strings.Builder
}

func (p *anthropicProvider) streamOnce(ctx context.Context, params anthropic.MessageNewParams, a *attempt) (*Result, error) {
	stream := p.client.Messages.NewStreaming(ctx, params)
	defer stream.Close()

	res := &Result{}
	var text strings.Builder
	blocks := map[int64]*anthropicBlock{}
	var order []int64
	stopped := false
	for stream.Next() {
		a.touch()
		ev := stream.Current()
		switch ev.Type {
		case "message_start":
			res.Model = ev.Message.Model
			res.Usage.PromptTokens = int(ev.Message.Usage.InputTokens)
			res.Usage.CompletionTokens = int(ev.Message.Usage.OutputTokens)
		case "content_block_start":
			b := &anthropicBlock{kind: ev.ContentBlock.Type, id: ev.ContentBlock.ID, name: ev.ContentBlock.Name}
			blocks[ev.Index] = b
			order = append(order, ev.Index)
			if b.kind == "text" && ev.ContentBlock.Text != "" {
				text.WriteString(ev.ContentBlock.Text)
				res.Text = text.String()
				if err := a.emit(Event{Type: EventTextDelta, Text: ev.ContentBlock.Text}); err != nil {
					return res, err
				}
			}
			if b.kind == "tool_use" {
				if err := a.emit(Event{Type: EventToolCallStart, ToolName: b.name, ToolCallID: b.id}); err != nil {
					return res, err
				}
			}
		case "content_block_delta":
			b := blocks[ev.Index]
			switch ev.Delta.Type {
			case "text_delta":
				if ev.Delta.Text == "" {
					continue
				}
				text.WriteString(ev.Delta.Text)
				res.Text = text.String()
				if err := a.emit(Event{Type: EventTextDelta, Text: ev.Delta.Text}); err != nil {
					return res, err
				}
			case "input_json_delta":
				if b != nil {
					b.input.WriteString(ev.Delta.PartialJSON)
				}
			}
		case "message_delta":
			if ev.Delta.StopReason != "" {
				res.FinishReason = string(ev.Delta.StopReason)
			}
			// message_delta usage is cumulative.
			if ev.Usage.OutputTokens > 0 {
				res.Usage.CompletionTokens = int(ev.Usage.OutputTokens)
			}
			if ev.Usage.InputTokens > 0 {
				res.Usage.PromptTokens = int(ev.Usage.InputTokens)
			}
		case "message_stop":
			stopped = true
		}
	}
	res.Text = text.String()
	for _, idx := range order {
		b := blocks[idx]
		if b.kind == "tool_use" {
			res.ToolCalls = append(res.ToolCalls, ToolCall{ID: b.id, Name: b.name, Arguments: normalizeArgs(b.input.String())})
		}
	}
	if err := stream.Err(); err != nil {
		return res, classifyAnthropic(err)
	}
	if !stopped {
		return res, &Error{Kind: ErrUnavailable, Err: errors.New("anthropic stream: ended before message_stop")}
	}
	res.FinishReason = normalizeAnthropicStop(res.FinishReason, len(res.ToolCalls) > 0)
	return res, nil
}

func normalizeAnthropicStop(r string, hasTools bool) string {
	switch {
	case hasTools || r == "tool_use":
		return FinishToolCalls
	case r == "max_tokens" || r == "model_context_window_exceeded":
		return FinishLength
	default:
		return FinishStop
	}
}

// anthropicErrorBody is the JSON error envelope, both as an HTTP body and
// as the data of an SSE "error" event.
type anthropicErrorBody struct {
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

func classifyAnthropic(err error) error {
	var apiErr *anthropic.Error
	if errors.As(err, &apiErr) {
		var body anthropicErrorBody
		_ = json.Unmarshal([]byte(apiErr.RawJSON()), &body)
		detail := body.Error.Message
		status := apiErr.StatusCode
		var h http.Header
		if apiErr.Response != nil {
			h = apiErr.Response.Header
		}
		if status == http.StatusOK || status == 0 {
			// An SSE "error" event inside a 200 stream: classify by type.
			pe := &Error{Kind: ErrServer, Detail: detail, Err: fmt.Errorf("anthropic stream: %s", body.Error.Type)}
			switch body.Error.Type {
			case "rate_limit_error":
				pe.Kind = ErrRateLimited
			case "authentication_error", "permission_error":
				pe.Kind = ErrUnauthorized
			case "invalid_request_error", "not_found_error":
				pe.Kind = ErrBadRequest
			}
			return pe
		}
		return httpError(status, h, detail, err)
	}
	return &Error{Kind: ErrUnavailable, Err: fmt.Errorf("anthropic stream: %w", err)}
}

func anthropicParams(req *Request) (anthropic.MessageNewParams, error) {
	maxTokens := req.MaxTokens
	if maxTokens <= 0 {
		maxTokens = DefaultMaxTokens
	}
	params := anthropic.MessageNewParams{
		Model:     anthropic.Model(req.Model),
		MaxTokens: int64(maxTokens),
	}
	system := []string{}
	if req.System != "" {
		system = append(system, req.System)
	}
	var msgs []anthropic.MessageParam
	// add appends blocks, merging into the previous message when it has the
	// same role: consecutive tool results must share one user message.
	add := func(role anthropic.MessageParamRole, blocks ...anthropic.ContentBlockParamUnion) {
		if len(blocks) == 0 {
			return
		}
		if n := len(msgs); n > 0 && msgs[n-1].Role == role {
			msgs[n-1].Content = append(msgs[n-1].Content, blocks...)
			return
		}
		msgs = append(msgs, anthropic.MessageParam{Role: role, Content: blocks})
	}
	for i, m := range req.Messages {
		switch m.Role {
		case RoleSystem:
			system = append(system, m.Content)
		case RoleUser:
			add(anthropic.MessageParamRoleUser, anthropic.NewTextBlock(m.Content))
		case RoleAssistant:
			var blocks []anthropic.ContentBlockParamUnion
			if m.Content != "" {
				blocks = append(blocks, anthropic.NewTextBlock(m.Content))
			}
			for _, tc := range m.ToolCalls {
				args := tc.Arguments
				if len(args) == 0 || !json.Valid(args) {
					args = json.RawMessage("{}")
				}
				blocks = append(blocks, anthropic.NewToolUseBlock(tc.ID, args, tc.Name))
			}
			add(anthropic.MessageParamRoleAssistant, blocks...)
		case RoleTool:
			add(anthropic.MessageParamRoleUser, anthropic.NewToolResultBlock(m.ToolCallID, m.Content, m.IsError))
		default:
			return params, fmt.Errorf("message %d: unknown role %q", i, m.Role)
		}
	}
	params.Messages = msgs
	if len(system) > 0 {
		params.System = []anthropic.TextBlockParam{{Text: strings.Join(system, "\n\n")}}
	}
	for _, t := range req.Tools {
		schema, err := schemaMap(t.InputSchema)
		if err != nil {
			return params, fmt.Errorf("tool %s: %w", t.Name, err)
		}
		in := anthropic.ToolInputSchemaParam{Properties: schema["properties"], ExtraFields: map[string]any{}}
		if req, ok := schema["required"].([]any); ok {
			for _, r := range req {
				if s, ok := r.(string); ok {
					in.Required = append(in.Required, s)
				}
			}
		}
		for k, v := range schema {
			if k != "type" && k != "properties" && k != "required" {
				in.ExtraFields[k] = v
			}
		}
		tp := anthropic.ToolParam{Name: t.Name, InputSchema: in}
		if t.Description != "" {
			tp.Description = anthropic.String(t.Description)
		}
		params.Tools = append(params.Tools, anthropic.ToolUnionParam{OfTool: &tp})
	}
	return params, nil
}

// ListModels implements Provider (GET {base}/v1/models).
func (p *anthropicProvider) ListModels(ctx context.Context) ([]ModelInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, ListModelsTimeout)
	defer cancel()
	page, err := p.client.Models.List(ctx, anthropic.ModelListParams{Limit: anthropic.Int(1000)})
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("provider %s: list models: %w", p.id, ctx.Err())
		}
		pe := classifyAnthropic(err).(*Error)
		pe.Provider = p.id
		pe.Attempts = 1
		return nil, pe
	}
	out := make([]ModelInfo, 0, len(page.Data))
	for _, m := range page.Data {
		out = append(out, ModelInfo{ID: m.ID, DisplayName: m.DisplayName, Created: m.CreatedAt})
	}
	return out, nil
}
