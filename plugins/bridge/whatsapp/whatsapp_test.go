package whatsapp_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/proto/waWeb"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	"google.golang.org/protobuf/proto"

	"github.com/agentd/agentd/client/clienttest"
	"github.com/agentd/agentd/plugins/bridge"
	"github.com/agentd/agentd/plugins/bridge/bridgetest"
	"github.com/agentd/agentd/plugins/bridge/whatsapp"
	"github.com/agentd/agentd/plugins/bridge/whatsapp/whatsapptest"
	"github.com/agentd/agentd/wire"
)

const (
	botPN  = "15550001111"
	botLID = "200000000000001"
	alice  = "391234567"
	waitT  = 20 * time.Second
)

type env struct {
	t       *testing.T
	gw      *clienttest.Gateway
	c       *whatsapptest.Client
	p       *whatsapp.Platform
	uploads string
	// mu guards events and statuses.
	mu       sync.Mutex
	events   []string // "kind: text"
	statuses []string
}

func newEnv(t *testing.T, loggedIn bool, settings map[string]string) *env {
	e := &env{t: t, gw: clienttest.New(t), c: whatsapptest.New(botPN, botLID, loggedIn), uploads: t.TempDir()}
	e.p = whatsapp.NewWithClient(e.c)
	log := bridgetest.Log(t)
	allowed := []string{"+39 123 4567"}
	if err := e.p.Configure(bridge.PlatformConfig{Settings: settings, AllowedUsers: allowed,
		UploadsDir: e.uploads, DataDir: t.TempDir(), Logger: log}); err != nil {
		t.Fatal(err)
	}
	r := bridge.NewRunner(e.p, bridge.RunnerConfig{
		Dialer: e.gw.Dialer(e.gw.BridgeIdentity("wa")), AllowedUsers: allowed, Logger: log,
		EditInterval: time.Millisecond,
		OnEvent: func(kind, text string) {
			e.mu.Lock()
			e.events = append(e.events, kind+": "+text)
			e.mu.Unlock()
		},
		OnStatus: func(text string) {
			e.mu.Lock()
			e.statuses = append(e.statuses, text)
			e.mu.Unlock()
		},
	})
	bridgetest.Start(t, r)
	// The platform registers its handler at the start of Run.
	e.wait("event handler", func(c *whatsapptest.Client) bool { return c.Handlers() > 0 && (c.Connects() > 0) })
	return e
}

func (e *env) wait(what string, cond func(*whatsapptest.Client) bool) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitT)
	defer cancel()
	if err := e.c.Wait(ctx, cond); err != nil {
		e.t.Fatalf("waiting for %s: %v", what, err)
	}
}

