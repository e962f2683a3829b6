package discord_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bwmarrin/discordgo"

	"github.com/agentd/agentd/client/clienttest"
	"github.com/agentd/agentd/plugins/bridge"
	"github.com/agentd/agentd/plugins/bridge/bridgetest"
	"github.com/agentd/agentd/plugins/bridge/discord"
	"github.com/agentd/agentd/plugins/bridge/discord/discordtest"
	"github.com/agentd/agentd/wire"
)

const waitFor = 15 * time.Second

var (
	alice   = discordtest.User{ID: "1001", Name: "alice"}
	mallory = discordtest.User{ID: "666", Name: "mallory"}
)

const (
	aliceDM = "5001" // the DM channel with alice
	guild   = "7001"
	general = "7100" // a guild channel, no listen
	listen  = "7200" // in listen_channels
	thread  = "7201" // a thread of listen
)

type env struct {
	t        testing.TB
	dc       *discordtest.Server
	gw       *clienttest.Gateway
	uploads  string
	settings map[string]string
	editIvl  time.Duration // RunnerConfig.EditInterval; 0: 100 ms
	stopRun  func()        // set by start
	log      *bridgetest.Logged

	mu       sync.Mutex // guards statuses, events, states
	statuses []string
	events   []string
	states   []string // "state: reason" reported (StateReporter)
}

func newEnv(t testing.TB) *env {
	e := &env{t: t, dc: discordtest.New(t), gw: clienttest.New(t), uploads: t.TempDir()}
	e.settings = map[string]string{"token": e.dc.Token, "api_url": e.dc.URL(), "listen_channels": listen, "reconnect_min": "50ms"}
	e.dc.AddChannel(discordgo.Channel{ID: general, GuildID: guild, Type: discordgo.ChannelTypeGuildText})
	e.dc.AddChannel(discordgo.Channel{ID: listen, GuildID: guild, Type: discordgo.ChannelTypeGuildText})
	e.dc.AddChannel(discordgo.Channel{ID: thread, GuildID: guild, ParentID: listen, Type: discordgo.ChannelTypeGuildPublicThread})
	return e
}

func (e *env) start() {
	e.t.Helper()
	e.log = bridgetest.LogWatched(e.t)
	log := e.log.Logger
	p := discord.New()
	allowed := []string{alice.ID}
	if e.editIvl == 0 {
		e.editIvl = 100 * time.Millisecond
	}
	if err := p.Configure(bridge.PlatformConfig{Settings: e.settings, AllowedUsers: allowed, UploadsDir: e.uploads, Logger: log}); err != nil {
		e.t.Fatal(err)
	}
	r := bridge.NewRunner(p, bridge.RunnerConfig{
		Dialer:       e.gw.Dialer(e.gw.BridgeIdentity("dc")),
		AllowedUsers: allowed,
		Logger:       log,
		EditInterval: e.editIvl,
		OnStatus: func(s string) {
			e.mu.Lock()
			e.statuses = append(e.statuses, s)
			e.mu.Unlock()
		},
		OnEvent: func(kind, text string) {
			e.mu.Lock()
			e.events = append(e.events, kind+": "+text)
			e.mu.Unlock()
		},
		OnState: func(state bridge.PlatformState, reason string) {
			e.mu.Lock()
			e.states = append(e.states, string(state)+": "+reason)
			e.statuses = append(e.statuses, bridge.StateStatus(state, reason))
			e.mu.Unlock()
		},
	})
	e.stopRun = bridgetest.Start(e.t, r)
	e.t.Cleanup(func() {
		if e.t.Failed() {
			for _, c := range e.dc.Calls("") {
				e.t.Logf("discord call: %s %s → %d %.300s", c.Method, c.Path, c.Status, c.Body)
			}
		}
	})
}

func (e *env) startReady() {
	e.t.Helper()
	e.start()
	e.dc.Wait(waitFor, "the bot to identify", e.dc.Ready)
}

func (e *env) stop() { e.stopRun() }

func (e *env) status() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.statuses...)
}

func (e *env) lastStatus() string {
	s := e.status()
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}

