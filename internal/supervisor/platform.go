package supervisor

import (
	"github.com/agentd/agentd/internal/alert"
	"github.com/agentd/agentd/plugins/bridge"
)

// platformState applies a state the platform of launch gen reported (a
// host event, or Health as the backstop; see bridge.StateReporter):
// needs_login and failed become the bridge's state with the reason as its
// last error, and the operator is alerted at once; running brings it back
// to running and ends that alert. The process is not touched: a platform
// that cannot go on by itself waits, idle, for the operator (login,
// restart, enable), instead of being relaunched in a loop.
func (s *Supervisor) platformState(e *entry, gen uint64, ps bridge.PlatformState, reason string) {
	var state State
	switch ps {
	case bridge.PlatformRunning:
		state = StateRunning
	case bridge.PlatformNeedsLogin:
		state = StateNeedsLogin
	case bridge.PlatformFailed:
		state = StateFailed
	default:
		return
	}
	s.mu.Lock()
	current := e.gen == gen && e.loopCtl != nil
	was := e.status.State
	skip := e.pstate == ps && e.preason == reason && was == state
	if current {
		e.pstate, e.preason = ps, reason
	}
	// Until the launch is done, run applies it (launchedState).
	live := current && (was == StateRunning || was == StateNeedsLogin || was == StateFailed)
	cleared := live && ps == bridge.PlatformRunning && e.platformAlert
	if live && ps != bridge.PlatformRunning {
		e.platformAlert = true
	}
	if cleared {
		e.platformAlert = false
	}
	s.mu.Unlock()
	if !live || skip {
		return
	}
	s.log.Info("bridge platform state", "bridge", e.name, "state", ps, "reason", reason)
	s.setState(e, state, func(st *Status) {
		st.fromPlatform = true
		switch {
		case ps != bridge.PlatformRunning:
			st.LastError = reason
		case cleared || was == StateNeedsLogin || was == StateFailed:
			st.LastError = "" // that reason is over; a crash's stays
		}
	})
	if cleared {
		s.platformBack(e)
	}
}

// platformBack ends the alert of a platform state: the platform connected.
func (s *Supervisor) platformBack(e *entry) {
	s.opts.Alerts.Clear(alertKey(e.name), displayName(e.name)+" is connected again (it was down since {since})")
}

// platformReport is a platform state and its reason as Health reports them.
type platformReport struct {
	state  bridge.PlatformState
	reason string
}

// launchedState is the state of a bridge whose launch just succeeded:
// running, unless its platform already reported otherwise; back says that
// it reported running while a platform state's alert was open (the alert
// ends: platformBack). s.mu held.
func launchedState(e *entry) (state State, back bool) {
	switch e.pstate {
	case bridge.PlatformNeedsLogin:
		e.platformAlert = true
		return StateNeedsLogin, false
	case bridge.PlatformFailed:
		e.platformAlert = true
		return StateFailed, false
	case bridge.PlatformRunning:
		back, e.platformAlert = e.platformAlert, false
	}
	return StateRunning, back
}

// platformAlertOpts are the options of a state's alert: at once when the
// platform reported it (waiting heals nothing), else after alerts.after.
func platformAlertOpts(st Status) []alert.Opt {
	opts := []alert.Opt{alert.NotVia(st.SessionPrefix)}
	if st.fromPlatform || st.State == StateNeedsLogin {
		opts = append(opts, alert.Immediately())
	}
	return opts
}
