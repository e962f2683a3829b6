package telegram_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/go-telegram/bot/models"

	"github.com/agentd/agentd/client/clienttest"
	"github.com/agentd/agentd/plugins/bridge"
	"github.com/agentd/agentd/plugins/bridge/bridgetest"
	"github.com/agentd/agentd/plugins/bridge/telegram"
	"github.com/agentd/agentd/plugins/bridge/telegram/telegramtest"
	"github.com/agentd/agentd/wire"
)

const (
	alice   = int64(1001)
	waitFor = 10 * time.Second
)

var aliceUser = telegramtest.User(alice, "Alice")

type env struct {
	t       *testing.T
	tg      *telegramtest.Server
	gw      *clienttest.Gateway
	uploads string
	runner  *bridge.Runner
	stopRun func() // set by start
}

type opts struct {
	editInterval time.Duration
}

func newEnv(t *testing.T) *env {
	e := &env{t: t, tg: telegramtest.New(t), gw: clienttest.New(t), uploads: t.TempDir()}
	return e
}

// start runs a fresh platform + runner against the fakes.
func (e *env) start(o opts) {
	e.t.Helper()
	log := bridgetest.Log(e.t)
	p := telegram.New()
	allowed := []string{fmt.Sprint(alice)}
	if err := p.Configure(bridge.PlatformConfig{
		Settings:     map[string]string{"token": e.tg.Token, "api_url": e.tg.URL(), "poll_timeout": "1"},
		AllowedUsers: allowed,
		UploadsDir:   e.uploads,
		Logger:       log,
	}); err != nil {
		e.t.Fatal(err)
	}
	if o.editInterval == 0 {
		o.editInterval = bridge.DefaultEditInterval
	}
	e.runner = bridge.NewRunner(p, bridge.RunnerConfig{
		Dialer:       e.gw.Dialer(e.gw.BridgeIdentity("tg")),
		AllowedUsers: allowed,
		Logger:       log,
		EditInterval: o.editInterval,
	})
	e.stopRun = bridgetest.Start(e.t, e.runner)
}

func (e *env) stop() { e.stopRun() }

// waitText waits until chat shows exactly want as the texts of its
// messages (in order).
func (e *env) waitTexts(chatID int64, want ...string) []telegramtest.Msg {
	e.t.Helper()
	return bridgetest.WaitTexts(e.t, waitFor, fmt.Sprint("chat ", chatID), func() []telegramtest.Msg { return e.tg.Messages(chatID) },
		func(m telegramtest.Msg) string { return m.Text }, want...)
}

func (e *env) waitTurn(match func(wire.TextFinal) bool) wire.TextFinal {
	e.t.Helper()
	r := e.gw.WaitReceived(waitFor, func(r clienttest.Received) bool {
		tf, ok := r.Msg.(wire.TextFinal)
		return ok && match(tf)
	})
	return r.Msg.(wire.TextFinal)
}

func TestStreamedReplyEditsOneMessage(t *testing.T) {
	e := newEnv(t)
	var deltas []string
	for i := range 12 {
		deltas = append(deltas, fmt.Sprintf("part%d ", i))
	}
	full := strings.Join(deltas, "")
	e.gw.SetAgent(func(ctx context.Context, tr clienttest.Turn) clienttest.Reply {
		return clienttest.Reply{Status: []string{"thinking"}, Deltas: deltas, DeltaDelay: 150 * time.Millisecond}
	})
	e.start(opts{})
	e.tg.Text(telegramtest.PrivateChat(aliceUser), aliceUser, "hello there")

	tf := e.waitTurn(func(tf wire.TextFinal) bool { return true })
	if tf.SessionID != "tg:1001" || tf.Text != "hello there" {
		t.Fatalf("turn = %+v", tf)
	}
	got := e.waitTexts(alice, strings.TrimRight(full, " "))
	if got[0].Edits < 1 {
		t.Fatalf("reply was not streamed by edits: %+v", got[0])
	}
	// At most about one edit per second: the stream lasts ~1.8 s.
	edits := e.tg.Calls("editMessageText")
	if len(edits) > 4 {
		t.Fatalf("%d edits for a 1.8 s stream, want <= 4", len(edits))
	}
	for i := 1; i < len(edits)-1; i++ { // the final edit is not throttled
		if gap := edits[i].At.Sub(edits[i-1].At); gap < 900*time.Millisecond {
			t.Fatalf("edits %d and %d only %v apart", i-1, i, gap)
		}
	}
	// session_open came before the turn, and typing was shown.
	var types []string
	for _, r := range e.gw.Received() {
		types = append(types, r.Msg.Type())
	}
	// The ack that follows the shown turn may or may not have arrived yet.
	if got := strings.TrimSuffix(strings.Join(types, ","), ",ack"); got != "auth,session_open,text_final" {
		t.Fatalf("frames from the bridge: %v", types)
	}
	if len(e.tg.Calls("sendChatAction")) == 0 {
		t.Fatal("no typing indicator")
	}
}

