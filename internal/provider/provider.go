// Package provider is agentd's provider-neutral interface to large language
// models. A Provider turns a Request (system prompt, history, tools) into a
// streamed reply: text deltas and tool-call notifications are delivered to a
// callback while the reply is produced, and the assembled Result (text, tool
// calls, usage, finish reason) is returned at the end.
//
// Implementations:
//   - kind "openai": OpenAI-compatible chat completions (OpenAI, OpenRouter,
//     Ollama, vLLM, llama.cpp, LM Studio) through github.com/openai/openai-go/v3.
//   - kind "anthropic": Anthropic Messages through
//     github.com/anthropics/anthropic-sdk-go.
//   - kind "echo": deterministic and offline, for demos and tests.
//
// Failure policy (shared by the network providers, see retry.go): a 401/403 is
// final; 429 honours Retry-After; 5xx, connection errors and stalls are retried
// with bounded backoff, but only while nothing has been streamed to the
// callback yet. A stream that breaks after output started is reported as
// ErrStreamCut and never retried; the partial text is in the returned Result
// and in the *Error.
package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// Role of a message in a conversation.
type Role string

const (
	RoleSystem    Role = "system"
	RoleUser      Role = "user"
	RoleAssistant Role = "assistant"
	RoleTool      Role = "tool"
)

// Message is one entry of the conversation history.
//
//   - user/system: Content is the text.
//   - assistant: Content is the text (may be empty), ToolCalls the calls the
//     model asked for in that reply.
//   - tool: the result of one tool call; ToolCallID names the call, Content is
//     the result, IsError marks a failed call.
type Message struct {
	Role       Role       `json:"role"`
	Content    string     `json:"content,omitempty"`
	ToolCalls  []ToolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
	IsError    bool       `json:"is_error,omitempty"`
}

// ToolCall is a model's request to run a tool. Arguments is a JSON object.
type ToolCall struct {
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
}

// ToolSpec describes a tool offered to the model. InputSchema is a JSON
// Schema object ({"type":"object","properties":{...},"required":[...]});
// empty means "no arguments".
type ToolSpec struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema,omitempty"`
}

// Request is one model call.
type Request struct {
	// Model is the upstream model name (e.g. "gpt-4o-mini", "claude-sonnet-4-5").
	Model string
	// System is the system prompt; may be empty.
	System string
	// Messages is the conversation so far, oldest first, ending with the
	// message the model should answer. RoleSystem entries are appended to
	// the system prompt by providers that have no system role in-band.
	Messages []Message
	// Tools offered to the model; may be empty.
	Tools []ToolSpec
	// MaxTokens caps the reply; 0 means the provider default
	// (DefaultMaxTokens for Anthropic, which requires it; unset for OpenAI).
	MaxTokens int
}

// DefaultMaxTokens is sent to providers that require max_tokens when the
// request leaves it at 0.
const DefaultMaxTokens = 4096

// EventType distinguishes streaming events.
type EventType int

const (
	// EventTextDelta carries a piece of reply text in Event.Text.
	EventTextDelta EventType = iota + 1
	// EventToolCallStart says the model started a tool call; Event.ToolName
	// (and Event.ToolCallID when known) name it. Arguments arrive later, in
	// Result.ToolCalls.
	EventToolCallStart
)

// Event is delivered to the Stream callback, synchronously, on the goroutine
// that called Stream, in stream order.
type Event struct {
	Type       EventType
	Text       string
	ToolName   string
	ToolCallID string
}

// Usage counts tokens for one call (or, summed, for a turn).
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
}

// Add returns u + o.
func (u Usage) Add(o Usage) Usage {
	return Usage{PromptTokens: u.PromptTokens + o.PromptTokens, CompletionTokens: u.CompletionTokens + o.CompletionTokens}
}

// Total is prompt + completion tokens.
func (u Usage) Total() int { return u.PromptTokens + u.CompletionTokens }

// Finish reasons, normalised across providers.
const (
	FinishStop      = "stop"       // natural end of the reply
	FinishToolCalls = "tool_calls" // the model wants tool results
	FinishLength    = "length"     // hit max tokens
)

