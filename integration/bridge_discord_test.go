package integration

// The real bridge-discord binary under the real supervisor, with the fake
// Discord (REST + gateway WebSocket) in the test process; the telegram
// bridge of newBridgeEnv runs beside it, so both paths are measured in the
// same run by the benchmark.

import (
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bwmarrin/discordgo"

	"github.com/agentd/agentd/plugins/bridge/discord/discordtest"
)

const (
	dcAlice   = "1001"
	dcAliceDM = "5001"
	dcGuild   = "7001"
	dcGeneral = "7100"
)

var dcAliceUser = discordtest.User{ID: dcAlice, Name: "alice"}

// discordYAML is the bridges.discord section pointing at dc.
func discordYAML(dc *discordtest.Server) string {
	return fmt.Sprintf(`  discord:
    enabled: true
    allowed_users: ["%s"]
    settings:
      token: "%s"
      api_url: "%s"
      reconnect_min: "50ms"
`, dcAlice, dc.Token, dc.URL())
}

// newDiscordEnv runs agentd with the telegram bridge and the discord bridge
// pointed at a fresh fake Discord, and waits for the discord bridge to be
// connected to the gateway and to Discord (unless wantUp is false).
func newDiscordEnv(t testing.TB, setup func(dc *discordtest.Server), wantUp bool) (*bridgeEnv, *discordtest.Server) {
	t.Helper()
	return newDiscordEnvEditing(t, setup, wantUp, nil)
}

// newDiscordEnvEditing is newDiscordEnv with edit applied to the agent
// directory before agentd starts (nil: none).
func newDiscordEnvEditing(t testing.TB, setup func(dc *discordtest.Server), wantUp bool, edit func(dir string)) (*bridgeEnv, *discordtest.Server) {
	t.Helper()
	dc := discordtest.New(t)
	dc.AddChannel(discordgo.Channel{ID: dcGeneral, GuildID: dcGuild, Type: discordgo.ChannelTypeGuildText})
	if setup != nil {
		setup(dc)
	}
	e := newBridgeEnvEditing(t, "*", discordYAML(dc), edit)
	if wantUp {
		e.waitBridge("discord", 20*time.Second, "running, connected to the gateway and to Discord", func(b bridgeState) bool {
			return b.State == "running" && b.GatewayConnected && b.PlatformStatus == "connected"
		})
		dc.Wait(10*time.Second, "the bot on the gateway", dc.Ready)
	}
	return e, dc
}

// dcEcho reports whether text is the echo provider's complete reply to sent.
func dcEcho(text, sent string) bool {
	return strings.HasPrefix(text, "echo: "+sent) && strings.HasSuffix(text, "real answers)")
}

// dcReplies counts the bot's messages in channel that are the complete echo
// of sent.
func dcReplies(dc *discordtest.Server, channel, sent string) int {
	n := 0
	for _, m := range dc.Messages(channel) {
		if dcEcho(m.Text, sent) {
			n++
		}
	}
	return n
}

func TestBridgeDiscordDMAndGuild(t *testing.T) {
	e, dc := newDiscordEnvEditing(t, nil, true, slowEcho(t, 10, 20*time.Millisecond))
	dc.MessageCreate(discordtest.Message{ChannelID: dcAliceDM, Author: dcAliceUser, Content: "hello through discord"})
	dc.Wait(15*time.Second, "the complete reply in the DM", func() bool { return dcReplies(dc, dcAliceDM, "hello through discord") == 1 })
	msgs := dc.Messages(dcAliceDM)
	if len(msgs) != 1 || msgs[0].Edits < 1 {
		t.Fatalf("DM messages = %+v, want one, streamed by edits", msgs)
	}
	if am := msgs[0].AllowedMentions; am == nil || len(am.Parse) != 0 || am.Parse == nil {
		t.Errorf("allowed_mentions = %+v, want parse []", am)
	}
	if ids := e.sessions(e.owner); !slices.Contains(ids, "dc:"+dcAliceDM) {
		t.Errorf("sessions %v, want dc:%s", ids, dcAliceDM)
	}
	// In a guild: ignored without a mention, answered with one.
	dc.MessageCreate(discordtest.Message{ChannelID: dcGeneral, GuildID: dcGuild, Author: dcAliceUser, Content: "chatting among ourselves"})
	dc.MessageCreate(discordtest.Message{ChannelID: dcGeneral, GuildID: dcGuild, Author: dcAliceUser,
		Content: "<@" + discordtest.BotID + "> are you there", Mentions: []discordtest.User{discordtest.BotUser}})
	dc.Wait(15*time.Second, "the reply to the mention", func() bool { return dcReplies(dc, dcGeneral, "are you there") == 1 })
	if n := len(dc.Messages(dcGeneral)); n != 1 {
		t.Errorf("%d bot messages in the guild channel, want 1 (the unmentioned message ignored)", n)
	}
	// op 7 Reconnect: the bridge resumes, and a message sent meanwhile is
	// replayed by the resume and answered once.
	_, resumes := dc.Counts()
	dc.SendReconnect()
	dc.MessageCreate(discordtest.Message{ChannelID: dcAliceDM, Author: dcAliceUser, Content: "sent during the reconnect"})
	dc.Wait(15*time.Second, "the reply after the resume", func() bool { return dcReplies(dc, dcAliceDM, "sent during the reconnect") == 1 })
	if ids, r := dc.Counts(); ids != 1 || r <= resumes {
		t.Errorf("identifies %d, resumes %d (before: %d): want one identify and a resume", ids, r, resumes)
	}
	// The telegram bridge beside it is unaffected.
	if b := e.bridge("telegram"); b.State != "running" || !b.GatewayConnected {
		t.Errorf("telegram bridge = %+v", b)
	}
}

