package supervisor

import (
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/agentd/agentd/internal/alert"
)

// report turns a bridge's state into operator alerts: down (backoff) or
// failed for longer than alerts.after, crash-looping at once; back up when
// it has run again for a while (backUp). The alerter keeps it to one message per incident however
// often the supervisor retries, and sends it through the other bridges.
func (s *Supervisor) report(name string, st Status) {
	a := s.opts.Alerts
	if a == nil {
		return
	}
	key, title := alertKey(name), displayName(name)
	via := alert.NotVia(st.SessionPrefix)
	switch st.State {
	case StateStopped:
		// Stopped on purpose (disabled, removed, agentd stopping): no
		// longer a problem to report. Restarted with a platform state's
		// alert open, it is still one until the platform connects.
		if !st.restarting {
			a.Clear(key, title+" was stopped (it had been down since {since})")
		}
	case StateBackoff:
		a.Raise(key, title+" is down since {since}: "+st.LastError, via)
	case StateCrashloop:
		a.Raise(key, title+" is crash-looping since {since}: "+st.LastError, via, alert.Immediately())
	case StateFailed:
		a.Raise(key, title+" has failed since {since}: "+st.LastError, platformAlertOpts(st)...)
	case StateNeedsLogin:
		a.Raise(key, title+" needs a login since {since}: "+st.LastError, platformAlertOpts(st)...)
	}
}

// backUp clears e's alert: it has run long enough (see run).
func (s *Supervisor) backUp(e *entry) {
	s.mu.Lock()
	waiting := e.platformAlert // its platform has not said it is back
	s.mu.Unlock()
	if waiting {
		return
	}
	s.opts.Alerts.Clear(alertKey(e.name), displayName(e.name)+" is back up (it was down since {since})")
}

// reportEvent raises the alerts a bridge reports (the Message Content
// intent off, a pair-code login that failed). They do not heal by waiting,
// so they go out at once; the bridge running again clears them. States
// (logged out, a token refused) come as platform states instead.
func (s *Supervisor) reportEvent(name, prefix, kind, text string) {
	if kind == "alert" {
		s.opts.Alerts.Raise(alertKey(name), displayName(name)+" needs attention since {since}: "+text, alert.NotVia(prefix), alert.Immediately())
	}
}

func alertKey(name string) string { return "bridge:" + name }

// brandNames are the bridges whose name is not spelt by capitalising it.
var brandNames = map[string]string{"whatsapp": "WhatsApp"}

// displayName is "Telegram" for "telegram", "WhatsApp" for "whatsapp".
func displayName(name string) string {
	if d, ok := brandNames[name]; ok {
		return d
	}
	r, n := utf8.DecodeRuneInString(name)
	if n == 0 {
		return name
	}
	return string(unicode.ToUpper(r)) + strings.TrimPrefix(name, name[:n])
}

// certRetryWindow: a bridge refused again this soon after it got a fresh
// certificate is not given another one (something else is wrong, and a
// relaunch loop would hide it); it fails instead.
const certRetryWindow = time.Minute

// certRefused handles a bridge reporting that the gateway refuses its
// certificate (revoked, or expired): if the bridge is still enabled it is
// restarted, and its launch gets a fresh identity from the Issuer (a new
// key for a revoked one). A second refusal within certRetryWindow marks
// it failed: certificate revoked. Either way the operator is told.
func (s *Supervisor) certRefused(e *entry, why string) {
	e.op.Lock()
	defer e.op.Unlock()
	s.mu.Lock()
	enabled, running := e.cfg.Enabled && !s.closed, e.loopCtl != nil
	again := !e.certRenewed.IsZero() && time.Since(e.certRenewed) < certRetryWindow
	prefix := e.status.SessionPrefix
	s.mu.Unlock()
	if !enabled || !running {
		return
	}
	if again {
		s.stopLoop(e)
		msg := "certificate revoked: the gateway refused the fresh certificate too (" + why + ")"
		s.log.Error("bridge certificate refused again; giving up", "bridge", e.name, "err", why)
		s.setState(e, StateFailed, func(st *Status) { st.LastError = msg })
		s.addEvent(e, "alert", "failed: "+msg)
		s.opts.Alerts.Raise(alertKey(e.name), displayName(e.name)+" has failed since {since}: "+msg, alert.NotVia(prefix), alert.Immediately())
		return
	}
	s.mu.Lock()
	e.certRenewed = time.Now()
	s.mu.Unlock()
	s.log.Warn("the gateway refuses the bridge's certificate; issuing a fresh one and restarting the bridge", "bridge", e.name, "err", why)
	s.addEvent(e, "status", "certificate refused by the gateway (revoked?): issued a fresh one and restarted the bridge")
	s.stopLoop(e)
	s.startLoop(e)
	s.notify(e.name, ActionRestarted)
}

// addEvent records an operator event of the supervisor's own in e's status.
func (s *Supervisor) addEvent(e *entry, kind, text string) {
	s.mu.Lock()
	st := &e.status
	st.Events = append(st.Events, Event{Time: time.Now(), Kind: kind, Text: text})
	if n := len(st.Events); n > maxEvents {
		st.Events = append(st.Events[:0:0], st.Events[n-maxEvents:]...)
	}
	s.mu.Unlock()
	s.notify(e.name, ActionEvent)
}
