package bridge

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Direct-chat policies (RunnerConfig.DMPolicy): what a user who is not in
// the allowed users gets when they write to the bot directly.
const (
	DMPairing   = "pairing"   // a pairing code the owner approves in agentd (default)
	DMAllowlist = "allowlist" // a refusal (once per hour)
	DMOpen      = "open"      // everybody (requires AllowEveryone in the allowed users)
	DMDisabled  = "disabled"  // no direct chats at all, not even for allowed users
)

// Group policies (RunnerConfig.GroupPolicy). In any group only allowed
// users are answered, and only when they address the bot.
const (
	GroupOpen      = "open"      // any group (default)
	GroupAllowlist = "allowlist" // only the groups in AllowedGroups
)

// Texts of the pairing flow, shown to the user in the chat.
const (
	PairingCodeText = "To talk to this agent, ask its owner to approve code `%s`"
	PairingFullText = "Too many people are waiting for the owner's approval right now. Please try later."
	PairingDenied   = "Sorry, the owner did not approve your request to talk to this agent."
	PairingDownText = "Sorry, your request could not reach the agent's owner right now. Please try later."
	PairingWelcome  = "You're in."
	DMDisabledText  = "Sorry, this agent does not take direct messages."
)

// PairingOutcome is agentd's answer to a pairing request.
type PairingOutcome int

// Outcomes.
const (
	PairingPending PairingOutcome = iota + 1 // Code is pending: show it
	PairingFull                              // the bridge's cap of pending requests is reached
	PairingRefused                           // the owner denied this user; it stands until it expires
	PairingAllowed                           // the user was approved meanwhile: deliver
)

// PairingAnswer is what RunnerConfig.Pair returns.
type PairingAnswer struct {
	Outcome PairingOutcome
	Code    string
}

// pairingReplies is how many pairing answers one user gets per
// refusalEvery: the first message and two repeats see the code, then the
// bridge is silent, so a stranger cannot make the bot flood its own chat.
const pairingReplies = 3

// allowSet is an immutable set of allowed users, replaced as a whole when
// agentd pushes a new list.
type allowSet struct {
	all   bool
	users map[string]bool
}

func newAllowSet(users []string, norm UserIDNormalizer) *allowSet {
	s := &allowSet{users: map[string]bool{}}
	for _, u := range users {
		u = strings.TrimSpace(u)
		if norm != nil && u != AllowEveryone && u != "" {
			u = norm.NormalizeUserID(u)
		}
		if u == AllowEveryone {
			s.all = true
		} else if u != "" {
			s.users[u] = true
		}
	}
	return s
}

func (s *allowSet) has(userID string) bool { return s.all || s.users[userID] }

// SetAllowedUsers replaces the allowed users at once (an owner approved or
// revoked a user in agentd); messages delivered from now on are checked
// against the new list.
func (r *Runner) SetAllowedUsers(users []string) {
	r.allow.Store(newAllowSet(users, r.norm))
	r.log.Info("allowed users updated", "count", len(users))
}

// Notify queues a notice to a chat, in order with its replies.
func (r *Runner) Notify(chatID, text string) {
	r.post(chatID, event{kind: evNotice, text: text})
}

func (r *Runner) isAllowed(userID string) bool { return r.allow.Load().has(userID) }

func (r *Runner) groupAllowed(chatID string) bool {
	return r.groupPolicy != GroupAllowlist || r.groups[chatID]
}

// admit applies the chat policies to m; false: m was handled (refused,
// answered with a pairing code, or ignored) and is not for the agent.
func (r *Runner) admit(ctx context.Context, m Incoming) bool {
	if m.Group {
		if !r.groupAllowed(m.ChatID) {
			// Never a pairing request, never an answer: the bot may have
			// been added to a group by anybody.
			r.log.Debug("message in a group that is not allowed ignored", "chat_id", m.ChatID)
			return false
		}
		if !r.isAllowed(m.UserID) {
			r.refuse(ctx, m, fmt.Sprintf(Refusal, m.UserID))
			return false
		}
		return true
	}
	switch {
	case r.dmPolicy == DMDisabled:
		r.refuse(ctx, m, DMDisabledText)
		return false
	case r.isAllowed(m.UserID):
		return true
	case r.dmPolicy == DMPairing && r.pair != nil:
		return r.pairing(ctx, m)
	default:
		r.refuse(ctx, m, fmt.Sprintf(Refusal, m.UserID))
		return false
	}
}

// pairing asks agentd for this stranger's code and tells them; agentd
// alone decides (the bridge holds no codes), so an approval elsewhere is
// seen at the next message.
func (r *Runner) pairing(ctx context.Context, m Incoming) bool {
	ans, err := r.pair(ctx, m)
	if err != nil {
		r.log.Warn("pairing request failed", "user_id", m.UserID, "err", err)
		r.tellStranger(m, PairingDownText)
		return false
	}
	switch ans.Outcome {
	case PairingAllowed:
		return true
	case PairingPending:
		r.tellStranger(m, fmt.Sprintf(PairingCodeText, ans.Code))
	case PairingFull:
		r.tellStranger(m, PairingFullText)
	default:
		r.tellStranger(m, PairingDenied)
	}
	return false
}

// tellStranger answers a stranger at most pairingReplies times per
// refusalEvery.
func (r *Runner) tellStranger(m Incoming, text string) {
	if !r.pairTold.due(m.UserID, time.Now()) {
		r.log.Debug("pairing answer not repeated (told enough)", "user_id", m.UserID)
		return
	}
	r.post(m.ChatID, event{kind: evNotice, text: text})
}

// counter allows n events per key per refusalEvery.
type counter struct {
	n int
	// mu guards seen.
	mu   sync.Mutex
	seen map[string][]time.Time
}

func (c *counter) due(key string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil || len(c.seen) >= maxStrangers {
		c.seen = map[string][]time.Time{}
	}
	ts := c.seen[key][:0:0]
	for _, t := range c.seen[key] {
		if now.Sub(t) < refusalEvery {
			ts = append(ts, t)
		}
	}
	if len(ts) >= c.n {
		c.seen[key] = ts
		return false
	}
	c.seen[key] = append(ts, now)
	return true
}
