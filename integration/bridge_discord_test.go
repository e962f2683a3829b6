package integration

// The real bridge-discord binary under the real supervisor, with the fake
// Discord (REST + gateway WebSocket) in the test process; the telegram
// bridge of newBridgeEnv runs beside it, so both paths are measured in the
// same run by the benchmark.

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bwmarrin/discordgo"

	"github.com/agentd/agentd/internal/supervisor"
	"github.com/agentd/agentd/plugins/bridge"
	"github.com/agentd/agentd/plugins/bridge/discord/discordtest"
)

const (
	dcAlice   = "1001"
	dcAliceDM = "5001"
	dcGuild   = "7001"
	dcGeneral = "7100"
)

var dcAliceUser = discordtest.User{ID: dcAlice, Name: "alice"}

// dcOpts configure newDiscordEnv.
type dcOpts struct {
	setup    func(dc *discordtest.Server) // before agentd starts
	token    string                       // the configured token; "" is the one the fake accepts
	settings string                       // more settings: lines, indented by 6
	up       bool                         // wait for the bridge to be connected
	edit     func(dir string)             // applied to the agent directory before agentd starts
}

// discordYAML is the bridges.discord section pointing at dc.
func discordYAML(dc *discordtest.Server, token, settings string) string {
	if token == "" {
		token = dc.Token
	}
	return fmt.Sprintf(`  discord:
    enabled: true
    allowed_users: ["%s"]
    settings:
      token: "%s"
      api_url: "%s"
      reconnect_min: "50ms"
%s`, dcAlice, token, dc.URL(), settings)
}

// newDiscordEnv runs agentd with the telegram bridge and the discord bridge
// pointed at a fresh fake Discord, alerts going to alice's Telegram chat
// (after 1 s), and waits for the discord bridge to be connected to the
// gateway and to Discord when o.up.
func newDiscordEnv(t testing.TB, o dcOpts) (*bridgeEnv, *discordtest.Server) {
	t.Helper()
	dc := discordtest.New(t)
	dc.AddChannel(discordgo.Channel{ID: dcGeneral, GuildID: dcGuild, Type: discordgo.ChannelTypeGuildText})
	if o.setup != nil {
		o.setup(dc)
	}
	e := newBridgeEnvEditing(t, "*", discordYAML(dc, o.token, o.settings), func(dir string) {
		replaceInConfig(t, dir, "\nalerts:\n  deliver_to: []\n  after: 60s\n", alertsYAML("1s", fmt.Sprintf("tg:%d", aliceID)))
		if o.edit != nil {
			o.edit(dir)
		}
	})
	if o.up {
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
	e, dc := newDiscordEnv(t, dcOpts{up: true, edit: slowEcho(t, 10, 20*time.Millisecond)})
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
	// op 9 Invalid Session with d=true: resumed too (op 6 → RESUMED, not
	// a fresh identify), the message sent meanwhile replayed and answered.
	_, resumes = dc.Counts()
	dc.SendInvalidSession(true)
	dc.MessageCreate(discordtest.Message{ChannelID: dcAliceDM, Author: dcAliceUser, Content: "sent during the invalid session"})
	dc.Wait(15*time.Second, "a resume after op 9", func() bool { _, r := dc.Counts(); return r > resumes && dc.Ready() })
	dc.Wait(15*time.Second, "the reply after op 9", func() bool { return dcReplies(dc, dcAliceDM, "sent during the invalid session") == 1 })
	if ids, _ := dc.Counts(); ids != 1 {
		t.Errorf("%d identifies after op 9 d=true, want 1: resumed, not identified afresh", ids)
	}
	// The telegram bridge beside it is unaffected.
	if b := e.bridge("telegram"); b.State != "running" || !b.GatewayConnected {
		t.Errorf("telegram bridge = %+v", b)
	}
}

// A close Discord means for good (4014 disallowed intent, 4004 bad token)
// makes the bridge failed with the reason on every surface, alerts the
// operator at once, and neither the bridge nor the supervisor retries;
// fixed and enabled again (or restarted by a config change), it connects
// and the alert ends.
func TestBridgeDiscordFatalCloseFails(t *testing.T) {
	for _, c := range []struct {
		name, token, reason string
		deny                bool
	}{
		{"4014 disallowed intent", "", "enable the Message Content intent in the Developer Portal (close 4014", true},
		{"4004 bad token", "not-the-bot-token", "Discord refused the bot token (close 4004", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, dc := newDiscordEnv(t, dcOpts{token: c.token, setup: func(dc *discordtest.Server) { dc.DenyMessageContent(c.deny) }})
			b := e.waitBridge("discord", 20*time.Second, "failed with the reason", func(b bridgeState) bool {
				return b.State == "failed" && strings.HasPrefix(b.LastError, c.reason)
			})
			if b.PlatformStatus != "failed: "+b.LastError {
				t.Errorf("platform status %q, want failed: %s", b.PlatformStatus, b.LastError)
			}
			alert := waitTelegram(t, e, "the failed alert", func(text string) bool {
				return strings.HasPrefix(text, "Discord has failed since ") && strings.Contains(text, c.reason)
			})
			if row := lineWith(e.cli("bridge", "list", e.dir), "discord"); !strings.Contains(row, "failed") || strings.Count(row, b.LastError) != 1 {
				t.Errorf("bridge list row %q: want failed and the reason once", row)
			}
			// No loop: several health checks (2 s) and 40 reconnect waits
			// (50 ms) later, still the one identify, the same process.
			time.Sleep(2 * supervisor.HealthInterval)
			if n, _ := dc.Counts(); n != 1 {
				t.Errorf("%d identifies, want 1: no reconnect loop", n)
			}
			if a := e.bridge("discord"); a.State != "failed" || a.PID != b.PID || a.Restarts != 0 {
				t.Errorf("discord bridge = %+v, want still failed, the same process, not restarted", a)
			}
			if n := countTelegram(e, func(text string) bool { return strings.HasPrefix(text, "Discord ") }); n != 1 {
				t.Errorf("%d alerts about Discord, want 1 (%q)", n, alert)
			}
			// Fixed: enabled again (4014) or the right token written (4004).
			if c.deny {
				dc.DenyMessageContent(false)
				e.cli("bridge", "enable", e.dir, "discord")
			} else {
				replaceInConfig(t, e.dir, `token: "`+c.token+`"`, `token: "`+dc.Token+`"`)
			}
			e.waitBridge("discord", 30*time.Second, "running and connected again", func(b bridgeState) bool {
				return b.State == "running" && b.PlatformStatus == "connected" && b.LastError == ""
			})
			waitTelegram(t, e, "the alert's end", func(text string) bool { return strings.HasPrefix(text, "Discord is connected again") })
		})
	}
}