func (e *env) eventList() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.events...)
}

// waitTexts waits until channel shows exactly want, in order.
func (e *env) waitTexts(channel string, want ...string) []discordtest.Msg {
	e.t.Helper()
	return bridgetest.WaitTexts(e.t, waitFor, "channel "+channel, func() []discordtest.Msg { return e.dc.Messages(channel) },
		func(m discordtest.Msg) string { return m.Text }, want...)
}

func (e *env) turns() []wire.TextFinal { return e.gw.Turns() }

func TestDMStreamedByEditingOneMessage(t *testing.T) {
	e := newEnv(t)
	var deltas []string
	for i := range 10 {
		deltas = append(deltas, fmt.Sprintf("part%d ", i))
	}
	full := strings.TrimSpace(strings.Join(deltas, ""))
	e.gw.SetAgent(func(ctx context.Context, tr clienttest.Turn) clienttest.Reply {
		return clienttest.Reply{Deltas: deltas, DeltaDelay: 80 * time.Millisecond}
	})
	e.startReady()
	if in := e.dc.Intents(); in&discordgo.IntentMessageContent == 0 || in&discordgo.IntentsDirectMessages == 0 || in&discordgo.IntentsGuildMessages == 0 {
		t.Errorf("identify intents = %d, want guilds, guild messages, DMs and message content", in)
	}
	e.dc.MessageCreate(discordtest.Message{ChannelID: aliceDM, Author: alice, Content: "hello there"})
	got := e.waitTexts(aliceDM, full)
	if got[0].Edits < 1 {
		t.Fatalf("reply not streamed by edits: %+v", got[0])
	}
	if am := got[0].AllowedMentions; am == nil || am.Parse == nil || len(am.Parse) != 0 {
		t.Errorf("allowed_mentions = %+v, want parse: [] (nobody pinged)", am)
	}
	posts := e.dc.Calls("POST /channels/" + aliceDM + "/messages")
	if len(posts) != 1 || !strings.Contains(string(posts[0].Body), `"allowed_mentions":{"parse":[]`) {
		t.Errorf("message posts = %d (%+v), want one with allowed_mentions parse []", len(posts), posts)
	}
	tf := e.turns()
	if len(tf) != 1 || tf[0].SessionID != "dc:"+aliceDM || tf[0].Text != "hello there" {
		t.Fatalf("turns = %+v, want one on dc:%s", tf, aliceDM)
	}
	if len(e.dc.Calls("POST /channels/"+aliceDM+"/typing")) == 0 {
		t.Error("no typing indicator")
	}
	if s := e.lastStatus(); s != "connected" {
		t.Errorf("status = %q, want connected", s)
	}
	// A stranger is refused and gets no turn.
	e.dc.MessageCreate(discordtest.Message{ChannelID: "5666", Author: mallory, Content: "let me in"})
	e.dc.Wait(waitFor, "the refusal", func() bool {
		m := e.dc.Messages("5666")
		return len(m) == 1 && strings.Contains(m[0].Text, "not on its list of allowed users")
	})
	if n := len(e.turns()); n != 1 {
		t.Errorf("%d turns, want still 1", n)
	}
}

