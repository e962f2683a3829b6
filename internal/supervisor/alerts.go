package supervisor

import (
	"strings"
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
		// longer a problem to report.
		a.Clear(key, title+" was stopped (it had been down since {since})")
	case StateBackoff:
		a.Raise(key, title+" is down since {since}: "+st.LastError, via)
	case StateCrashloop:
		a.Raise(key, title+" is crash-looping since {since}: "+st.LastError, via, alert.Immediately())
	case StateFailed:
		a.Raise(key, title+" has failed since {since}: "+st.LastError, via)
	}
}

// backUp clears e's alert: it has run long enough (see run).
func (s *Supervisor) backUp(e *entry) {
	s.opts.Alerts.Clear(alertKey(e.name), displayName(e.name)+" is back up (it was down since {since})")
}

// reportEvent raises the platform problems a bridge reports: logged out,
// or an alert (a token the platform refused, 401/4004). They do not heal by
// waiting, so they go out at once; the bridge running again clears them.
func (s *Supervisor) reportEvent(name, prefix, kind, text string) {
	a := s.opts.Alerts
	if a == nil {
		return
	}
	title := displayName(name)
	switch kind {
	case "logged_out":
		a.Raise(alertKey(name), title+" is logged out since {since}: "+text, alert.NotVia(prefix), alert.Immediately())
	case "alert":
		a.Raise(alertKey(name), title+" needs attention since {since}: "+text, alert.NotVia(prefix), alert.Immediately())
	}
}

func alertKey(name string) string { return "bridge:" + name }

// displayName is "Telegram" for "telegram".
func displayName(name string) string {
	r, n := utf8.DecodeRuneInString(name)
	if n == 0 {
		return name
	}
	return string(unicode.ToUpper(r)) + strings.TrimPrefix(name, name[:n])
}
