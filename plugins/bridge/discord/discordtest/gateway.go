package discordtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/bwmarrin/discordgo"
	"github.com/gorilla/websocket"
)

// gateway is the fake's WebSocket side. Fields are guarded by Server.mu.
type gateway struct {
	sessions   map[string]*gwSession
	current    *gwSession // the session events go to (the latest identified)
	conns      []*gwConn
	dropAcks   bool
	denyIntent bool
	identifies int
	resumes    int
	intents    discordgo.Intent // of the last identify
	failResume int              // resumes still to refuse with close 4000
	nextSess   int
}

// gwSession is one gateway session: its dispatches, numbered, kept for
// replay on resume.
type gwSession struct {
	id     string
	seq    int64
	events []gwEvent
}

type gwEvent struct {
	seq int64
	raw []byte
}

type gwConn struct {
	ws   *websocket.Conn
	wmu  sync.Mutex // serialises writes
	sess *gwSession // nil until identified or resumed
}

func (c *gwConn) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

func (c *gwConn) writeRaw(b []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.WriteMessage(websocket.TextMessage, b)
}

func (c *gwConn) closeWith(code int, text string) {
	c.wmu.Lock()
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
	c.wmu.Unlock()
	_ = c.ws.Close()
}

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

type frame struct {
	Op int             `json:"op"`
	D  json.RawMessage `json:"d"`
	S  *int64          `json:"s,omitempty"`
	T  string          `json:"t,omitempty"`
}

func (s *Server) serveGateway(w http.ResponseWriter, r *http.Request) {
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &gwConn{ws: ws}
	s.mu.Lock()
	s.gw.conns = append(s.gw.conns, c)
	hb := s.HeartbeatInterval
	s.mu.Unlock()
	defer s.dropConn(c)
	if c.write(map[string]any{"op": 10, "d": map[string]any{"heartbeat_interval": hb.Milliseconds()}}) != nil {
		return
	}
	for {
		_, b, err := ws.ReadMessage()
		if err != nil {
			return
		}
		var f frame
		if json.Unmarshal(b, &f) != nil {
			c.closeWith(4002, "Error while decoding payload.")
			return
		}
		switch f.Op {
		case 1:
			s.mu.Lock()
			drop := s.gw.dropAcks
			s.mu.Unlock()
			if !drop {
				_ = c.write(map[string]any{"op": 11})
			}
		case 2:
			if !s.identify(c, f.D) {
				return
			}
		case 6:
			if !s.resume(c, f.D) {
				return
			}
		default:
			c.closeWith(4001, "Unknown opcode.")
			return
		}
	}
}

func (s *Server) dropConn(c *gwConn) {
	c.ws.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range s.gw.conns {
		if x == c {
			s.gw.conns = append(s.gw.conns[:i], s.gw.conns[i+1:]...)
			break
		}
	}
}

func (s *Server) identify(c *gwConn, d json.RawMessage) bool {
	var id struct {
		Token   string           `json:"token"`
		Intents discordgo.Intent `json:"intents"`
	}
	if json.Unmarshal(d, &id) != nil {
		c.closeWith(4002, "Error while decoding payload.")
		return false
	}
	s.mu.Lock()
	s.gw.identifies++
	s.gw.intents = id.Intents
	deny := s.gw.denyIntent
	s.mu.Unlock()
	if id.Token != "Bot "+s.Token {
		c.closeWith(4004, "Authentication failed.")
		return false
	}
	if deny && id.Intents&discordgo.IntentMessageContent != 0 {
		c.closeWith(4014, "Disallowed intent(s).")
		return false
	}
	s.mu.Lock()
	s.gw.nextSess++
	sess := &gwSession{id: fmt.Sprintf("fake-session-%d", s.gw.nextSess)}
	s.gw.sessions[sess.id] = sess
	s.gw.current = sess
	c.sess = sess
	ready := map[string]any{
		"v": 9, "user": botUser(), "session_id": sess.id, "resume_gateway_url": s.WSURL(),
		"guilds": []map[string]any{}, "application": map[string]any{"id": AppID, "flags": 0},
	}
	raw := s.addEvent(sess, "READY", ready)
	s.mu.Unlock()
	c.writeRaw(raw)
	return true
}

