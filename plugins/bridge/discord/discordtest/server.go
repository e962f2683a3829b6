// Package discordtest is an in-test fake of Discord for the Discord bridge:
// the REST API (v9) a bot uses and the gateway WebSocket, speaking the real
// wire protocol so that discordgo, unmodified, talks to it — rate-limit
// headers and 429 retry_after, multipart uploads and 413, application
// commands, interaction callbacks; gateway op 10 Hello, 2 Identify, 1/11
// heartbeats, 0 dispatches (READY, MESSAGE_CREATE, INTERACTION_CREATE),
// 6 Resume with replay → RESUMED, 7 Reconnect, 9 Invalid Session, and the
// close codes 4004 (bad token) and 4014 (disallowed intents).
//
// No real Discord can run in a test; this fake is as faithful as the
// bridge needs and records every call so that tests assert what the bot
// did, not what it meant to do.
package discordtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bwmarrin/discordgo"
)

// IDs of the fake's bot.
const (
	BotID  = "900000000000000001"
	AppID  = "900000000000000002"
	BotRol = "900000000000000003" // the bot's managed role in every guild
)

// Server is a fake Discord. Create it with New; it stops with the test.
type Server struct {
	t     testing.TB
	srv   *httptest.Server
	Token string // the bot token it accepts ("Bot " + Token on the wire)

	// HeartbeatInterval is sent in op 10 Hello (default 250 ms, so that
	// discordgo notices missing ACKs within seconds).
	HeartbeatInterval time.Duration

	// mu guards everything below.
	mu        sync.Mutex
	channels  map[string]discordgo.Channel
	msgs      map[string][]*Msg // channel id → messages the bot posted, in order
	calls     []Call
	nextID    int64
	limits    []*limit // pending 429s
	blocked   map[string]time.Time
	violation []string
	maxUpload int64
	latency   map[string]time.Duration                  // method → delay before answering a message call
	commands  map[string][]discordgo.ApplicationCommand // "" global, else guild id
	inter     map[string]*Interaction                   // token → interaction
	files     map[string][]byte                         // attachment name → content
	gw        gateway
}

// Call is one REST request the bot made.
type Call struct {
	Method, Path string
	Body         []byte
	At           time.Time
	Status       int
}

// Msg is a message the bot posted, with what it became.
type Msg struct {
	ID, ChannelID   string
	Text            string // current content
	Edits           int
	AllowedMentions *discordgo.MessageAllowedMentions
	Files           []File
	Via             string // "channel" or "interaction"
}

// File is an uploaded file of a message.
type File struct {
	Name string
	Data []byte
}

// Interaction is a slash command the fake delivered, and how the bot
// answered it.
type Interaction struct {
	ID, Token, ChannelID string
	Sent                 time.Time
	Callback             int       // callback type (5: deferred), 0 none yet
	CallbackAt           time.Time // when the callback arrived
	Edited               string    // the response's text after edits
}

type limit struct {
	method, path string // path prefix match
	retryAfter   time.Duration
	global       bool
}

// New starts a fake Discord.
func New(t testing.TB) *Server {
	s := &Server{
		t: t, Token: "fake-discord-token", HeartbeatInterval: 250 * time.Millisecond,
		channels: map[string]discordgo.Channel{}, msgs: map[string][]*Msg{},
		blocked: map[string]time.Time{}, maxUpload: 10 << 20, nextID: 1000,
		commands: map[string][]discordgo.ApplicationCommand{}, inter: map[string]*Interaction{},
		files: map[string][]byte{}, latency: map[string]time.Duration{},
	}
	s.gw.sessions = map[string]*gwSession{}
	mux := http.NewServeMux()
	s.routes(mux)
	mux.HandleFunc("GET /gateway", s.serveGateway)
	mux.HandleFunc("GET /gateway/", s.serveGateway) // discordgo adds a trailing slash
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// Close stops the fake.
func (s *Server) Close() {
	s.mu.Lock()
	for _, c := range s.gw.conns {
		c.ws.Close()
	}
	s.mu.Unlock()
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// URL is the fake's base, for settings.api_url.
func (s *Server) URL() string { return s.srv.URL }

// WSURL is the gateway's address, as GET /api/v9/gateway returns it.
func (s *Server) WSURL() string { return "ws" + strings.TrimPrefix(s.srv.URL, "http") + "/gateway" }

// AddChannel makes a channel known (GET /channels/{id}); DM channels need
// none. A thread is a channel with ParentID and Type GuildPublicThread.
func (s *Server) AddChannel(c discordgo.Channel) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.channels[c.ID] = c
}

// SetMaxUpload sets the upload limit above which POST messages answers 413.
func (s *Server) SetMaxUpload(n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxUpload = n
}

// SetLatency delays every message call (POST, PATCH) of method by d
// before it is handled; a request whose client goes away meanwhile is
// dropped unhandled, as if it never reached Discord.
func (s *Server) SetLatency(method string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency[method] = d
}

// RateLimitNext makes the next request whose method is method and whose
// path starts with pathPrefix (after /api/v9) answer 429 with retry_after;
// requests on that route before the wait is over are recorded as
// violations (Violations).
func (s *Server) RateLimitNext(method, pathPrefix string, retryAfter time.Duration, global bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limits = append(s.limits, &limit{method, pathPrefix, retryAfter, global})
}

// Violations are the requests made during a 429's wait.
func (s *Server) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.violation...)
}

// Calls returns the REST calls whose "METHOD path" starts with prefix.
func (s *Server) Calls(prefix string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if strings.HasPrefix(c.Method+" "+c.Path, prefix) {
			out = append(out, c)
		}
	}
	return out
}

// Messages returns copies of the messages the bot posted in channel.
func (s *Server) Messages(channel string) []Msg {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Msg
	for _, m := range s.msgs[channel] {
		out = append(out, *m)
	}
	return out
}

// Commands returns the application commands registered (guild "" for the
// global ones).
func (s *Server) Commands(guild string) []discordgo.ApplicationCommand {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]discordgo.ApplicationCommand(nil), s.commands[guild]...)
}

// Interaction returns a copy of the interaction with token.
func (s *Server) Interaction(token string) Interaction {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in := s.inter[token]; in != nil {
		return *in
	}
	return Interaction{}
}

// AddFile serves content at URL()+"/attachments/"+name, for incoming
// attachments, and returns that URL.
func (s *Server) AddFile(name string, content []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[name] = content
	return s.srv.URL + "/attachments/" + name
}

// Wait polls cond until it holds or timeout passes (then the test fails).
func (s *Server) Wait(timeout time.Duration, what string, cond func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			s.t.Fatalf("discordtest: timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *Server) newID() string {
	s.nextID++
	return fmt.Sprint(s.nextID)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func apiError(w http.ResponseWriter, status, code int, msg string) {
	writeJSON(w, status, map[string]any{"code": code, "message": msg})
}
