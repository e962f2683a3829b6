// Package whatsapp is the WhatsApp bridge platform for agentd, a linked
// device through go.mau.fi/whatsmeow: direct chats become sessions
// "wa:<phone>", groups ("wa:<id>@g.us") only talk to the agent when the
// bot is mentioned or replied to. Replies go out as one final message (no
// streamed edits: every edit is a full encrypted message, a ban risk).
//
// Every connection event is a visible platform status; those the operator
// must act on (logged out, stream replaced, banned, client outdated) are
// also host events, which agentd turns into alerts.
package whatsapp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/types"

	"github.com/agentd/agentd/plugins/bridge"
)

// Limits and defaults.
const (
	// MaxMessageLen is where the bridge splits a reply. WhatsApp accepts
	// longer texts, but clients fold them behind "read more".
	MaxMessageLen = 4000
	// DefaultMaxAge: older messages (a backlog after a reconnect) are
	// not answered.
	DefaultMaxAge = 10 * time.Minute
	// maxDownload bounds one incoming media file.
	maxDownload = 64 << 20
	// callTimeout bounds the bridge's own calls (mark read, presence).
	callTimeout = 10 * time.Second
)

// Platform status texts.
const (
	StatusNeedsLogin = string(bridge.PlatformNeedsLogin)
	// StreamReplaced starts the reason of the failed state after
	// whatsmeow's StreamReplaced.
	StreamReplaced = "another process uses this WhatsApp session (stream replaced)"
)

// PairCode is the needs_login reason carrying a pair code; `agentd bridge
// login --phone` shows the code from the status it makes
// ("needs_login: pair code …").
func PairCode(code string) string {
	return "pair code " + code + " (WhatsApp > Linked devices > Link with phone number)"
}

// Platform is the WhatsApp bridge. Create it with New (the real whatsmeow
// client) or NewWithClient (tests).
type Platform struct {
	cfg       bridge.PlatformConfig
	log       *slog.Logger
	maxAge    time.Duration
	pairPhone string // pair-code login instead of QR, digits only
	newClient func(ctx context.Context) (Client, error)
	now       func() time.Time

	c    Client
	host bridge.Host
	ctx  context.Context // Run's, for event handlers

	// mu guards state.
	mu    sync.Mutex
	state string
	// halted is closed when the session cannot go on by itself (logged
	// out, replaced): Run then stays idle instead of reconnecting.
	halted   chan struct{}
	haltOnce sync.Once
}

// New returns an unconfigured platform over the real whatsmeow client with
// its session store in the bridge's DataDir.
func New() *Platform {
	p := &Platform{}
	p.newClient = func(ctx context.Context) (Client, error) { return openClient(ctx, p.cfg.DataDir, p.log) }
	return p
}

// NewWith returns a platform whose client newClient makes in Run from the
// bridge's DataDir (the test-only build of bridge-whatsapp uses it).
func NewWith(newClient func(ctx context.Context, dataDir string) (Client, error)) *Platform {
	p := &Platform{}
	p.newClient = func(ctx context.Context) (Client, error) { return newClient(ctx, p.cfg.DataDir) }
	return p
}

// NewWithClient returns a platform over c (a test double of whatsmeow).
func NewWithClient(c Client) *Platform {
	return &Platform{newClient: func(context.Context) (Client, error) { return c, nil }}
}

var (
	_ bridge.Platform    = (*Platform)(nil)
	_ bridge.Typer       = (*Platform)(nil)
	_ bridge.FileSender  = (*Platform)(nil)
	_ bridge.VoiceSender = (*Platform)(nil)
	_ bridge.MaxTextLen  = (*Platform)(nil)

	_ bridge.UserIDNormalizer = (*Platform)(nil)
)

// Name implements bridge.Platform.
func (p *Platform) Name() string { return "whatsapp" }

// SessionPrefix implements bridge.Platform.
func (p *Platform) SessionPrefix() string { return "wa" }

// MaxTextLen implements bridge.MaxTextLen.
func (p *Platform) MaxTextLen() int { return MaxMessageLen }

// Configure reads the settings: max_age (a Go duration, default 10m:
// older incoming messages are ignored), pair_phone (an international
// number: pair-code login instead of QR codes). Allowed users are phone
// numbers in international form, with or without "+".
func (p *Platform) Configure(cfg bridge.PlatformConfig) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.UploadsDir == "" {
		return errors.New("whatsapp: no uploads directory configured")
	}
	if cfg.DataDir == "" && p.newClient == nil {
		return errors.New("whatsapp: no data directory for the session store")
	}
	p.maxAge = DefaultMaxAge
	if v := strings.TrimSpace(cfg.Settings["max_age"]); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("whatsapp: max_age %q must be a positive duration such as 10m", v)
		}
		p.maxAge = d
	}
	if v := strings.TrimSpace(cfg.Settings["pair_phone"]); v != "" {
		d, err := PhoneDigits(v)
		if err != nil {
			return fmt.Errorf("whatsapp: pair_phone: %w", err)
		}
		p.pairPhone = d
	}
	allowed := make([]string, 0, len(cfg.AllowedUsers))
	for _, u := range cfg.AllowedUsers {
		u = strings.TrimSpace(u)
		if u == bridge.AllowEveryone || u == "" {
			allowed = append(allowed, u)
			continue
		}
		d, err := PhoneDigits(u)
		if err != nil {
			return fmt.Errorf("whatsapp: allowed user %q: %w", u, err)
		}
		allowed = append(allowed, d)
	}
	cfg.AllowedUsers = allowed
	p.cfg = cfg
	p.log = cfg.Logger.With("platform", "whatsapp")
	if p.now == nil {
		p.now = time.Now
	}
	return nil
}