func (s *Server) resume(c *gwConn, d json.RawMessage) bool {
	var rs struct {
		Token     string `json:"token"`
		SessionID string `json:"session_id"`
		Seq       int64  `json:"seq"`
	}
	if json.Unmarshal(d, &rs) != nil {
		c.closeWith(4002, "Error while decoding payload.")
		return false
	}
	if rs.Token != "Bot "+s.Token {
		c.closeWith(4004, "Authentication failed.")
		return false
	}
	s.mu.Lock()
	s.gw.resumes++
	if s.gw.failResume > 0 {
		s.gw.failResume--
		s.mu.Unlock()
		c.closeWith(4000, "Unknown error.")
		return false
	}
	sess := s.gw.sessions[rs.SessionID]
	if sess == nil {
		s.mu.Unlock()
		_ = c.write(map[string]any{"op": 9, "d": false})
		return true
	}
	c.sess = sess
	var replay [][]byte
	for _, e := range sess.events {
		if e.seq > rs.Seq {
			replay = append(replay, e.raw)
		}
	}
	raw := s.addEvent(sess, "RESUMED", map[string]any{})
	s.mu.Unlock()
	for _, b := range replay {
		c.writeRaw(b)
	}
	c.writeRaw(raw)
	return true
}

// addEvent numbers a dispatch in sess and returns its frame. s.mu held.
func (s *Server) addEvent(sess *gwSession, t string, d any) []byte {
	sess.seq++
	db, _ := json.Marshal(d)
	seq := sess.seq
	raw, _ := json.Marshal(frame{Op: 0, D: db, S: &seq, T: t})
	sess.events = append(sess.events, gwEvent{seq, raw})
	return raw
}

// Dispatch sends an event (op 0) on the current session: at once to the
// connection that holds it, or on a resume when none does.
func (s *Server) Dispatch(t string, d any) {
	s.mu.Lock()
	sess := s.gw.current
	if sess == nil {
		s.mu.Unlock()
		s.t.Fatalf("discordtest: Dispatch(%s) before the bot identified", t)
		return
	}
	raw := s.addEvent(sess, t, d)
	var to []*gwConn
	for _, c := range s.gw.conns {
		if c.sess == sess {
			to = append(to, c)
		}
	}
	s.mu.Unlock()
	for _, c := range to {
		c.writeRaw(raw)
	}
}

// Ready reports whether a connection holds the current session.
func (s *Server) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.gw.conns {
		if c.sess != nil && c.sess == s.gw.current {
			return true
		}
	}
	return false
}

// Counts returns how many identifies and resumes the bot sent.
func (s *Server) Counts() (identifies, resumes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gw.identifies, s.gw.resumes
}

// Intents are those of the last identify.
func (s *Server) Intents() discordgo.Intent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gw.intents
}

// DropHeartbeatACKs stops (or resumes) answering op 1 with op 11.
func (s *Server) DropHeartbeatACKs(drop bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gw.dropAcks = drop
}

// FailResumes makes the next n resumes end in close 4000 (a gateway
// having trouble) instead of RESUMED.
func (s *Server) FailResumes(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gw.failResume = n
}

// DenyMessageContent makes an identify asking for the privileged
// MESSAGE_CONTENT intent fail with close code 4014.
func (s *Server) DenyMessageContent(deny bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gw.denyIntent = deny
}

func (s *Server) live() []*gwConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*gwConn(nil), s.gw.conns...)
}

// SendReconnect sends op 7 Reconnect on every connection.
func (s *Server) SendReconnect() {
	for _, c := range s.live() {
		_ = c.write(map[string]any{"op": 7, "d": nil})
	}
}

// SendInvalidSession sends op 9 with d=resumable; a session that is not
// resumable is forgotten, so only a fresh identify continues.
func (s *Server) SendInvalidSession(resumable bool) {
	s.mu.Lock()
	if !resumable && s.gw.current != nil {
		delete(s.gw.sessions, s.gw.current.id)
	}
	s.mu.Unlock()
	for _, c := range s.live() {
		_ = c.write(map[string]any{"op": 9, "d": resumable})
	}
}

