// Package telegram is the Telegram bridge platform for agentd: a bot that
// long-polls the Bot API, passes private messages (and group messages that
// mention it) to the agent as session "tg:<chat_id>", and streams replies
// back by editing one message.
//
// Updates are fetched with our own getUpdates calls rather than
// go-telegram/bot's Start loop: the library confirms an update (by asking
// for offset = its id + 1) as soon as it has queued it for a handler, so a
// bridge killed while the agent had not yet accepted the message would lose
// it. Here the offset moves past an update only after Host.Deliver returned
// nil, i.e. the gateway accepted the turn (see poll.go). Everything else —
// sending, editing, files — goes through the library.
package telegram

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"

	"github.com/agentd/agentd/plugins/bridge"
	"github.com/agentd/agentd/wire"
)

// Telegram's limits and the bridge's defaults.
const (
	// MaxMessageLen is Telegram's limit on a message's text, in UTF-16
	// code units after entity parsing.
	MaxMessageLen = 4096
	// maxPhotoSize: larger images go out as documents.
	maxPhotoSize = 10 << 20
	// DefaultAPIURL is the public Bot API.
	DefaultAPIURL = "https://api.telegram.org"
	// DefaultPollTimeout is the long-poll timeout of getUpdates.
	DefaultPollTimeout = 50 * time.Second
)

// Platform is the Telegram bridge. Create it with New.
type Platform struct {
	cfg         bridge.PlatformConfig
	token       string
	apiURL      string
	pollTimeout time.Duration
	retryUnit   time.Duration // what one second of retry_after means (tests shrink it)
	httpClient  *http.Client
	log         *slog.Logger

	b       *bot.Bot
	botUser models.User
}

// New returns an unconfigured Telegram platform.
func New() *Platform { return &Platform{} }

var (
	_ bridge.Platform      = (*Platform)(nil)
	_ bridge.MessageEditor = (*Platform)(nil)
	_ bridge.Typer         = (*Platform)(nil)
	_ bridge.FileSender    = (*Platform)(nil)
	_ bridge.VoiceSender   = (*Platform)(nil)
	_ bridge.MaxTextLen    = (*Platform)(nil)
)

// Name implements bridge.Platform.
func (p *Platform) Name() string { return "telegram" }

// SessionPrefix implements bridge.Platform.
func (p *Platform) SessionPrefix() string { return "tg" }

// MaxTextLen implements bridge.MaxTextLen.
func (p *Platform) MaxTextLen() int { return MaxMessageLen }

// Configure reads the settings: token (required), api_url (default the
// public Bot API; a local Bot API server or a test fake otherwise),
// poll_timeout (seconds, default 50), retry_after_unit (a Go duration,
// default 1s: what one second of a 429's retry_after means — only tests,
// against a fake that scales its clock the same way, change it).
func (p *Platform) Configure(cfg bridge.PlatformConfig) error {
	token := strings.TrimSpace(cfg.Settings["token"])
	if token == "" {
		return errors.New("telegram: setting \"token\" is required (the bot token from @BotFather)")
	}
	if !strings.Contains(token, ":") {
		return errors.New("telegram: setting \"token\" does not look like a bot token (want <id>:<secret>)")
	}
	apiURL := strings.TrimRight(strings.TrimSpace(cfg.Settings["api_url"]), "/")
	if apiURL == "" {
		apiURL = DefaultAPIURL
	}
	if !strings.HasPrefix(apiURL, "http://") && !strings.HasPrefix(apiURL, "https://") {
		return fmt.Errorf("telegram: api_url %q must be an http(s) URL", apiURL)
	}
	poll := DefaultPollTimeout
	if v := strings.TrimSpace(cfg.Settings["poll_timeout"]); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 300 {
			return fmt.Errorf("telegram: poll_timeout %q must be 0..300 seconds", v)
		}
		poll = time.Duration(n) * time.Second
	}
	unit := time.Second
	if v := strings.TrimSpace(cfg.Settings["retry_after_unit"]); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > time.Second {
			return fmt.Errorf("telegram: retry_after_unit %q must be a duration in (0, 1s]", v)
		}
		unit = d
	}
	if cfg.UploadsDir == "" {
		return errors.New("telegram: no uploads directory configured")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p.cfg = cfg
	p.token, p.apiURL, p.pollTimeout, p.retryUnit = token, apiURL, poll, unit
	p.log = cfg.Logger.With("platform", "telegram")
	// No client-wide timeout: long polls and uploads set their own limits
	// through contexts.
	p.httpClient = &http.Client{}
	b, err := bot.New(token,
		bot.WithServerURL(apiURL),
		bot.WithSkipGetMe(),
		bot.WithHTTPClient(poll+10*time.Second, p.httpClient),
		bot.WithErrorsHandler(func(err error) { p.log.Warn("telegram library error", "err", err) }),
	)
	if err != nil {
		return fmt.Errorf("telegram: %w", err)
	}
	p.b = b
	return nil
}

func (p *Platform) ready() error {
	if p.b == nil {
		return errors.New("telegram: not configured")
	}
	return nil
}

func parseChatID(chatID string) (int64, error) {
	id, err := strconv.ParseInt(chatID, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("telegram: invalid chat id %q", chatID)
	}
	return id, nil
}

// htmlEscaper escapes exactly what Telegram's HTML mode needs escaped.
var htmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// EscapeHTML makes text safe for parse_mode HTML: the user sees it verbatim.
func EscapeHTML(text string) string { return htmlEscaper.Replace(text) }