func TestLongReplySplitAt4096(t *testing.T) {
	e := newEnv(t)
	// Lines of mixed ASCII and astral emoji (2 UTF-16 units each), so the
	// split must count what Telegram counts.
	var b strings.Builder
	for i := 0; b.Len() < 14000; i++ {
		fmt.Fprintf(&b, "line %d 😀😀 some words here\n", i)
	}
	long := strings.TrimSpace(b.String())
	e.gw.SetAgent(func(ctx context.Context, tr clienttest.Turn) clienttest.Reply {
		return clienttest.Reply{Deltas: []string{long[:5000], long[5000:]}, Text: long}
	})
	e.start(opts{editInterval: 100 * time.Millisecond})
	e.tg.Text(telegramtest.PrivateChat(aliceUser), aliceUser, "long please")
	var msgs []telegramtest.Msg
	e.tg.Wait(waitFor, "the whole long reply", func() bool {
		msgs = e.tg.Messages(alice)
		var joined []string
		for _, m := range msgs {
			joined = append(joined, m.Text)
		}
		return strings.Join(joined, "\n") == long
	})
	if len(msgs) < 3 {
		t.Fatalf("%d messages", len(msgs))
	}
	for i, m := range msgs {
		if n := len(utf16.Encode([]rune(m.Text))); n > telegram.MaxMessageLen {
			t.Fatalf("message %d has %d UTF-16 units", i, n)
		}
	}
}

func TestHTMLEscaping(t *testing.T) {
	e := newEnv(t)
	reply := `<b>not bold</b> & <script>alert(1)</script> a<b x &amp; "q"`
	e.gw.SetAgent(func(ctx context.Context, tr clienttest.Turn) clienttest.Reply {
		return clienttest.Reply{Deltas: []string{reply[:10], reply[10:]}}
	})
	e.start(opts{})
	e.tg.Text(telegramtest.PrivateChat(aliceUser), aliceUser, "html")
	got := e.waitTexts(alice, reply)
	if got[0].ParseMode != "HTML" {
		t.Fatalf("parse mode %q", got[0].ParseMode)
	}
}

func TestDisallowedUserRefused(t *testing.T) {
	e := newEnv(t)
	e.start(opts{})
	mallory := telegramtest.User(666, "Mallory")
	fid := e.tg.AddFile("big.bin", []byte("payload"))
	e.tg.Push(models.Message{Chat: telegramtest.PrivateChat(mallory), From: &mallory, Document: &models.Document{FileID: fid, FileName: "big.bin", FileSize: 7}})
	e.tg.Text(telegramtest.PrivateChat(mallory), mallory, "let me in")
	// Told once, however often the stranger writes (once per hour).
	e.tg.Wait(waitFor, "both updates confirmed", func() bool { return len(e.tg.Unconfirmed()) == 0 })
	e.tg.Wait(waitFor, "one refusal", func() bool { return len(e.tg.Messages(666)) == 1 })
	for _, m := range e.tg.Messages(666) {
		if !strings.Contains(m.Text, "not on its list of allowed users") || !strings.Contains(m.Text, "666") {
			t.Fatalf("refusal = %q", m.Text)
		}
	}
	if n := len(e.tg.Calls("getFile")); n != 0 {
		t.Fatalf("a stranger's file was fetched (%d getFile calls)", n)
	}
	// The refused updates are handled: confirmed, never redelivered.
	e.tg.Wait(waitFor, "updates confirmed", func() bool { return len(e.tg.Unconfirmed()) == 0 })
	for _, r := range e.gw.Received() {
		if _, ok := r.Msg.(wire.TextFinal); ok {
			t.Fatalf("gateway got a turn from a stranger: %+v", r.Msg)
		}
	}
}

