// Package pairing lets the owner admit chat users without editing user-id
// lists: a stranger who writes to a bridge in a direct chat gets a short
// code (through the bridge, which asks agentd over its control plane), the
// owner approves or denies it with `agentd pairing` or REST, and an
// approved user is added to that bridge's allowed users in agentd's
// database and pushed to the running bridge at once. The bridge never
// decides: codes, expiry, the cap and the approvals live here.
package pairing

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/agentd/agentd/internal/alert"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/hook"
)

// MaxPending is how many requests one bridge may have waiting; the next
// stranger is told to try later.
const MaxPending = 3

// Alphabet holds the code characters: no 0/O, 1/I, so a code read aloud
// or retyped from a phone is not misread. 32 symbols, 5 bits each.
const Alphabet = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"

// CodeLen is the code's length: 8 × 5 = 40 bits.
const CodeLen = 8

// keepExpired is how long an expired request is kept, so that approving
// it says "expired" rather than "unknown".
const keepExpired = 24 * time.Hour

// Outcomes of Request (the bridge relays them to the user).
const (
	Pending = "pending" // a code waits for the owner (new or the same one)
	Full    = "full"    // MaxPending requests wait already
	Denied  = "denied"  // the owner denied this user; it stands until it expires
	Allowed = "allowed" // the user is approved already
)

// Actions of the OnChange hook (resource "pairing").
const (
	ActionRequested = "requested"
	ActionApproved  = "approved"
	ActionDenied    = "denied"
	ActionRevoked   = "revoked"
)

// Errors; test with errors.Is.
var (
	ErrUnknownCode = errors.New("no pairing request has this code")
	ErrExpired     = errors.New("pairing code expired")
	ErrDecided     = errors.New("pairing request was denied already")
	ErrNotApproved = errors.New("user is not approved on this bridge")
	ErrBadInput    = errors.New("invalid input")
)

// Request is one pairing request as the owner sees it.
type Request struct {
	Code       string    `json:"code"` // K7QF-2M9D
	Bridge     string    `json:"bridge"`
	UserID     string    `json:"user_id"`
	UserName   string    `json:"user_name"`
	ChatID     string    `json:"chat_id"`
	State      string    `json:"state"` // pending, denied
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	AgeSeconds float64   `json:"age_seconds"`
}

// User is an approved chat user.
type User struct {
	Bridge     string    `json:"bridge"`
	UserID     string    `json:"user_id"`
	UserName   string    `json:"user_name"`
	ApprovedAt time.Time `json:"approved_at"`
}

// PushFunc applies a bridge's approved users to it at once; welcomeChat,
// if not "", is told "You're in.".
type PushFunc func(ctx context.Context, bridge string, approved []string, welcomeChat string) error

// Options configure a Pairing.
type Options struct {
	DB     *sql.DB
	Config *config.Watcher // pairing.expiry; nil: the default
	Alerts *alert.Alerter  // a request arriving; nil: none
	Log    *slog.Logger
	// Now is the clock (tests move it); nil: time.Now.
	Now func() time.Time
}

// Pairing owns the requests and the approved users.
type Pairing struct {
	db     *sql.DB
	cfg    *config.Watcher
	alerts *alert.Alerter
	log    *slog.Logger
	now    func() time.Time

	// mu serialises every change, so the cap and "one code per user" hold
	// under concurrent messages; it also guards push.
	mu    sync.Mutex
	push  PushFunc
	hooks hook.Changes
}

// New returns a Pairing on db (migrated by store.Open).
func New(opts Options) *Pairing {
	p := &Pairing{db: opts.DB, cfg: opts.Config, alerts: opts.Alerts, log: opts.Log, now: opts.Now}
	if p.log == nil {
		p.log = slog.Default()
	}
	if p.now == nil {
		p.now = time.Now
	}
	return p
}

// OnChange registers fn, called after every change with resource
// "pairing", an Action* and the code (or bridge/user for a revoke).
func (p *Pairing) OnChange(fn func(resource, action, id string)) {
	p.hooks.Add(fn)
}

// SetPush sets how approvals reach running bridges (the supervisor).
func (p *Pairing) SetPush(fn PushFunc) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.push = fn
}

// changed runs the hooks; p.mu held.
func (p *Pairing) changed(action, id string) {
	p.hooks.Notify("pairing", action, id)
}

func (p *Pairing) expiry() time.Duration {
	if p.cfg != nil {
		if d := time.Duration(p.cfg.Current().Pairing.Expiry); d > 0 {
			return d
		}
	}
	return config.DefaultPairingExpiry
}

