package telegram

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/go-telegram/bot/models"

	"github.com/agentd/agentd/plugins/bridge"
	"github.com/agentd/agentd/wire"
)

// Polling and download policy.
const (
	// pollBackoffMin/Max bound the wait after a failed getUpdates.
	pollBackoffMin = 500 * time.Millisecond
	pollBackoffMax = 30 * time.Second
	// confirmTimeout bounds the getUpdates that confirms the last handled
	// update on shutdown.
	confirmTimeout = 3 * time.Second
	// maxDownload is the Bot API's getFile limit.
	maxDownload = 20 << 20
	// downloadTimeout bounds one file download.
	downloadTimeout = 2 * time.Minute
	// albumWindow: an album's messages (same media_group_id) arriving
	// within this of each other become one turn; albumPoll is how often
	// the bridge looks for more while collecting.
	albumWindow = time.Second
	albumPoll   = 200 * time.Millisecond
)

// errUnauthorized means the token was refused: retrying will not help.
var errUnauthorized = errors.New("telegram refused the bot token (401 Unauthorized)")

// apiError is a Bot API error answer.
type apiError struct {
	Code       int
	Desc       string
	RetryAfter int
}

func (e *apiError) Error() string {
	if e.RetryAfter > 0 {
		return fmt.Sprintf("telegram: %d %s (retry after %ds)", e.Code, e.Desc, e.RetryAfter)
	}
	return fmt.Sprintf("telegram: %d %s", e.Code, e.Desc)
}

// Run implements bridge.Platform: it learns the bot's identity, then
// long-polls for updates and delivers each one, in order, advancing the
// offset only past delivered updates.
func (p *Platform) Run(ctx context.Context, host bridge.Host) error {
	if err := p.ready(); err != nil {
		return err
	}
	if err := p.start(ctx, host); errors.Is(err, errRefused) {
		return p.refused(ctx, host)
	} else if err != nil {
		return err
	}
	var offset, confirmed int64
	defer func() {
		if offset > confirmed {
			p.confirm(offset)
		}
	}()
	failures := 0
	var conflict conflict
	var grp *album // an album being collected; offset stays at its first update
	for ctx.Err() == nil {
		timeout := p.pollTimeout
		if grp != nil {
			// Siblings arrive within moments: look again shortly, without
			// a long poll, until the album's window closes.
			if !sleep(ctx, albumPoll) {
				break
			}
			timeout = 0
		}
		updates, err := p.getUpdates(ctx, offset, timeout)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, errUnauthorized) {
				return p.refused(ctx, host)
			}
			if wait, ok := conflict.failed(p, host, err); ok {
				if !sleep(ctx, wait) {
					break
				}
				continue
			}
			wait := p.pollBackoff(failures, err)
			if failures == 0 {
				host.Event("status", "Telegram unreachable: "+err.Error())
			}
			failures++
			p.log.Warn("getUpdates failed", "err", err, "retry_in", wait)
			if !sleep(ctx, wait) {
				break
			}
			continue
		}
		conflict.polled(p, host)
		if failures > 0 {
			host.Event("status", "connected to Telegram as @"+p.botUser.Username)
			failures = 0
		}
		confirmed = offset
		for _, u := range updates {
			if grp != nil && u.ID <= grp.last {
				continue // an album sibling fetched again while collecting
			}
			if id := albumOf(u); id != "" && (grp == nil || grp.id == id) {
				grp = grp.add(id, u)
				continue
			}
			if grp != nil {
				if !p.deliverAlbum(ctx, host, grp) {
					return nil
				}
				offset, grp = grp.last+1, nil
			}
			if id := albumOf(u); id != "" {
				grp = grp.add(id, u)
				continue
			}
			if err := p.handle(ctx, host, u); err != nil {
				// Not delivered (we are stopping): Telegram keeps it and
				// sends it again to the next poll.
				p.log.Info("update not delivered; it will be fetched again", "update_id", u.ID, "err", err)
				return nil
			}
			offset = u.ID + 1
		}
		if grp != nil && !time.Now().Before(grp.deadline) {
			if !p.deliverAlbum(ctx, host, grp) {
				return nil
			}
			offset, grp = grp.last+1, nil
		}
	}
	return nil
}

