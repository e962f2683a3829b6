package auth

import (
	"log/slog"
	"sync"
)

// connCap bounds the streams open at once on every listener of one
// Authenticator, pre-auth and authenticated together, so that no flood can
// take the process to its file descriptor limit. Reaching it is logged once,
// and once more when there is room again, never per refused stream.
type connCap struct {
	log *slog.Logger

	// mu guards the fields below.
	mu      sync.Mutex
	max, n  int
	full    bool
	refused int // streams refused since the cap was reached
}

// SetConnLimit caps the streams open at once on all listeners using a
// (0: no cap). Streams over the cap are closed at once, before the nonce.
func (a *Authenticator) SetConnLimit(max int, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	a.cap.mu.Lock()
	a.cap.max, a.cap.log = max, log
	a.cap.mu.Unlock()
}

// acquire takes a slot for a new stream; false means refuse it.
func (cc *connCap) acquire() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.max > 0 && cc.n >= cc.max {
		if !cc.full {
			cc.full = true
			cc.log.Warn("connection limit reached: closing new streams until some end (limits.max_connections)",
				"open", cc.n, "limit", cc.max)
		}
		cc.refused++
		return false
	}
	cc.n++
	return true
}

// release frees a slot. Once below 90 % of the cap after it was reached,
// it says how many streams were closed meanwhile.
func (cc *connCap) release() {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.n--
	if cc.full && cc.n < cc.max*9/10 {
		cc.log.Info("below the connection limit again; accepting streams", "open", cc.n, "limit", cc.max, "refused", cc.refused)
		cc.full, cc.refused = false, 0
	}
}

// open returns how many streams hold a slot.
func (cc *connCap) open() int {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.n
}
