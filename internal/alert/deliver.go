package alert

import (
	"context"
	"slices"
	"strings"
	"time"
)

// A push that fails is retried, so an alert is not lost to a moment when
// its target cannot take it: at start-up a bridge can fail before the
// bridge whose chat the alert goes to has its identity (its session has no
// device yet), a CLI session may not exist until its client first
// connects, the database may be busy. The messages for a target wait in
// order behind its first failed one; a later message never overtakes an
// earlier one. Alerts live in memory like their incidents: a restart
// re-raises what is still wrong.
const (
	retryFirst = 250 * time.Millisecond
	retryMax   = time.Minute
	// backlogMax bounds the messages kept for one target that keeps
	// failing; the oldest go first.
	backlogMax = 100
	// deliverTimeout bounds one push.
	deliverTimeout = 10 * time.Second
)

// deliverer pushes messages to their targets. It belongs to Run's goroutine.
type deliverer struct {
	a       *Alerter
	backlog map[string]*backlog // by target session id
}

// backlog holds the messages a target has not taken yet.
type backlog struct {
	msgs []message
	wait time.Duration // before the next attempt; doubles up to retryMax
	next time.Time
}

// targets returns the entries of all (alerts.deliver_to) that m goes to.
func targets(all []string, m message) []string {
	var out []string
	for _, sid := range all {
		if p, _, ok := strings.Cut(sid, ":"); ok && m.notVia != "" && p == m.notVia {
			continue
		}
		out = append(out, sid)
	}
	return out
}

func (d *deliverer) deliver(ctx context.Context, m message) {
	all, _ := d.a.settings()
	to := targets(all, m)
	if len(to) == 0 {
		if len(all) == 0 {
			d.a.log.Warn("alert not delivered: alerts.deliver_to is empty", "key", m.key, "text", m.text)
		} else {
			d.a.log.Warn("alert not delivered: no other channel in alerts.deliver_to", "key", m.key, "text", m.text, "not_via", m.notVia)
		}
		return
	}
	for _, sid := range to {
		if b := d.backlog[sid]; b != nil {
			d.queue(sid, b, m)
			continue
		}
		if err := d.push(ctx, sid, m); err != nil {
			d.backlog[sid] = &backlog{msgs: []message{m}, wait: retryFirst, next: time.Now().Add(retryFirst)}
			d.a.log.Warn("alert not delivered yet; retrying", "key", m.key, "to", sid, "err", err, "retry_in", retryFirst)
			continue
		}
		d.a.log.Info("alert delivered", "key", m.key, "text", m.text, "to", sid)
	}
}

func (d *deliverer) queue(sid string, b *backlog, m message) {
	if len(b.msgs) == backlogMax {
		d.a.log.Error("alert dropped: its target has failed too long", "key", b.msgs[0].key, "text", b.msgs[0].text, "to", sid)
		b.msgs = b.msgs[1:]
	}
	b.msgs = append(b.msgs, m)
}

func (d *deliverer) push(ctx context.Context, sid string, m message) error {
	pctx, cancel := context.WithTimeout(ctx, deliverTimeout)
	defer cancel()
	return d.a.push(pctx, sid, m.text, nil)
}

// retryDue retries every backlog that is due, in order, and reports how
// long until the next one is (ok false: none left). A target no longer in
// alerts.deliver_to loses its backlog.
func (d *deliverer) retryDue(ctx context.Context) (wait time.Duration, ok bool) {
	all, _ := d.a.settings()
	var next time.Time
	for sid, b := range d.backlog {
		if !slices.Contains(all, sid) {
			d.a.log.Warn("alerts dropped: their target left alerts.deliver_to", "to", sid, "messages", len(b.msgs))
			delete(d.backlog, sid)
			continue
		}
		if time.Now().Before(b.next) || !d.drain(ctx, sid, b) {
			if next.IsZero() || b.next.Before(next) {
				next = b.next
			}
			continue
		}
		delete(d.backlog, sid)
	}
	if next.IsZero() {
		return 0, false
	}
	return max(time.Until(next), time.Millisecond), true
}

// drain pushes b's messages in order; at the first failure it backs off
// and reports false.
func (d *deliverer) drain(ctx context.Context, sid string, b *backlog) bool {
	for len(b.msgs) > 0 {
		m := b.msgs[0]
		if err := d.push(ctx, sid, m); err != nil {
			b.wait = min(2*b.wait, retryMax)
			b.next = time.Now().Add(b.wait)
			d.a.log.Debug("alert still not delivered", "key", m.key, "to", sid, "err", err, "retry_in", b.wait)
			return false
		}
		d.a.log.Info("alert delivered after retrying", "key", m.key, "text", m.text, "to", sid)
		b.msgs = b.msgs[1:]
	}
	return true
}
