package whatsapp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"

	"github.com/agentd/agentd/plugins/bridge"
	"github.com/agentd/agentd/wire"
)

// ChatID is the bridge's chat id of a WhatsApp chat: the phone number of a
// direct chat ("391234567"), the full JID of a group ("1203…@g.us").
func ChatID(chat types.JID) string {
	if chat.Server == types.GroupServer {
		return chat.ToNonAD().String()
	}
	return chat.User
}

// chatJID is the inverse of ChatID.
func chatJID(chatID string) (types.JID, error) {
	if strings.Contains(chatID, "@") {
		j, err := types.ParseJID(chatID)
		if err != nil || j.Server != types.GroupServer || !groupUser(j.User) || ChatID(j) != chatID {
			return types.JID{}, fmt.Errorf("whatsapp: invalid chat id %q (%w)", chatID, bridge.ErrRejected)
		}
		return j, nil
	}
	if _, err := PhoneDigits(chatID); err != nil {
		return types.JID{}, fmt.Errorf("whatsapp: invalid chat id %q (%w)", chatID, bridge.ErrRejected)
	}
	return types.NewJID(chatID, types.DefaultUserServer), nil
}

// groupUser: a group id is digits, older ones "<creator>-<time>".
func groupUser(u string) bool {
	if u == "" {
		return false
	}
	for _, r := range u {
		if (r < '0' || r > '9') && r != '-' {
			return false
		}
	}
	return true
}

// skip says why a message is not for the agent ("" when it is).
func (p *Platform) skip(e *events.Message) string {
	info := e.Info
	switch {
	case info.IsFromMe:
		return "own message"
	case info.Chat.Server == types.BroadcastServer:
		return "status or broadcast"
	case info.Chat.Server == types.NewsletterServer:
		return "newsletter"
	case e.Message == nil:
		return "empty"
	case e.Message.GetReactionMessage() != nil:
		return "reaction"
	case e.Message.GetProtocolMessage() != nil:
		return "protocol message"
	case e.SourceWebMsg != nil:
		return "history sync"
	case !info.Timestamp.IsZero() && p.now().Sub(info.Timestamp) > p.maxAge:
		return "older than max_age"
	case info.Chat.Server == types.GroupServer && !p.addressed(e.Message):
		return "group message not addressed to the bot"
	case info.Chat.Server != types.GroupServer && info.Chat.Server != types.DefaultUserServer &&
		info.Chat.Server != types.HiddenUserServer:
		return "chat type " + info.Chat.Server
	}
	return ""
}

// contextInfo is the ContextInfo of whichever part carries one.
func contextInfo(m *waE2E.Message) *waE2E.ContextInfo {
	for _, ci := range []*waE2E.ContextInfo{
		m.GetExtendedTextMessage().GetContextInfo(), m.GetImageMessage().GetContextInfo(),
		m.GetVideoMessage().GetContextInfo(), m.GetDocumentMessage().GetContextInfo(),
		m.GetAudioMessage().GetContextInfo(), m.GetStickerMessage().GetContextInfo(),
	} {
		if ci != nil {
			return ci
		}
	}
	return nil
}

// addressed: the bot is mentioned or replied to in a group. Groups address
// members by phone JID or by LID (newer groups), so both are compared.
func (p *Platform) addressed(m *waE2E.Message) bool {
	ci := contextInfo(m)
	if ci == nil {
		return false
	}
	pn, lid := p.ownJIDs()
	own := func(s string) bool {
		j, err := types.ParseJID(s)
		if err != nil || j.User == "" {
			return false
		}
		j = j.ToNonAD()
		return (!pn.IsEmpty() && j == pn) || (!lid.IsEmpty() && j == lid)
	}
	for _, m := range ci.GetMentionedJID() {
		if own(m) {
			return true
		}
	}
	return ci.GetStanzaID() != "" && own(ci.GetParticipant())
}

// senderPhone is the sender's phone number. A LID sender is resolved
// through the message's alternative address or the session store; "" when
// the mapping is unknown (then the sender cannot be checked: refused).
func (p *Platform) senderPhone(ctx context.Context, info types.MessageInfo) string {
	s := info.Sender.ToNonAD()
	if s.Server == types.DefaultUserServer {
		return s.User
	}
	if s.Server != types.HiddenUserServer {
		return ""
	}
	if alt := info.SenderAlt.ToNonAD(); alt.Server == types.DefaultUserServer {
		return alt.User
	}
	pn, err := p.c.PNForLID(ctx, s)
	if err != nil {
		p.log.Warn("whatsapp: resolve LID", "lid", s.String(), "err", err)
		return ""
	}
	if pn.Server != types.DefaultUserServer {
		return ""
	}
	return pn.User
}

// text is the message's text or caption, without the bot's own mention.
func (p *Platform) text(m *waE2E.Message) string {
	t := m.GetConversation()
	for _, s := range []string{m.GetExtendedTextMessage().GetText(), m.GetImageMessage().GetCaption(),
		m.GetVideoMessage().GetCaption(), m.GetDocumentMessage().GetCaption()} {
		if t == "" {
			t = s
		}
	}
	pn, lid := p.ownJIDs()
	for _, u := range []string{pn.User, lid.User} {
		if u != "" {
			t = strings.ReplaceAll(t, "@"+u, "")
		}
	}
	return strings.TrimSpace(t)
}

