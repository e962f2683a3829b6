package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/ssestream"
	"github.com/openai/openai-go/v3/shared"
)

// openAIProvider speaks OpenAI-compatible chat completions with SSE
// streaming. BaseURL includes the version prefix (".../v1"), as every
// compatible server documents it (Ollama: http://localhost:11434/v1).
type openAIProvider struct {
	id     string
	client openai.Client
	call   caller
}

func newOpenAI(cfg Config) *openAIProvider {
	base := cfg.BaseURL
	if base == "" {
		base = DefaultOpenAIBaseURL
	}
	// openai-go applies OPENAI_* environment defaults first and offers no
	// public switch to skip them; base URL and key are always set here, so
	// the configured provider wins over the environment.
	client := openai.NewClient(
		option.WithBaseURL(base),
		option.WithAPIKey(cfg.APIKey),
		option.WithHTTPClient(cfg.HTTPClient),
		// Our caller (retry.go) owns retries: it must know whether text
		// already reached the user, which the SDK's hidden retries do not.
		option.WithMaxRetries(0),
	)
	return &openAIProvider{
		id:     cfg.ID,
		client: client,
		call:   caller{id: cfg.ID, policy: cfg.Retry, idle: cfg.IdleTimeout, log: cfg.Logger},
	}
}

func (p *openAIProvider) Name() string { return p.id }

// Stream implements Provider.
func (p *openAIProvider) Stream(ctx context.Context, req *Request, onEvent func(Event) error) (*Result, error) {
	return stream(ctx, &p.call, "openai", req, onEvent, openAIParams, p.streamOnce)
}

type toolCallAcc struct {
	index     int64
	id, name  string
	args      strings.Builder
	announced bool
}

func (p *openAIProvider) streamOnce(ctx context.Context, params openai.ChatCompletionNewParams, a *attempt) (*Result, error) {
	stream := p.client.Chat.Completions.NewStreaming(ctx, params)
	defer stream.Close()

	res := &Result{}
	var text strings.Builder
	calls := map[int64]*toolCallAcc{}
	for stream.Next() {
		a.touch()
		chunk := stream.Current()
		if chunk.Model != "" {
			res.Model = chunk.Model
		}
		// The usage chunk (stream_options.include_usage) has no choices.
		if chunk.JSON.Usage.Valid() {
			res.Usage = Usage{PromptTokens: int(chunk.Usage.PromptTokens), CompletionTokens: int(chunk.Usage.CompletionTokens)}
		}
		for _, ch := range chunk.Choices {
			if ch.Index != 0 {
				continue // we never ask for n > 1
			}
			if d := ch.Delta.Content; d != "" {
				text.WriteString(d)
				res.Text = text.String()
				if err := a.emit(Event{Type: EventTextDelta, Text: d}); err != nil {
					return res, err
				}
			}
			for _, tc := range ch.Delta.ToolCalls {
				acc := calls[tc.Index]
				if acc == nil {
					acc = &toolCallAcc{index: tc.Index}
					calls[tc.Index] = acc
				}
				if tc.ID != "" {
					acc.id = tc.ID
				}
				if tc.Function.Name != "" {
					acc.name = tc.Function.Name
				}
				acc.args.WriteString(tc.Function.Arguments)
				if !acc.announced && acc.name != "" {
					acc.announced = true
					if err := a.emit(Event{Type: EventToolCallStart, ToolName: acc.name, ToolCallID: acc.id}); err != nil {
						return res, err
					}
				}
			}
			if ch.FinishReason != "" {
				res.FinishReason = ch.FinishReason
			}
		}
	}
	res.Text = text.String()
	res.ToolCalls = assembleToolCalls(calls)
	if err := stream.Err(); err != nil {
		return res, classifyOpenAI(err)
	}
	if res.FinishReason == "" {
		// The body ended cleanly but the completion never finished: the
		// server (or a proxy) dropped the stream.
		return res, &Error{Kind: ErrUnavailable, Err: errors.New("openai stream: ended before the reply was complete (no finish_reason)")}
	}
	res.FinishReason = normalizeOpenAIFinish(res.FinishReason, len(res.ToolCalls) > 0)
	return res, nil
}

func assembleToolCalls(calls map[int64]*toolCallAcc) []ToolCall {
	if len(calls) == 0 {
		return nil
	}
	list := make([]*toolCallAcc, 0, len(calls))
	for _, c := range calls {
		list = append(list, c)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].index < list[j].index })
	out := make([]ToolCall, 0, len(list))
	for _, c := range list {
		id := c.id
		if id == "" {
			id = fmt.Sprintf("call_%d", c.index)
		}
		out = append(out, ToolCall{ID: id, Name: c.name, Arguments: normalizeArgs(c.args.String())})
	}
	return out
}

// normalizeArgs makes streamed tool arguments a valid JSON value: empty
// becomes {}, malformed text becomes a JSON string (the tool then rejects it
// and the model sees why).
func normalizeArgs(s string) json.RawMessage {
	s = strings.TrimSpace(s)
	if s == "" {
		return json.RawMessage("{}")
	}
	if json.Valid([]byte(s)) {
		return json.RawMessage(s)
	}
	b, _ := json.Marshal(s)
	return b
}