func TestGuildRules(t *testing.T) {
	e := newEnv(t)
	e.startReady()
	other := discordtest.User{ID: "1002", Name: "otherbot", Bot: true}
	// Ignored: no mention, own message, another bot (even mentioning us).
	e.dc.MessageCreate(discordtest.Message{ChannelID: general, GuildID: guild, Author: alice, Content: "just chatting"})
	e.dc.MessageCreate(discordtest.Message{ChannelID: general, GuildID: guild, Author: discordtest.BotUser, Content: "<@" + discordtest.BotID + "> me"})
	e.dc.MessageCreate(discordtest.Message{ChannelID: general, GuildID: guild, Author: other, Content: "<@" + discordtest.BotID + "> hi", Mentions: []discordtest.User{discordtest.BotUser}})
	// Answered: a mention (stripped), a role mention, in a thread of a listen channel.
	e.dc.MessageCreate(discordtest.Message{ChannelID: general, GuildID: guild, Author: alice, Content: "<@" + discordtest.BotID + "> what time is it", Mentions: []discordtest.User{discordtest.BotUser}})
	e.waitTexts(general, "echo: what time is it")
	e.dc.MessageCreate(discordtest.Message{ChannelID: general, GuildID: guild, Author: alice, Content: "<@&" + discordtest.BotRol + "> role call", MentionRoles: []string{discordtest.BotRol}})
	first := e.waitTexts(general, "echo: what time is it", "echo: role call")
	// A reply to the bot's message, without a mention.
	e.dc.MessageCreate(discordtest.Message{ChannelID: general, GuildID: guild, Author: alice, Content: "and tomorrow?", ReplyTo: &first[0]})
	e.waitTexts(general, "echo: what time is it", "echo: role call", "echo: and tomorrow?")
	e.dc.MessageCreate(discordtest.Message{ChannelID: thread, GuildID: guild, Author: alice, Content: "in the thread"})
	e.waitTexts(thread, "echo: in the thread")
	e.dc.MessageCreate(discordtest.Message{ChannelID: listen, GuildID: guild, Author: alice, Content: "listening here"})
	e.waitTexts(listen, "echo: listening here")
	var sids []string
	for _, tf := range e.turns() {
		sids = append(sids, tf.SessionID+"="+tf.Text)
	}
	want := "dc:" + general + "=what time is it,dc:" + general + "=role call,dc:" + general + "=and tomorrow?,dc:" + thread + "=in the thread,dc:" + listen + "=listening here"
	if got := strings.Join(sids, ","); got != want {
		t.Errorf("turns = %s\nwant    %s", got, want)
	}
}

func TestMessageContentIntentMissing(t *testing.T) {
	e := newEnv(t)
	e.startReady()
	// Without the privileged intent, guild messages arrive without text.
	for range 2 {
		e.dc.MessageCreate(discordtest.Message{ChannelID: listen, GuildID: guild, Author: alice, Content: ""})
	}
	e.dc.MessageCreate(discordtest.Message{ChannelID: aliceDM, Author: alice, Content: "dm still works"})
	e.waitTexts(aliceDM, "echo: dm still works")
	n := 0
	for _, ev := range e.eventList() {
		if strings.Contains(ev, "enable the Message Content intent") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("content intent events = %d, want 1: %q", n, e.eventList())
	}
}

func TestLongReplySplitWithFencesBalanced(t *testing.T) {
	e := newEnv(t)
	var b strings.Builder
	b.WriteString("Here is the code:\n\n```go\n")
	for i := 0; b.Len() < 4300; i++ {
		fmt.Fprintf(&b, "fmt.Println(%d) // some words to fill the line\n", i)
	}
	b.WriteString("```\n\nThat was it.")
	long := b.String()
	e.gw.SetAgent(func(ctx context.Context, tr clienttest.Turn) clienttest.Reply {
		return clienttest.Reply{Deltas: []string{long[:2500], long[2500:]}, Text: long}
	})
	e.startReady()
	e.dc.MessageCreate(discordtest.Message{ChannelID: aliceDM, Author: alice, Content: "code please"})
	want := discord.SplitText(long)
	if len(want) != 3 {
		t.Fatalf("a %d-char reply split in %d parts, want 3", len(long), len(want))
	}
	got := e.waitTexts(aliceDM, want...)
	var body []string
	for i, m := range got {
		if n := len([]rune(m.Text)); n > discord.MaxMessageLen {
			t.Errorf("part %d is %d characters", i, n)
		}
		if c := strings.Count(m.Text, "```"); c%2 != 0 {
			t.Errorf("part %d has %d fences (unbalanced):\n%s", i, c, m.Text)
		}
		if i > 0 && !strings.HasPrefix(m.Text, "```go\n") {
			t.Errorf("part %d does not reopen the go block: %.40q", i, m.Text)
		}
		text := strings.TrimPrefix(m.Text, "```go\n")
		if i < len(got)-1 {
			text = strings.TrimSuffix(text, "\n```")
		}
		body = append(body, text)
	}
	// Nothing lost: the lines are all there, in order.
	if joined := strings.Join(body, "\n"); strings.ReplaceAll(joined, "\n", "") != strings.ReplaceAll(long, "\n", "") {
		t.Errorf("parts do not add up to the reply")
	}
}

