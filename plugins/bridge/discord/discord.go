// Package discord is the Discord bridge platform for agentd: a bot on the
// Discord gateway (github.com/bwmarrin/discordgo) that passes DMs, and
// guild messages that mention it or arrive in its listen channels, to the
// agent as session "dc:<channel_id>", and streams replies back by editing
// one message.
//
// The SDK (plugins/bridge) owns the gateway to agentd, streaming, retries
// and exactly-once delivery; this package only moves messages. discordgo's
// own reconnect loop and 429 sleeps are switched off: reconnecting is done
// here so that a close the platform means for good (4004 bad token, 4014
// disallowed intents) ends in a failed state instead of an endless loop,
// and rate limits go back to the SDK as *bridge.RateLimited so that its
// shared wait applies.
package discord

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bwmarrin/discordgo"

	"github.com/agentd/agentd/plugins/bridge"
	"github.com/agentd/agentd/wire"
)

// Discord's limits and the bridge's defaults.
const (
	// MaxMessageLen is Discord's limit on a message's content.
	MaxMessageLen = 2000
	// DefaultAPIURL is where REST calls and gateway discovery go.
	DefaultAPIURL = "https://discord.com"
	// DefaultMaxUpload is the upload limit of a bot without boosts.
	DefaultMaxUpload = 10 << 20
	// DefaultMaxDownload caps one incoming attachment (Discord's own
	// upload limit for accounts without Nitro).
	DefaultMaxDownload = 25 << 20
	// DefaultSlashDoneAfter: a deferred slash command nothing answered
	// this long is settled with "Done." (see settle).
	DefaultSlashDoneAfter = 10 * time.Second
	// DefaultWatchdog: a gateway silent this long (no event, no heartbeat
	// ACK) is rebuilt.
	DefaultWatchdog = 5 * time.Minute
	// typingEvery: Discord shows "typing…" for about 10 s.
	typingEvery = 8 * time.Second
	// interactionTTL: an interaction token can edit its response this long.
	interactionTTL = 14 * time.Minute
)

// Platform is the Discord bridge. Create it with New.
type Platform struct {
	cfg            bridge.PlatformConfig
	token          string
	apiURL         *url.URL
	client         *http.Client
	log            *slog.Logger
	dmOnly         bool
	allowedGuilds  map[string]bool
	listenChannels map[string]bool
	maxUpload      int64
	maxDownload    int64
	slashDone      time.Duration
	watchdog       time.Duration
	reconnectMin   time.Duration

	globalUntil atomic.Int64 // unix nanos: a global 429's end, seen by the transport

	// mu guards the fields below.
	mu          sync.Mutex
	s           *discordgo.Session
	botID       string
	botName     string
	appID       string
	botRoles    map[string][]string                 // guild → the bot's roles
	pending     map[string][]*discordgo.Interaction // chat → deferred slash commands awaiting their answer, oldest first
	interMsgs   map[string]answered                 // response message id → its interaction
	contentWarn bool
	host        bridge.Host
}

// New returns an unconfigured Discord platform.
func New() *Platform { return &Platform{} }

var (
	_ bridge.Platform      = (*Platform)(nil)
	_ bridge.MessageEditor = (*Platform)(nil)
	_ bridge.Typer         = (*Platform)(nil)
	_ bridge.FileSender    = (*Platform)(nil)
	_ bridge.MaxTextLen    = (*Platform)(nil)
	_ bridge.TextSplitter  = (*Platform)(nil)
	_ bridge.TypingRenewer = (*Platform)(nil)
)

// Name implements bridge.Platform.
func (p *Platform) Name() string { return "discord" }

// SessionPrefix implements bridge.Platform.
func (p *Platform) SessionPrefix() string { return "dc" }

// MaxTextLen implements bridge.MaxTextLen.
func (p *Platform) MaxTextLen() int { return MaxMessageLen }

// TypingEvery implements bridge.TypingRenewer.
func (p *Platform) TypingEvery() time.Duration { return typingEvery }

