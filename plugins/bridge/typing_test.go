package bridge_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentd/agentd/client/clienttest"
	"github.com/agentd/agentd/plugins/bridge"
)

// typingPlatform counts typing calls and renews typing every `every`.
type typingPlatform struct {
	*runnerPlatform
	every  time.Duration
	typing atomic.Int32
}

func (p *typingPlatform) SendTyping(context.Context, string) error {
	p.typing.Add(1)
	return nil
}

func (p *typingPlatform) TypingEvery() time.Duration { return p.every }

// TestTypingRenewerSetsTheInterval: a platform's TypingEvery decides how
// often the indicator is renewed while status frames keep coming.
func TestTypingRenewerSetsTheInterval(t *testing.T) {
	for _, c := range []struct {
		name     string
		every    time.Duration
		min, max int32
	}{
		{"renewed on every status", time.Nanosecond, 6, 100},
		{"not renewed within the interval", time.Hour, 1, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			gw := clienttest.New(t)
			gw.SetAgent(func(ctx context.Context, tr clienttest.Turn) clienttest.Reply {
				return clienttest.Reply{Status: []string{"a", "b", "c", "d", "e"}, Deltas: []string{"done"}}
			})
			p := &typingPlatform{runnerPlatform: newRunnerPlatform("ty", 0), every: c.every}
			r := bridge.NewRunner(p, bridge.RunnerConfig{Dialer: gw.Dialer(gw.BridgeIdentity("ty")), AllowedUsers: []string{"u1"}})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			defer func() { cancel(); <-done }()
			<-p.ready
			if err := p.host.Deliver(ctx, bridge.Incoming{ChatID: "c1", UserID: "u1", Text: "hi"}); err != nil {
				t.Fatal(err)
			}
			p.waitTexts(t, "c1", 1)
			if n := p.typing.Load(); n < c.min || n > c.max {
				t.Errorf("%d typing calls, want %d..%d", n, c.min, c.max)
			}
		})
	}
}
