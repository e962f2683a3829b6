// Package providertest provides in-process fakes of the LLM HTTP APIs agentd
// talks to: an OpenAI-compatible chat-completions server and an Anthropic
// Messages server. Both speak the real wire protocol (SSE framing, the real
// JSON chunk/event shapes, real error envelopes, Retry-After) and are
// scripted per test with a queue of Responses; every request they receive is
// recorded for assertions.
//
//	srv := providertest.NewOpenAI(t,
//		providertest.Response{Status: 500},
//		providertest.Response{Text: []string{"Hel", "lo"}, Usage: &providertest.Usage{PromptTokens: 3, CompletionTokens: 2}},
//	)
//	p, _ := provider.New(provider.Config{Kind: "openai", BaseURL: srv.BaseURL(), APIKey: srv.APIKey})
//
// When the script is exhausted the server answers 500 with an error body
// saying so.
package providertest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Response scripts one answer of a fake server.
type Response struct {
	// Status, when non-zero and not 200, makes the server answer with this
	// HTTP status and an error body instead of a stream.
	Status int
	// ErrorMessage is the message inside the provider-shaped error body
	// (default: the status text). Body, if set, replaces the whole body.
	ErrorMessage string
	Body         string
	// RetryAfter is sent as the Retry-After header (e.g. "1").
	RetryAfter string
	// Header adds response headers.
	Header map[string]string

	// Text is streamed as one delta per element, in order.
	Text []string
	// ToolCalls are streamed after the text; each one's arguments are split
	// over two deltas to exercise reassembly.
	ToolCalls []ToolCall
	// Usage is reported at the end of the stream (OpenAI: only when the
	// request asked for stream_options.include_usage, as the real API does).
	Usage *Usage
	// FinishReason overrides the finish/stop reason (default: "stop" /
	// "end_turn", or "tool_calls" / "tool_use" when there are tool calls).
	FinishReason string
	// Delay is slept before every delta after the first.
	Delay time.Duration
	// KeepAlive, when set, sends an SSE comment (": keepalive") at this
	// interval while waiting out Delay.
	KeepAlive time.Duration

	// Cut aborts the connection (no terminating chunk, no [DONE] /
	// message_stop) just before text delta number CutAfter (0-based);
	// CutAfter >= len(Text) cuts after all text was sent.
	Cut      bool
	CutAfter int
	// Stall stops sending (connection kept open) just before text delta
	// number StallAfter, until the client goes away.
	Stall      bool
	StallAfter int
	// Hang never sends response headers; the request blocks until the
	// client goes away.
	Hang bool
	// ErrorEvent, when set, is sent as an in-stream error after the text
	// (OpenAI: a data: {"error":{...}} chunk; Anthropic: an "error" event
	// of type ErrorType, default "overloaded_error"), ending the stream.
	ErrorEvent string
	ErrorType  string

	// Respond, when set, makes the answer depend on the request: it gets
	// the request body and returns the Response to send (e.g. a reply that
	// quotes the tool results the client sent back, see ToolResults).
	Respond func(body []byte) Response
}

// ToolCall is a scripted tool call. Arguments is the JSON text of the
// arguments object.
type ToolCall struct {
	ID        string
	Name      string
	Arguments string
}

// Usage is scripted token usage.
type Usage struct {
	PromptTokens     int
	CompletionTokens int
}

// RecordedRequest is one request the fake received.
type RecordedRequest struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
	Time   time.Time
}

// decodeAs decodes a recorded request's body as api's request type.
func decodeAs[T any](t testing.TB, r RecordedRequest, api string) T {
	t.Helper()
	var req T
	if err := json.Unmarshal(r.Body, &req); err != nil {
		t.Fatalf("providertest: decode %s request: %v\n%s", api, err, r.Body)
	}
	return req
}

// Server is a scripted fake API server.
type Server struct {
	*httptest.Server
	// APIKey, when non-empty, must be presented (OpenAI: Authorization:
	// Bearer; Anthropic: x-api-key) or the server answers 401.
	APIKey string
	// Models is what the models endpoint lists.
	Models []string

	t      testing.TB
	flavor flavor
	done   chan struct{}

	mu     sync.Mutex
	script []Response
	reqs   []RecordedRequest
}

type flavor interface {
	authorized(s *Server, r *http.Request) bool
	writeError(w http.ResponseWriter, status int, msg, body string)
	models(s *Server, w http.ResponseWriter)
	stream(s *Server, w http.ResponseWriter, r *http.Request, body []byte, resp Response)
	streamPath() string
	modelsPath() string
}

// DefaultAPIKey is the key the fakes expect unless a test changes APIKey.
const DefaultAPIKey = "test-key"

func newServer(t testing.TB, f flavor, responses []Response) *Server {
	s := &Server{
		APIKey: DefaultAPIKey,
		Models: []string{"model-a", "model-b"},
		t:      t,
		flavor: f,
		done:   make(chan struct{}),
		script: append([]Response(nil), responses...),
	}
	s.Server = httptest.NewServer(http.HandlerFunc(s.handle))
	t.Cleanup(s.Server.Close)
	t.Cleanup(func() { close(s.done) }) // runs first (LIFO): releases hung handlers
	return s
}