// Configure reads the settings: token (required), api_url, allowed_guilds
// and listen_channels (comma-separated ids), dm_only, max_upload_mb,
// max_download_mb, watchdog (a Go duration), slash_done_after (default
// 10s), reconnect_min (tests: the first reconnect wait, default 1s).
func (p *Platform) Configure(cfg bridge.PlatformConfig) error {
	set := cfg.Settings
	token := strings.TrimPrefix(strings.TrimSpace(set["token"]), "Bot ")
	if token == "" {
		return errors.New("discord: setting \"token\" is required (the bot token from the Developer Portal)")
	}
	raw := strings.TrimRight(strings.TrimSpace(set["api_url"]), "/")
	if raw == "" {
		raw = DefaultAPIURL
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("discord: api_url %q must be an http(s) URL", raw)
	}
	if p.maxUpload, err = mebibytes(set, "max_upload_mb", DefaultMaxUpload); err != nil {
		return err
	}
	if p.maxDownload, err = mebibytes(set, "max_download_mb", DefaultMaxDownload); err != nil {
		return err
	}
	if p.watchdog, err = duration(set, "watchdog", DefaultWatchdog); err != nil {
		return err
	}
	if p.slashDone, err = duration(set, "slash_done_after", DefaultSlashDoneAfter); err != nil {
		return err
	}
	if p.reconnectMin, err = duration(set, "reconnect_min", time.Second); err != nil {
		return err
	}
	if cfg.UploadsDir == "" {
		return errors.New("discord: no uploads directory configured")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p.cfg, p.token, p.apiURL = cfg, token, u
	p.log = cfg.Logger.With("platform", "discord")
	p.dmOnly = set["dm_only"] == "true"
	p.allowedGuilds, p.listenChannels = idSet(set["allowed_guilds"]), idSet(set["listen_channels"])
	p.client = &http.Client{Transport: &transport{p: p, next: http.DefaultTransport}}
	p.botRoles = map[string][]string{}
	p.pending = map[string][]*discordgo.Interaction{}
	p.interMsgs = map[string]answered{}
	return nil
}

// mebibytes reads a size setting in MiB, 1..500.
func mebibytes(set map[string]string, key string, def int64) (int64, error) {
	v := strings.TrimSpace(set[key])
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 500 {
		return 0, fmt.Errorf("discord: %s %q must be 1..500", key, v)
	}
	return int64(n) << 20, nil
}

func duration(set map[string]string, key string, def time.Duration) (time.Duration, error) {
	v := strings.TrimSpace(set[key])
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("discord: %s %q must be a positive duration (e.g. 5m)", key, v)
	}
	return d, nil
}

// idSet splits a comma-separated list of ids.
func idSet(s string) map[string]bool {
	m := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			m[f] = true
		}
	}
	return m
}

// transport sends discordgo's requests for discord.com to api_url (its
// endpoint variables are fixed at package load, so this is the only way
// to point it elsewhere) and notes a global 429, which discordgo's
// RateLimitError does not carry.
type transport struct {
	p    *Platform
	next http.RoundTripper
}

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host == "discord.com" {
		r = r.Clone(r.Context())
		base := t.p.apiURL
		r.URL.Scheme, r.URL.Host = base.Scheme, base.Host
		r.URL.Path = strings.TrimRight(base.Path, "/") + r.URL.Path
		r.Host = ""
	}
	resp, err := t.next.RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusTooManyRequests &&
		(resp.Header.Get("X-RateLimit-Global") != "" || resp.Header.Get("X-RateLimit-Scope") == "global") {
		secs, _ := strconv.ParseFloat(resp.Header.Get("X-RateLimit-Reset-After"), 64)
		if secs <= 0 {
			secs, _ = strconv.ParseFloat(resp.Header.Get("Retry-After"), 64)
		}
		t.p.globalUntil.Store(time.Now().Add(time.Duration(secs*float64(time.Second)) + time.Millisecond).UnixNano())
	}
	return resp, err
}

func (p *Platform) session() (*discordgo.Session, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.s == nil {
		return nil, errors.New("discord: not connected yet")
	}
	return p.s, nil
}

// answered is a slash command's response message, edited through the
// interaction's token while that is valid.
type answered struct {
	in *discordgo.Interaction
	at time.Time
}

// noMentions: replies never ping anyone (@everyone, @here, roles, users).
func noMentions() *discordgo.MessageAllowedMentions {
	return &discordgo.MessageAllowedMentions{Parse: []discordgo.AllowedMentionType{}}
}

// mapErr turns a discordgo failure into the SDK's kinds: a 429 is a
// *bridge.RateLimited (global → the whole bot waits, else the chat), a
// 4xx refusal is bridge.ErrRejected, anything else is retried.
func (p *Platform) mapErr(what string, err error) error {
	if err == nil {
		return nil
	}
	var rl *discordgo.RateLimitError
	if errors.As(err, &rl) {
		scope := bridge.ScopeChat
		if time.Now().UnixNano() < p.globalUntil.Load() {
			scope = bridge.ScopeBot
		}
		return &bridge.RateLimited{RetryAfter: max(rl.RetryAfter, time.Millisecond), Scope: scope, Err: fmt.Errorf("discord %s: %w", what, err)}
	}
	var re *discordgo.RESTError
	if errors.As(err, &re) && re.Response != nil {
		code := re.Response.StatusCode
		switch {
		case code == http.StatusRequestEntityTooLarge:
			return fmt.Errorf("too large for Discord (413): %w", bridge.ErrRejected)
		case code >= 400 && code < 500:
			msg := strconv.Itoa(code)
			if re.Message != nil && re.Message.Message != "" {
				msg += " " + re.Message.Message
			}
			return fmt.Errorf("discord %s: %s: %w", what, msg, bridge.ErrRejected)
		}
	}
	return fmt.Errorf("discord %s: %w", what, err)
}