func (e *env) waitEvent(prefix string) string {
	e.t.Helper()
	deadline := time.Now().Add(waitT)
	for time.Now().Before(deadline) {
		e.mu.Lock()
		for _, ev := range e.events {
			if strings.HasPrefix(ev, prefix) {
				e.mu.Unlock()
				return ev
			}
		}
		e.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.t.Fatalf("no event %q; got %q", prefix, e.events)
	return ""
}

func (e *env) waitState(want string) {
	e.t.Helper()
	deadline := time.Now().Add(waitT)
	for time.Now().Before(deadline) {
		if strings.HasPrefix(e.p.State(), want) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.t.Fatalf("state %q, want %q", e.p.State(), want)
}

func texts(c *whatsapptest.Client) []string {
	var out []string
	for _, s := range c.Sent() {
		if t := s.Msg.GetConversation(); t != "" {
			out = append(out, t)
		}
	}
	return out
}

func TestDMTurnOneFinalMessageSplitTypingRead(t *testing.T) {
	long := strings.Repeat("word ", 1700) // 8500 characters: three messages
	release := make(chan struct{})
	e := newEnv(t, true, nil)
	e.gw.SetAgent(func(ctx context.Context, tr clienttest.Turn) clienttest.Reply {
		<-release
		return clienttest.Reply{Deltas: []string{long[:4000], long[4000:]}}
	})
	e.c.Emit(whatsapptest.DM("MSG1", alice, "hello", time.Now()))
	e.wait("composing", func(c *whatsapptest.Client) bool {
		for _, p := range c.Presences() {
			if p.State == types.ChatPresenceComposing && p.To.User == alice {
				return true
			}
		}
		return false
	})
	close(release)
	e.wait("three parts", func(c *whatsapptest.Client) bool { return len(texts(c)) >= 3 })
	got := texts(e.c)
	if len(got) != 3 || strings.Fields(strings.Join(got, " ")) == nil || strings.Join(strings.Fields(strings.Join(got, " ")), " ") != strings.TrimSpace(long) {
		t.Errorf("got %d parts of lengths %v", len(got), lens(got))
	}
	for _, s := range got {
		if len(s) > whatsapp.MaxMessageLen {
			t.Errorf("part of %d characters", len(s))
		}
	}
	for _, s := range e.c.Sent() {
		if s.To != types.NewJID(alice, types.DefaultUserServer) {
			t.Errorf("sent to %s", s.To)
		}
	}
	turns := e.gw.Turns()
	if len(turns) != 1 || turns[0].SessionID != "wa:"+alice || turns[0].Text != "hello" {
		t.Fatalf("turns = %+v", turns)
	}
	e.wait("paused", func(c *whatsapptest.Client) bool {
		ps := c.Presences()
		return len(ps) > 0 && ps[len(ps)-1].State == types.ChatPresencePaused
	})
	reads := e.c.Reads()
	if len(reads) != 1 || reads[0].IDs[0] != "MSG1" {
		t.Errorf("reads = %+v", reads)
	}
	// The same message again (a redelivery after a reconnect) is not a turn.
	e.c.Emit(whatsapptest.DM("MSG1", alice, "hello", time.Now()))
	e.c.Emit(whatsapptest.DM("MSG2", alice, "again", time.Now()))
	waitTurns(t, e.gw, 2)
	if tt := e.gw.Turns(); tt[1].Text != "again" {
		t.Errorf("second turn %q", tt[1].Text)
	}
}

func lens(ss []string) []int {
	var n []int
	for _, s := range ss {
		n = append(n, len(s))
	}
	return n
}

func waitTurns(t *testing.T, gw *clienttest.Gateway, n int) {
	t.Helper()
	deadline := time.Now().Add(waitT)
	for len(gw.Turns()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d turns, want %d", len(gw.Turns()), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestIgnoredMessages(t *testing.T) {
	e := newEnv(t, true, map[string]string{"max_age": "10m"})
	now := time.Now()
	status := whatsapptest.DM("S1", alice, "status", now)
	status.Info.Chat = types.StatusBroadcastJID
	news := whatsapptest.DM("N1", alice, "news", now)
	news.Info.Chat = types.NewJID("1203630000", types.NewsletterServer)
	own := whatsapptest.DM("O1", alice, "mine", now)
	own.Info.IsFromMe = true
	react := whatsapptest.DM("R1", alice, "", now)
	react.Message = &waE2E.Message{ReactionMessage: &waE2E.ReactionMessage{Text: proto.String("👍")}}
	protoMsg := whatsapptest.DM("P1", alice, "", now)
	protoMsg.Message = &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{Type: waE2E.ProtocolMessage_REVOKE.Enum()}}
	old := whatsapptest.DM("B1", alice, "yesterday's question", now.Add(-11*time.Minute))
	hist := whatsapptest.DM("H1", alice, "from history", now)
	hist.SourceWebMsg = &waWeb.WebMessageInfo{}
	stranger := whatsapptest.DM("X1", "447700900000", "let me in", now)
	lidUnknown := whatsapptest.DM("L1", alice, "who am I", now)
	lidUnknown.Info.Sender = types.NewJID("999999999999999", types.HiddenUserServer)
	lidUnknown.Info.Chat = lidUnknown.Info.Sender
	for _, m := range []*events.Message{status, news, own, react, protoMsg, old, hist, lidUnknown} {
		e.c.Emit(m)
	}
	e.c.Emit(stranger) // refused by the runner, told so once
	e.c.Emit(whatsapptest.DM("OK1", alice, "fresh", now))
	waitTurns(t, e.gw, 1)
	e.wait("refusal and echo", func(c *whatsapptest.Client) bool { return len(texts(c)) >= 2 })
	turns := e.gw.Turns()
	if len(turns) != 1 || turns[0].Text != "fresh" {
		t.Fatalf("turns = %+v", turns)
	}
	var refused bool
	for _, s := range e.c.Sent() {
		if s.To.User == "447700900000" {
			refused = strings.Contains(s.Msg.GetConversation(), "447700900000")
		}
	}
	if !refused {
		t.Errorf("stranger not told: %q", texts(e.c))
	}
}

func TestGroupOnlyWhenMentionedOrRepliedTo(t *testing.T) {
	e := newEnv(t, true, nil)
	now := time.Now()
	const group = "120363000000000001"
	aliceLID := types.NewJID("100000000000042", types.HiddenUserServer)
	e.c.MapLID(aliceLID.User, alice)
	alicePN := types.NewJID(alice, types.DefaultUserServer)
	cases := []struct {
		m    *events.Message
		want string // "" = ignored
	}{
		{whatsapptest.GroupText("G1", group, alicePN, "no mention", now, ""), ""},
		{whatsapptest.GroupText("G2", group, alicePN, "@someone else", now, "", "123456789@s.whatsapp.net"), ""},
		{whatsapptest.GroupText("G3", group, aliceLID, "@"+botLID+" by LID", now, "", botLID+"@lid"), "by LID"},
		{whatsapptest.GroupText("G4", group, alicePN, "@"+botPN+" by phone", now, "", botPN+"@s.whatsapp.net"), "by phone"},
		{whatsapptest.GroupText("G5", group, alicePN, "a reply", now, botPN+":3@s.whatsapp.net"), "a reply"},
		{whatsapptest.GroupText("G6", group, alicePN, "reply to someone", now, "123456789@s.whatsapp.net"), ""},
	}
	var want []string
	for _, c := range cases {
		e.c.Emit(c.m)
		if c.want != "" {
			want = append(want, c.want)
		}
	}
	waitTurns(t, e.gw, len(want))
	e.wait("replies", func(c *whatsapptest.Client) bool { return len(texts(c)) >= len(want) })
	var got []string
	for _, tr := range e.gw.Turns() {
		if tr.SessionID != "wa:"+group+"@g.us" {
			t.Errorf("session %q", tr.SessionID)
		}
		got = append(got, tr.Text)
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("turns %q, want %q", got, want)
	}
	for _, s := range e.c.Sent() {
		if s.To != types.NewJID(group, types.GroupServer) {
			t.Errorf("reply sent to %s", s.To)
		}
	}
}

func TestConnectionEvents(t *testing.T) {
	cases := []struct {
		evt       any
		state     string
		event     string
		halts     bool
		eventText string
	}{
		{&events.Disconnected{}, "disconnected", "", false, ""},
		{&events.KeepAliveTimeout{ErrorCount: 3}, "degraded: keepalive timeout (3", "", false, ""},
		{&events.LoggedOut{OnConnect: true, Reason: events.ConnectFailureLoggedOut}, "needs_login: WhatsApp was logged out", "state: needs_login", true, "agentd bridge login"},
		{&events.StreamReplaced{}, "failed: " + whatsapp.StreamReplaced, "state: failed", true, "another process"},
		{&events.TemporaryBan{Code: events.TempBanSentToTooManyPeople, Expire: 2 * time.Hour}, "failed: banned", "state: failed", true, "expires in 2h0m0s"},
		{&events.ClientOutdated{}, "failed: client outdated", "state: failed", true, "update agentd"},
	}
	for _, c := range cases {
		t.Run(strings.TrimPrefix(strings.TrimPrefix(typeName(c.evt), "*events."), "events."), func(t *testing.T) {
			e := newEnv(t, true, nil)
			e.waitState("connected as +" + botPN)
			e.waitEvent("state: connected as +" + botPN)
			e.c.Emit(c.evt)
			e.waitState(c.state)
			if c.event != "" {
				if ev := e.waitEvent(c.event); !strings.Contains(ev, c.eventText) {
					t.Errorf("event %q lacks %q", ev, c.eventText)
				}
			}
			if c.halts {
				e.wait("disconnect", func(c *whatsapptest.Client) bool { return !c.Connected() })
				if n := e.c.Connects(); n != 1 {
					t.Errorf("%d connects: the bridge must not reconnect", n)
				}
				return
			}
			e.c.Emit(&events.Connected{})
			e.waitState("connected as +" + botPN)
		})
	}
}

func typeName(v any) string { return fmt.Sprintf("%T", v) }

func TestQRLoginRoundsAndTimeout(t *testing.T) {
	e := newEnv(t, false, nil)
	e.waitState(whatsapp.StatusNeedsLogin)
	e.c.QR(whatsmeow.QRChannelItem{Event: "code", Code: "2@first", Timeout: 60 * time.Second})
	e.c.QR(whatsmeow.QRChannelItem{Event: "code", Code: "2@second", Timeout: 20 * time.Second})
	e.waitEvent("qr: 2@first")
	e.waitEvent("qr: 2@second")
	e.c.QR(whatsmeow.QRChannelTimeout)
	if ev := e.waitEvent("state: needs_login: the QR codes expired"); !strings.Contains(ev, "bridge login") {
		t.Errorf("event %q", ev)
	}
	e.wait("disconnect", func(c *whatsapptest.Client) bool { return !c.Connected() })
}

func TestQRLoginLinks(t *testing.T) {
	e := newEnv(t, false, nil)
	e.c.QR(whatsmeow.QRChannelItem{Event: "code", Code: "2@only", Timeout: 60 * time.Second})
	e.waitEvent("qr: 2@only")
	e.c.Link()
	e.waitEvent("status: linked as +" + botPN)
	e.waitState("connected as +" + botPN)
	e.c.Emit(whatsapptest.DM("M1", alice, "hi", time.Now()))
	waitTurns(t, e.gw, 1)
}

func TestPairCodeLogin(t *testing.T) {
	e := newEnv(t, false, map[string]string{"pair_phone": "+1 555 000 1111"})
	ev := e.waitEvent("state: " + whatsapp.StatusNeedsLogin + ": pair code ABCD-1234")
	if e.c.PairedPhone() != botPN {
		t.Errorf("paired %q (event %q)", e.c.PairedPhone(), ev)
	}
}

func TestVoiceNoteInAndVoiceReplyOut(t *testing.T) {
	e := newEnv(t, true, nil)
	ogg := []byte("OggS\x00\x02fake-opus-voice-note")
	e.c.AddMedia("/v/t62/voice-1", ogg)
	replyVoice := filepath.Join(t.TempDir(), "reply.ogg")
	if err := os.WriteFile(replyVoice, []byte("OggS reply"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.gw.SetAgent(func(ctx context.Context, tr clienttest.Turn) clienttest.Reply {
		return clienttest.Reply{Text: "spoken", Attachments: []wire.Attachment{{Kind: "voice", Path: replyVoice}}}
	})
	e.c.Emit(whatsapptest.VoiceNote("V1", alice, "/v/t62/voice-1", len(ogg), time.Now()))
	waitTurns(t, e.gw, 1)
	var tf wire.TextFinal
	for _, r := range e.gw.Received() {
		if m, ok := r.Msg.(wire.TextFinal); ok {
			tf = m
		}
	}
	if tf.Text != "" || len(tf.Attachments) != 1 || tf.Attachments[0].Kind != "voice" {
		t.Fatalf("turn = %+v", tf)
	}
	data, err := os.ReadFile(tf.Attachments[0].Path)
	if err != nil || string(data) != string(ogg) {
		t.Fatalf("stored voice note: %q, %v", data, err)
	}
	if fi, _ := os.Stat(tf.Attachments[0].Path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	e.wait("voice reply", func(c *whatsapptest.Client) bool {
		for _, s := range c.Sent() {
			if a := s.Msg.GetAudioMessage(); a != nil {
				return a.GetPTT() && strings.HasPrefix(a.GetMimetype(), "audio/ogg; codecs=opus")
			}
		}
		return false
	})
	if up := e.c.Uploads(); len(up) != 1 || string(up[0]) != "OggS reply" {
		t.Errorf("uploads %q", up)
	}
}

func TestConfigureErrors(t *testing.T) {
	for _, s := range []map[string]string{{"max_age": "soon"}, {"max_age": "-1m"}, {"pair_phone": "call me"}} {
		p := whatsapp.NewWithClient(whatsapptest.New(botPN, botLID, true))
		if err := p.Configure(bridge.PlatformConfig{Settings: s, UploadsDir: t.TempDir()}); err == nil {
			t.Errorf("%v accepted", s)
		}
	}
	p := whatsapp.NewWithClient(whatsapptest.New(botPN, botLID, true))
	if err := p.Configure(bridge.PlatformConfig{AllowedUsers: []string{"alice"}, UploadsDir: t.TempDir()}); err == nil {
		t.Error("allowed user that is no phone number accepted")
	}
}
