package providertest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// NewAnthropic starts a fake Anthropic Messages server (POST /v1/messages,
// GET /v1/models). Point a provider at BaseURL() (= URL).
func NewAnthropic(t testing.TB, responses ...Response) *Server {
	return newServer(t, anthropicFlavor{}, responses)
}

type anthropicFlavor struct{}

func (anthropicFlavor) streamPath() string { return "/v1/messages" }
func (anthropicFlavor) modelsPath() string { return "/v1/models" }

func (anthropicFlavor) authorized(s *Server, r *http.Request) bool {
	return s.APIKey == "" || r.Header.Get("X-Api-Key") == s.APIKey
}

func anthropicErrorType(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "authentication_error"
	case status == http.StatusForbidden:
		return "permission_error"
	case status == http.StatusNotFound:
		return "not_found_error"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status == 529:
		return "overloaded_error"
	case status >= 500:
		return "api_error"
	default:
		return "invalid_request_error"
	}
}

func (anthropicFlavor) writeError(w http.ResponseWriter, status int, msg, body string) {
	if body == "" {
		if msg == "" {
			switch status {
			case http.StatusUnauthorized:
				msg = "invalid x-api-key"
			case 529:
				msg = "Overloaded"
			default:
				msg = http.StatusText(status)
			}
		}
		b, _ := json.Marshal(map[string]any{"type": "error", "error": map[string]any{"type": anthropicErrorType(status), "message": msg}})
		body = string(b)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Request-Id", fmt.Sprintf("req_%d", time.Now().UnixNano()))
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

func (anthropicFlavor) models(s *Server, w http.ResponseWriter) {
	data := make([]map[string]any, 0, len(s.Models))
	for _, m := range s.Models {
		data = append(data, map[string]any{"type": "model", "id": m, "display_name": strings.ToUpper(m), "created_at": "2025-02-19T00:00:00Z"})
	}
	first, last := any(nil), any(nil)
	if len(s.Models) > 0 {
		first, last = s.Models[0], s.Models[len(s.Models)-1]
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"data": data, "has_more": false, "first_id": first, "last_id": last})
}

// AnthropicRequest is the decoded body of a Messages request.
type AnthropicRequest struct {
	Model     string             `json:"model"`
	MaxTokens int                `json:"max_tokens"`
	System    json.RawMessage    `json:"system"`
	Messages  []AnthropicMessage `json:"messages"`
	Tools     []struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		InputSchema json.RawMessage `json:"input_schema"`
	} `json:"tools"`
	Stream bool `json:"stream"`
}

// SystemText returns the system prompt whether sent as a string or blocks.
func (r AnthropicRequest) SystemText() string {
	var s string
	if json.Unmarshal(r.System, &s) == nil {
		return s
	}
	var blocks []struct {
		Text string `json:"text"`
	}
	_ = json.Unmarshal(r.System, &blocks)
	parts := make([]string, 0, len(blocks))
	for _, b := range blocks {
		parts = append(parts, b.Text)
	}
	return strings.Join(parts, "\n\n")
}

// AnthropicMessage is one message of an AnthropicRequest (content always
// decoded as blocks; a plain string becomes one text block).
type AnthropicMessage struct {
	Role    string           `json:"role"`
	Content []AnthropicBlock `json:"-"`
}

// AnthropicBlock is one content block.
type AnthropicBlock struct {
	Type      string          `json:"type"`
	Text      string          `json:"text,omitempty"`
	ID        string          `json:"id,omitempty"`
	Name      string          `json:"name,omitempty"`
	Input     json.RawMessage `json:"input,omitempty"`
	ToolUseID string          `json:"tool_use_id,omitempty"`
	Content   json.RawMessage `json:"content,omitempty"`
	IsError   bool            `json:"is_error,omitempty"`
}

