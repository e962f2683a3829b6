package bridge

import bridgev1 "github.com/agentd/agentd/proto/bridge/v1"

// PlatformState is what a platform says of its connection when it matters
// to the operator (mautrix bridgev2's BridgeState, reduced to what agentd
// acts on). agentd shows it as the bridge's state in GET /api/bridges,
// `agentd bridge list` and `agentd status`: a platform that cannot go on
// by itself is needs_login or failed there, with the reason, while its
// process keeps running (no restart loop), and the operator is alerted at
// once.
type PlatformState string

// Platform states.
const (
	// PlatformRunning: working (connected, or reconnecting by itself). It
	// clears a needs_login or failed state and its alert.
	PlatformRunning PlatformState = "running"
	// PlatformNeedsLogin: the account must be linked again (WhatsApp
	// unlinked, a login round waiting for its QR code to be scanned);
	// `agentd bridge login DIR NAME` starts a round.
	PlatformNeedsLogin PlatformState = "needs_login"
	// PlatformFailed: the platform refused the bridge for good (a bad
	// token, a privileged intent not enabled, another process took the
	// session); the operator fixes it and restarts the bridge.
	PlatformFailed PlatformState = "failed"
)

// StateReporter is implemented by the Host the SDK passes to Platform.Run.
// ReportState is the one way a platform reports its state: it sets the
// platform status (StateStatus) and tells agentd, which shows the state
// and raises or clears the operator alert. A platform that reports needs
// a login or failed keeps Run going (idle, not reconnecting) until agentd
// stops it; returning an error from Run instead would make agentd
// relaunch the process, again and again.
type StateReporter interface {
	ReportState(state PlatformState, reason string)
}

// StateStatus is the platform status text of a state: "failed: <reason>",
// "needs_login: <reason>" ("needs_login" without one), and for running the
// reason itself ("connected").
func StateStatus(state PlatformState, reason string) string {
	switch {
	case state == PlatformRunning:
		return reason
	case reason == "":
		return string(state)
	}
	return string(state) + ": " + reason
}

// ReportState implements StateReporter.
func (h *host) ReportState(state PlatformState, reason string) {
	h.log.Info("bridge state", "state", state, "reason", reason)
	if h.onState != nil {
		h.onState(state, reason)
		return
	}
	text := StateStatus(state, reason)
	if h.onStatus != nil {
		h.onStatus(text)
	}
	if h.onEvent != nil {
		h.onEvent("state", text)
	}
}

// stateWire maps a PlatformState to the control plane's enum.
func stateWire(s PlatformState) bridgev1.PlatformState {
	switch s {
	case PlatformRunning:
		return bridgev1.PlatformState_PLATFORM_STATE_RUNNING
	case PlatformNeedsLogin:
		return bridgev1.PlatformState_PLATFORM_STATE_NEEDS_LOGIN
	case PlatformFailed:
		return bridgev1.PlatformState_PLATFORM_STATE_FAILED
	}
	return bridgev1.PlatformState_PLATFORM_STATE_UNSPECIFIED
}

// StateName is the PlatformState of the control plane's enum; "" for
// UNSPECIFIED (none reported).
func StateName(s bridgev1.PlatformState) PlatformState {
	switch s {
	case bridgev1.PlatformState_PLATFORM_STATE_RUNNING:
		return PlatformRunning
	case bridgev1.PlatformState_PLATFORM_STATE_NEEDS_LOGIN:
		return PlatformNeedsLogin
	case bridgev1.PlatformState_PLATFORM_STATE_FAILED:
		return PlatformFailed
	}
	return ""
}