func TestBridgeDiscordDisallowedIntentFails(t *testing.T) {
	e, dc := newDiscordEnv(t, func(dc *discordtest.Server) { dc.DenyMessageContent(true) }, false)
	b := e.waitBridge("discord", 20*time.Second, "failed: with the reason", func(b bridgeState) bool {
		return strings.HasPrefix(b.PlatformStatus, "failed: ")
	})
	if !strings.Contains(b.PlatformStatus, "enable the Message Content intent") {
		t.Errorf("platform status %q, want the intent's reason", b.PlatformStatus)
	}
	time.Sleep(time.Second) // time for many reconnects at 50 ms, if it looped
	if n, _ := dc.Counts(); n != 1 {
		t.Errorf("%d identifies, want 1: no reconnect loop", n)
	}
	if b := e.bridge("discord"); b.Restarts != 0 || !strings.HasPrefix(b.PlatformStatus, "failed: ") {
		t.Errorf("discord bridge = %+v, want still failed, not restarted", b)
	}
}

func TestBridgeDiscordKillDuringReply(t *testing.T) {
	e, dc := newDiscordEnvEditing(t, nil, true, slowEcho(t, 10, 20*time.Millisecond))
	before := e.bridge("discord")
	// Edits hang, so the kill lands after the reply's first message was
	// posted and while its edits were not yet accepted.
	dc.SetLatency("PATCH", time.Hour)
	const sent = "accepted then killed mid reply"
	dc.MessageCreate(discordtest.Message{ChannelID: dcAliceDM, Author: dcAliceUser, Content: sent})
	dc.Wait(20*time.Second, "the reply's first message and an edit under way", func() bool {
		return len(dc.Messages(dcAliceDM)) == 1
	})
	time.Sleep(1500 * time.Millisecond) // the runner's next edit is due after a second: it is now hanging
	if m := dc.Messages(dcAliceDM); dcEcho(m[0].Text, sent) {
		t.Fatalf("the reply was complete before the kill: %+v", m)
	}
	if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	dc.SetLatency("PATCH", 0)
	e.waitBridge("discord", 20*time.Second, "running again", func(b bridgeState) bool {
		return b.State == "running" && b.PID != before.PID && b.GatewayConnected
	})
	dc.Wait(20*time.Second, "the reply completed", func() bool { return dcReplies(dc, dcAliceDM, sent) == 1 })
	time.Sleep(time.Second) // a second copy would be posted by now
	if m := dc.Messages(dcAliceDM); len(m) != 1 {
		t.Errorf("%d bot messages after the restart, want 1 (the same message completed): %+v", len(m), m)
	}
	if n := e.sessionMessages()["dc:"+dcAliceDM]; n != 2 {
		t.Errorf("session dc:%s has %d messages, want 2 (the turn ran once)", dcAliceDM, n)
	}
}

// BenchmarkBridgeDiscordLatency compares, in the same run, a Discord
// message → the first message of its reply at the fake with a Telegram
// message → its first sendMessage (both bridges under the same agentd).
func BenchmarkBridgeDiscordLatency(b *testing.B) {
	e, dc := newDiscordEnv(b, nil, true)
	firstPost := func(channel string) time.Time {
		var at time.Time
		dc.Wait(15*time.Second, "the first message in "+channel, func() bool {
			c := dc.Calls("POST /channels/" + channel + "/messages")
			if len(c) > 0 {
				at = c[0].At
			}
			return len(c) > 0
		})
		return at
	}
	var dcFirst, tgFirst time.Duration
	n := 0
	for b.Loop() {
		text := fmt.Sprintf("bench message %d", n)
		ch := fmt.Sprint(60000 + n) // a fresh DM channel: no per-channel pacing between iterations
		t0 := time.Now()
		dc.MessageCreate(discordtest.Message{ChannelID: ch, Author: dcAliceUser, Content: text})
		dcFirst += firstPost(ch).Sub(t0)
		dc.Wait(15*time.Second, "the complete reply", func() bool { return dcReplies(dc, ch, text) == 1 })

		c, u := benchChat(n)
		t0 = time.Now()
		e.tg.Text(c, u, text)
		tgFirst += firstSend(b, e.tg, c.ID).Sub(t0)
		complete(b, e.tg, c.ID, text)
		n++
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(n) / 1e6 }
	b.ReportMetric(ms(dcFirst), "discord-first-send-ms")
	b.ReportMetric(ms(tgFirst), "telegram-first-send-ms")
	b.ReportMetric(float64(dcFirst)/float64(tgFirst), "discord/telegram")
}
