package gateway

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/agentd/agentd/internal/agent"
	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/provider"
	"github.com/agentd/agentd/internal/provider/providertest"
	"github.com/agentd/agentd/internal/session"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/voice"
	"github.com/agentd/agentd/wire"
)

// Identities the tests connect as. The header X-Test-Identity picks one;
// without it the request is anonymous, as after a zero-length preamble.
var identities = map[string]*auth.Identity{
	"alice":  {ClientID: "a11ce", Handle: "alice", Capabilities: []string{auth.CapChat}, Transport: "test"},
	"bob":    {ClientID: "b0b", Handle: "bob", Capabilities: []string{auth.CapChat}, Transport: "test"},
	"admin":  {ClientID: "ad1", Handle: "owner", Capabilities: []string{auth.CapAdmin}, Transport: "test"},
	"tg":     {ClientID: "7e1e", Handle: "tg-bridge", Capabilities: []string{auth.CapBridge, auth.SessionPrefixCap + "tg"}, Transport: "test"},
	"noscap": {ClientID: "n0", Handle: "nobody", Capabilities: nil, Transport: "test"},
}

// withTestIdentity stands in for the auth listener: it only sets the
// identity a real preamble would have proven.
func withTestIdentity(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.Header.Get("X-Test-Identity")
		if id, ok := identities[name]; ok {
			r = r.WithContext(auth.WithIdentity(r.Context(), id))
		}
		h.ServeHTTP(w, r)
	})
}

type envOpts struct {
	yaml         string             // extra config YAML (appended to the base)
	providers    *provider.Registry // nil: built from the config
	dir          string             // agent dir to reuse (persistence tests)
	model        string             // agent.default_model; "" = echo
	openAI       string             // base URL of a fake OpenAI server: adds provider "oa" and model "gpt"
	writeTimeout time.Duration
	voice        *voice.Service // nil: no voice engine
}

type env struct {
	t        testing.TB
	dir      string
	cfg      *config.Watcher
	store    *store.Store
	sessions *session.Manager
	gw       *Gateway
	srv      *httptest.Server
	cancel   context.CancelFunc
	crashed  bool
}

