package whatsapp

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"google.golang.org/protobuf/proto"

	"github.com/agentd/agentd/plugins/bridge"
	"github.com/agentd/agentd/wire"
)

// maxUpload bounds an outgoing file (WhatsApp's document limit is larger,
// but the bridge reads a file whole to upload it).
const maxUpload = 100 << 20

// classify maps a whatsmeow send failure to the SDK's kinds: a refusal
// that retrying cannot fix is bridge.ErrRejected, WhatsApp's rate limit a
// *bridge.RateLimited for the whole account, anything else is retried.
func classify(what string, err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, whatsmeow.ErrIQRateOverLimit):
		// WhatsApp gives no retry time; a minute for the whole account
		// keeps the bridge from hammering it (a ban risk).
		return &bridge.RateLimited{RetryAfter: rateLimitWait, Scope: bridge.ScopeBot, Err: fmt.Errorf("whatsapp %s: %w", what, err)}
	case errors.Is(err, whatsmeow.ErrBroadcastListUnsupported), errors.Is(err, whatsmeow.ErrUnknownServer),
		errors.Is(err, whatsmeow.ErrRecipientADJID), errors.Is(err, os.ErrNotExist), errors.Is(err, errTooLarge):
		return fmt.Errorf("whatsapp %s: %w (%w)", what, err, bridge.ErrRejected)
	}
	return fmt.Errorf("whatsapp %s: %w", what, err)
}

var errTooLarge = errors.New("file too large")

// rateLimitWait is how long the account pauses after WhatsApp's rate limit.
const rateLimitWait = time.Minute

func (p *Platform) ready() error {
	if p.c == nil {
		return errors.New("whatsapp: not running")
	}
	return nil
}

// SendText implements bridge.Platform: one plain message (the SDK has
// split it at MaxTextLen), then "paused": the turn is over.
func (p *Platform) SendText(ctx context.Context, chatID, text string) (string, error) {
	if err := p.ready(); err != nil {
		return "", err
	}
	to, err := chatJID(chatID)
	if err != nil {
		return "", err
	}
	resp, err := p.c.SendMessage(ctx, to, &waE2E.Message{Conversation: proto.String(text)})
	if err != nil {
		return "", classify("send", err)
	}
	p.presence(ctx, to, types.ChatPresencePaused)
	return resp.ID, nil
}

// SendTyping implements bridge.Typer: "composing" while the turn runs.
func (p *Platform) SendTyping(ctx context.Context, chatID string) error {
	if err := p.ready(); err != nil {
		return err
	}
	to, err := chatJID(chatID)
	if err != nil {
		return err
	}
	return classify("presence", p.c.SendChatPresence(ctx, to, types.ChatPresenceComposing, types.ChatPresenceMediaText))
}

func (p *Platform) presence(ctx context.Context, to types.JID, st types.ChatPresence) {
	if err := p.c.SendChatPresence(ctx, to, st, types.ChatPresenceMediaText); err != nil {
		p.log.Debug("whatsapp: presence", "chat", to.String(), "state", st, "err", err)
	}
}

// SendFile implements bridge.FileSender: images, videos and voice notes
// as such, anything else as a document.
func (p *Platform) SendFile(ctx context.Context, chatID string, a wire.Attachment) error {
	return p.sendMedia(ctx, chatID, a, a.Kind)
}

// SendVoice implements bridge.VoiceSender: a PTT voice note. agentd's
// voice replies are Ogg/Opus, the format WhatsApp plays as a voice note.
func (p *Platform) SendVoice(ctx context.Context, chatID string, a wire.Attachment) error {
	return p.sendMedia(ctx, chatID, a, "voice")
}

func (p *Platform) sendMedia(ctx context.Context, chatID string, a wire.Attachment, kind string) error {
	if err := p.ready(); err != nil {
		return err
	}
	to, err := chatJID(chatID)
	if err != nil {
		return err
	}
	fi, err := os.Stat(a.Path)
	if err != nil {
		return classify("send file", err)
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxUpload {
		return classify("send file", fmt.Errorf("%s: not a regular file of at most %d bytes: %w", filepath.Base(a.Path), maxUpload, errTooLarge))
	}
	data, err := os.ReadFile(a.Path)
	if err != nil {
		return classify("send file", err)
	}
	name := a.Filename
	if name == "" {
		name = filepath.Base(a.Path)
	}
	mt := mime.TypeByExtension(filepath.Ext(name))
	if mt == "" {
		mt = http.DetectContentType(data)
	}
	var media whatsmeow.MediaType
	switch kind {
	case "image":
		media = whatsmeow.MediaImage
	case "video":
		media = whatsmeow.MediaVideo
	case "voice":
		media, mt = whatsmeow.MediaAudio, "audio/ogg; codecs=opus"
	default:
		media = whatsmeow.MediaDocument
	}
	up, err := p.c.Upload(ctx, data, media)
	if err != nil {
		return classify("upload", err)
	}
	if _, err := p.c.SendMessage(ctx, to, mediaMessage(kind, up, mt, name)); err != nil {
		return classify("send file", err)
	}
	return nil
}

// mediaMessage is the message that shows an uploaded file.
func mediaMessage(kind string, up whatsmeow.UploadResponse, mt, name string) *waE2E.Message {
	switch kind {
	case "image":
		return &waE2E.Message{ImageMessage: &waE2E.ImageMessage{URL: &up.URL, DirectPath: &up.DirectPath,
			MediaKey: up.MediaKey, Mimetype: &mt, FileEncSHA256: up.FileEncSHA256, FileSHA256: up.FileSHA256,
			FileLength: &up.FileLength}}
	case "video":
		return &waE2E.Message{VideoMessage: &waE2E.VideoMessage{URL: &up.URL, DirectPath: &up.DirectPath,
			MediaKey: up.MediaKey, Mimetype: &mt, FileEncSHA256: up.FileEncSHA256, FileSHA256: up.FileSHA256,
			FileLength: &up.FileLength}}
	case "voice":
		return &waE2E.Message{AudioMessage: &waE2E.AudioMessage{URL: &up.URL, DirectPath: &up.DirectPath,
			MediaKey: up.MediaKey, Mimetype: &mt, FileEncSHA256: up.FileEncSHA256, FileSHA256: up.FileSHA256,
			FileLength: &up.FileLength, PTT: proto.Bool(true)}}
	}
	return &waE2E.Message{DocumentMessage: &waE2E.DocumentMessage{URL: &up.URL, DirectPath: &up.DirectPath,
		MediaKey: up.MediaKey, Mimetype: &mt, FileEncSHA256: up.FileEncSHA256, FileSHA256: up.FileSHA256,
		FileLength: &up.FileLength, FileName: &name, Title: &name}}
}
