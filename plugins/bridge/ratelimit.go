package bridge

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Scope says who has to wait after the platform refused a call for a
// while.
type Scope int

const (
	// ScopeChat: only the chat the refused call was for waits.
	ScopeChat Scope = iota
	// ScopeBot: every chat of the bridge waits (a global limit).
	ScopeBot
)

func (s Scope) String() string {
	if s == ScopeBot {
		return "bot"
	}
	return "chat"
}

// RateLimited is the error a platform returns from a call the platform
// refused for a while (Telegram's 429 retry_after, Discord's 429
// retry_after with its global flag, WhatsApp's rate-overlimit). The SDK
// then makes no call in Scope before RetryAfter has passed — however long
// that is, and shared by every chat of the bridge — keeps the reply in its
// persistent send queue meanwhile, and after the wait sends only the
// latest text of a streamed reply.
type RateLimited struct {
	RetryAfter time.Duration
	Scope      Scope
	Err        error // the platform's own error, for logs; may be nil
}

func (e *RateLimited) Error() string {
	msg := fmt.Sprintf("rate limited (%s) for %v", e.Scope, e.RetryAfter)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *RateLimited) Unwrap() error { return e.Err }

// ErrRejected marks (with errors.Is, e.g. fmt.Errorf("…: %w",
// bridge.ErrRejected)) a platform error that retrying cannot fix: the chat
// is gone, the bot was blocked, the text was refused. The SDK then gives
// that part up instead of retrying it. Every other error is retried with
// backoff until it succeeds (for at most a day).
var ErrRejected = errors.New("rejected by the platform")

// limiter is the bridge's shared record of the platform's refusals: until
// when the bot, and each chat, must not be called. It only remembers what
// the platform said; callers check Until before every call.
type limiter struct {
	now func() time.Time
	// save, if set, persists a new wait (key "bot" or "chat:<id>"), so a
	// restarted bridge keeps honouring it; called outside mu.
	save func(key string, until time.Time)

	// mu guards bot and chats.
	mu    sync.Mutex
	bot   time.Time
	chats map[string]time.Time
}

func newLimiter(now func() time.Time) *limiter {
	if now == nil {
		now = time.Now
	}
	return &limiter{now: now, chats: map[string]time.Time{}}
}

// until returns when a call for chatID may be made; a time not after now
// means at once.
func (l *limiter) until(chatID string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.chats[chatID]
	if l.bot.After(t) {
		t = l.bot
	}
	return t
}

// wait returns how long a call for chatID must still wait (0: at once).
func (l *limiter) wait(chatID string) time.Duration {
	d := l.until(chatID).Sub(l.now())
	return max(d, 0)
}

// note records err if it is a *RateLimited for a call of chatID and
// reports whether it was one.
func (l *limiter) note(chatID string, err error) (*RateLimited, bool) {
	var rl *RateLimited
	if !errors.As(err, &rl) {
		return nil, false
	}
	until := l.now().Add(max(rl.RetryAfter, 0))
	key := "bot"
	if rl.Scope != ScopeBot {
		key = "chat:" + chatID
	}
	if l.hold(key, until) && l.save != nil {
		l.save(key, until)
	}
	return rl, true
}

// hold makes key ("bot" or "chat:<id>") wait until until, unless it
// already waits longer; it reports whether the wait changed.
func (l *limiter) hold(key string, until time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	changed := false
	if key == "bot" {
		if until.After(l.bot) {
			l.bot, changed = until, true
		}
	} else if c, ok := strings.CutPrefix(key, "chat:"); ok && until.After(l.chats[c]) {
		l.chats[c], changed = until, true
	}
	// Forget chats whose wait is over, so the map stays small.
	now := l.now()
	for c, t := range l.chats {
		if !t.After(now) {
			delete(l.chats, c)
		}
	}
	return changed
}