func TestRateLimitedEditHonoured(t *testing.T) {
	e := newEnv(t)
	e.gw.SetAgent(func(ctx context.Context, tr clienttest.Turn) clienttest.Reply {
		return clienttest.Reply{Deltas: []string{"one ", "two ", "three ", "four"}, DeltaDelay: 150 * time.Millisecond}
	})
	e.startReady()
	e.dc.RateLimitNext("PATCH", "/channels/"+aliceDM+"/messages/", 700*time.Millisecond, false)
	e.dc.MessageCreate(discordtest.Message{ChannelID: aliceDM, Author: alice, Content: "count"})
	e.waitTexts(aliceDM, "one two three four")
	var n429 int
	for _, c := range e.dc.Calls("PATCH /channels/" + aliceDM) {
		if c.Status == 429 {
			n429++
		}
	}
	if n429 != 1 {
		t.Fatalf("%d PATCHes answered 429, want 1", n429)
	}
	if v := e.dc.Violations(); len(v) > 0 {
		t.Errorf("calls during the 429's wait: %v", v)
	}
}

func TestGlobalRateLimitHoldsEveryChat(t *testing.T) {
	e := newEnv(t)
	e.startReady()
	e.dc.RateLimitNext("POST", "/channels/"+aliceDM+"/messages", 600*time.Millisecond, true)
	e.dc.MessageCreate(discordtest.Message{ChannelID: aliceDM, Author: alice, Content: "first"})
	// The second chat's reply starts once the bridge knows the first was
	// refused (a call it made before the 429 reached it is not a breach).
	e.dc.Wait(waitFor, "the global 429", func() bool {
		c := e.dc.Calls("POST /channels/" + aliceDM + "/messages")
		return len(c) == 1 && c[0].Status == 429
	})
	e.log.Wait(e.t, waitFor, "platform rate limit; waiting")
	e.dc.MessageCreate(discordtest.Message{ChannelID: listen, GuildID: guild, Author: alice, Content: "second"})
	e.waitTexts(aliceDM, "echo: first")
	e.waitTexts(listen, "echo: second")
	if v := e.dc.Violations(); len(v) > 0 {
		t.Errorf("calls during a global 429's wait: %v", v)
	}
}

func TestFatalCloseCodesFail(t *testing.T) {
	for _, c := range []struct {
		name, want string
		setup      func(e *env)
	}{
		{"4004 bad token", "close 4004", func(e *env) { e.settings["token"] = "wrong" }},
		{"4014 disallowed intent", "enable the Message Content intent", func(e *env) { e.dc.DenyMessageContent(true) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			c.setup(e)
			e.start()
			e.dc.Wait(waitFor, "a failed status", func() bool { return strings.HasPrefix(e.lastStatus(), "failed: ") })
			if s := e.lastStatus(); !strings.Contains(s, c.want) {
				t.Errorf("status %q, want it to say %q", s, c.want)
			}
			time.Sleep(300 * time.Millisecond) // several reconnects' time at 50 ms
			if ids, _ := e.dc.Counts(); ids != 1 {
				t.Errorf("%d identifies, want 1 (no reconnect loop)", ids)
			}
			e.mu.Lock()
			states := append([]string(nil), e.states...)
			e.mu.Unlock()
			if len(states) != 1 || !strings.HasPrefix(states[0], "failed: ") || !strings.Contains(states[0], c.want) {
				t.Errorf("states reported %q, want one: failed saying %q", states, c.want)
			}
		})
	}
}