func TestGroupNeedsMention(t *testing.T) {
	e := newEnv(t)
	e.start(opts{})
	group := telegramtest.GroupChat(-100777, "friends")
	e.tg.Text(group, aliceUser, "hello everyone")
	e.tg.Text(group, aliceUser, "@agentd_test_bot what is 2+2?")
	tf := e.waitTurn(func(wire.TextFinal) bool { return true })
	if tf.SessionID != "tg:-100777" || tf.Text != "what is 2+2?" {
		t.Fatalf("turn = %+v", tf)
	}
	e.waitTexts(-100777, "echo: what is 2+2?")
	// A reply to the bot's message counts as addressing it.
	botMsg := e.tg.Messages(-100777)[0]
	bot := models.User{ID: 123456, IsBot: true, Username: "agentd_test_bot"}
	e.tg.Push(models.Message{Chat: group, From: &aliceUser, Text: "and 3+3?",
		ReplyToMessage: &models.Message{ID: botMsg.ID, Chat: group, From: &bot}})
	e.waitTurn(func(tf wire.TextFinal) bool { return tf.Text == "and 3+3?" })
	// A photo whose caption mentions the bot.
	fid := e.tg.AddFile("p.jpg", []byte("JPEG"))
	e.tg.Push(models.Message{Chat: group, From: &aliceUser, Caption: "@agentd_test_bot describe",
		Photo: []models.PhotoSize{{FileID: fid, Width: 9, Height: 9, FileSize: 4}}})
	e.waitTurn(func(tf wire.TextFinal) bool { return tf.Text == "describe" && len(tf.Attachments) == 1 })
	e.tg.Wait(waitFor, "updates confirmed", func() bool { return len(e.tg.Unconfirmed()) == 0 })
	if n := len(e.gw.Turns()); n != 3 {
		t.Fatalf("%d turns, want 3 (the unaddressed message must be ignored)", n)
	}
}

func TestAttachmentsIn(t *testing.T) {
	e := newEnv(t)
	e.start(opts{})
	photo := bytes.Repeat([]byte{0xff, 0xd8, 1, 2}, 100)
	doc := []byte("%PDF-1.4 fake")
	voice := []byte("OggS voice")
	pid, did, vid := e.tg.AddFile("p.jpg", photo), e.tg.AddFile("report.pdf", doc), e.tg.AddFile("v.ogg", voice)
	chat := telegramtest.PrivateChat(aliceUser)
	e.tg.Push(models.Message{Chat: chat, From: &aliceUser, Caption: "look at this",
		Photo: []models.PhotoSize{{FileID: "small-thumb", Width: 10, Height: 10}, {FileID: pid, Width: 90, Height: 90, FileSize: len(photo)}}})
	e.tg.Push(models.Message{Chat: chat, From: &aliceUser, Document: &models.Document{FileID: did, FileName: "../../report.pdf", FileSize: int64(len(doc))}})
	e.tg.Push(models.Message{Chat: chat, From: &aliceUser, Voice: &models.Voice{FileID: vid, Duration: 2, FileSize: int64(len(voice))}})

	cases := []struct {
		kind, text, name string
		data             []byte
	}{
		{"image", "look at this", "photo.jpg", photo},
		{"file", "", "../../report.pdf", doc},
		// A voice note goes to agentd as a voice attachment with no text:
		// agentd transcribes it before the model sees it.
		{"voice", "", "voice.ogg", voice},
	}
	for _, c := range cases {
		tf := e.waitTurn(func(tf wire.TextFinal) bool { return len(tf.Attachments) == 1 && tf.Attachments[0].Kind == c.kind })
		a := tf.Attachments[0]
		if tf.Text != c.text || a.Filename != c.name {
			t.Fatalf("%s: turn = %+v", c.kind, tf)
		}
		if filepath.Dir(a.Path) != filepath.Join(e.uploads, "telegram") {
			t.Fatalf("%s: stored at %s, outside the uploads dir", c.kind, a.Path)
		}
		got, err := os.ReadFile(a.Path)
		if err != nil || !bytes.Equal(got, c.data) {
			t.Fatalf("%s: stored file differs (%v)", c.kind, err)
		}
	}
	e.tg.Wait(waitFor, "updates confirmed", func() bool { return len(e.tg.Unconfirmed()) == 0 })
	if n := len(e.gw.Turns()); n != 3 {
		t.Fatalf("%d turns, want 3", n)
	}
}

