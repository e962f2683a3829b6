// Package telegramtest is an in-process fake of the Telegram Bot API for
// tests, faithful where bridges depend on it: every method is
// POST (or GET) /bot<token>/<method> with a multipart, JSON or urlencoded
// body; answers are {"ok":true,"result":…} or {"ok":false,"error_code":…,
// "description":…[,"parameters":{"retry_after":…}]}; getUpdates long-polls
// with offset/limit/timeout semantics (updates confirmed by a higher offset
// are gone for good, a second concurrent poll makes the first fail with 409);
// sendMessage/editMessageText parse HTML like Telegram (unsupported tags are
// refused, entities unescaped, 4096 UTF-16 units at most, "message is not
// modified"); media uploads are stored; getFile + /file/bot<token>/<path>
// serve files. Flood control (flood.go): per-method and per-chat rules
// answer 429 with retry_after and keep books of honoured waits and
// violations. Redeliver re-sends a confirmed update (as after a restart);
// Album sends a media group.
package telegramtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/go-telegram/bot/models"
)

// Telegram's limits.
const (
	MaxMessageLen   = 4096
	MaxCaptionLen   = 1024
	MaxDownloadSize = 20 << 20 // getFile refuses bigger files
	maxUpdatesLimit = 100
)

// Token is the bot token the fake accepts by default.
const Token = "123456:TEST-token_abc"

// Msg is a message the bot sent, as the chat shows it now.
type Msg struct {
	ChatID    int64
	ID        int
	Kind      string // text, photo, document, voice, video
	Text      string // after HTML parsing: what the user sees
	Raw       string // as sent
	ParseMode string
	Edits     int // how many times it was edited
	Caption   string
	FileName  string
	FileData  []byte
}

// Call is one API call the fake received.
type Call struct {
	Method string
	Params map[string]string
	Files  map[string]Upload
	At     time.Time
	// Refused: the token was wrong (answered 401, nothing else done).
	Refused bool
}

// Upload is a file part of a multipart request.
type Upload struct {
	FileName string
	Data     []byte
}

type file struct {
	id, unique, path string
	data             []byte
}

type failure struct {
	code       int
	desc       string
	retryAfter int
}

// Server is the fake Bot API.
type Server struct {
	t     testing.TB
	srv   *httptest.Server
	Token string
	Bot   models.User

	// mu guards everything below.
	mu        sync.Mutex
	updates   []models.Update // not yet confirmed
	nextUpd   int64
	nextMsg   map[int64]int
	msgs      map[int64][]*Msg
	calls     []Call
	files     map[string]*file
	nextFile  int
	nextGroup int
	fail      map[string][]failure
	latency   time.Duration
	changed   chan struct{} // closed and replaced on every change
	pollGen   int           // incremented by each getUpdates; an older poll sees a newer one
	fetched   map[int64]int // update id → how often getUpdates returned it
	pushed    map[int64]models.Update
	rules     []*rule
	flood     FloodStats
	retryUnit time.Duration
	conflicts int // getUpdates answered 409
	holds     []*hold
	commands  []models.BotCommand
}