func TestGatewayResumesAndLosesNothing(t *testing.T) {
	e := newEnv(t)
	e.startReady()
	say := func(text string) {
		e.dc.MessageCreate(discordtest.Message{ChannelID: aliceDM, Author: alice, Content: text})
	}
	var want []string
	check := func(text string) {
		t.Helper()
		want = append(want, "echo: "+text)
		e.waitTexts(aliceDM, want...)
	}
	say("before")
	check("before")

	// op 7: discordgo closes; the bridge resumes; a message sent while it
	// was away is replayed by the resume.
	e.dc.SendReconnect()
	say("during op 7")
	e.dc.Wait(waitFor, "a resume", func() bool { _, r := e.dc.Counts(); return r >= 1 })
	check("during op 7")

	// A dropped connection (close 1006-like), resumed.
	e.dc.CloseConnections(4000, "Unknown error.")
	say("after a drop")
	e.dc.Wait(waitFor, "a second resume", func() bool { _, r := e.dc.Counts(); return r >= 2 })
	check("after a drop")

	// Heartbeat ACKs stop: discordgo gives the connection up and resumes.
	e.dc.DropHeartbeatACKs(true)
	e.dc.Wait(waitFor, "a reconnect after missing ACKs", func() bool { _, r := e.dc.Counts(); return r >= 3 })
	e.dc.DropHeartbeatACKs(false)
	e.dc.Wait(waitFor, "connected again", e.dc.Ready)
	say("after missing ACKs")
	check("after missing ACKs")

	// op 9 resumable (d=true): a resume, not an identify, and the message
	// sent meanwhile is replayed by it.
	ids, resumes := e.dc.Counts()
	e.dc.SendInvalidSession(true)
	say("during op 9 d=true")
	e.dc.Wait(waitFor, "a resume after op 9 d=true", func() bool { _, r := e.dc.Counts(); return r > resumes && e.dc.Ready() })
	check("during op 9 d=true")
	if n, _ := e.dc.Counts(); n != ids {
		t.Errorf("op 9 d=true: %d identifies, want %d (resumed, not identified afresh)", n, ids)
	}

	// op 9 not resumable: a fresh identify.
	e.dc.SendInvalidSession(false)
	e.dc.Wait(waitFor, "a new identify", func() bool { n, _ := e.dc.Counts(); return n > ids && e.dc.Ready() })
	say("after op 9")
	check("after op 9")

	if n := len(e.turns()); n != len(want) {
		t.Errorf("%d turns, want %d (one per message)", n, len(want))
	}
	saw := strings.Join(e.status(), ",")
	if !strings.Contains(saw, "resuming") || !strings.HasSuffix(saw, "connected") {
		t.Errorf("statuses %s: want resuming among them and connected last", saw)
	}
}

func TestThreeFailedResumesIdentifyAfresh(t *testing.T) {
	e := newEnv(t)
	e.startReady()
	e.dc.FailResumes(3)
	e.dc.CloseConnections(4000, "Unknown error.")
	e.dc.Wait(waitFor, "a fresh identify after three failed resumes", func() bool {
		n, r := e.dc.Counts()
		return n == 2 && r == 3 && e.dc.Ready()
	})
	e.dc.MessageCreate(discordtest.Message{ChannelID: aliceDM, Author: alice, Content: "new session"})
	e.waitTexts(aliceDM, "echo: new session")
	saw := strings.Join(e.status(), ",")
	for _, want := range []string{"resuming", "reconnecting (", "connected"} {
		if !strings.Contains(saw, want) {
			t.Errorf("statuses %s: want %s among them", saw, want)
		}
	}
}

func TestWatchdogRebuildsSilentSession(t *testing.T) {
	e := newEnv(t)
	e.settings["watchdog"] = "1500ms"
	e.dc.HeartbeatInterval = time.Hour // no heartbeat, no ACK: the gateway goes silent
	e.startReady()
	e.dc.Wait(waitFor, "a fresh identify by the watchdog", func() bool { n, _ := e.dc.Counts(); return n >= 2 && e.dc.Ready() })
	e.dc.MessageCreate(discordtest.Message{ChannelID: aliceDM, Author: alice, Content: "still there?"})
	e.waitTexts(aliceDM, "echo: still there?")
}

