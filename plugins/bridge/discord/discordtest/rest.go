package discordtest

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bwmarrin/discordgo"
)

const api = "/api/v9"

func (s *Server) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+api+"/gateway", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]string{"url": s.WSURL()})
	})
	mux.HandleFunc("GET "+api+"/users/@me", s.auth(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, botUser())
	}))
	mux.HandleFunc("GET "+api+"/channels/{cid}", s.auth(s.getChannel))
	mux.HandleFunc("POST "+api+"/channels/{cid}/messages", s.auth(s.limited(s.postMessage)))
	mux.HandleFunc("PATCH "+api+"/channels/{cid}/messages/{mid}", s.auth(s.limited(s.patchMessage)))
	mux.HandleFunc("POST "+api+"/channels/{cid}/typing", s.auth(s.limited(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})))
	mux.HandleFunc("PUT "+api+"/applications/{app}/commands", s.auth(s.putCommands))
	mux.HandleFunc("PUT "+api+"/applications/{app}/guilds/{gid}/commands", s.auth(s.putCommands))
	mux.HandleFunc("GET "+api+"/guilds/{gid}/members/{uid}", s.auth(func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("uid") != BotID {
			apiError(w, 404, 10007, "Unknown Member")
			return
		}
		writeJSON(w, 200, discordgo.Member{GuildID: r.PathValue("gid"), User: botUser(), Roles: []string{BotRol}})
	}))
	// Interaction callbacks and webhook edits are authorised by the
	// interaction token in the path, not the bot token (as on Discord).
	mux.HandleFunc("POST "+api+"/interactions/{iid}/{tok}/callback", s.record(s.callback))
	mux.HandleFunc("PATCH "+api+"/webhooks/{app}/{tok}/messages/@original", s.record(s.editOriginal))
	mux.HandleFunc("GET /attachments/{name}", s.record(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		b, ok := s.files[r.PathValue("name")]
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(b)
	}))
}

func botUser() *discordgo.User {
	return &discordgo.User{ID: BotID, Username: "agentbot", Bot: true}
}

// statusWriter remembers the status a handler wrote, for the call record.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// record logs the call, then runs h with the body readable again.
func (s *Server) record(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		sw := &statusWriter{ResponseWriter: w, status: 200}
		h(sw, r)
		s.mu.Lock()
		s.calls = append(s.calls, Call{Method: r.Method, Path: strings.TrimPrefix(r.URL.Path, api), Body: body, At: time.Now(), Status: sw.status})
		s.mu.Unlock()
	}
}

// auth checks the bot token ("Authorization: Bot <token>") and records.
func (s *Server) auth(h http.HandlerFunc) http.HandlerFunc {
	return s.record(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bot "+s.Token {
			apiError(w, 401, 0, "401: Unauthorized")
			return
		}
		h(w, r)
	})
}

// limited applies the scripted 429s and sends Discord's rate-limit
// headers on every answer.
func (s *Server) limited(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		path := strings.TrimPrefix(r.URL.Path, api)
		route := r.Method + " " + path
		s.mu.Lock()
		delay := s.latency[r.Method]
		s.mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		now := time.Now()
		s.mu.Lock()
		for k, until := range s.blocked {
			if now.Before(until) && (k == "global" || strings.HasPrefix(route, k)) {
				s.violation = append(s.violation, fmt.Sprintf("%s %v before the end of its 429", route, until.Sub(now).Round(time.Millisecond)))
			}
		}
		var hit *limit
		for i, l := range s.limits {
			if l.method == r.Method && strings.HasPrefix(path, l.path) {
				hit = l
				s.limits = append(s.limits[:i], s.limits[i+1:]...)
				key := l.method + " " + l.path
				if l.global {
					key = "global"
				}
				s.blocked[key] = now.Add(l.retryAfter)
				break
			}
		}
		s.mu.Unlock()
		h2 := w.Header()
		h2.Set("X-RateLimit-Limit", "5")
		h2.Set("X-RateLimit-Bucket", "fake-"+r.Method)
		if hit != nil {
			secs := hit.retryAfter.Seconds()
			h2.Set("Retry-After", strconv.Itoa(int(secs+0.999)))
			h2.Set("X-RateLimit-Remaining", "0")
			h2.Set("X-RateLimit-Reset-After", strconv.FormatFloat(secs, 'f', 3, 64))
			scope := "user"
			if hit.global {
				scope = "global"
				h2.Set("X-RateLimit-Global", "true")
			}
			h2.Set("X-RateLimit-Scope", scope)
			writeJSON(w, 429, map[string]any{"message": "You are being rate limited.", "retry_after": secs, "global": hit.global})
			return
		}
		h2.Set("X-RateLimit-Remaining", "4")
		h2.Set("X-RateLimit-Reset-After", "0.001")
		h(w, r)
	}
}

func (s *Server) getChannel(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	c, ok := s.channels[r.PathValue("cid")]
	s.mu.Unlock()
	if !ok {
		// An unknown channel is a DM with the bot (tests need not add those).
		writeJSON(w, 200, discordgo.Channel{ID: r.PathValue("cid"), Type: discordgo.ChannelTypeDM})
		return
	}
	writeJSON(w, 200, c)
}

// messageBody is the JSON (or multipart payload_json) of a message create
// or edit.
type messageBody struct {
	Content         *string                           `json:"content"`
	AllowedMentions *discordgo.MessageAllowedMentions `json:"allowed_mentions"`
}

