package telegramtest

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Flood control, as the Bot API does it: a call over a limit is refused
// with 429 "Too Many Requests: retry after N" and parameters.retry_after
// N; the caller must not call again (in the refused scope) for N seconds.
// The fake also keeps the books: every call made while its scope is still
// refused is a violation (and refused again), the first call after the
// wait is an honoured refusal.

// Rule is one flood-control rule. A rule counts the calls of Methods
// (empty: every method but getUpdates), per chat (PerChat: by chat_id;
// calls without one are not counted) or for the whole bot.
type Rule struct {
	Methods []string
	PerChat bool
	// Limit calls per Window are accepted; the next is refused until the
	// oldest leaves the window (retry_after rounded up to whole seconds),
	// or for RetryAfter seconds if set. Limit 0 means no rate limit.
	Limit  int
	Window time.Duration
	// Refuse refuses the next Refuse counted calls outright (a flood
	// already going on), each with RetryAfter.
	Refuse     int
	RetryAfter int
}

// FloodStats is the fake's bookkeeping of its rules.
type FloodStats struct {
	Refused    int // 429s answered (violations included)
	Honoured   int // first calls after a refusal's wait was over
	Violations int // calls made while their scope was still refused
}

func (s FloodStats) String() string {
	return fmt.Sprintf("%d refused, %d honoured, %d violations", s.Refused, s.Honoured, s.Violations)
}

// rule is a Rule and its state; under Server.mu.
type rule struct {
	Rule
	calls   map[int64][]time.Time // scope → accepted calls within Window
	refused map[int64]time.Time   // scope → refused until
}

// AddRule adds a flood-control rule.
func (s *Server) AddRule(r Rule) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rules = append(s.rules, &rule{Rule: r, calls: map[int64][]time.Time{}, refused: map[int64]time.Time{}})
}

// ClearRules removes every rule (the books are kept).
func (s *Server) ClearRules() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rules = nil
}

// SetRetryUnit sets what one second of retry_after lasts on the fake's
// clock (default 1s), so a test can send retry_after 65 without waiting
// 65 s; the bridge must be told the same (setting retry_after_unit).
func (s *Server) SetRetryUnit(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retryUnit = d
}

// Flood returns the bookkeeping so far.
func (s *Server) Flood() FloodStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flood
}

// checkRules applies the rules to a call of method for chatID (0: no
// chat) at now; it returns retry_after > 0 for a refusal. Called with mu
// held.
func (s *Server) checkRules(method string, chatID int64, now time.Time) int {
	refuse := 0
	for _, r := range s.rules {
		if !r.counts(method, chatID) {
			continue
		}
		key := int64(0)
		if r.PerChat {
			key = chatID
		}
		if until, ok := r.refused[key]; ok {
			if now.Before(until) {
				s.flood.Violations++
				refuse = max(refuse, s.retryAfter(until.Sub(now)))
				continue
			}
			delete(r.refused, key)
			s.flood.Honoured++
		}
		if wait := r.admit(key, now, s.unit()); wait > 0 {
			ra := s.retryAfter(wait)
			r.refused[key] = now.Add(time.Duration(ra) * s.unit())
			refuse = max(refuse, ra)
		}
	}
	if refuse > 0 {
		s.flood.Refused++
	}
	return refuse
}

func (r *rule) counts(method string, chatID int64) bool {
	if len(r.Methods) == 0 {
		return method != "getUpdates"
	}
	return slices.Contains(r.Methods, method) && (!r.PerChat || chatID != 0)
}

// admit counts an accepted call, or returns how long a refused caller
// must wait.
func (r *rule) admit(key int64, now time.Time, unit time.Duration) time.Duration {
	fixed := time.Duration(max(r.RetryAfter, 1)) * unit
	if r.Refuse > 0 {
		r.Refuse--
		return fixed
	}
	if r.Limit <= 0 {
		return 0
	}
	calls := slices.DeleteFunc(r.calls[key], func(t time.Time) bool { return now.Sub(t) >= r.Window })
	if len(calls) >= r.Limit {
		r.calls[key] = calls
		if r.RetryAfter > 0 {
			return fixed
		}
		return r.Window - now.Sub(calls[0])
	}
	r.calls[key] = append(calls, now)
	return 0
}

func (s *Server) unit() time.Duration {
	if s.retryUnit > 0 {
		return s.retryUnit
	}
	return time.Second
}

// retryAfter expresses d in retry_after units, rounded up.
func (s *Server) retryAfter(d time.Duration) int {
	return max(int(math.Ceil(float64(d)/float64(s.unit()))), 1)
}