// takeInteraction returns the oldest deferred slash command of chatID
// waiting for its answer, if any (answers come in the commands' order).
func (p *Platform) takeInteraction(chatID string) *discordgo.Interaction {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.pending[chatID]
	if len(q) == 0 {
		return nil
	}
	if len(q) == 1 {
		delete(p.pending, chatID)
	} else {
		p.pending[chatID] = q[1:]
	}
	return q[0]
}

// dropInteraction removes i from the waiting ones; false if it was not
// waiting any more.
func (p *Platform) dropInteraction(i *discordgo.Interaction) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.pending[i.ChannelID]
	for k, x := range q {
		if x == i {
			p.pending[i.ChannelID] = append(q[:k:k], q[k+1:]...)
			if len(p.pending[i.ChannelID]) == 0 {
				delete(p.pending, i.ChannelID)
			}
			return true
		}
	}
	return false
}

// SendText implements bridge.Platform. The first message after a slash
// command is the edit of its deferred response.
func (p *Platform) SendText(ctx context.Context, chatID, text string) (string, error) {
	s, err := p.session()
	if err != nil {
		return "", err
	}
	opt := discordgo.WithContext(ctx)
	if in := p.takeInteraction(chatID); in != nil {
		m, err := s.InteractionResponseEdit(in, &discordgo.WebhookEdit{Content: &text, AllowedMentions: noMentions()}, opt)
		if err == nil {
			p.mu.Lock()
			now := time.Now()
			for id, a := range p.interMsgs { // its token can no longer edit it
				if now.Sub(a.at) > interactionTTL {
					delete(p.interMsgs, id)
				}
			}
			p.interMsgs[m.ID] = answered{in, now}
			p.mu.Unlock()
			return m.ID, nil
		}
		p.log.Warn("editing the deferred slash command response failed; sending a message", "err", err)
	}
	m, err := s.ChannelMessageSendComplex(chatID, &discordgo.MessageSend{Content: text, AllowedMentions: noMentions()}, opt)
	if err != nil {
		return "", p.mapErr("send message", err)
	}
	return m.ID, nil
}

// EditText implements bridge.MessageEditor.
func (p *Platform) EditText(ctx context.Context, chatID, msgID, text string) error {
	s, err := p.session()
	if err != nil {
		return err
	}
	opt := discordgo.WithContext(ctx)
	p.mu.Lock()
	in := p.interMsgs[msgID].in
	p.mu.Unlock()
	if in != nil {
		_, err := s.InteractionResponseEdit(in, &discordgo.WebhookEdit{Content: &text, AllowedMentions: noMentions()}, opt)
		return p.mapErr("edit slash command response", err)
	}
	_, err = s.ChannelMessageEditComplex(&discordgo.MessageEdit{ID: msgID, Channel: chatID, Content: &text, AllowedMentions: noMentions()}, opt)
	return p.mapErr("edit message", err)
}

// SendTyping implements bridge.Typer.
func (p *Platform) SendTyping(ctx context.Context, chatID string) error {
	s, err := p.session()
	if err != nil {
		return err
	}
	return p.mapErr("typing", s.ChannelTyping(chatID, discordgo.WithContext(ctx)))
}

// SendFile implements bridge.FileSender: a multipart upload. A file over
// the upload limit is refused before any call; Discord's 413 likewise —
// the SDK then tells the user, never a silent drop.
func (p *Platform) SendFile(ctx context.Context, chatID string, a wire.Attachment) error {
	s, err := p.session()
	if err != nil {
		return err
	}
	fi, err := os.Stat(a.Path)
	if err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("discord upload: not a readable file: %w", bridge.ErrRejected)
	}
	if fi.Size() > p.maxUpload {
		return fmt.Errorf("larger than Discord's %d MiB upload limit: %w", p.maxUpload>>20, bridge.ErrRejected)
	}
	name := a.Filename
	if name == "" {
		name = filepath.Base(a.Path)
	}
	f, err := os.Open(a.Path)
	if err != nil {
		return fmt.Errorf("discord upload: %w", err)
	}
	defer f.Close()
	_, err = s.ChannelMessageSendComplex(chatID, &discordgo.MessageSend{
		Files:           []*discordgo.File{{Name: name, Reader: f}},
		AllowedMentions: noMentions(),
	}, discordgo.WithContext(ctx))
	return p.mapErr("upload", err)
}