// ResultText returns a tool_result block's content as text.
func (b AnthropicBlock) ResultText() string {
	var s string
	if json.Unmarshal(b.Content, &s) == nil {
		return s
	}
	var parts []struct {
		Text string `json:"text"`
	}
	_ = json.Unmarshal(b.Content, &parts)
	var sb strings.Builder
	for _, p := range parts {
		sb.WriteString(p.Text)
	}
	return sb.String()
}

func (m *AnthropicMessage) UnmarshalJSON(b []byte) error {
	var raw struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	m.Role = raw.Role
	var s string
	if json.Unmarshal(raw.Content, &s) == nil {
		m.Content = []AnthropicBlock{{Type: "text", Text: s}}
		return nil
	}
	return json.Unmarshal(raw.Content, &m.Content)
}

// Anthropic decodes a recorded request as a Messages request.
func (r RecordedRequest) Anthropic(t testing.TB) AnthropicRequest {
	t.Helper()
	return decodeAs[AnthropicRequest](t, r, "anthropic")
}

func (anthropicFlavor) stream(s *Server, w http.ResponseWriter, r *http.Request, body []byte, resp Response) {
	var req AnthropicRequest
	_ = json.Unmarshal(body, &req)
	if !req.Stream {
		anthropicFlavor{}.writeError(w, http.StatusBadRequest, "providertest: only streaming requests are supported", "")
		return
	}
	usage := Usage{}
	if resp.Usage != nil {
		usage = *resp.Usage
	}
	out := startSSE(w)
	out.send("message_start", map[string]any{"type": "message_start", "message": map[string]any{
		"id": fmt.Sprintf("msg_%d", time.Now().UnixNano()), "type": "message", "role": "assistant",
		"content": []any{}, "model": req.Model, "stop_reason": nil, "stop_sequence": nil,
		"usage": map[string]any{"input_tokens": usage.PromptTokens, "output_tokens": 1,
			"cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
	}})
	index := 0
	if len(resp.Text) > 0 || (len(resp.ToolCalls) == 0 && resp.ErrorEvent == "") {
		out.send("content_block_start", map[string]any{"type": "content_block_start", "index": index,
			"content_block": map[string]any{"type": "text", "text": ""}})
		out.send("ping", map[string]any{"type": "ping"})
		if !s.textLoop(r, out, resp, func(piece string) {
			out.send("content_block_delta", map[string]any{"type": "content_block_delta", "index": index,
				"delta": map[string]any{"type": "text_delta", "text": piece}})
		}) {
			return
		}
		out.send("content_block_stop", map[string]any{"type": "content_block_stop", "index": index})
		index++
	} else if !s.textLoop(r, out, resp, func(string) {}) {
		return
	}
	for i, tc := range resp.ToolCalls {
		if (i > 0 || len(resp.Text) > 0) && !s.pause(r, out, resp, resp.Delay) {
			return
		}
		out.send("content_block_start", map[string]any{"type": "content_block_start", "index": index,
			"content_block": map[string]any{"type": "tool_use", "id": tc.ID, "name": tc.Name, "input": map[string]any{}}})
		for _, part := range splitArgs(tc.Arguments) {
			out.send("content_block_delta", map[string]any{"type": "content_block_delta", "index": index,
				"delta": map[string]any{"type": "input_json_delta", "partial_json": part}})
		}
		out.send("content_block_stop", map[string]any{"type": "content_block_stop", "index": index})
		index++
	}
	if resp.ErrorEvent != "" {
		typ := resp.ErrorType
		if typ == "" {
			typ = "overloaded_error"
		}
		out.send("error", map[string]any{"type": "error", "error": map[string]any{"type": typ, "message": resp.ErrorEvent}})
		return
	}
	stop := resp.FinishReason
	if stop == "" {
		stop = "end_turn"
		if len(resp.ToolCalls) > 0 {
			stop = "tool_use"
		}
	}
	out.send("message_delta", map[string]any{"type": "message_delta",
		"delta": map[string]any{"stop_reason": stop, "stop_sequence": nil},
		"usage": map[string]any{"output_tokens": usage.CompletionTokens}})
	out.send("message_stop", map[string]any{"type": "message_stop"})
}