// NewCode returns a random code of CodeLen characters from Alphabet.
func NewCode() string {
	b := make([]byte, CodeLen)
	rand.Read(b) // never fails (crypto/rand panics instead)
	for i := range b {
		b[i] = Alphabet[b[i]%byte(len(Alphabet))] // 256 is a multiple of 32: no bias
	}
	return string(b)
}

// Format shows a code as the user sees it: K7QF-2M9D.
func Format(code string) string {
	if len(code) != CodeLen {
		return code
	}
	return code[:4] + "-" + code[4:]
}

// Normalize turns what an owner typed ("k7qf 2m9d", "K7QF-2M9D") into a
// stored code, or an error saying what is wrong.
func Normalize(s string) (string, error) {
	s = strings.ToUpper(strings.NewReplacer("-", "", " ", "").Replace(strings.TrimSpace(s)))
	if len(s) != CodeLen {
		return "", fmt.Errorf("%w: a pairing code has %d characters, like K7QF-2M9D", ErrBadInput, CodeLen)
	}
	for _, c := range s {
		if !strings.ContainsRune(Alphabet, c) {
			return "", fmt.Errorf("%w: %q is not a pairing code character (codes use %s)", ErrBadInput, c, Alphabet)
		}
	}
	return s, nil
}

func ms(t time.Time) int64 { return t.UnixMilli() }

// Request records (or finds) the pairing request of a stranger who wrote
// to bridge in a direct chat, and says what to tell them.
func (p *Pairing) Request(ctx context.Context, bridge, userID, userName, chatID string) (outcome, code string, err error) {
	if bridge == "" || userID == "" || chatID == "" {
		return "", "", fmt.Errorf("%w: bridge, user and chat are required", ErrBadInput)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if err := p.purge(ctx, now); err != nil {
		return "", "", err
	}
	var n int
	err = p.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM bridge_users WHERE bridge = ? AND user_id = ?`, bridge, userID).Scan(&n)
	if err != nil {
		return "", "", fmt.Errorf("pairing: %w", err)
	}
	if n > 0 {
		return Allowed, "", nil
	}
	var state string
	err = p.db.QueryRowContext(ctx, `SELECT code, state FROM pairing_requests WHERE bridge = ? AND user_id = ? AND expires_at > ?`,
		bridge, userID, ms(now)).Scan(&code, &state)
	switch {
	case err == nil && state == Denied:
		return Denied, "", nil
	case err == nil:
		return Pending, Format(code), nil
	case !errors.Is(err, sql.ErrNoRows):
		return "", "", fmt.Errorf("pairing: %w", err)
	}
	err = p.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM pairing_requests WHERE bridge = ? AND state = 'pending' AND expires_at > ?`,
		bridge, ms(now)).Scan(&n)
	if err != nil {
		return "", "", fmt.Errorf("pairing: %w", err)
	}
	if n >= MaxPending {
		p.log.Warn("pairing request refused: too many pending", "bridge", bridge, "user_id", userID, "pending", n)
		return Full, "", nil
	}
	code = NewCode()
	_, err = p.db.ExecContext(ctx, `INSERT INTO pairing_requests (code, bridge, user_id, user_name, chat_id, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, code, bridge, userID, userName, chatID, ms(now), ms(now.Add(p.expiry())))
	if err != nil {
		return "", "", fmt.Errorf("pairing: record request: %w", err)
	}
	p.log.Info("pairing requested", "bridge", bridge, "user_id", userID, "user_name", userName, "code", Format(code))
	p.changed(ActionRequested, Format(code))
	p.alerts.Raise("pairing:"+code, requestText(bridge, userID, userName, Format(code)), alert.Immediately())
	return Pending, Format(code), nil
}

// purge ends the alerts of expired requests (an alert incident per code
// would otherwise stay open for ever) and forgets requests expired long
// ago. p.mu held.
func (p *Pairing) purge(ctx context.Context, now time.Time) error {
	expired, err := p.requests(ctx, selectRequests+` WHERE expires_at <= ?`, ms(now))
	if err != nil {
		return err
	}
	for _, r := range expired {
		p.alerts.Clear("pairing:"+r.Code, "")
	}
	if _, err := p.db.ExecContext(ctx, `DELETE FROM pairing_requests WHERE expires_at <= ?`, ms(now.Add(-keepExpired))); err != nil {
		return fmt.Errorf("pairing: purge: %w", err)
	}
	return nil
}

// requestText is the operator alert: who asks, and the command to run.
func requestText(bridge, userID, userName, code string) string {
	who := userName
	if who == "" {
		who = "Someone"
	}
	return fmt.Sprintf("%s (%s %s) asks to talk to the agent: agentd pairing approve DIR %s (or deny)", who, bridge, userID, code)
}
