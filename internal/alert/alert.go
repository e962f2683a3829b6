// Package alert tells a person when something in agentd needs them: a
// bridge down for longer than alerts.after, logged out, crash-looping or
// refused by its platform, and whatever else other components report the
// same way (MCP servers, budgets, the iroh sidecar, pairing, the
// scheduler).
//
// A problem is an incident with a key ("bridge:telegram"). Raise opens it
// (or updates its text); if it is still open after alerts.after (at once
// with Immediately) ONE message goes to every session of
// alerts.deliver_to, pushed like a reply (session.Manager.Push); Clear
// closes it, and only if that message went out, ONE "back up" message
// follows. Raising an open incident again, as a retry loop does, sends
// nothing. An incident that is cleared and raised again within
// alerts.after (a bridge that starts, then crashes again) is the same
// incident: flapping never turns into a message per retry.
package alert

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/wire"
)

// PushFunc delivers text into a session (session.Manager.Push).
type PushFunc func(ctx context.Context, sessionID, text string, atts []wire.Attachment) error

// Options configure an Alerter.
type Options struct {
	// Push delivers the messages. Required.
	Push PushFunc
	// Config supplies alerts.deliver_to and alerts.after, read whenever
	// they are needed (so a hot reload applies to the next alert).
	Config *config.Watcher
	Log    *slog.Logger
}

// Opt modifies one Raise.
type Opt func(*incident)

// Immediately sends the alert without waiting for alerts.after: for
// conditions that do not heal by waiting (logged out, a token refused).
func Immediately() Opt { return func(i *incident) { i.now = true } }

// NotVia skips the deliver_to sessions of prefix ("tg"): an alert about a
// bridge goes through the other channels, and its "back up" message too.
func NotVia(prefix string) Opt { return func(i *incident) { i.notVia = prefix } }

// Alerter is the alert service. The zero value is not usable; a nil
// *Alerter is (every method does nothing), so components can take one
// optionally.
type Alerter struct {
	push PushFunc
	cfg  *config.Watcher
	log  *slog.Logger

	// mu guards open, queue and closed.
	mu     sync.Mutex
	open   map[string]*incident
	queue  []message
	closed bool
	wake   chan struct{}
}

// incident is one open problem.
type incident struct {
	key, text string
	since     time.Time
	now       bool
	notVia    string
	sent      bool        // the alert message went out
	due       *time.Timer // alerts.after from since; nil once fired
	clearing  *time.Timer // set while cleared but within the quiet period
	backUp    string      // text of the pending "back up" message
}

// message is one text to push to every target but notVia's.
type message struct {
	key, text, notVia string
}

// New returns an Alerter; call Run to deliver.
func New(opts Options) *Alerter {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	return &Alerter{push: opts.Push, cfg: opts.Config, log: opts.Log, open: map[string]*incident{}, wake: make(chan struct{}, 1)}
}

func (a *Alerter) settings() ([]string, time.Duration) {
	if a.cfg == nil {
		return nil, config.DefaultAlertsAfter
	}
	c := a.cfg.Current().Alerts
	return c.DeliverTo, c.After.D()
}

// Raise reports that the problem key exists, described by text (e.g.
// "Discord is down since {since}: invalid token"; {since} becomes the
// incident's start, "14:02", which stays that of the first Raise while the
// problem flaps). It never blocks.
func (a *Alerter) Raise(key, text string, opts ...Opt) {
	if a == nil {
		return
	}
	_, after := a.settings()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	in := a.open[key]
	if in == nil {
		in = &incident{key: key, since: time.Now()}
		a.open[key] = in
		a.log.Warn("alert raised", "key", key, "text", text, "report_after", after)
	}
	in.text = text
	in.now = false
	for _, o := range opts {
		o(in)
	}
	if in.clearing != nil { // back before the quiet period ended: same incident
		in.clearing.Stop()
		in.clearing, in.backUp = nil, ""
	}
	switch {
	case in.sent:
		return
	case in.now || after <= 0 || time.Since(in.since) >= after:
		a.sendLocked(in)
	case in.due == nil:
		in.due = time.AfterFunc(after-time.Since(in.since), func() { a.fire(in) })
	}
}

// Clear reports that the problem key is gone; text is the "back up"
// message (e.g. "Discord is back up"), sent only if the alert was. It
// takes effect after the quiet period (alerts.after) unless key is raised
// again meanwhile. It never blocks.
func (a *Alerter) Clear(key, text string) {
	if a == nil {
		return
	}
	_, after := a.settings()
	a.mu.Lock()
	defer a.mu.Unlock()
	in := a.open[key]
	if in == nil || a.closed {
		return
	}
	in.backUp = text
	if in.clearing != nil {
		return
	}
	if after <= 0 {
		a.endLocked(in)
		return
	}
	in.clearing = time.AfterFunc(after, func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.open[in.key] == in && in.clearing != nil {
			a.endLocked(in)
		}
	})
}

// Open reports the keys of the open incidents (tests, status pages).
func (a *Alerter) Open() []string {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for k, in := range a.open {
		if in.clearing == nil {
			out = append(out, k)
		}
	}
	return out
}

// fire is the due timer: the problem lasted alerts.after.
func (a *Alerter) fire(in *incident) {
	a.mu.Lock()
	defer a.mu.Unlock()
	// Cleared and within its quiet period: it is up now, say nothing
	// unless it comes down again (Raise sends then, the delay being over).
	if a.open[in.key] != in || in.sent || in.clearing != nil || a.closed {
		return
	}
	a.sendLocked(in)
}

func (a *Alerter) sendLocked(in *incident) {
	in.sent = true
	if in.due != nil {
		in.due.Stop()
	}
	a.enqueueLocked(message{key: in.key, text: in.expand(in.text), notVia: in.notVia})
}

// expand replaces {since} in text.
func (in *incident) expand(text string) string {
	return strings.ReplaceAll(text, "{since}", in.since.Format("15:04"))
}

func (a *Alerter) endLocked(in *incident) {
	delete(a.open, in.key)
	if in.due != nil {
		in.due.Stop()
	}
	if in.clearing != nil {
		in.clearing.Stop()
	}
	a.log.Info("alert cleared", "key", in.key, "reported", in.sent, "lasted", time.Since(in.since).Round(time.Second))
	if in.sent && in.backUp != "" {
		a.enqueueLocked(message{key: in.key, text: in.expand(in.backUp), notVia: in.notVia})
	}
}

func (a *Alerter) enqueueLocked(m message) {
	a.queue = append(a.queue, m)
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// Run delivers the messages, in order, until ctx ends; then every timer
// stops and later calls do nothing.
func (a *Alerter) Run(ctx context.Context) {
	if a == nil {
		return
	}
	defer a.close()
	d := &deliverer{a: a, backlog: map[string]*backlog{}}
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.wake:
		case <-retry.C:
		}
		a.mu.Lock()
		q := a.queue
		a.queue = nil
		a.mu.Unlock()
		for _, m := range q {
			d.deliver(ctx, m)
		}
		if wait, ok := d.retryDue(ctx); ok {
			retry.Reset(wait)
		}
	}
}

func (a *Alerter) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	for _, in := range a.open {
		if in.due != nil {
			in.due.Stop()
		}
		if in.clearing != nil {
			in.clearing.Stop()
		}
	}
}