func TestAttachmentsInAndOut(t *testing.T) {
	e := newEnv(t)
	out := filepath.Join(t.TempDir(), "report.txt")
	if err := os.WriteFile(out, []byte("the report"), 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(t.TempDir(), "big.bin")
	if err := os.WriteFile(big, make([]byte, 2048), 0o600); err != nil {
		t.Fatal(err)
	}
	e.gw.SetAgent(func(ctx context.Context, tr clienttest.Turn) clienttest.Reply {
		if tr.Text == "big" {
			return clienttest.Reply{Text: "too big", Attachments: []wire.Attachment{{Kind: "file", Path: big, Filename: "big.bin"}}}
		}
		return clienttest.Reply{Text: "here you go", Attachments: []wire.Attachment{{Kind: "file", Path: out, Filename: "report.txt"}}}
	})
	e.startReady()
	url := e.dc.AddFile("cat.png", []byte("PNGDATA"))
	e.dc.MessageCreate(discordtest.Message{ChannelID: aliceDM, Author: alice, Content: "look",
		Attachments: []discordtest.Attachment{{Name: "cat.png", URL: url, ContentType: "image/png", Size: 7}}})
	tf := e.gw.WaitReceived(waitFor, func(r clienttest.Received) bool {
		x, ok := r.Msg.(wire.TextFinal)
		return ok && x.Text == "look"
	}).Msg.(wire.TextFinal)
	if len(tf.Attachments) != 1 || tf.Attachments[0].Kind != "image" || tf.Attachments[0].Filename != "cat.png" {
		t.Fatalf("attachments = %+v", tf.Attachments)
	}
	if b, err := os.ReadFile(tf.Attachments[0].Path); err != nil || string(b) != "PNGDATA" || !strings.HasPrefix(tf.Attachments[0].Path, e.uploads) {
		t.Errorf("downloaded %s: %q, %v", tf.Attachments[0].Path, b, err)
	}
	msgs := e.waitTexts(aliceDM, "here you go", "")
	if f := msgs[1].Files; len(f) != 1 || f[0].Name != "report.txt" || string(f[0].Data) != "the report" {
		t.Errorf("uploaded files = %+v", f)
	}
	// Discord answers 413: the user is told, nothing is silently dropped.
	e.dc.SetMaxUpload(1024)
	e.dc.MessageCreate(discordtest.Message{ChannelID: aliceDM, Author: alice, Content: "big"})
	e.dc.Wait(waitFor, "the 413 notice", func() bool {
		m := e.dc.Messages(aliceDM)
		return len(m) == 4 && m[2].Text == "too big" && strings.Contains(m[3].Text, "big.bin could not be sent") && strings.Contains(m[3].Text, "413")
	})
}

func TestSlashCommandDeferredThenEdited(t *testing.T) {
	e := newEnv(t)
	e.startReady()
	e.dc.Wait(waitFor, "the commands registered", func() bool { return len(e.dc.Commands("")) == len(bridge.Commands) })
	tok := e.dc.SlashCommand(aliceDM, "", alice, "help", nil)
	e.dc.Wait(waitFor, "the deferred response edited", func() bool { return strings.Contains(e.dc.Interaction(tok).Edited, "/new") })
	in := e.dc.Interaction(tok)
	if in.Callback != int(discordgo.InteractionResponseDeferredChannelMessageWithSource) {
		t.Errorf("callback type %d, want 5 (deferred)", in.Callback)
	}
	// The fake refuses callbacks later than Discord's 3 s, so a callback
	// at all means it was in time; the rest goes to the agent as usual.
	tok = e.dc.SlashCommand(aliceDM, "", alice, "model", map[string]string{"name": "echo"})
	e.gw.WaitReceived(waitFor, func(r clienttest.Received) bool {
		c, ok := r.Msg.(wire.Command)
		return ok && c.SessionID == "dc:"+aliceDM && c.Name == "model"
	})
	if e.dc.Interaction(tok).Callback != 5 {
		t.Errorf("the /model interaction was not deferred: %+v", e.dc.Interaction(tok))
	}
	// The agent's answer to a command edits that command's response.
	tok = e.dc.SlashCommand(aliceDM, "", alice, "clear", nil)
	e.dc.Wait(waitFor, "the /clear response edited with the agent's answer", func() bool {
		return strings.Contains(e.dc.Interaction(tok).Edited, "session cleared")
	})
}
