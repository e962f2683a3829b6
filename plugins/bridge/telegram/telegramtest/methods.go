package telegramtest

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/go-telegram/bot/models"
)

// The Bot API methods the fake implements.

func intParam(p map[string]string, k string, def int64) (int64, *apiError) {
	v, ok := p[k]
	if !ok || v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, badRequest("field %q must be an integer", k)
	}
	return n, nil
}

func (s *Server) getUpdates(r *http.Request, p map[string]string) (any, *apiError) {
	offset, e := intParam(p, "offset", 0)
	if e != nil {
		return nil, e
	}
	limit, e := intParam(p, "limit", maxUpdatesLimit)
	if e != nil {
		return nil, e
	}
	if limit < 1 || limit > maxUpdatesLimit {
		limit = maxUpdatesLimit
	}
	timeout, e := intParam(p, "timeout", 0)
	if e != nil {
		return nil, e
	}
	deadline := time.Now().Add(time.Duration(timeout) * time.Second)
	s.mu.Lock()
	s.pollGen++
	gen := s.pollGen
	if offset > 0 {
		// Confirmation: updates below offset are forgotten for good.
		s.updates = slices.DeleteFunc(s.updates, func(u models.Update) bool { return u.ID < offset })
	} else if offset < 0 {
		n := int(-offset)
		if n < len(s.updates) {
			s.updates = s.updates[len(s.updates)-n:]
		}
	}
	s.bump()
	for {
		if gen != s.pollGen {
			s.conflicts++
			s.mu.Unlock()
			return nil, &apiError{code: 409, desc: "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"}
		}
		if len(s.updates) > 0 {
			n := min(int(limit), len(s.updates))
			out := slices.Clone(s.updates[:n])
			for _, u := range out {
				s.fetched[u.ID]++
			}
			s.bump()
			s.mu.Unlock()
			return out, nil
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			s.mu.Unlock()
			return []models.Update{}, nil
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-time.After(wait):
		case <-r.Context().Done():
			return nil, &apiError{code: 499, desc: "client gone"}
		}
		s.mu.Lock()
	}
}

func (s *Server) chatParam(p map[string]string) (int64, *apiError) {
	v := p["chat_id"]
	if v == "" {
		return 0, badRequest("chat_id is empty")
	}
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, badRequest("chat not found")
	}
	return id, nil
}

func utf16Len(s string) int { return len(utf16.Encode([]rune(s))) }

// render applies parse_mode to text and checks it as Telegram does.
func render(text, mode string, limit int) (string, *apiError) {
	out := text
	switch strings.ToLower(mode) {
	case "":
	case "html":
		var err error
		if out, err = ParseHTML(text); err != nil {
			return "", badRequest("can't parse entities: %v", err)
		}
	default:
		return "", badRequest("unsupported parse_mode %q in this fake", mode)
	}
	// Telegram strips leading and trailing whitespace from texts.
	out = strings.TrimSpace(out)
	if limit == MaxMessageLen && out == "" {
		return "", badRequest("message text is empty")
	}
	if utf16Len(out) > limit {
		if limit == MaxMessageLen {
			return "", badRequest("message is too long")
		}
		return "", badRequest("message caption is too long")
	}
	return out, nil
}

func (s *Server) newMsg(chatID int64, m *Msg) models.Message {
	s.nextMsg[chatID]++
	m.ChatID, m.ID = chatID, s.nextMsg[chatID]
	s.msgs[chatID] = append(s.msgs[chatID], m)
	s.bump()
	return models.Message{ID: m.ID, Date: int(time.Now().Unix()), Chat: models.Chat{ID: chatID, Type: chatType(chatID)}, From: &s.Bot, Text: m.Text, Caption: m.Caption}
}

func chatType(id int64) models.ChatType {
	if id < 0 {
		return models.ChatTypeSupergroup
	}
	return models.ChatTypePrivate
}

func (s *Server) sendMessage(p map[string]string) (any, *apiError) {
	chatID, e := s.chatParam(p)
	if e != nil {
		return nil, e
	}
	if p["text"] == "" {
		return nil, badRequest("message text is empty")
	}
	text, e := render(p["text"], p["parse_mode"], MaxMessageLen)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.newMsg(chatID, &Msg{Kind: "text", Text: text, Raw: p["text"], ParseMode: p["parse_mode"]}), nil
}