// CloseConnections closes every gateway connection with code (the session
// stays resumable unless the code says otherwise).
func (s *Server) CloseConnections(code int, text string) {
	for _, c := range s.live() {
		c.closeWith(code, text)
	}
}

// User is a Discord user for events.
type User struct {
	ID, Name string
	Bot      bool
}

func (u User) wire() map[string]any {
	return map[string]any{"id": u.ID, "username": u.Name, "discriminator": "0", "bot": u.Bot}
}

// BotUser is the fake's bot, for mentions and replies.
var BotUser = User{ID: BotID, Name: "agentbot", Bot: true}

// Message is an incoming message for MessageCreate.
type Message struct {
	ChannelID, GuildID string // GuildID "" for a DM
	Author             User
	Content            string
	Mentions           []User
	MentionRoles       []string
	ReplyTo            *Msg // a reply to one of the bot's messages
	Attachments        []Attachment
}

// Attachment is a file of an incoming message; URL from AddFile.
type Attachment struct {
	Name, URL, ContentType string
	Size                   int
}

// MessageCreate dispatches MESSAGE_CREATE and returns the message's id.
func (s *Server) MessageCreate(m Message) string {
	s.mu.Lock()
	id := s.newID()
	s.mu.Unlock()
	d := map[string]any{
		"id": id, "channel_id": m.ChannelID, "author": m.Author.wire(), "content": m.Content,
		"timestamp": time.Now().UTC().Format(time.RFC3339Nano), "type": 0, "tts": false,
		"mention_everyone": false, "mention_roles": nonNil(m.MentionRoles), "pinned": false,
	}
	if m.GuildID != "" {
		d["guild_id"] = m.GuildID
	}
	mentions := []map[string]any{}
	for _, u := range m.Mentions {
		mentions = append(mentions, u.wire())
	}
	d["mentions"] = mentions
	atts := []map[string]any{}
	for i, a := range m.Attachments {
		atts = append(atts, map[string]any{"id": fmt.Sprintf("%s%d", id, i), "filename": a.Name, "size": a.Size,
			"url": a.URL, "proxy_url": a.URL, "content_type": a.ContentType})
	}
	d["attachments"] = atts
	if m.ReplyTo != nil {
		d["type"] = 19
		d["message_reference"] = map[string]any{"message_id": m.ReplyTo.ID, "channel_id": m.ReplyTo.ChannelID}
		d["referenced_message"] = map[string]any{"id": m.ReplyTo.ID, "channel_id": m.ReplyTo.ChannelID,
			"author": BotUser.wire(), "content": m.ReplyTo.Text, "type": 0, "mentions": []any{}, "attachments": []any{}}
	}
	s.Dispatch("MESSAGE_CREATE", d)
	return id
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// SlashCommand dispatches INTERACTION_CREATE for an application command
// (options as name → string value) and returns its token.
func (s *Server) SlashCommand(channelID, guildID string, user User, name string, options map[string]string) string {
	s.mu.Lock()
	id := s.newID()
	tok := "itok-" + id
	s.inter[tok] = &Interaction{ID: id, Token: tok, ChannelID: channelID, Sent: time.Now()}
	s.mu.Unlock()
	opts := []map[string]any{}
	for k, v := range options {
		opts = append(opts, map[string]any{"name": k, "type": 3, "value": v})
	}
	d := map[string]any{
		"id": id, "application_id": AppID, "type": 2, "token": tok, "version": 1, "channel_id": channelID,
		"data": map[string]any{"id": "cmd-" + name, "name": name, "type": 1, "options": opts},
	}
	if guildID != "" {
		d["guild_id"] = guildID
		d["member"] = map[string]any{"user": user.wire(), "roles": []string{}}
	} else {
		d["user"] = user.wire()
	}
	s.Dispatch("INTERACTION_CREATE", d)
	return tok
}