// start verifies the token with getMe (retrying while Telegram is
// unreachable) and removes a webhook, which would make getUpdates fail.
func (p *Platform) start(ctx context.Context, host bridge.Host) error {
	for failures := 0; ; failures++ {
		var me models.User
		err := p.call(ctx, "getMe", nil, &me)
		if err == nil {
			p.botUser = me
			break
		}
		if errors.Is(err, errUnauthorized) {
			return errRefused
		}
		wait := p.pollBackoff(failures, err)
		p.log.Warn("getMe failed", "err", err, "retry_in", wait)
		if !sleep(ctx, wait) {
			return nil
		}
	}
	var ok bool
	if err := p.call(ctx, "deleteWebhook", map[string]any{"drop_pending_updates": false}, &ok); err != nil {
		p.log.Warn("deleteWebhook failed", "err", err)
	}
	p.registerCommands(ctx)
	p.log.Info("telegram bot ready", "username", p.botUser.Username, "id", p.botUser.ID)
	// Running: also ends a failed state of the launch before (a token
	// fixed in the config).
	report(host, bridge.PlatformRunning, "connected to Telegram as @"+p.botUser.Username)
	return nil
}

// errRefused: start found the token refused (refused reports it).
var errRefused = errors.New("token refused")

// refused reports the token refused as the failed state (agentd shows it,
// alerts, and does not relaunch the bridge: retrying cannot help) and
// waits, polling nothing, until the bridge is stopped.
func (p *Platform) refused(ctx context.Context, host bridge.Host) error {
	p.log.Error("Telegram refused the bot token", "err", errUnauthorized)
	report(host, bridge.PlatformFailed, "Telegram refused the bot token (401 Unauthorized); set bridges.telegram.settings.token")
	<-ctx.Done()
	return nil
}

// report reports a platform state, or (a host without states) its status.
func report(host bridge.Host, state bridge.PlatformState, reason string) {
	if sr, ok := host.(bridge.StateReporter); ok {
		sr.ReportState(state, reason)
	} else if ss, ok := host.(bridge.StatusSetter); ok {
		ss.SetStatus(bridge.StateStatus(state, reason))
	}
}

