package logfile

import (
	"log/slog"
	"sync"
	"time"
)

// RepeatWindow is how long identical lines are counted instead of written.
const RepeatWindow = 10 * time.Second

// maxKeys bounds the distinct keys tracked, so a flood of distinct reasons
// cannot grow memory; past it the oldest windows are flushed.
const maxKeys = 256

// Repeats writes the first line of each key, then only counts repeats of it
// for RepeatWindow; the next line of that key after the window carries
// repeated=N (how many were suppressed), and Flush writes the counts still
// pending. A refusal flood thus costs one line per reason per window.
type Repeats struct {
	log    *slog.Logger
	window time.Duration
	now    func() time.Time
	// mu guards seen.
	mu   sync.Mutex
	seen map[string]*repeat
}

type repeat struct {
	since      time.Time
	suppressed int
	msg        string
	args       []any
}

// NewRepeats logs through log with the given window (0 means RepeatWindow).
func NewRepeats(log *slog.Logger, window time.Duration) *Repeats {
	if window <= 0 {
		window = RepeatWindow
	}
	return &Repeats{log: log, window: window, now: time.Now, seen: map[string]*repeat{}}
}

// Info logs msg with args unless a line with the same key was logged within
// the window, in which case it is only counted.
func (r *Repeats) Info(key, msg string, args ...any) {
	now := r.now()
	r.mu.Lock()
	rp := r.seen[key]
	if rp != nil && now.Sub(rp.since) < r.window {
		rp.suppressed++
		rp.msg, rp.args = msg, args
		r.mu.Unlock()
		return
	}
	n := 0
	if rp != nil {
		n = rp.suppressed
	}
	if rp == nil && len(r.seen) >= maxKeys {
		r.flushLocked(now, true)
	}
	r.seen[key] = &repeat{since: now}
	r.mu.Unlock()
	if n > 0 {
		args = append(args, "repeated", n)
	}
	r.log.Info(msg, args...)
}

// Flush writes a count line for every key with suppressed lines and forgets
// expired keys. Call it on a ticker and when the owner stops.
func (r *Repeats) Flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushLocked(r.now(), true)
}

func (r *Repeats) flushLocked(now time.Time, all bool) {
	for k, rp := range r.seen {
		if !all && now.Sub(rp.since) < r.window {
			continue
		}
		if rp.suppressed > 0 {
			r.log.Info(rp.msg, append(append([]any{}, rp.args...), "repeated", rp.suppressed)...)
		}
		delete(r.seen, k)
	}
}

// Tick writes the counts of windows that have ended; a caller runs it every
// window so a flood that stops still gets its count written.
func (r *Repeats) Tick() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushLocked(r.now(), false)
}