// NormalizeUserID implements bridge.UserIDNormalizer: allowed users are
// phone numbers in any common spelling; an entry that is not one is kept
// as written (and matches nobody).
func (p *Platform) NormalizeUserID(u string) string {
	if d, err := PhoneDigits(u); err == nil {
		return d
	}
	return u
}

// PhoneDigits normalises "+39 123-4567" to "391234567".
func PhoneDigits(s string) (string, error) {
	var b strings.Builder
	for i, r := range strings.TrimSpace(s) {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '+' && i == 0, r == ' ', r == '-', r == '(', r == ')':
		default:
			return "", fmt.Errorf("%q is not a phone number in international form (+<country><number>)", s)
		}
	}
	if n := b.Len(); n < 6 || n > 15 {
		return "", fmt.Errorf("%q is not a phone number in international form (+<country><number>)", s)
	}
	return b.String(), nil
}

// Run implements bridge.Platform: it opens the session, logs in (QR codes
// or a pair code, reported as host events) when the device is not linked,
// and handles events until ctx ends. A session that cannot go on by itself
// (logged out, replaced by another process) leaves Run idle, without a
// reconnect loop, until agentd stops or restarts the bridge.
func (p *Platform) Run(ctx context.Context, host bridge.Host) error {
	if p.log == nil {
		return errors.New("whatsapp: not configured")
	}
	c, err := p.newClient(ctx)
	if err != nil {
		return err
	}
	p.c, p.host, p.ctx = c, host, ctx
	p.halted = make(chan struct{})
	c.AddEventHandler(p.handle)
	defer c.Disconnect()
	if c.IsLoggedIn() {
		p.setState("connecting")
		if err := c.Connect(); err != nil {
			return fmt.Errorf("whatsapp connect: %w", err)
		}
	} else if err := p.login(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-p.halted:
		<-ctx.Done()
	}
	return nil
}

// login links the device: QR codes (each a "qr" host event with the
// payload, shown by `agentd bridge login`) or, with pair_phone, a pair
// code. Codes that all expire leave the bridge in needs_login.
func (p *Platform) login(ctx context.Context) error {
	p.report(bridge.PlatformNeedsLogin, "not linked to a WhatsApp account; run `agentd bridge login "+p.agentDir()+" whatsapp`")
	if p.pairPhone != "" {
		if err := p.c.Connect(); err != nil {
			return fmt.Errorf("whatsapp connect: %w", err)
		}
		code, err := p.c.PairPhone(ctx, p.pairPhone)
		if err != nil {
			p.host.Event("alert", "WhatsApp pair-code login failed: "+err.Error())
			return fmt.Errorf("whatsapp pair phone: %w", err)
		}
		p.report(bridge.PlatformNeedsLogin, PairCode(code))
		return nil
	}
	qr, err := p.c.GetQRChannel(ctx)
	if err != nil {
		return fmt.Errorf("whatsapp qr channel: %w", err)
	}
	if err := p.c.Connect(); err != nil {
		return fmt.Errorf("whatsapp connect: %w", err)
	}
	go p.followQR(ctx, qr)
	return nil
}

// followQR reports each QR code and the end of the round.
func (p *Platform) followQR(ctx context.Context, qr <-chan whatsmeow.QRChannelItem) {
	for {
		select {
		case <-ctx.Done():
			return
		case it, ok := <-qr:
			if !ok {
				return
			}
			switch it.Event {
			case "code":
				p.host.Event("qr", it.Code)
			case "success":
				return // PairSuccess reports who we are linked as
			case "timeout":
				p.report(bridge.PlatformNeedsLogin, "the QR codes expired; run `agentd bridge login "+p.agentDir()+" whatsapp` for a new round")
				p.halt()
				return
			default:
				msg := it.Event
				if it.Error != nil {
					msg += ": " + it.Error.Error()
				}
				p.report(bridge.PlatformNeedsLogin, "login failed ("+msg+"); run `agentd bridge login "+p.agentDir()+" whatsapp` again")
				p.halt()
				return
			}
		}
	}
}

func (p *Platform) halt() {
	p.haltOnce.Do(func() {
		close(p.halted)
		go p.c.Disconnect()
	})
}

// setState changes the platform status without an operator event.
func (p *Platform) setState(s string) {
	p.mu.Lock()
	p.state = s
	p.mu.Unlock()
	if ss, ok := p.host.(bridge.StatusSetter); ok {
		ss.SetStatus(s)
	}
}

// report changes the platform state, which agentd shows as the bridge's
// (and alerts on): the one way to say "needs a login" or "failed".
func (p *Platform) report(state bridge.PlatformState, reason string) {
	p.mu.Lock()
	p.state = bridge.StateStatus(state, reason)
	p.mu.Unlock()
	if sr, ok := p.host.(bridge.StateReporter); ok {
		sr.ReportState(state, reason)
	} else if ss, ok := p.host.(bridge.StatusSetter); ok {
		ss.SetStatus(p.state)
	}
}

// State is the current platform status (tests).
func (p *Platform) State() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

// ownJIDs is the bot's phone JID and LID without device parts.
func (p *Platform) ownJIDs() (pn, lid types.JID) {
	pn, lid = p.c.OwnID()
	return pn.ToNonAD(), lid.ToNonAD()
}

// agentDir is the agent directory for the commands the bridge tells the
// operator to run: agentd gives a bridge DIR/bridges/<name> as DataDir.
func (p *Platform) agentDir() string {
	if p.cfg.DataDir == "" {
		return "DIR"
	}
	return filepath.Dir(filepath.Dir(p.cfg.DataDir))
}
