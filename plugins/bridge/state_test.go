package bridge_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/agentd/agentd/client/clienttest"
	"github.com/agentd/agentd/plugins/bridge"
)

// The host a platform gets reports its states to OnState, or without one
// as the status text and a "state" event; the older logged_out event is a
// needs_login state.
func TestReportState(t *testing.T) {
	for _, c := range []struct {
		name    string
		onState bool
		report  func(h bridge.Host)
		want    []string // what the runner's callbacks heard
	}{
		{"failed to OnState", true, func(h bridge.Host) {
			h.(bridge.StateReporter).ReportState(bridge.PlatformFailed, "close 4004")
		}, []string{"state failed close 4004"}},
		{"without OnState: status and event", false, func(h bridge.Host) {
			h.(bridge.StateReporter).ReportState(bridge.PlatformNeedsLogin, "scan the code")
		}, []string{"status needs_login: scan the code", "event state needs_login: scan the code"}},
		{"logged_out is needs_login", true, func(h bridge.Host) { h.Event("logged_out", "unlinked") },
			[]string{"state needs_login unlinked"}},
		{"running is its reason", true, func(h bridge.Host) {
			h.(bridge.StateReporter).ReportState(bridge.PlatformRunning, "connected")
		}, []string{"state running connected"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			gw := clienttest.New(t)
			p := newRunnerPlatform("st", 0)
			var mu sync.Mutex
			var heard []string
			add := func(s string) { mu.Lock(); heard = append(heard, s); mu.Unlock() }
			cfg := bridge.RunnerConfig{Dialer: gw.Dialer(gw.BridgeIdentity("st")),
				OnStatus: func(text string) { add("status " + text) },
				OnEvent:  func(kind, text string) { add("event " + kind + " " + text) }}
			if c.onState {
				cfg.OnState = func(s bridge.PlatformState, reason string) { add("state " + string(s) + " " + reason) }
			}
			r := bridge.NewRunner(p, cfg)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			defer func() { cancel(); <-done }()
			<-p.ready
			c.report(p.host)
			mu.Lock()
			got := slices.Clone(heard)
			mu.Unlock()
			if !slices.Equal(got, c.want) {
				t.Errorf("heard %q, want %q", got, c.want)
			}
		})
	}
}

func TestStateStatus(t *testing.T) {
	for _, c := range []struct {
		state        bridge.PlatformState
		reason, want string
	}{
		{bridge.PlatformFailed, "close 4014", "failed: close 4014"},
		{bridge.PlatformNeedsLogin, "", "needs_login"},
		{bridge.PlatformRunning, "connected as +1555", "connected as +1555"},
	} {
		if got := bridge.StateStatus(c.state, c.reason); got != c.want {
			t.Errorf("StateStatus(%s, %q) = %q, want %q", c.state, c.reason, got, c.want)
		}
	}
}
