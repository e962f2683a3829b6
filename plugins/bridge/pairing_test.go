package bridge_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/agentd/agentd/client/clienttest"
	"github.com/agentd/agentd/plugins/bridge"
	"github.com/agentd/agentd/plugins/bridge/bridgetest"
)

// startPolicyRunner runs a runner whose Pair answers ans (counting calls).
func startPolicyRunner(t *testing.T, cfg bridge.RunnerConfig, ans bridge.PairingAnswer) (*runnerPlatform, *atomic.Int32) {
	t.Helper()
	gw := clienttest.New(t)
	p := newRunnerPlatform("pl", 0)
	calls := &atomic.Int32{}
	cfg.Dialer = gw.Dialer(gw.BridgeIdentity("pl"))
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Pair = func(context.Context, bridge.Incoming) (bridge.PairingAnswer, error) {
		calls.Add(1)
		return ans, nil
	}
	r := bridge.NewRunner(p, cfg)
	bridgetest.Start(t, r)
	<-p.ready
	return p, calls
}

// TestRunnerChatPolicies: what a message gets under each policy. A marker
// notice queued after the message shows that nothing else was sent before
// it (a chat's notices go out in order).
func TestRunnerChatPolicies(t *testing.T) {
	code := bridge.PairingAnswer{Outcome: bridge.PairingPending, Code: "K7QF-2M9D"}
	tests := []struct {
		name  string
		cfg   bridge.RunnerConfig
		ans   bridge.PairingAnswer
		in    bridge.Incoming
		times int
		want  []string // texts in the chat, before the marker
		pairs int32    // Pair calls
	}{
		{"stranger in a direct chat gets the code, at most 3 times", bridge.RunnerConfig{AllowedUsers: []string{"u1"}}, code,
			bridge.Incoming{ChatID: "c", UserID: "s"}, 5,
			[]string{"To talk to this agent, ask its owner to approve code `K7QF-2M9D`", "To talk to this agent, ask its owner to approve code `K7QF-2M9D`", "To talk to this agent, ask its owner to approve code `K7QF-2M9D`"}, 5},
		{"cap reached: try later", bridge.RunnerConfig{}, bridge.PairingAnswer{Outcome: bridge.PairingFull},
			bridge.Incoming{ChatID: "c", UserID: "s"}, 1, []string{bridge.PairingFullText}, 1},
		{"denied", bridge.RunnerConfig{}, bridge.PairingAnswer{Outcome: bridge.PairingRefused},
			bridge.Incoming{ChatID: "c", UserID: "s"}, 1, []string{bridge.PairingDenied}, 1},
		{"allowlist refuses without pairing", bridge.RunnerConfig{DMPolicy: bridge.DMAllowlist}, code,
			bridge.Incoming{ChatID: "c", UserID: "s"}, 2, []string{fmt.Sprintf(bridge.Refusal, "s")}, 0},
		{"disabled: not even allowed users", bridge.RunnerConfig{DMPolicy: bridge.DMDisabled, AllowedUsers: []string{"u1"}}, code,
			bridge.Incoming{ChatID: "c", UserID: "u1"}, 1, []string{bridge.DMDisabledText}, 0},
		{"stranger in a group: refused, never pairing", bridge.RunnerConfig{AllowedUsers: []string{"u1"}}, code,
			bridge.Incoming{ChatID: "g", UserID: "s", Group: true}, 1, []string{fmt.Sprintf(bridge.Refusal, "s")}, 0},
		{"group not in allowed_groups: silence", bridge.RunnerConfig{AllowedUsers: []string{"u1"}, GroupPolicy: bridge.GroupAllowlist, AllowedGroups: []string{"g1"}}, code,
			bridge.Incoming{ChatID: "g2", UserID: "u1", Group: true}, 1, nil, 0},
		{"unknown group and a stranger: silence", bridge.RunnerConfig{GroupPolicy: bridge.GroupAllowlist}, code,
			bridge.Incoming{ChatID: "g2", UserID: "s", Group: true}, 1, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, calls := startPolicyRunner(t, tt.cfg, tt.ans)
			for i := range tt.times {
				in := tt.in
				in.Text = fmt.Sprint("hello ", i)
				if err := p.host.Deliver(context.Background(), in); err != nil {
					t.Fatal(err)
				}
			}
			p.host.Notify(tt.in.ChatID, "marker")
			got := p.waitTexts(t, tt.in.ChatID, len(tt.want)+1)
			if want := append(slices.Clone(tt.want), "marker"); !slices.Equal(got, want) {
				t.Errorf("chat texts %q\nwant       %q", got, want)
			}
			if n := calls.Load(); n != tt.pairs {
				t.Errorf("%d pairing requests, want %d", n, tt.pairs)
			}
		})
	}
}

// An allow-list pushed to a running runner applies to the next message.
func TestRunnerSetAllowedUsers(t *testing.T) {
	gw := clienttest.New(t)
	p := newRunnerPlatform("pl", 0)
	r := startRunner(t, gw, p, "pl", "u1")
	if p.host.Allowed("u2") {
		t.Fatal("u2 allowed before the push")
	}
	r.SetAllowedUsers([]string{"u1", "u2"})
	if !p.host.Allowed("u2") || !p.host.Allowed("u1") {
		t.Fatal("the pushed list does not apply")
	}
	if err := p.host.Deliver(context.Background(), bridge.Incoming{ChatID: "c2", UserID: "u2", Text: "hi"}); err != nil {
		t.Fatal(err)
	}
	if got := p.waitTexts(t, "c2", 1); got[0] == fmt.Sprintf(bridge.Refusal, "u2") {
		t.Fatalf("u2 refused after the push: %q", got)
	}
	r.SetAllowedUsers([]string{"u1"})
	if p.host.Allowed("u2") {
		t.Fatal("u2 still allowed after being removed")
	}
}