// waitTelegram waits for a message to alice on Telegram that match
// accepts, and returns its text.
func waitTelegram(t testing.TB, e *bridgeEnv, what string, match func(text string) bool) string {
	t.Helper()
	var got string
	e.tg.Wait(30*time.Second, what+" in alice's Telegram chat", func() bool {
		for _, m := range e.tg.Messages(aliceID) {
			if match(m.Text) {
				got = m.Text
				return true
			}
		}
		return false
	})
	return got
}

// countTelegram counts the messages to alice on Telegram that match accepts.
func countTelegram(e *bridgeEnv, match func(text string) bool) int {
	n := 0
	for _, m := range e.tg.Messages(aliceID) {
		if match(m.Text) {
			n++
		}
	}
	return n
}

func TestBridgeDiscordKillDuringReply(t *testing.T) {
	e, dc := newDiscordEnv(t, dcOpts{up: true, edit: slowEcho(t, 10, 20*time.Millisecond)})
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
	e, dc := newDiscordEnv(b, dcOpts{up: true})
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

		tgFirst += telegramTurn(b, e.tg, n, text)
		n++
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(n) / 1e6 }
	b.ReportMetric(ms(dcFirst), "discord-first-send-ms")
	b.ReportMetric(ms(tgFirst), "telegram-first-send-ms")
	b.ReportMetric(float64(dcFirst)/float64(tgFirst), "discord/telegram")
}

