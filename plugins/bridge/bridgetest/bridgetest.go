// Package bridgetest holds what the tests of every bridge platform share:
// running a platform under a real bridge.Runner for one test, a logger that
// writes to the test's log, and waiting for a chat to show a list of texts.
// The platform fakes (telegramtest, discordtest, whatsapptest) and the
// gateway fake (client/clienttest) are the peers; this is only the harness.
package bridgetest

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentd/agentd/plugins/bridge"
)

// StopWait bounds how long a runner may take to stop at the end of a test.
const StopWait = 10 * time.Second

// Log is a logger writing every record, debug and up, to t's log.
func Log(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Logged is a logger like Log that also keeps the messages it logged, so
// that a test can wait for the bridge to have reached a point it logs.
type Logged struct {
	*slog.Logger
	// mu guards seen.
	mu   sync.Mutex
	seen map[string]bool
}

// LogWatched returns a Logged writing to t's log.
func LogWatched(t testing.TB) *Logged {
	l := &Logged{seen: map[string]bool{}}
	l.Logger = slog.New(watchHandler{Log(t).Handler(), l})
	return l
}

// Wait waits up to d for a record with message msg.
func (l *Logged) Wait(t testing.TB, d time.Duration, msg string) {
	t.Helper()
	for deadline := time.Now().Add(d); ; time.Sleep(time.Millisecond) {
		l.mu.Lock()
		ok := l.seen[msg]
		l.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q logged in %v", msg, d)
		}
	}
}

type watchHandler struct {
	slog.Handler
	l *Logged
}

func (h watchHandler) Handle(ctx context.Context, r slog.Record) error {
	h.l.mu.Lock()
	h.l.seen[r.Message] = true
	h.l.mu.Unlock()
	return h.Handler.Handle(ctx, r)
}

func (h watchHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return watchHandler{h.Handler.WithAttrs(as), h.l}
}

func (h watchHandler) WithGroup(name string) slog.Handler {
	return watchHandler{h.Handler.WithGroup(name), h.l}
}

type logWriter struct{ t testing.TB }

func (w logWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// Start runs r until the test ends, or until the returned stop is called
// (it may be called again, and from the cleanup too). Stopping fails the
// test if Run returned an error or did not return within StopWait.
func Start(t testing.TB, r *bridge.Runner) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(StopWait):
				t.Errorf("the runner did not stop within %s", StopWait)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// WaitTexts polls get until the texts of what it returns (text of each)
// are exactly want, in order, and returns them; after timeout it fails the
// test with what it saw.
func WaitTexts[M any](t testing.TB, timeout time.Duration, chat string, get func() []M, text func(M) string, want ...string) []M {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := get()
		texts := make([]string, len(got))
		for i, m := range got {
			texts[i] = text(m)
		}
		if slices.Equal(texts, want) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s shows %s after %v, want %s", chat, quote(texts), timeout, quote(want))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func quote(ss []string) string { return fmt.Sprintf("%q", ss) }