func configYAML(o envOpts) string {
	model := o.model
	if model == "" {
		model = "echo"
	}
	y := `agent:
  name: test-agent
  system_prompt: "You are a test."
  default_model: ` + model + `
providers:
  - id: echo
    kind: echo
`
	if o.openAI != "" {
		y += "  - id: oa\n    kind: openai\n    base_url: " + o.openAI + "\n    api_key: " + providertest.DefaultAPIKey + "\n"
	}
	y += `models:
  - id: echo
    provider: echo
  - id: echo2
    provider: echo
`
	if o.openAI != "" {
		y += "  - id: gpt\n    provider: oa\n    name: model-a\n    input_price_per_mtok: 2\n    output_price_per_mtok: 10\n"
	}
	return y
}

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	dir := o.dir
	if dir == "" {
		dir = t.TempDir()
	}
	path := filepath.Join(dir, config.FileName)
	if err := os.WriteFile(path, []byte(configYAML(o)+o.yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	w := config.NewWatcher(path, cfg, log)
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.Open(ctx, filepath.Join(dir, store.FileName))
	if err != nil {
		t.Fatal(err)
	}
	sm, err := session.New(session.Options{
		DB: st.DB(), Config: w, Agent: &agent.Agent{AllowedRoots: []string{dir}, Logger: log},
		Providers: o.providers, AgentDir: dir, Log: log, Voice: sessionVoice(o.voice, dir),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := sm.Start(ctx); err != nil {
		t.Fatal(err)
	}
	gw := New(Options{Config: w, Sessions: sm, AgentDir: dir, Version: "test-1", Log: log, WriteTimeout: o.writeTimeout})
	go gw.Run(ctx)
	srv := httptest.NewServer(withTestIdentity(gw))
	e := &env{t: t, dir: dir, cfg: w, store: st, sessions: sm, gw: gw, srv: srv, cancel: cancel}
	t.Cleanup(e.stop)
	return e
}

// sessionVoice is the session's view of the voice service, nil without one.
func sessionVoice(v *voice.Service, dir string) session.Voice {
	if v == nil {
		return nil
	}
	return voice.Files{Service: v, Dir: filepath.Join(dir, "uploads")}
}

// crash simulates SIGKILL: connections drop and the database closes while
// the session manager is abandoned mid-run, without any shutdown step.
func (e *env) crash() {
	e.crashed = true
	e.gw.Close()
	e.srv.Close()
	e.store.Close()
}

// stop shuts down in the order agentd serve does.
func (e *env) stop() {
	if e.crashed {
		e.cancel() // only to reap the abandoned goroutines
		e.sessions.Wait()
		return
	}
	e.cancel()
	e.gw.Close()
	e.srv.Close()
	e.sessions.Wait()
	e.store.Close()
}

// client is a test WebSocket client.
type client struct {
	t  testing.TB
	ws *websocket.Conn
}

func (e *env) dial(who string) *client {
	e.t.Helper()
	c := e.dialRaw(who)
	m := c.next()
	if ok, is := m.(wire.AuthOK); !is || ok.AgentName != "test-agent" || ok.Version != "test-1" {
		e.t.Fatalf("first frame %#v, want auth_ok{test-agent, test-1}", m)
	}
	return c
}

func (e *env) dialRaw(who string) *client {
	e.t.Helper()
	h := http.Header{}
	if who != "" {
		h.Set("X-Test-Identity", who)
	}
	ws, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(e.srv.URL, "http")+"/ws", h)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		e.t.Fatalf("dial as %q: %v (status %d)", who, err, status)
	}
	e.t.Cleanup(func() { ws.Close() })
	return &client{t: e.t, ws: ws}
}

func (c *client) send(m wire.Message) {
	c.t.Helper()
	b, err := wire.Encode(m)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(b)
}

func (c *client) sendRaw(b []byte) {
	c.t.Helper()
	if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// next returns the next frame, failing the test after 10 s.
func (c *client) next() wire.Message {
	c.t.Helper()
	m, err := c.read(10 * time.Second)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return m
}

func (c *client) read(timeout time.Duration) (wire.Message, error) {
	c.ws.SetReadDeadline(time.Now().Add(timeout))
	typ, data, err := c.ws.ReadMessage()
	if err != nil {
		return nil, err
	}
	if typ != websocket.TextMessage {
		c.t.Fatalf("server sent a binary frame")
	}
	m, err := wire.Decode(data, wire.ServerToClient)
	if err != nil {
		c.t.Fatalf("server frame %s does not decode: %v", data, err)
	}
	return m, nil
}

// until reads frames, skipping broadcasts, until one of type T arrives; it
// returns the frames skipped on the way too.
func until[T wire.Message](c *client) (T, []wire.Message) {
	c.t.Helper()
	var seen []wire.Message
	for {
		m := c.next()
		if v, ok := m.(T); ok {
			return v, seen
		}
		seen = append(seen, m)
	}
}

// turn is what a client saw of one turn.
type turnFrames struct {
	deltas   []wire.Delta
	status   []wire.Status
	response wire.Response
	errFrame *wire.Error
	complete wire.TurnComplete
	audio    []wire.Message // audio_start, audio_chunk…, audio_end
}

// readTurn reads until turn_complete, collecting the turn's frames.
func (c *client) readTurn() turnFrames {
	c.t.Helper()
	var tf turnFrames
	for {
		switch m := c.next().(type) {
		case wire.Delta:
			tf.deltas = append(tf.deltas, m)
		case wire.Status:
			tf.status = append(tf.status, m)
		case wire.Response:
			tf.response = m
		case wire.Error:
			tf.errFrame = &m
		case wire.TurnComplete:
			tf.complete = m
			return tf
		case wire.AudioStart, wire.AudioChunk, wire.AudioEnd:
			tf.audio = append(tf.audio, m)
		case wire.SystemSnapshot, wire.ResourceEvent:
		default:
			c.t.Fatalf("unexpected frame during a turn: %#v", m)
		}
	}
}

func (tf turnFrames) text() string {
	var b strings.Builder
	for _, d := range tf.deltas {
		b.WriteString(d.Text)
	}
	return b.String()
}

// do runs an HTTP request as who and decodes the JSON answer.
func (e *env) do(who, method, path, body string) (int, map[string]any) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if who != "" {
		req.Header.Set("X-Test-Identity", who)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	data, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(data, &out); err != nil {
		e.t.Fatalf("%s %s: body %q is not a JSON object", method, path, data)
	}
	return resp.StatusCode, out
}

func errorCode(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}