// Slash commands through the real agentd: deferred at once (the fake
// refuses a callback after Discord's 3 s), the deferred response edited
// with agentd's answer; with agentd too slow to answer within
// slash_done_after (stopped with SIGSTOP), the response is settled with
// "Done." and the answer, when it comes, is posted as a message: nothing
// is lost, and the old response is not overwritten.
func TestBridgeDiscordSlashCommands(t *testing.T) {
	e, dc := newDiscordEnv(t, dcOpts{up: true, settings: "      slash_done_after: \"3s\"\n"})
	dc.Wait(15*time.Second, "the slash commands registered", func() bool { return len(dc.Commands("")) == len(bridge.Commands) })
	tok := dc.SlashCommand(dcAliceDM, "", dcAliceUser, "help", nil)
	dc.Wait(15*time.Second, "/help's response edited with the commands", func() bool { return strings.Contains(dc.Interaction(tok).Edited, "/new") })
	if in := dc.Interaction(tok); in.Callback != int(discordgo.InteractionResponseDeferredChannelMessageWithSource) {
		t.Errorf("/help callback type %d, want 5 (deferred)", in.Callback)
	}
	dc.MessageCreate(discordtest.Message{ChannelID: dcAliceDM, Author: dcAliceUser, Content: "something to clear"})
	dc.Wait(15*time.Second, "the reply", func() bool { return dcReplies(dc, dcAliceDM, "something to clear") == 1 })
	tok = dc.SlashCommand(dcAliceDM, "", dcAliceUser, "clear", nil)
	dc.Wait(15*time.Second, "/clear's response edited with agentd's answer", func() bool {
		return strings.HasPrefix(dc.Interaction(tok).Edited, "History cleared (2 messages)")
	})

	// agentd stopped: the command is deferred, then settled with Done.
	pid := e.d.cmd.Process.Pid
	stopProcess(t, pid)
	stopped := true
	defer func() {
		if stopped {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}()
	tok = dc.SlashCommand(dcAliceDM, "", dcAliceUser, "clear", nil)
	dc.Wait(15*time.Second, "the unanswered command settled with Done.", func() bool { return dc.Interaction(tok).Edited == "Done." })
	if in := dc.Interaction(tok); in.Callback != 5 {
		t.Errorf("callback type %d while agentd was stopped, want 5 (deferred)", in.Callback)
	}
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	dc.Wait(15*time.Second, "the late answer posted as a message", func() bool {
		for _, m := range dc.Messages(dcAliceDM) {
			if m.Via == "channel" && strings.HasPrefix(m.Text, "History cleared (0 messages)") {
				return true
			}
		}
		return false
	})
	if got := dc.Interaction(tok).Edited; got != "Done." {
		t.Errorf("the settled response became %q", got)
	}
}

// An attachment over max_download_mb is refused with a short notice and
// nothing is written to uploads/; the text with it still reaches the agent.
func TestBridgeDiscordAttachmentCap(t *testing.T) {
	e, dc := newDiscordEnv(t, dcOpts{up: true, settings: "      max_download_mb: \"1\"\n"})
	small := dc.AddFile("small.txt", []byte("a small file"))
	big := dc.AddFile("big.bin", make([]byte, 1<<20+1))
	liar := dc.AddFile("liar.bin", make([]byte, 2<<20)) // declared small, larger when fetched
	uploads := filepath.Join(e.dir, "uploads", "discord")
	for _, c := range []struct {
		name, url, text, notice string
		size                    int
	}{
		{"big.bin", big, "with a big file", "big.bin is larger than the bridge's 1 MiB limit", 1<<20 + 1},
		{"liar.bin", liar, "with a file larger than declared", "liar.bin could not be downloaded", 10},
	} {
		dc.MessageCreate(discordtest.Message{ChannelID: dcAliceDM, Author: dcAliceUser, Content: c.text,
			Attachments: []discordtest.Attachment{{Name: c.name, URL: c.url, ContentType: "application/octet-stream", Size: c.size}}})
		dc.Wait(15*time.Second, "the notice about "+c.name, func() bool {
			for _, m := range dc.Messages(dcAliceDM) {
				if strings.HasPrefix(m.Text, "Your file could not be received: ") && strings.Contains(m.Text, c.notice) {
					return true
				}
			}
			return false
		})
		dc.Wait(15*time.Second, "the reply to the text", func() bool { return dcReplies(dc, dcAliceDM, c.text) == 1 })
		if names, _ := filepath.Glob(filepath.Join(uploads, "*")); len(names) != 0 {
			t.Errorf("uploads/discord after %s: %v, want nothing", c.name, names)
		}
	}
	if n := len(dc.Calls("GET /attachments/big.bin")); n != 0 {
		t.Errorf("big.bin fetched %d times: a declared size over the cap is refused before downloading", n)
	}
	// Under the cap, the file arrives in uploads/.
	dc.MessageCreate(discordtest.Message{ChannelID: dcAliceDM, Author: dcAliceUser, Content: "with a small file",
		Attachments: []discordtest.Attachment{{Name: "small.txt", URL: small, ContentType: "text/plain", Size: 12}}})
	dc.Wait(15*time.Second, "the reply with the small file", func() bool { return dcReplies(dc, dcAliceDM, "with a small file") == 1 })
	if names, _ := filepath.Glob(filepath.Join(uploads, "*small.txt")); len(names) != 1 {
		t.Errorf("uploads/discord: %v, want the small file", names)
	}
}