func (s *Server) editMessageText(p map[string]string) (any, *apiError) {
	chatID, e := s.chatParam(p)
	if e != nil {
		return nil, e
	}
	id, e := intParam(p, "message_id", 0)
	if e != nil {
		return nil, e
	}
	if p["text"] == "" {
		return nil, badRequest("message text is empty")
	}
	text, e := render(p["text"], p["parse_mode"], MaxMessageLen)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.msgs[chatID] {
		if int64(m.ID) != id {
			continue
		}
		if m.Kind != "text" {
			return nil, badRequest("there is no text in the message to edit")
		}
		if m.Text == text {
			return nil, badRequest("message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message")
		}
		m.Text, m.Raw, m.ParseMode = text, p["text"], p["parse_mode"]
		m.Edits++
		s.bump()
		return models.Message{ID: m.ID, Date: int(time.Now().Unix()), EditDate: int(time.Now().Unix()), Chat: models.Chat{ID: chatID, Type: chatType(chatID)}, From: &s.Bot, Text: text}, nil
	}
	return nil, badRequest("message to edit not found")
}

var chatActions = []string{"typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice", "upload_document", "choose_sticker", "find_location", "record_video_note", "upload_video_note"}

func (s *Server) sendChatAction(p map[string]string) (any, *apiError) {
	if _, e := s.chatParam(p); e != nil {
		return nil, e
	}
	if !slices.Contains(chatActions, p["action"]) {
		return nil, badRequest("wrong parameter action in request")
	}
	return true, nil
}

func (s *Server) sendMedia(method string, p map[string]string, files map[string]Upload) (any, *apiError) {
	chatID, e := s.chatParam(p)
	if e != nil {
		return nil, e
	}
	field := strings.ToLower(strings.TrimPrefix(method, "send"))
	caption, e := render(p["caption"], p["parse_mode"], MaxCaptionLen)
	if p["caption"] == "" {
		caption, e = "", nil
	}
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var name string
	var data []byte
	if up, ok := files[field]; ok {
		name, data = up.FileName, up.Data
	} else if ref := p[field]; ref != "" {
		// attach://<name> refers to another part; anything else is a file id.
		if a, ok := strings.CutPrefix(ref, "attach://"); ok {
			up, ok := files[a]
			if !ok {
				return nil, badRequest("wrong file identifier/HTTP URL specified")
			}
			name, data = up.FileName, up.Data
		} else if f, ok := s.files[ref]; ok {
			name, data = f.path, f.data
		} else {
			return nil, badRequest("wrong file identifier/HTTP URL specified")
		}
	} else {
		return nil, badRequest("there is no %s in the request", field)
	}
	if len(data) == 0 {
		return nil, badRequest("file must be non-empty")
	}
	f := s.addFile(name, data)
	m := &Msg{Kind: field, Caption: caption, FileName: name, FileData: data}
	msg := s.newMsg(chatID, m)
	switch field {
	case "photo":
		msg.Photo = []models.PhotoSize{{FileID: f.id, FileUniqueID: f.unique, Width: 90, Height: 90, FileSize: len(data)}}
	case "document":
		msg.Document = &models.Document{FileID: f.id, FileUniqueID: f.unique, FileName: name, FileSize: int64(len(data))}
	case "voice":
		msg.Voice = &models.Voice{FileID: f.id, FileUniqueID: f.unique, FileSize: int64(len(data))}
	case "video":
		msg.Video = &models.Video{FileID: f.id, FileUniqueID: f.unique, FileName: name, FileSize: int64(len(data))}
	}
	return msg, nil
}

func (s *Server) getFile(p map[string]string) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.files[p["file_id"]]
	if !ok {
		return nil, badRequest("invalid file_id")
	}
	if len(f.data) > MaxDownloadSize {
		return nil, badRequest("file is too big")
	}
	return models.File{FileID: f.id, FileUniqueID: f.unique, FileSize: int64(len(f.data)), FilePath: f.path}, nil
}

func (s *Server) serveFile(w http.ResponseWriter, r *http.Request, rest string) {
	token, path, ok := strings.Cut(rest, "/")
	if !ok || token != s.Token {
		writeErr(w, &apiError{code: 404, desc: "Not Found"})
		return
	}
	s.mu.Lock()
	var data []byte
	found := false
	for _, f := range s.files {
		if f.path == path {
			data, found = f.data, true
			break
		}
	}
	s.mu.Unlock()
	if !found {
		writeErr(w, &apiError{code: 404, desc: "Not Found"})
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.Write(data)
}