// New starts a fake Bot API server that stops with the test.
func New(t testing.TB) *Server {
	s := &Server{
		t:       t,
		Token:   Token,
		Bot:     models.User{ID: 123456, IsBot: true, FirstName: "Agent", Username: "agentd_test_bot"},
		nextUpd: 100,
		nextMsg: map[int64]int{},
		msgs:    map[int64][]*Msg{},
		files:   map[string]*file{},
		fail:    map[string][]failure{},
		fetched: map[int64]int{},
		pushed:  map[int64]models.Update{},
		changed: make(chan struct{}),
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// URL is the server URL for bot.WithServerURL.
func (s *Server) URL() string { return s.srv.URL }

// Close stops the server; pending long polls end.
func (s *Server) Close() {
	s.mu.Lock()
	s.bump()
	s.mu.Unlock()
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// bump wakes waiters; call with mu held.
func (s *Server) bump() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// SetLatency delays every method except getUpdates, like a slow network.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// FailNext makes the next call of method fail with code and description;
// retryAfter > 0 adds parameters.retry_after (use code 429).
func (s *Server) FailNext(method string, code int, desc string, retryAfter int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail[method] = append(s.fail[method], failure{code, desc, retryAfter})
}

// --- building updates -------------------------------------------------

// User returns a plain Telegram user with id.
func User(id int64, name string) models.User {
	return models.User{ID: id, FirstName: name, Username: strings.ToLower(name)}
}

// PrivateChat is the private chat with user u.
func PrivateChat(u models.User) models.Chat {
	return models.Chat{ID: u.ID, Type: models.ChatTypePrivate, FirstName: u.FirstName, Username: u.Username}
}

// GroupChat is a supergroup with id (negative, as Telegram's are).
func GroupChat(id int64, title string) models.Chat {
	return models.Chat{ID: id, Type: models.ChatTypeSupergroup, Title: title}
}

// Push queues an update with message m (its update id and message id are
// assigned) and returns the update id.
func (s *Server) Push(m models.Message) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextUpd++
	if m.ID == 0 {
		s.nextMsg[m.Chat.ID]++
		m.ID = s.nextMsg[m.Chat.ID]
	}
	if m.Date == 0 {
		m.Date = int(time.Now().Unix())
	}
	if m.Entities == nil {
		m.Entities = entities(m.Text)
	}
	if m.CaptionEntities == nil {
		m.CaptionEntities = entities(m.Caption)
	}
	mm := m
	u := models.Update{ID: s.nextUpd, Message: &mm}
	s.updates = append(s.updates, u)
	s.pushed[u.ID] = u
	s.bump()
	return s.nextUpd
}

// Redeliver queues update id again although it was confirmed, as Telegram
// does to a bot that polls without an offset after a restart: the bot
// must recognise the message it already answered.
func (s *Server) Redeliver(id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.pushed[id]
	if !ok {
		s.t.Fatalf("telegramtest: Redeliver(%d): no such update", id)
	}
	if slices.ContainsFunc(s.updates, func(q models.Update) bool { return q.ID == id }) {
		return
	}
	s.updates = append([]models.Update{u}, s.updates...)
	s.bump()
}

// Album queues an album (media group) from user u in chat c: one update
// per photo, all with the same media_group_id, the caption on the first,
// as Telegram sends them. It returns the update ids.
func (s *Server) Album(c models.Chat, u models.User, caption string, photos ...[]byte) []int64 {
	s.mu.Lock()
	s.nextGroup++
	group := fmt.Sprintf("1340%08d", s.nextGroup)
	s.mu.Unlock()
	var ids []int64
	for i, data := range photos {
		fid := s.AddFile(fmt.Sprintf("photo%d.jpg", i+1), data)
		m := models.Message{Chat: c, From: &u, MediaGroupID: group,
			Photo: []models.PhotoSize{{FileID: fid, FileUniqueID: "u" + fid, Width: 90, Height: 90, FileSize: len(data)}}}
		if i == 0 {
			m.Caption = caption
		}
		ids = append(ids, s.Push(m))
	}
	return ids
}

// holdMax bounds how long a held call waits for its caller to go.
const holdMax = time.Minute

// hold is a call to keep unanswered.
type hold struct {
	method  string
	skip    int // calls of method to let through first
	arrived chan struct{}
}

// Hold makes the call of method after the next skip ones hang unanswered
// (and not carried out) until its caller goes away; the channel is closed
// when it arrives. A test kills the bridge then, to cut it at a known step.
func (s *Server) Hold(method string, skip int) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := &hold{method: method, skip: skip, arrived: make(chan struct{})}
	s.holds = append(s.holds, h)
	return h.arrived
}

func (s *Server) takeHold(method string) *hold {
	for i, h := range s.holds {
		if h.method != method {
			continue
		}
		if h.skip > 0 {
			h.skip--
			continue
		}
		s.holds = append(s.holds[:i], s.holds[i+1:]...)
		return h
	}
	return nil
}

// Conflicts reports how many getUpdates calls were answered 409 because
// another poll overlapped them.
func (s *Server) Conflicts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conflicts
}

// Text queues a text message from user u in chat c.
func (s *Server) Text(c models.Chat, u models.User, text string) int64 {
	return s.Push(models.Message{Chat: c, From: &u, Text: text})
}