func (p *Platform) pollBackoff(n int, err error) time.Duration {
	var ae *apiError
	if errors.As(err, &ae) && ae.RetryAfter > 0 {
		return time.Duration(ae.RetryAfter) * p.retryUnit
	}
	d := pollBackoffMin
	for i := 0; i < n && d < pollBackoffMax; i++ {
		d *= 2
	}
	return min(d, pollBackoffMax)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// confirm tells Telegram that every update below offset is handled, so a
// restart does not see them again. Best effort: without it they are
// delivered once more, never lost.
func (p *Platform) confirm(offset int64) {
	ctx, cancel := context.WithTimeout(context.Background(), confirmTimeout)
	defer cancel()
	if _, err := p.getUpdates(ctx, offset, 0); err != nil {
		p.log.Warn("could not confirm handled updates; they may be delivered again", "offset", offset, "err", err)
	}
}

func (p *Platform) getUpdates(ctx context.Context, offset int64, timeout time.Duration) ([]models.Update, error) {
	params := map[string]any{
		"timeout":         int(timeout / time.Second),
		"allowed_updates": []string{"message"},
	}
	if offset > 0 {
		params["offset"] = offset
	}
	ctx, cancel := context.WithTimeout(ctx, timeout+15*time.Second)
	defer cancel()
	var out []models.Update
	if err := p.call(ctx, "getUpdates", params, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// call is a raw Bot API call with a JSON body, used where the library's
// own loop does not fit (see the package comment).
func (p *Platform) call(ctx context.Context, method string, params map[string]any, out any) error {
	var body io.Reader = http.NoBody
	if params != nil {
		b, err := json.Marshal(params)
		if err != nil {
			return fmt.Errorf("telegram %s: %w", method, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.apiURL+"/bot"+p.token+"/"+method, body)
	if err != nil {
		return fmt.Errorf("telegram %s: %w", method, err)
	}
	if params != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := p.httpClient.Do(req)
	if err != nil {
		// The URL holds the token; never let it reach a log.
		return fmt.Errorf("telegram %s: %s", method, strings.ReplaceAll(err.Error(), p.token, "<token>"))
	}
	defer resp.Body.Close()
	var env struct {
		OK          bool            `json:"ok"`
		Result      json.RawMessage `json:"result"`
		ErrorCode   int             `json:"error_code"`
		Description string          `json:"description"`
		Parameters  struct {
			RetryAfter int `json:"retry_after"`
		} `json:"parameters"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&env); err != nil {
		return fmt.Errorf("telegram %s: HTTP %d with an unreadable body: %w", method, resp.StatusCode, err)
	}
	if !env.OK {
		if env.ErrorCode == http.StatusUnauthorized {
			return errUnauthorized
		}
		return fmt.Errorf("telegram %s: %w", method, &apiError{Code: env.ErrorCode, Desc: env.Description, RetryAfter: env.Parameters.RetryAfter})
	}
	if out != nil {
		if err := json.Unmarshal(env.Result, out); err != nil {
			return fmt.Errorf("telegram %s: decode result: %w", method, err)
		}
	}
	return nil
}

// handle turns one update into a delivery. It returns an error only when
// the message was not delivered and must be fetched again.
func (p *Platform) handle(ctx context.Context, host bridge.Host, u models.Update) error {
	in, ok, err := p.incoming(ctx, host, u.Message, u.Message)
	if err != nil || !ok {
		return err
	}
	return host.Deliver(ctx, in)
}

// incoming builds the delivery of message m (ok false: nothing to
// deliver); head is the message whose text, chat and sender count (for an
// album, the one with the caption), m the one whose files are fetched.
func (p *Platform) incoming(ctx context.Context, host bridge.Host, head, m *models.Message) (bridge.Incoming, bool, error) {
	if head == nil || head.From == nil || head.From.IsBot || m == nil {
		return bridge.Incoming{}, false, nil // not a user message: nothing to deliver
	}
	text := head.Text
	entities := head.Entities
	if text == "" {
		text, entities = head.Caption, head.CaptionEntities
	}
	group := false
	switch head.Chat.Type {
	case models.ChatTypePrivate:
	case models.ChatTypeGroup, models.ChatTypeSupergroup:
		group = true
		var ok bool
		if text, ok = p.addressed(head, text, entities); !ok {
			return bridge.Incoming{}, false, nil
		}
	default:
		return bridge.Incoming{}, false, nil // channels
	}
	userID := strconv.FormatInt(head.From.ID, 10)
	chatID := strconv.FormatInt(head.Chat.ID, 10)
	in := bridge.Incoming{ChatID: chatID, MessageID: strconv.Itoa(head.ID), UserID: userID, UserName: userName(head.From), Text: text, Group: group}
	// Files of users who are not allowed are never fetched: the runner
	// refuses them anyway, and a stranger must not fill our disk.
	allowed := host.Allowed(userID)
	if allowed {
		atts, err := p.download(ctx, m)
		if err != nil {
			if ctx.Err() != nil {
				return bridge.Incoming{}, false, err
			}
			p.log.Warn("attachment download failed", "chat_id", chatID, "err", err)
			host.Notify(chatID, bridge.UserText("Sorry, I could not download your file: "+err.Error()))
		}
		in.Attachments = atts
	}
	if strings.TrimSpace(in.Text) == "" && len(in.Attachments) == 0 && allowed {
		return bridge.Incoming{}, false, nil
	}
	return in, true, nil
}

// album is a media group being collected.
type album struct {
	id       string
	updates  []models.Update
	last     int64     // highest update id in it
	deadline time.Time // albumWindow after the newest sibling
}

// albumOf returns the media_group_id of a user message, "" if none.
func albumOf(u models.Update) string {
	if u.Message == nil {
		return ""
	}
	return u.Message.MediaGroupID
}

// add returns a with u added (a new album if a is nil).
func (a *album) add(id string, u models.Update) *album {
	if a == nil {
		a = &album{id: id}
	}
	a.updates = append(a.updates, u)
	a.last = max(a.last, u.ID)
	a.deadline = time.Now().Add(albumWindow)
	return a
}

// deliverAlbum delivers an album as one turn: the caption (Telegram puts
// it on one of the messages) and every sibling's files. It reports false
// when it was not delivered (we are stopping).
func (p *Platform) deliverAlbum(ctx context.Context, host bridge.Host, a *album) bool {
	head := a.updates[0].Message
	for _, u := range a.updates {
		if u.Message.Caption != "" {
			head = u.Message
			break
		}
	}
	var in bridge.Incoming
	ok := false
	for _, u := range a.updates {
		one, deliver, err := p.incoming(ctx, host, head, u.Message)
		if err != nil {
			p.log.Info("album not delivered; it will be fetched again", "media_group_id", a.id, "err", err)
			return false
		}
		if !deliver {
			continue
		}
		if !ok {
			in, ok = one, true
		} else {
			in.Attachments = append(in.Attachments, one.Attachments...)
		}
	}
	if !ok {
		return true
	}
	in.MessageID = "album:" + a.id
	if err := host.Deliver(ctx, in); err != nil {
		p.log.Info("album not delivered; it will be fetched again", "media_group_id", a.id, "err", err)
		return false
	}
	return true
}

func userName(u *models.User) string {
	name := strings.TrimSpace(u.FirstName + " " + u.LastName)
	if u.Username != "" {
		name = strings.TrimSpace(name + " @" + u.Username)
	}
	return name
}

// addressed reports whether a group message is meant for the bot — it
// mentions @bot, is a /command@bot, or replies to the bot — and returns the
// text without the mention.
func (p *Platform) addressed(m *models.Message, text string, entities []models.MessageEntity) (string, bool) {
	if m.ReplyToMessage != nil && m.ReplyToMessage.From != nil && m.ReplyToMessage.From.ID == p.botUser.ID {
		return text, true
	}
	mention := "@" + strings.ToLower(p.botUser.Username)
	u := utf16.Encode([]rune(text))
	for _, e := range entities {
		if e.Offset < 0 || e.Length <= 0 || e.Offset+e.Length > len(u) {
			continue
		}
		span := string(utf16.Decode(u[e.Offset : e.Offset+e.Length]))
		switch e.Type {
		case models.MessageEntityTypeMention:
			if strings.ToLower(span) == mention {
				rest := append(append([]uint16{}, u[:e.Offset]...), u[e.Offset+e.Length:]...)
				return strings.Join(strings.Fields(string(utf16.Decode(rest))), " "), true
			}
		case models.MessageEntityTypeTextMention:
			if e.User != nil && e.User.ID == p.botUser.ID {
				return text, true
			}
		case models.MessageEntityTypeBotCommand:
			if strings.HasSuffix(strings.ToLower(span), mention) {
				return text, true
			}
		}
	}
	return "", false
}

// download fetches the message's photo, document, voice note, video or
// audio file into the uploads directory and returns them as attachments.
func (p *Platform) download(ctx context.Context, m *models.Message) ([]wire.Attachment, error) {
	type item struct {
		fileID, kind, name string
		size               int64
	}
	var items []item
	if n := len(m.Photo); n > 0 {
		ph := m.Photo[n-1] // sizes ascend; the last is the original
		items = append(items, item{ph.FileID, "image", "photo.jpg", int64(ph.FileSize)})
	}
	if d := m.Document; d != nil {
		items = append(items, item{d.FileID, "file", d.FileName, d.FileSize})
	}
	if v := m.Voice; v != nil {
		items = append(items, item{v.FileID, "voice", "voice.ogg", v.FileSize})
	}
	if v := m.VideoNote; v != nil { // a round video message: its sound is heard like a voice note
		items = append(items, item{v.FileID, "voice", "video-note.mp4", int64(v.FileSize)})
	}
	if v := m.Video; v != nil {
		items = append(items, item{v.FileID, "video", v.FileName, v.FileSize})
	}
	if a := m.Audio; a != nil { // music files: plain files to the agent
		items = append(items, item{a.FileID, "file", a.FileName, a.FileSize})
	}
	var out []wire.Attachment
	for _, it := range items {
		if it.size > maxDownload {
			return out, fmt.Errorf("%s is larger than Telegram's 20 MB download limit", it.kind)
		}
		path, err := p.fetch(ctx, it.fileID, it.name)
		if err != nil {
			return out, err
		}
		name := it.name
		if name == "" {
			name = filepath.Base(path)
		}
		out = append(out, wire.Attachment{Kind: it.kind, Path: path, Filename: name})
	}
	return out, nil
}

// fetch downloads one file (getFile, then /file/bot<token>/<path>) into
// the uploads directory under a fresh name and returns its path.
func (p *Platform) fetch(ctx context.Context, fileID, name string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, downloadTimeout)
	defer cancel()
	var f models.File
	if err := p.call(ctx, "getFile", map[string]any{"file_id": fileID}, &f); err != nil {
		return "", err
	}
	if f.FilePath == "" {
		return "", errors.New("telegram getFile: no file_path in the answer")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.b.FileDownloadLink(&f), nil)
	if err != nil {
		return "", fmt.Errorf("telegram file download: %w", err)
	}
	resp, err := p.httpClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("telegram file download: %s", strings.ReplaceAll(err.Error(), p.token, "<token>"))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("telegram file download: HTTP %d", resp.StatusCode)
	}
	if name == "" {
		name = filepath.Base(f.FilePath)
	}
	dst, err := bridge.SaveUpload(p.cfg.UploadsDir, "telegram", name, resp.Body, maxDownload)
	if err != nil {
		return "", fmt.Errorf("telegram file download: %w", err)
	}
	return dst, nil
}