// Push appends responses to the script.
func (s *Server) Push(rs ...Response) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script = append(s.script, rs...)
}

// Requests returns the recorded requests to the streaming endpoint, in
// arrival order.
func (s *Server) Requests() []RecordedRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]RecordedRequest(nil), s.reqs...)
}

// Remaining is the number of scripted responses not yet used.
func (s *Server) Remaining() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.script)
}

func (s *Server) next() (Response, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.script) == 0 {
		return Response{}, false
	}
	r := s.script[0]
	s.script = s.script[1:]
	return r, true
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if !s.flavor.authorized(s, r) {
		s.flavor.writeError(w, http.StatusUnauthorized, "", "")
		return
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == s.flavor.modelsPath():
		s.flavor.models(s, w)
		return
	case r.Method == http.MethodPost && r.URL.Path == s.flavor.streamPath():
	default:
		s.flavor.writeError(w, http.StatusNotFound, "providertest: no route "+r.Method+" "+r.URL.Path, "")
		return
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, RecordedRequest{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body, Time: time.Now()})
	s.mu.Unlock()

	resp, ok := s.next()
	if !ok {
		s.flavor.writeError(w, http.StatusInternalServerError, "providertest: no scripted response left", "")
		return
	}
	if resp.Respond != nil {
		resp = resp.Respond(body)
	}
	for k, v := range resp.Header {
		w.Header().Set(k, v)
	}
	if resp.RetryAfter != "" {
		w.Header().Set("Retry-After", resp.RetryAfter)
	}
	if resp.Hang {
		s.wait(r)
		return
	}
	if resp.Status != 0 && resp.Status != http.StatusOK {
		s.flavor.writeError(w, resp.Status, resp.ErrorMessage, resp.Body)
		return
	}
	s.flavor.stream(s, w, r, body, resp)
}

// wait blocks until the client goes away or the test ends.
func (s *Server) wait(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-s.done:
	}
}

// pause waits d; false if the client went away first. With
// resp.KeepAlive set, SSE comment lines are sent meanwhile, as OpenRouter
// and others do to keep idle streams alive.
func (s *Server) pause(r *http.Request, out *sse, resp Response, d time.Duration) bool {
	if d <= 0 {
		return r.Context().Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	var tick <-chan time.Time
	if resp.KeepAlive > 0 && out != nil {
		tk := time.NewTicker(resp.KeepAlive)
		defer tk.Stop()
		tick = tk.C
	}
	for {
		select {
		case <-r.Context().Done():
			return false
		case <-s.done:
			return false
		case <-tick:
			out.comment("keepalive")
		case <-t.C:
			return true
		}
	}
}

// sse writes SSE frames and flushes each one.
type sse struct {
	w http.ResponseWriter
	f http.Flusher
}

func startSSE(w http.ResponseWriter) *sse {
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Connection", "keep-alive")
	w.WriteHeader(http.StatusOK)
	f, _ := w.(http.Flusher)
	s := &sse{w: w, f: f}
	s.flush()
	return s
}

func (s *sse) flush() {
	if s.f != nil {
		s.f.Flush()
	}
}

// send writes one event (event may be empty) with data as JSON (or raw
// string) and flushes.
func (s *sse) send(event string, data any) {
	var b []byte
	switch d := data.(type) {
	case string:
		b = []byte(d)
	default:
		b, _ = json.Marshal(d)
	}
	var sb strings.Builder
	if event != "" {
		sb.WriteString("event: " + event + "\n")
	}
	sb.WriteString("data: ")
	sb.Write(b)
	sb.WriteString("\n\n")
	_, _ = io.WriteString(s.w, sb.String())
	s.flush()
}

// comment writes an SSE comment line (ignored by parsers) and flushes.
func (s *sse) comment(text string) {
	_, _ = io.WriteString(s.w, ": "+text+"\n\n")
	s.flush()
}

// abort drops the connection mid-response: the chunked body is never
// terminated, so the client sees an unexpected EOF.
func abort() {
	panic(http.ErrAbortHandler)
}

// splitArgs splits JSON text into two pieces (to stream it in two deltas).
func splitArgs(s string) []string {
	if len(s) < 2 {
		return []string{s}
	}
	return []string{s[:len(s)/2], s[len(s)/2:]}
}

// textLoop streams resp.Text through emit honouring Delay/Cut/Stall. It
// returns false when the handler must stop (client gone or stalled).
func (s *Server) textLoop(r *http.Request, out *sse, resp Response, emit func(string)) bool {
	for i, piece := range resp.Text {
		if i > 0 && !s.pause(r, out, resp, resp.Delay) {
			return false
		}
		if resp.Cut && i == resp.CutAfter {
			abort()
		}
		if resp.Stall && i == resp.StallAfter {
			s.wait(r)
			return false
		}
		emit(piece)
	}
	if resp.Cut && resp.CutAfter >= len(resp.Text) {
		abort()
	}
	if resp.Stall && resp.StallAfter >= len(resp.Text) {
		s.wait(r)
		return false
	}
	return true
}