func TestAttachmentsOut(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	files := map[string][]byte{"chart.png": []byte("PNGDATA"), "notes.txt": []byte("hello notes"), "hi.ogg": []byte("OGGDATA"), "clip.mp4": []byte("MP4DATA")}
	for n, d := range files {
		os.WriteFile(filepath.Join(dir, n), d, 0o600)
	}
	e.gw.SetAgent(func(ctx context.Context, tr clienttest.Turn) clienttest.Reply {
		return clienttest.Reply{Text: "here you go", Attachments: []wire.Attachment{
			{Kind: "image", Path: filepath.Join(dir, "chart.png"), Filename: "chart.png"},
			{Kind: "file", Path: filepath.Join(dir, "notes.txt"), Filename: "notes.txt"},
			{Kind: "voice", Path: filepath.Join(dir, "hi.ogg"), Filename: "hi.ogg"},
			{Kind: "video", Path: filepath.Join(dir, "clip.mp4"), Filename: "clip.mp4"},
			{Kind: "file", Path: filepath.Join(dir, "missing.txt"), Filename: "missing.txt"},
		}}
	})
	e.start(opts{})
	e.tg.Text(telegramtest.PrivateChat(aliceUser), aliceUser, "files please")
	var msgs []telegramtest.Msg
	e.tg.Wait(waitFor, "text, four files and one failure notice", func() bool {
		msgs = e.tg.Messages(alice)
		return len(msgs) == 6
	})
	want := []struct{ kind, name string }{{"text", ""}, {"photo", "chart.png"}, {"document", "notes.txt"}, {"voice", "hi.ogg"}, {"video", "clip.mp4"}, {"text", ""}}
	for i, w := range want {
		m := msgs[i]
		if m.Kind != w.kind || (w.name != "" && (m.FileName != w.name || !bytes.Equal(m.FileData, files[w.name]))) {
			t.Fatalf("message %d = %s %q, want %s %q", i, m.Kind, m.FileName, w.kind, w.name)
		}
	}
	if msgs[0].Text != "here you go" || !strings.Contains(msgs[5].Text, "missing.txt could not be sent") {
		t.Fatalf("texts: %q / %q", msgs[0].Text, msgs[5].Text)
	}
}

