package providertest

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// sseFrames posts body and returns the (event, data) pairs of the response.
func sseFrames(t *testing.T, url string, hdr map[string]string, body string) (int, [][2]string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Errorf("content-type = %q", ct)
	}
	var frames [][2]string
	sc := bufio.NewScanner(resp.Body)
	ev := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			ev = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			frames = append(frames, [2]string{ev, strings.TrimPrefix(line, "data: ")})
		case line == "":
			ev = ""
		}
	}
	return resp.StatusCode, frames
}

func TestOpenAIWireFrames(t *testing.T) {
	s := NewOpenAI(t, Response{
		Text: []string{"Hi"}, ToolCalls: []ToolCall{{ID: "call_1", Name: "f", Arguments: `{"a":1}`}},
		Usage: &Usage{PromptTokens: 3, CompletionTokens: 4},
	}, Response{Text: []string{"x"}, Usage: &Usage{PromptTokens: 1, CompletionTokens: 1}})
	auth := map[string]string{"Authorization": "Bearer " + DefaultAPIKey}
	if code, _ := sseFrames(t, s.BaseURL()+"/chat/completions", nil, `{"stream":true}`); code != 401 {
		t.Errorf("no key: status %d", code)
	}
	_, frames := sseFrames(t, s.BaseURL()+"/chat/completions", auth,
		`{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[]}`)
	if last := frames[len(frames)-1][1]; last != "[DONE]" {
		t.Fatalf("last frame %q", last)
	}
	var usage struct {
		Choices []any `json:"choices"`
		Usage   struct {
			TotalTokens int `json:"total_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal([]byte(frames[len(frames)-2][1]), &usage); err != nil || len(usage.Choices) != 0 || usage.Usage.TotalTokens != 7 {
		t.Errorf("usage chunk = %s (%v)", frames[len(frames)-2][1], err)
	}
	var fin struct {
		Choices []struct {
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
	}
	_ = json.Unmarshal([]byte(frames[len(frames)-3][1]), &fin)
	if fin.Choices[0].FinishReason != "tool_calls" {
		t.Errorf("finish frame = %s", frames[len(frames)-3][1])
	}
	var args strings.Builder
	for _, f := range frames {
		var c struct {
			Choices []struct {
				Delta struct {
					ToolCalls []struct {
						Function struct{ Arguments string } `json:"function"`
					} `json:"tool_calls"`
				} `json:"delta"`
			} `json:"choices"`
		}
		_ = json.Unmarshal([]byte(f[1]), &c)
		for _, ch := range c.Choices {
			for _, tc := range ch.Delta.ToolCalls {
				args.WriteString(tc.Function.Arguments)
			}
		}
	}
	if args.String() != `{"a":1}` {
		t.Errorf("reassembled args = %q", args.String())
	}
	// Without include_usage there is no usage chunk, as with the real API.
	_, frames = sseFrames(t, s.BaseURL()+"/chat/completions", auth, `{"model":"m","stream":true,"messages":[]}`)
	if strings.Contains(frames[len(frames)-2][1], `"usage"`) {
		t.Errorf("usage sent without include_usage: %s", frames[len(frames)-2][1])
	}
	if n := len(s.Requests()); n != 2 {
		t.Errorf("recorded %d requests (unauthorized ones must not count)", n)
	}
}

func TestAnthropicWireEvents(t *testing.T) {
	s := NewAnthropic(t, Response{
		Text: []string{"Hi"}, ToolCalls: []ToolCall{{ID: "toolu_1", Name: "f", Arguments: `{"a":1}`}},
		Usage: &Usage{PromptTokens: 3, CompletionTokens: 4},
	})
	_, frames := sseFrames(t, s.URL+"/v1/messages", map[string]string{"X-Api-Key": DefaultAPIKey},
		`{"model":"m","max_tokens":10,"stream":true,"messages":[]}`)
	var names []string
	for _, f := range frames {
		names = append(names, f[0])
		var typ struct{ Type string }
		if err := json.Unmarshal([]byte(f[1]), &typ); err != nil || typ.Type != f[0] {
			t.Errorf("event %q carries type %q (%v)", f[0], typ.Type, err)
		}
	}
	want := "message_start content_block_start ping content_block_delta content_block_stop " +
		"content_block_start content_block_delta content_block_delta content_block_stop message_delta message_stop"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("events = %s\nwant     %s", got, want)
	}
}

func TestQuoteToolResults(t *testing.T) {
	s := NewOpenAI(t, QuoteToolResults())
	body := `{"model":"m","stream":true,"messages":[
		{"role":"user","content":"go"},
		{"role":"assistant","tool_calls":[{"id":"old","type":"function","function":{"name":"f","arguments":"{}"}}]},
		{"role":"tool","tool_call_id":"old","content":"stale"},
		{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{}"}}]},
		{"role":"tool","tool_call_id":"a","content":"one"},
		{"role":"tool","tool_call_id":"b","content":[{"type":"text","text":"two"}]}]}`
	_, frames := sseFrames(t, s.BaseURL()+"/chat/completions", map[string]string{"Authorization": "Bearer " + DefaultAPIKey}, body)
	var text strings.Builder
	for _, f := range frames {
		var c struct {
			Choices []struct {
				Delta struct{ Content string } `json:"delta"`
			} `json:"choices"`
		}
		if json.Unmarshal([]byte(f[1]), &c) == nil && len(c.Choices) > 0 {
			text.WriteString(c.Choices[0].Delta.Content)
		}
	}
	if text.String() != "results: one | two" {
		t.Errorf("reply %q: want the last round's tool results only", text.String())
	}
}