// entities marks @mentions and /commands as Telegram does (offsets and
// lengths in UTF-16 units).
func entities(text string) []models.MessageEntity {
	var out []models.MessageEntity
	u := utf16.Encode([]rune(text))
	for i := 0; i < len(u); i++ {
		if (u[i] != '@' && u[i] != '/') || (i > 0 && u[i-1] != ' ' && u[i-1] != '\n') {
			continue
		}
		j := i + 1
		for j < len(u) && (u[j] == '_' || u[j] == '@' && u[i] == '/' || u[j] < 128 && (u[j] >= 'a' && u[j] <= 'z' || u[j] >= 'A' && u[j] <= 'Z' || u[j] >= '0' && u[j] <= '9')) {
			j++
		}
		if j-i < 2 {
			continue
		}
		typ := models.MessageEntityTypeMention
		if u[i] == '/' {
			if i != 0 {
				continue
			}
			typ = models.MessageEntityTypeBotCommand
		}
		out = append(out, models.MessageEntity{Type: typ, Offset: i, Length: j - i})
		i = j
	}
	return out
}

// AddFile stores a file users can send; it returns the file id.
func (s *Server) AddFile(name string, data []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addFile(name, data).id
}

func (s *Server) addFile(name string, data []byte) *file {
	s.nextFile++
	f := &file{
		id:     fmt.Sprintf("BQACAgQAAx%06d", s.nextFile),
		unique: fmt.Sprintf("AgAD%06d", s.nextFile),
		path:   fmt.Sprintf("documents/file_%d%s", s.nextFile, safeExt(name)),
		data:   data,
	}
	s.files[f.id] = f
	return f
}

// --- inspecting --------------------------------------------------------

// Messages returns copies of the messages the bot has in chat, in order.
func (s *Server) Messages(chatID int64) []Msg {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Msg
	for _, m := range s.msgs[chatID] {
		out = append(out, *m)
	}
	return out
}

// Calls returns the calls of method so far ("" for all).
func (s *Server) Calls(method string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if method == "" || c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

// Unconfirmed returns the ids of updates not yet confirmed by an offset.
func (s *Server) Unconfirmed() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []int64
	for _, u := range s.updates {
		ids = append(ids, u.ID)
	}
	return ids
}

// Fetched reports how many times getUpdates has returned update id.
func (s *Server) Fetched(id int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetched[id]
}

// Wait polls cond (under no lock) whenever the fake's state changes, until
// it is true; it fails the test after timeout.
func (s *Server) Wait(timeout time.Duration, what string, cond func() bool) {
	s.t.Helper()
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			s.t.Fatalf("telegramtest: timed out after %v waiting for %s", timeout, what)
		}
	}
}

// --- HTTP ----------------------------------------------------------------

type apiError struct {
	code       int
	desc       string
	retryAfter int
}

func (e *apiError) Error() string { return e.desc }