func normalizeOpenAIFinish(r string, hasTools bool) string {
	switch {
	case hasTools:
		return FinishToolCalls // Ollama and others say "stop" with tool calls
	case r == "length":
		return FinishLength
	case r == "tool_calls" || r == "function_call":
		return FinishToolCalls
	default:
		return FinishStop
	}
}

// classifyOpenAI maps an SDK / transport error to *Error.
func classifyOpenAI(err error) error {
	var apiErr *openai.Error
	if errors.As(err, &apiErr) {
		var h http.Header
		if apiErr.Response != nil {
			h = apiErr.Response.Header
		}
		return httpError(apiErr.StatusCode, h, apiErr.Message, err)
	}
	var se *ssestream.StreamError
	if errors.As(err, &se) {
		// An {"error":{...}} object inside the event stream.
		var body struct {
			Error struct {
				Message string `json:"message"`
				Type    string `json:"type"`
			} `json:"error"`
		}
		_ = json.Unmarshal(se.Event.Data, &body)
		return &Error{Kind: ErrServer, Detail: body.Error.Message, Err: fmt.Errorf("openai stream: %w", err)}
	}
	return &Error{Kind: ErrUnavailable, Err: fmt.Errorf("openai stream: %w", err)}
}

func openAIParams(req *Request) (openai.ChatCompletionNewParams, error) {
	var msgs []openai.ChatCompletionMessageParamUnion
	if req.System != "" {
		msgs = append(msgs, openai.SystemMessage(req.System))
	}
	for i, m := range req.Messages {
		switch m.Role {
		case RoleSystem:
			msgs = append(msgs, openai.SystemMessage(m.Content))
		case RoleUser:
			msgs = append(msgs, openai.UserMessage(m.Content))
		case RoleAssistant:
			am := openai.ChatCompletionAssistantMessageParam{}
			if m.Content != "" || len(m.ToolCalls) == 0 {
				am.Content.OfString = openai.String(m.Content)
			}
			for _, tc := range m.ToolCalls {
				args := string(tc.Arguments)
				if args == "" {
					args = "{}"
				}
				am.ToolCalls = append(am.ToolCalls, openai.ChatCompletionMessageToolCallUnionParam{
					OfFunction: &openai.ChatCompletionMessageFunctionToolCallParam{
						ID:       tc.ID,
						Function: openai.ChatCompletionMessageFunctionToolCallFunctionParam{Name: tc.Name, Arguments: args},
					},
				})
			}
			msgs = append(msgs, openai.ChatCompletionMessageParamUnion{OfAssistant: &am})
		case RoleTool:
			msgs = append(msgs, openai.ToolMessage(m.Content, m.ToolCallID))
		default:
			return openai.ChatCompletionNewParams{}, fmt.Errorf("message %d: unknown role %q", i, m.Role)
		}
	}
	params := openai.ChatCompletionNewParams{
		Model:         shared.ChatModel(req.Model),
		Messages:      msgs,
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	}
	if req.MaxTokens > 0 {
		// max_tokens rather than max_completion_tokens: every compatible
		// server (Ollama, vLLM, llama.cpp, LM Studio) understands it.
		params.MaxTokens = openai.Int(int64(req.MaxTokens))
	}
	for _, t := range req.Tools {
		schema, err := schemaMap(t.InputSchema)
		if err != nil {
			return openai.ChatCompletionNewParams{}, fmt.Errorf("tool %s: %w", t.Name, err)
		}
		fd := shared.FunctionDefinitionParam{Name: t.Name, Parameters: shared.FunctionParameters(schema)}
		if t.Description != "" {
			fd.Description = openai.String(t.Description)
		}
		params.Tools = append(params.Tools, openai.ChatCompletionFunctionTool(fd))
	}
	return params, nil
}

// schemaMap decodes a tool's JSON schema; empty means an argument-less object.
func schemaMap(raw json.RawMessage) (map[string]any, error) {
	if len(strings.TrimSpace(string(raw))) == 0 {
		return map[string]any{"type": "object", "properties": map[string]any{}}, nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("input schema is not a JSON object: %w", err)
	}
	if _, ok := m["type"]; !ok {
		m["type"] = "object"
	}
	return m, nil
}

// ListModels implements Provider (GET {base}/models).
func (p *openAIProvider) ListModels(ctx context.Context) ([]ModelInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, ListModelsTimeout)
	defer cancel()
	page, err := p.client.Models.List(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("provider %s: list models: %w", p.id, ctx.Err())
		}
		pe := classifyOpenAI(err).(*Error)
		pe.Provider = p.id
		pe.Attempts = 1
		return nil, pe
	}
	out := make([]ModelInfo, 0, len(page.Data))
	for _, m := range page.Data {
		mi := ModelInfo{ID: m.ID, OwnedBy: m.OwnedBy}
		if m.Created > 0 {
			mi.Created = time.Unix(m.Created, 0).UTC()
		}
		out = append(out, mi)
	}
	return out, nil
}