// message handles one incoming message: filters it, downloads its media,
// delivers it, and marks it read once delivered.
func (p *Platform) message(ctx context.Context, e *events.Message) {
	if why := p.skip(e); why != "" {
		p.log.Debug("whatsapp: message ignored", "why", why, "chat", e.Info.Chat.String(), "id", e.Info.ID)
		return
	}
	phone := p.senderPhone(ctx, e.Info)
	if phone == "" {
		p.log.Warn("whatsapp: sender's phone number unknown (no LID mapping): message refused",
			"sender", e.Info.Sender.String(), "id", e.Info.ID)
		return
	}
	in := bridge.Incoming{
		ChatID: ChatID(e.Info.Chat), MessageID: e.Info.ID, UserID: phone,
		UserName: e.Info.PushName, Text: p.text(e.Message),
		Group: e.Info.Chat.Server == types.GroupServer,
	}
	if dm, ok := media(e.Message); ok {
		a, err := p.download(ctx, e.Info.ID, dm)
		if err != nil {
			p.log.Warn("whatsapp: media download failed", "id", e.Info.ID, "err", err)
			p.host.Notify(in.ChatID, "I could not download your file; please send it again.")
		} else {
			in.Attachments = append(in.Attachments, a)
		}
	}
	if in.Text == "" && len(in.Attachments) == 0 {
		p.log.Debug("whatsapp: message without text or media ignored", "id", e.Info.ID)
		return
	}
	if err := p.host.Deliver(ctx, in); err != nil {
		p.log.Warn("whatsapp: message not delivered", "id", e.Info.ID, "err", err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if err := p.c.MarkRead(cctx, []types.MessageID{e.Info.ID}, e.Info.Timestamp, e.Info.Chat, e.Info.Sender); err != nil {
		p.log.Debug("whatsapp: mark read", "id", e.Info.ID, "err", err)
	}
}

// mediaPart is a downloadable part with what the agent should know of it.
type mediaPart struct {
	msg      whatsmeow.DownloadableMessage
	kind     string // wire.Attachment kind: image, file, voice, video
	ext      string
	filename string
	size     uint64
}

// media finds the message's media part, if any.
func media(m *waE2E.Message) (mediaPart, bool) {
	switch {
	case m.GetImageMessage() != nil:
		im := m.GetImageMessage()
		return mediaPart{im, "image", extFor(im.GetMimetype(), ".jpg"), "", im.GetFileLength()}, true
	case m.GetVideoMessage() != nil:
		v := m.GetVideoMessage()
		return mediaPart{v, "video", extFor(v.GetMimetype(), ".mp4"), "", v.GetFileLength()}, true
	case m.GetAudioMessage() != nil:
		a := m.GetAudioMessage()
		kind := "file"
		if a.GetPTT() {
			kind = "voice"
		}
		return mediaPart{a, kind, extFor(a.GetMimetype(), ".ogg"), "", a.GetFileLength()}, true
	case m.GetDocumentMessage() != nil:
		d := m.GetDocumentMessage()
		return mediaPart{d, "file", extFor(d.GetMimetype(), ""), d.GetFileName(), d.GetFileLength()}, true
	}
	return mediaPart{}, false
}

func extFor(mime, def string) string {
	mime, _, _ = strings.Cut(mime, ";")
	switch strings.TrimSpace(mime) {
	case "image/jpeg":
		return ".jpg"
	case "image/png":
		return ".png"
	case "image/webp":
		return ".webp"
	case "video/mp4":
		return ".mp4"
	case "audio/ogg":
		return ".ogg"
	case "audio/mpeg":
		return ".mp3"
	case "audio/mp4":
		return ".m4a"
	case "application/pdf":
		return ".pdf"
	}
	return def
}

// download stores a media part in the uploads directory (0600).
func (p *Platform) download(ctx context.Context, id string, m mediaPart) (wire.Attachment, error) {
	if m.size > maxDownload {
		return wire.Attachment{}, fmt.Errorf("file of %d bytes is over the %d byte limit", m.size, maxDownload)
	}
	data, err := p.c.Download(ctx, m.msg)
	if err != nil {
		return wire.Attachment{}, fmt.Errorf("download: %w", err)
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	name := filepath.Base(m.filename)
	if name == "." || name == "/" || name == "" {
		name = m.kind + m.ext
	}
	dir := filepath.Join(p.cfg.UploadsDir, "whatsapp")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return wire.Attachment{}, fmt.Errorf("uploads dir: %w", err)
	}
	path := filepath.Join(dir, safeName(id)+"-"+hex.EncodeToString(rnd[:])+"-"+safeName(name))
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return wire.Attachment{}, fmt.Errorf("store file: %w", err)
	}
	return wire.Attachment{Kind: m.kind, Path: path, Filename: name}, nil
}

// safeName keeps a file name component to letters, digits, '.', '-', '_'.
func safeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) > 80 {
		b = b[len(b)-80:]
	}
	return string(b)
}