// Result is the assembled reply of one model call. When Stream returns an
// error, a non-nil Result holds whatever was received before the failure
// (partial Text, Usage if reported).
type Result struct {
	Text         string
	ToolCalls    []ToolCall
	Usage        Usage
	FinishReason string
	// Model is the model name the server reported, if any.
	Model string
}

// ModelInfo is one entry of a provider's model list.
type ModelInfo struct {
	ID          string    `json:"id"`
	DisplayName string    `json:"display_name,omitempty"`
	OwnedBy     string    `json:"owned_by,omitempty"`
	Created     time.Time `json:"created,omitzero"`
}

// Provider is an LLM backend.
type Provider interface {
	// Name is the configured provider id (used in errors and logs).
	Name() string
	// Stream runs one model call. onEvent is called synchronously for every
	// delta; if it returns an error the stream is abandoned and that error
	// is returned (wrapped). Cancelling ctx stops the stream promptly; the
	// returned Result then holds the partial reply and the error satisfies
	// errors.Is(err, context.Canceled) (or DeadlineExceeded).
	Stream(ctx context.Context, req *Request, onEvent func(Event) error) (*Result, error)
	// ListModels asks the backend which models it serves.
	ListModels(ctx context.Context) ([]ModelInfo, error)
}

// Kinds of provider accepted by New.
const (
	KindOpenAI    = "openai"
	KindAnthropic = "anthropic"
	KindEcho      = "echo"
)

// Config describes one configured provider.
type Config struct {
	ID      string `json:"id" yaml:"id"`
	Kind    string `json:"kind" yaml:"kind"`
	BaseURL string `json:"base_url,omitempty" yaml:"base_url,omitempty"`
	APIKey  string `json:"api_key,omitempty" yaml:"api_key,omitempty"`

	// The fields below are tuning knobs with sensible zero values.

	// HTTPClient overrides the HTTP client (tests, proxies). Nil: a client
	// without overall timeout (streams are bounded by ctx and IdleTimeout).
	HTTPClient *http.Client `json:"-" yaml:"-"`
	// Retry overrides DefaultRetryPolicy; zero fields take the defaults.
	Retry RetryPolicy `json:"-" yaml:"-"`
	// IdleTimeout aborts a call when no byte arrives for this long (waiting
	// for headers or between chunks; keep-alive comments count as data).
	// 0: DefaultIdleTimeout.
	IdleTimeout time.Duration `json:"-" yaml:"-"`
	// EchoDelay is the pause between deltas of the echo provider.
	EchoDelay time.Duration `json:"-" yaml:"-"`
	// Logger; nil means slog.Default().
	Logger *slog.Logger `json:"-" yaml:"-"`
}

// Default base URLs when Config.BaseURL is empty.
const (
	DefaultOpenAIBaseURL    = "https://api.openai.com/v1"
	DefaultAnthropicBaseURL = "https://api.anthropic.com"
)

// DefaultIdleTimeout bounds how long a call may wait for the next byte
// (headers, chunks, SSE keep-alive comments and pings all count). Generous,
// because some reasoning models send nothing while they think.
const DefaultIdleTimeout = 3 * time.Minute

// ListModelsTimeout bounds a ListModels call.
const ListModelsTimeout = 30 * time.Second

// New builds a Provider from its configuration.
func New(cfg Config) (Provider, error) {
	if cfg.ID == "" {
		cfg.ID = cfg.Kind
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Logger = cfg.Logger.With("provider", cfg.ID)
	cfg.Retry = cfg.Retry.withDefaults()
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	cfg.HTTPClient = withTouchTransport(cfg.HTTPClient)
	switch cfg.Kind {
	case KindOpenAI:
		return newOpenAI(cfg), nil
	case KindAnthropic:
		return newAnthropic(cfg), nil
	case KindEcho:
		return NewEcho(cfg.ID, cfg.EchoDelay), nil
	case "":
		return nil, fmt.Errorf("provider %q: kind is required (openai, anthropic or echo)", cfg.ID)
	default:
		return nil, fmt.Errorf("provider %q: unknown kind %q (want openai, anthropic or echo)", cfg.ID, cfg.Kind)
	}
}
