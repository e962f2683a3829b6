package providertest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// NewOpenAI starts a fake OpenAI-compatible server (POST /v1/chat/completions,
// GET /v1/models). Point a provider at BaseURL().
func NewOpenAI(t testing.TB, responses ...Response) *Server {
	return newServer(t, openAIFlavor{}, responses)
}

// BaseURL is the base URL a provider should be configured with (OpenAI
// flavour: URL+"/v1"; Anthropic flavour: URL).
func (s *Server) BaseURL() string {
	if _, ok := s.flavor.(openAIFlavor); ok {
		return s.URL + "/v1"
	}
	return s.URL
}

type openAIFlavor struct{}

func (openAIFlavor) streamPath() string { return "/v1/chat/completions" }
func (openAIFlavor) modelsPath() string { return "/v1/models" }

func (openAIFlavor) authorized(s *Server, r *http.Request) bool {
	return s.APIKey == "" || r.Header.Get("Authorization") == "Bearer "+s.APIKey
}

func (openAIFlavor) writeError(w http.ResponseWriter, status int, msg, body string) {
	if body == "" {
		typ, code := "server_error", any(nil)
		switch {
		case status == http.StatusUnauthorized:
			typ, code = "invalid_request_error", "invalid_api_key"
			if msg == "" {
				msg = "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys."
			}
		case status == http.StatusTooManyRequests:
			typ, code = "requests", "rate_limit_exceeded"
			if msg == "" {
				msg = "Rate limit reached for requests. Please try again later."
			}
		case status < 500:
			typ = "invalid_request_error"
		}
		if msg == "" {
			msg = http.StatusText(status)
		}
		b, _ := json.Marshal(map[string]any{"error": map[string]any{"message": msg, "type": typ, "param": nil, "code": code}})
		body = string(b)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

func (openAIFlavor) models(s *Server, w http.ResponseWriter) {
	data := make([]map[string]any, 0, len(s.Models))
	for _, m := range s.Models {
		data = append(data, map[string]any{"id": m, "object": "model", "created": 1700000000, "owned_by": "providertest"})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"object": "list", "data": data})
}

// OpenAIRequest is the decoded body of a chat-completions request.
type OpenAIRequest struct {
	Model         string          `json:"model"`
	Messages      []OpenAIMessage `json:"messages"`
	Tools         []OpenAITool    `json:"tools"`
	Stream        bool            `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	MaxTokens int `json:"max_tokens"`
}

// OpenAIMessage is one message of an OpenAIRequest.
type OpenAIMessage struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	ToolCallID string          `json:"tool_call_id"`
	ToolCalls  []struct {
		ID       string `json:"id"`
		Type     string `json:"type"`
		Function struct {
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		} `json:"function"`
	} `json:"tool_calls"`
}

// Text returns the message content whether it was sent as a string or as an
// array of text parts.
func (m OpenAIMessage) Text() string {
	var s string
	if json.Unmarshal(m.Content, &s) == nil {
		return s
	}
	var parts []struct {
		Text string `json:"text"`
	}
	_ = json.Unmarshal(m.Content, &parts)
	var sb strings.Builder
	for _, p := range parts {
		sb.WriteString(p.Text)
	}
	return sb.String()
}

// ToolResults returns the contents of the tool messages of the last round
// of a chat-completions request body (those after its last assistant
// message), in order: what the client fed back from the tool calls the
// fake asked for.
func ToolResults(body []byte) []string {
	var req OpenAIRequest
	if json.Unmarshal(body, &req) != nil {
		return nil
	}
	var out []string
	for _, m := range req.Messages {
		switch m.Role {
		case "assistant":
			out = nil
		case "tool":
			out = append(out, m.Text())
		}
	}
	return out
}

// QuoteToolResults is a Response whose reply text is "results: " and the
// tool results of the request, joined by " | ".
func QuoteToolResults() Response {
	return Response{Respond: func(body []byte) Response {
		return Response{Text: []string{"results: ", strings.Join(ToolResults(body), " | ")}}
	}}
}

// OpenAITool is one tool of an OpenAIRequest.
type OpenAITool struct {
	Type     string `json:"type"`
	Function struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
	} `json:"function"`
}

// OpenAI decodes a recorded request as a chat-completions request.
func (r RecordedRequest) OpenAI(t testing.TB) OpenAIRequest {
	t.Helper()
	return decodeAs[OpenAIRequest](t, r, "openai")
}

func (openAIFlavor) stream(s *Server, w http.ResponseWriter, r *http.Request, body []byte, resp Response) {
	var req OpenAIRequest
	_ = json.Unmarshal(body, &req)
	if !req.Stream {
		openAIFlavor{}.writeError(w, http.StatusBadRequest, "providertest: only streaming requests are supported", "")
		return
	}
	id := fmt.Sprintf("chatcmpl-%d", time.Now().UnixNano())
	created := time.Now().Unix()
	includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	chunk := func(delta map[string]any, finish any) map[string]any {
		c := map[string]any{
			"id": id, "object": "chat.completion.chunk", "created": created, "model": req.Model,
			"system_fingerprint": "fp_providertest",
			"choices":            []any{map[string]any{"index": 0, "delta": delta, "logprobs": nil, "finish_reason": finish}},
		}
		if includeUsage {
			c["usage"] = nil // the real API sends "usage": null on every chunk but the last
		}
		return c
	}
	out := startSSE(w)
	out.send("", chunk(map[string]any{"role": "assistant", "content": "", "refusal": nil}, nil))
	if !s.textLoop(r, out, resp, func(piece string) {
		out.send("", chunk(map[string]any{"content": piece}, nil))
	}) {
		return
	}
	for i, tc := range resp.ToolCalls {
		if (i > 0 || len(resp.Text) > 0) && !s.pause(r, out, resp, resp.Delay) {
			return
		}
		out.send("", chunk(map[string]any{"tool_calls": []any{map[string]any{
			"index": i, "id": tc.ID, "type": "function",
			"function": map[string]any{"name": tc.Name, "arguments": ""},
		}}}, nil))
		for _, part := range splitArgs(tc.Arguments) {
			out.send("", chunk(map[string]any{"tool_calls": []any{map[string]any{
				"index": i, "function": map[string]any{"arguments": part},
			}}}, nil))
		}
	}
	if resp.ErrorEvent != "" {
		typ := resp.ErrorType
		if typ == "" {
			typ = "server_error"
		}
		out.send("", map[string]any{"error": map[string]any{"message": resp.ErrorEvent, "type": typ, "param": nil, "code": nil}})
		return
	}
	finish := resp.FinishReason
	if finish == "" {
		finish = "stop"
		if len(resp.ToolCalls) > 0 {
			finish = "tool_calls"
		}
	}
	out.send("", chunk(map[string]any{}, finish))
	if resp.Usage != nil && includeUsage {
		out.send("", map[string]any{
			"id": id, "object": "chat.completion.chunk", "created": created, "model": req.Model,
			"choices": []any{},
			"usage": map[string]any{
				"prompt_tokens": resp.Usage.PromptTokens, "completion_tokens": resp.Usage.CompletionTokens,
				"total_tokens": resp.Usage.PromptTokens + resp.Usage.CompletionTokens,
			},
		})
	}
	out.send("", "[DONE]")
}