// do runs one Bot API call through the library and turns its failure into
// the SDK's kinds: a 429 is a *bridge.RateLimited (the SDK waits, however
// long, and never calls before), a refusal that retrying cannot fix is
// bridge.ErrRejected, anything else is retried by the SDK with backoff.
//
// The Bot API does not say which limit a 429 hit (the chat's ~1/s, a
// group's 20/min or the bot's ~30/s), so every 429 holds the whole bot
// (bridge.ScopeBot): waiting only in the refused chat would make the
// other chats' next calls violate a global limit. The SDK's per-chat
// pacing keeps the per-chat limits from being hit in the first place.
func (p *Platform) do(what string, call func() error) error {
	err := call()
	if err == nil {
		return nil
	}
	var tm *bot.TooManyRequestsError
	switch {
	case errors.As(err, &tm):
		return &bridge.RateLimited{RetryAfter: time.Duration(max(tm.RetryAfter, 1)) * p.retryUnit, Scope: bridge.ScopeBot,
			Err: fmt.Errorf("telegram %s: %w", what, err)}
	case errors.Is(err, bot.ErrorBadRequest), errors.Is(err, bot.ErrorForbidden), errors.Is(err, bot.ErrorNotFound),
		errors.Is(err, os.ErrNotExist), errors.Is(err, errNotRegular):
		return fmt.Errorf("telegram %s: %w (%w)", what, err, bridge.ErrRejected)
	}
	return fmt.Errorf("telegram %s: %w", what, err)
}

var errNotRegular = errors.New("not a regular file")

// SendText implements bridge.Platform. The text is the agent's Markdown,
// sent as Telegram HTML (markdown.go), or plain if Telegram refuses that.
func (p *Platform) SendText(ctx context.Context, chatID, text string) (string, error) {
	if err := p.ready(); err != nil {
		return "", err
	}
	id, err := parseChatID(chatID)
	if err != nil {
		return "", err
	}
	var m *models.Message
	err = p.do("sendMessage", func() error {
		return p.formatted(text, func(body string, mode models.ParseMode) error {
			var err error
			m, err = p.b.SendMessage(ctx, &bot.SendMessageParams{ChatID: id, Text: body, ParseMode: mode})
			return err
		})
	})
	if err != nil {
		return "", err
	}
	return strconv.Itoa(m.ID), nil
}

// EditText implements bridge.MessageEditor. An edit to the same text is not
// an error.
func (p *Platform) EditText(ctx context.Context, chatID, msgID, text string) error {
	if err := p.ready(); err != nil {
		return err
	}
	id, err := parseChatID(chatID)
	if err != nil {
		return err
	}
	mid, err := strconv.Atoi(msgID)
	if err != nil {
		return fmt.Errorf("telegram: invalid message id %q", msgID)
	}
	err = p.do("editMessageText", func() error {
		return p.formatted(text, func(body string, mode models.ParseMode) error {
			_, err := p.b.EditMessageText(ctx, &bot.EditMessageTextParams{ChatID: id, MessageID: mid, Text: body, ParseMode: mode})
			return err
		})
	})
	if err != nil && strings.Contains(err.Error(), "message is not modified") {
		return nil
	}
	return err
}

// SendTyping implements bridge.Typer.
func (p *Platform) SendTyping(ctx context.Context, chatID string) error {
	if err := p.ready(); err != nil {
		return err
	}
	id, err := parseChatID(chatID)
	if err != nil {
		return err
	}
	return p.do("sendChatAction", func() error {
		_, err := p.b.SendChatAction(ctx, &bot.SendChatActionParams{ChatID: id, Action: models.ChatActionTyping})
		return err
	})
}

// SendFile implements bridge.FileSender: images go out with sendPhoto
// (documents above Telegram's 10 MB photo limit), videos with sendVideo,
// voice with sendVoice, anything else with sendDocument.
func (p *Platform) SendFile(ctx context.Context, chatID string, a wire.Attachment) error {
	method := "sendDocument"
	switch a.Kind {
	case "image":
		method = "sendPhoto"
	case "video":
		method = "sendVideo"
	case "voice":
		method = "sendVoice"
	}
	return p.sendFile(ctx, chatID, a, method)
}

// SendVoice implements bridge.VoiceSender.
func (p *Platform) SendVoice(ctx context.Context, chatID string, a wire.Attachment) error {
	return p.sendFile(ctx, chatID, a, "sendVoice")
}

func (p *Platform) sendFile(ctx context.Context, chatID string, a wire.Attachment, method string) error {
	if err := p.ready(); err != nil {
		return err
	}
	id, err := parseChatID(chatID)
	if err != nil {
		return err
	}
	fi, err := os.Stat(a.Path)
	if err != nil {
		return fmt.Errorf("telegram %s: %w (%w)", method, err, bridge.ErrRejected)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("telegram %s: %s: %w (%w)", method, a.Path, errNotRegular, bridge.ErrRejected)
	}
	if method == "sendPhoto" && fi.Size() > maxPhotoSize {
		method = "sendDocument"
	}
	name := a.Filename
	if name == "" {
		name = filepath.Base(a.Path)
	}
	return p.do(method, func() error {
		f, err := os.Open(a.Path)
		if err != nil {
			return err
		}
		defer f.Close()
		up := &models.InputFileUpload{Filename: name, Data: f}
		switch method {
		case "sendPhoto":
			_, err = p.b.SendPhoto(ctx, &bot.SendPhotoParams{ChatID: id, Photo: up})
		case "sendVideo":
			_, err = p.b.SendVideo(ctx, &bot.SendVideoParams{ChatID: id, Video: up})
		case "sendVoice":
			_, err = p.b.SendVoice(ctx, &bot.SendVoiceParams{ChatID: id, Voice: up})
		default:
			_, err = p.b.SendDocument(ctx, &bot.SendDocumentParams{ChatID: id, Document: up})
		}
		return err
	})
}