// readMessage parses a JSON or multipart message body.
func readMessage(r *http.Request) (messageBody, []File, error) {
	var mb messageBody
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if !strings.HasPrefix(mt, "multipart/") {
		err := json.NewDecoder(r.Body).Decode(&mb)
		return mb, nil, err
	}
	var files []File
	mr := multipart.NewReader(r.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return mb, nil, err
		}
		b, err := io.ReadAll(p)
		if err != nil {
			return mb, nil, err
		}
		if p.FormName() == "payload_json" {
			if err := json.Unmarshal(b, &mb); err != nil {
				return mb, nil, err
			}
		} else if strings.HasPrefix(p.FormName(), "files[") || strings.HasPrefix(p.FormName(), "file") {
			files = append(files, File{Name: p.FileName(), Data: b})
		}
	}
	return mb, files, nil
}

func (s *Server) postMessage(w http.ResponseWriter, r *http.Request) {
	cid := r.PathValue("cid")
	mb, files, err := readMessage(r)
	if err != nil {
		apiError(w, 400, 50109, "The request body contains invalid JSON.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var size int64
	for _, f := range files {
		size += int64(len(f.Data))
	}
	if size > s.maxUpload {
		apiError(w, 413, 40005, "Request entity too large")
		return
	}
	text := ""
	if mb.Content != nil {
		text = *mb.Content
	}
	if len([]rune(text)) > 2000 {
		apiError(w, 400, 50035, "Invalid Form Body: content: Must be 2000 or fewer in length.")
		return
	}
	if text == "" && len(files) == 0 {
		apiError(w, 400, 50006, "Cannot send an empty message")
		return
	}
	m := &Msg{ID: s.newID(), ChannelID: cid, Text: text, AllowedMentions: mb.AllowedMentions, Files: files, Via: "channel"}
	s.msgs[cid] = append(s.msgs[cid], m)
	writeJSON(w, 200, discordgo.Message{ID: m.ID, ChannelID: cid, Content: text, Author: botUser()})
}

func (s *Server) patchMessage(w http.ResponseWriter, r *http.Request) {
	cid, mid := r.PathValue("cid"), r.PathValue("mid")
	mb, _, err := readMessage(r)
	if err != nil {
		apiError(w, 400, 50109, "The request body contains invalid JSON.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.msgs[cid] {
		if m.ID != mid {
			continue
		}
		if mb.Content != nil {
			if len([]rune(*mb.Content)) > 2000 {
				apiError(w, 400, 50035, "Invalid Form Body: content: Must be 2000 or fewer in length.")
				return
			}
			m.Text = *mb.Content
		}
		m.AllowedMentions = mb.AllowedMentions
		m.Edits++
		writeJSON(w, 200, discordgo.Message{ID: m.ID, ChannelID: cid, Content: m.Text, Author: botUser()})
		return
	}
	apiError(w, 404, 10008, "Unknown Message")
}

func (s *Server) putCommands(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("app") != AppID {
		apiError(w, 403, 50001, "Missing Access")
		return
	}
	var cmds []discordgo.ApplicationCommand
	if err := json.NewDecoder(r.Body).Decode(&cmds); err != nil {
		apiError(w, 400, 50109, "The request body contains invalid JSON.")
		return
	}
	s.mu.Lock()
	for i := range cmds {
		cmds[i].ID = s.newID()
		cmds[i].ApplicationID = AppID
	}
	s.commands[r.PathValue("gid")] = cmds
	s.mu.Unlock()
	writeJSON(w, 200, cmds)
}

func (s *Server) callback(w http.ResponseWriter, r *http.Request) {
	var resp discordgo.InteractionResponse
	if err := json.NewDecoder(r.Body).Decode(&resp); err != nil {
		apiError(w, 400, 50109, "The request body contains invalid JSON.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.inter[r.PathValue("tok")]
	if in == nil || in.ID != r.PathValue("iid") {
		apiError(w, 404, 10062, "Unknown interaction")
		return
	}
	if in.Callback != 0 {
		apiError(w, 400, 40060, "Interaction has already been acknowledged.")
		return
	}
	// Discord invalidates an interaction not answered within 3 seconds.
	if time.Since(in.Sent) > 3*time.Second {
		apiError(w, 404, 10062, "Unknown interaction")
		return
	}
	in.Callback, in.CallbackAt = int(resp.Type), time.Now()
	if resp.Data != nil {
		in.Edited = resp.Data.Content
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) editOriginal(w http.ResponseWriter, r *http.Request) {
	mb, _, err := readMessage(r)
	if err != nil {
		apiError(w, 400, 50109, "The request body contains invalid JSON.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.inter[r.PathValue("tok")]
	if in == nil || r.PathValue("app") != AppID || in.Callback == 0 {
		apiError(w, 404, 10015, "Unknown Webhook")
		return
	}
	if mb.Content != nil {
		in.Edited = *mb.Content
	}
	// The original response is a message in the channel, edited in place.
	var m *Msg
	for _, x := range s.msgs[in.ChannelID] {
		if x.Via == "interaction" && x.ID == "i"+in.ID {
			m = x
		}
	}
	if m == nil {
		m = &Msg{ID: "i" + in.ID, ChannelID: in.ChannelID, Via: "interaction"}
		s.msgs[in.ChannelID] = append(s.msgs[in.ChannelID], m)
	} else {
		m.Edits++
	}
	m.Text, m.AllowedMentions = in.Edited, mb.AllowedMentions
	writeJSON(w, 200, discordgo.Message{ID: m.ID, ChannelID: in.ChannelID, Content: m.Text, Author: botUser()})
}
