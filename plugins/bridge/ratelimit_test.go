package bridge

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestLimiterScopes(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLimiter(func() time.Time { return now })
	if d := l.wait("a"); d != 0 {
		t.Fatalf("fresh limiter waits %v", d)
	}
	if _, ok := l.note("a", errors.New("boom")); ok {
		t.Fatal("a plain error counted as a rate limit")
	}
	// A per-chat refusal holds only that chat, wrapped or not.
	err := fmt.Errorf("send: %w", &RateLimited{RetryAfter: 65 * time.Second, Scope: ScopeChat})
	if rl, ok := l.note("a", err); !ok || rl.RetryAfter != 65*time.Second {
		t.Fatalf("note = %v, %v", rl, ok)
	}
	for _, tc := range []struct {
		chat string
		want time.Duration
	}{{"a", 65 * time.Second}, {"b", 0}} {
		if d := l.wait(tc.chat); d != tc.want {
			t.Errorf("chat %s waits %v, want %v", tc.chat, d, tc.want)
		}
	}
	// A global refusal holds every chat; a shorter one later does not
	// shorten a longer wait.
	l.note("b", &RateLimited{RetryAfter: 10 * time.Second, Scope: ScopeBot})
	l.note("b", &RateLimited{RetryAfter: 2 * time.Second, Scope: ScopeBot})
	for _, tc := range []struct {
		chat string
		want time.Duration
	}{{"a", 65 * time.Second}, {"b", 10 * time.Second}, {"c", 10 * time.Second}} {
		if d := l.wait(tc.chat); d != tc.want {
			t.Errorf("chat %s waits %v, want %v", tc.chat, d, tc.want)
		}
	}
	now = now.Add(64 * time.Second)
	if d := l.wait("a"); d != time.Second {
		t.Errorf("after 64 s chat a waits %v, want 1s", d)
	}
	now = now.Add(time.Second)
	if d := l.wait("a"); d != 0 {
		t.Errorf("after 65 s chat a waits %v, want 0", d)
	}
}