func badRequest(format string, a ...any) *apiError {
	return &apiError{code: 400, desc: "Bad Request: " + fmt.Sprintf(format, a...)}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if rest, ok := strings.CutPrefix(r.URL.Path, "/file/bot"); ok {
		s.serveFile(w, r, rest)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/bot")
	token, method, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 {
		writeErr(w, &apiError{code: 404, desc: "Not Found"})
		return
	}
	if token != s.Token {
		s.mu.Lock()
		s.calls = append(s.calls, Call{Method: method, At: time.Now(), Refused: true})
		s.mu.Unlock()
		writeErr(w, &apiError{code: 401, desc: "Unauthorized"})
		return
	}
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		writeErr(w, &apiError{code: 405, desc: "Method Not Allowed"})
		return
	}
	params, files, err := parseParams(r)
	if err != nil {
		writeErr(w, badRequest("%v", err))
		return
	}
	now := time.Now()
	chatID, _ := strconv.ParseInt(params["chat_id"], 10, 64)
	s.mu.Lock()
	s.calls = append(s.calls, Call{Method: method, Params: params, Files: files, At: now})
	var f *failure
	if ra := s.checkRules(method, chatID, now); ra > 0 {
		f = &failure{429, fmt.Sprintf("Too Many Requests: retry after %d", ra), ra}
	} else if q := s.fail[method]; len(q) > 0 {
		f, s.fail[method] = &q[0], q[1:]
	}
	latency := s.latency
	var h *hold
	if f == nil {
		h = s.takeHold(method)
	}
	s.bump()
	s.mu.Unlock()
	if h != nil {
		// Held: never answered, never carried out; the test kills the
		// caller meanwhile (the call was in flight when it died).
		close(h.arrived)
		select {
		case <-r.Context().Done():
			return
		case <-time.After(holdMax): // the test forgot it: answer, never hang
			writeErr(w, &apiError{code: 500, desc: "Internal Server Error: call held too long"})
			return
		}
	}
	if f != nil {
		writeErr(w, &apiError{code: f.code, desc: f.desc, retryAfter: f.retryAfter})
		return
	}
	if method != "getUpdates" && latency > 0 {
		select {
		case <-time.After(latency):
		case <-r.Context().Done():
			return
		}
	}
	var res any
	var aerr *apiError
	switch method {
	case "getMe":
		res = s.Bot
	case "getUpdates":
		res, aerr = s.getUpdates(r, params)
	case "sendMessage":
		res, aerr = s.sendMessage(params)
	case "editMessageText":
		res, aerr = s.editMessageText(params)
	case "sendChatAction":
		res, aerr = s.sendChatAction(params)
	case "sendPhoto", "sendDocument", "sendVoice", "sendVideo":
		res, aerr = s.sendMedia(method, params, files)
	case "getFile":
		res, aerr = s.getFile(params)
	case "deleteWebhook":
		res = true
	case "setMyCommands":
		res, aerr = s.setMyCommands(params)
	case "getMyCommands":
		res = s.Commands()
	default:
		aerr = &apiError{code: 404, desc: "Not Found"}
	}
	if aerr != nil {
		writeErr(w, aerr)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"ok": true, "result": res})
}

func writeErr(w http.ResponseWriter, e *apiError) {
	body := map[string]any{"ok": false, "error_code": e.code, "description": e.desc}
	if e.retryAfter > 0 {
		body["parameters"] = map[string]any{"retry_after": e.retryAfter}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.code)
	json.NewEncoder(w).Encode(body)
}

// parseParams reads the query string and a multipart, JSON or urlencoded
// body into flat string parameters, as the Bot API accepts all of them.
func parseParams(r *http.Request) (map[string]string, map[string]Upload, error) {
	params := map[string]string{}
	files := map[string]Upload{}
	for k, v := range r.URL.Query() {
		params[k] = v[0]
	}
	ct := r.Header.Get("Content-Type")
	switch {
	case strings.HasPrefix(ct, "multipart/form-data"):
		mr, err := r.MultipartReader()
		if err != nil {
			return nil, nil, fmt.Errorf("multipart: %w", err)
		}
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, nil, fmt.Errorf("multipart: %w", err)
			}
			data, err := io.ReadAll(io.LimitReader(p, 60<<20))
			if err != nil {
				return nil, nil, fmt.Errorf("multipart: %w", err)
			}
			if p.FileName() != "" {
				files[p.FormName()] = Upload{FileName: p.FileName(), Data: data}
			} else {
				params[p.FormName()] = string(data)
			}
		}
	case strings.HasPrefix(ct, "application/json"):
		var m map[string]json.RawMessage
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil && err != io.EOF {
			return nil, nil, fmt.Errorf("can't parse JSON body: %v", err)
		}
		for k, v := range m {
			var s string
			if json.Unmarshal(v, &s) == nil {
				params[k] = s
			} else {
				params[k] = string(v)
			}
		}
	case strings.HasPrefix(ct, "application/x-www-form-urlencoded"):
		if err := r.ParseForm(); err != nil {
			return nil, nil, err
		}
		for k, v := range r.PostForm {
			params[k] = v[0]
		}
	case ct == "":
	default:
		return nil, nil, fmt.Errorf("unsupported Content-Type %q", ct)
	}
	return params, files, nil
}

// safeExt keeps a file name's extension if it is short and plain, as
// Telegram's file paths do ("documents/file_3.pdf").
func safeExt(name string) string {
	ext := filepath.Ext(name)
	if len(ext) < 2 || len(ext) > 6 {
		return ""
	}
	for _, r := range ext[1:] {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return ""
		}
	}
	return ext
}