func TestQueuedAndCommands(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	e.gw.SetAgent(func(ctx context.Context, tr clienttest.Turn) clienttest.Reply {
		if tr.Text == "first" {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return clienttest.Reply{Deltas: []string{"done " + tr.Text}}
	})
	e.start(opts{})
	chat := telegramtest.PrivateChat(aliceUser)
	e.tg.Text(chat, aliceUser, "first")
	e.waitTurn(func(tf wire.TextFinal) bool { return tf.Text == "first" })
	e.tg.Text(chat, aliceUser, "second")
	e.waitTexts(alice, "queued #1")
	close(release)
	e.waitTexts(alice, "queued #1", "done first", "done second")

	e.tg.Text(chat, aliceUser, "/stop")
	r := e.gw.WaitReceived(waitFor, func(r clienttest.Received) bool { _, ok := r.Msg.(wire.Command); return ok })
	if c := r.Msg.(wire.Command); c.Name != "stop" || c.SessionID != "tg:1001" {
		t.Fatalf("command = %+v", c)
	}
	e.waitTexts(alice, "queued #1", "done first", "done second", "stopped")
	e.tg.Text(chat, aliceUser, "/new@agentd_test_bot")
	e.gw.WaitReceived(waitFor, func(r clienttest.Received) bool { c, ok := r.Msg.(wire.Command); return ok && c.Name == "new" })
}

func TestRateLimitedSendIsRetried(t *testing.T) {
	e := newEnv(t)
	e.tg.FailNext("sendMessage", 429, "Too Many Requests: retry after 1", 1)
	e.start(opts{})
	start := time.Now()
	e.tg.Text(telegramtest.PrivateChat(aliceUser), aliceUser, "hi")
	e.waitTexts(alice, "echo: hi")
	if d := time.Since(start); d < time.Second {
		t.Fatalf("reply after %v: retry_after was not honoured", d)
	}
}

func TestGatewayRestartReconnects(t *testing.T) {
	e := newEnv(t)
	e.start(opts{})
	chat := telegramtest.PrivateChat(aliceUser)
	e.tg.Text(chat, aliceUser, "one")
	e.waitTexts(alice, "echo: one")

	e.gw.Stop()
	e.tg.Wait(waitFor, "runner to notice", func() bool { return !e.runner.Connected() })
	id := e.tg.Text(chat, aliceUser, "two")
	// While the gateway is down the message waits, unconfirmed.
	time.Sleep(1500 * time.Millisecond)
	if u := e.tg.Unconfirmed(); len(u) != 1 || u[0] != id {
		t.Fatalf("unconfirmed = %v, want [%d]", u, id)
	}
	if err := e.gw.Start(); err != nil {
		t.Fatal(err)
	}
	e.waitTexts(alice, "echo: one", "echo: two")
	if !e.runner.Connected() {
		t.Fatal("Connected() false after reconnect")
	}
	e.tg.Wait(waitFor, "update confirmed", func() bool { return len(e.tg.Unconfirmed()) == 0 })
}

func TestOffsetNotAdvancedBeforeAcceptance(t *testing.T) {
	e := newEnv(t)
	e.gw.Stop() // the agent is unreachable: nothing can be accepted
	e.start(opts{})
	id := e.tg.Text(telegramtest.PrivateChat(aliceUser), aliceUser, "do not lose me")
	// Wait until the bridge has fetched the update (its Deliver is now
	// blocked), then kill it.
	e.tg.Wait(waitFor, "the update to be fetched", func() bool { return e.tg.Fetched(id) == 1 })
	time.Sleep(300 * time.Millisecond)
	e.stop()
	if u := e.tg.Unconfirmed(); len(u) != 1 || u[0] != id {
		t.Fatalf("unconfirmed after the kill = %v, want [%d]", u, id)
	}
	// A new bridge process gets the same update again and delivers it.
	if err := e.gw.Start(); err != nil {
		t.Fatal(err)
	}
	e.start(opts{})
	tf := e.waitTurn(func(wire.TextFinal) bool { return true })
	if n := e.tg.Fetched(id); n < 2 {
		t.Fatalf("update fetched %d times, want a redelivery", n)
	}
	if tf.Text != "do not lose me" {
		t.Fatalf("turn = %+v", tf)
	}
	e.waitTexts(alice, "echo: do not lose me")
	e.tg.Wait(waitFor, "update confirmed", func() bool { return len(e.tg.Unconfirmed()) == 0 })
}

func TestConfigureErrors(t *testing.T) {
	tests := []struct {
		name     string
		settings map[string]string
		uploads  string
		want     string
	}{
		{"no token", map[string]string{}, "/tmp", `"token" is required`},
		{"bad token", map[string]string{"token": "abc"}, "/tmp", "does not look like a bot token"},
		{"bad url", map[string]string{"token": "1:a", "api_url": "ftp://x"}, "/tmp", "must be an http(s) URL"},
		{"bad poll", map[string]string{"token": "1:a", "poll_timeout": "soon"}, "/tmp", "poll_timeout"},
		{"no uploads", map[string]string{"token": "1:a"}, "", "uploads directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := telegram.New().Configure(bridge.PlatformConfig{Settings: tc.settings, UploadsDir: tc.uploads})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// A refused token is the failed platform state, reported once; the bridge
// then waits (no getMe or getUpdates loop) until it is stopped.
func TestBadTokenFails(t *testing.T) {
	tg := telegramtest.New(t)
	p := telegram.New()
	if err := p.Configure(bridge.PlatformConfig{Settings: map[string]string{"token": "999:wrong", "api_url": tg.URL()}, UploadsDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	gw := clienttest.New(t)
	states := make(chan string, 10)
	r := bridge.NewRunner(p, bridge.RunnerConfig{Dialer: gw.Dialer(gw.BridgeIdentity("tg")), AllowedUsers: []string{"*"},
		OnState: func(s bridge.PlatformState, reason string) { states <- bridge.StateStatus(s, reason) }})
	stop := bridgetest.Start(t, r)
	select {
	case s := <-states:
		if !strings.HasPrefix(s, "failed: Telegram refused the bot token (401") {
			t.Errorf("state %q, want failed with the 401", s)
		}
	case <-time.After(waitFor):
		t.Fatal("no state reported")
	}
	// Still running (a Run that returned would end the gateway
	// connection too, and agentd would relaunch the process).
	tg.Wait(waitFor, "the runner connected to the gateway", r.Connected)
	stop() // Run returns nil when stopped (checked by Start)
	if n := len(tg.Calls("getMe")); n != 1 || len(states) != 0 {
		t.Errorf("%d getMe calls, %d more states: want one of each, then nothing", n, len(states))
	}
}
