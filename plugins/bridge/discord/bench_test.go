package discord_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/agentd/agentd/client/clienttest"
	"github.com/agentd/agentd/plugins/bridge"
	"github.com/agentd/agentd/plugins/bridge/bridgetest"
	"github.com/agentd/agentd/plugins/bridge/discord"
	"github.com/agentd/agentd/plugins/bridge/discord/discordtest"
)

// BenchmarkLongReplyEdits sends a 4,000-token reply (one delta per token,
// as fast as the fake agent can) into a DM with the SDK's default pacing
// (one message or edit per channel per second) and reports the calls it
// took and the time from the user's message to the complete reply, against
// the ideal that pacing sets: one call per 2,000-character part, a second
// apart.
func BenchmarkLongReplyEdits(b *testing.B) {
	var tokens []string
	for i := range 4000 {
		tokens = append(tokens, fmt.Sprintf("w%d ", i%1000))
	}
	parts := discord.SplitText(strings.Join(tokens, ""))
	var calls int
	var total time.Duration
	n := 0
	for b.Loop() {
		e := newEnv(b)
		e.editIvl = bridge.DefaultEditInterval
		e.gw.SetAgent(func(ctx context.Context, tr clienttest.Turn) clienttest.Reply {
			return clienttest.Reply{Deltas: tokens}
		})
		e.startReady()
		t0 := time.Now()
		e.dc.MessageCreate(discordtest.Message{ChannelID: aliceDM, Author: alice, Content: "write a lot"})
		bridgetest.WaitTexts(b, 2*time.Minute, "the DM with the long reply", func() []discordtest.Msg { return e.dc.Messages(aliceDM) },
			func(m discordtest.Msg) string { return m.Text }, parts...)
		total += time.Since(t0)
		calls += len(e.dc.Calls("POST /channels/"+aliceDM+"/messages")) + len(e.dc.Calls("PATCH /channels/"+aliceDM))
		e.stop()
		n++
	}
	ideal := float64(len(parts)-1) * float64(bridge.DefaultEditInterval)
	b.ReportMetric(float64(calls)/float64(n), "calls")
	b.ReportMetric(float64(len(parts)), "ideal-calls")
	b.ReportMetric(float64(total)/float64(n)/1e6, "total-ms")
	b.ReportMetric(ideal/1e6, "ideal-ms")
	b.ReportMetric(float64(total)/float64(n)/ideal, "x-ideal")
}
