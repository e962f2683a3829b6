package integration

// What a Telegram user and the operator see of the bridge (issue 9, items
// 7-13): the real bridge-telegram under the real supervisor, against the
// fake Bot API.

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentd/agentd/plugins/bridge"
	"github.com/agentd/agentd/plugins/bridge/telegram"
	"github.com/agentd/agentd/plugins/bridge/telegram/telegramtest"
)

// chatHas waits until some bot message in chat satisfies cond.
func (e *bridgeEnv) chatHas(tb testing.TB, chat int64, what string, cond func(telegramtest.Msg) bool) telegramtest.Msg {
	tb.Helper()
	var got telegramtest.Msg
	deadline := time.Now().Add(15 * time.Second)
	for {
		for _, m := range e.tg.Messages(chat) {
			if cond(m) {
				got = m
				return got
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s; chat %d shows %+v\n%s", what, chat, e.tg.Messages(chat), e.bridgeLog("telegram"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestBridgeTelegramUserExperience(t *testing.T) {
	e := newBridgeEnvEditing(t, fmt.Sprint(aliceID), "", dmAllowlist(t))

	t.Run("command menu, /start and /help", func(t *testing.T) {
		e.tg.Wait(10*time.Second, "setMyCommands", func() bool { return len(e.tg.Commands()) == len(bridge.Commands) })
		for i, c := range e.tg.Commands() {
			if c.Command != bridge.Commands[i].Name || c.Description != bridge.Commands[i].Help {
				t.Errorf("menu entry %d = %+v, want %+v", i, c, bridge.Commands[i])
			}
		}
		e.tg.Text(aliceChat, alice, "/start")
		welcome := e.chatHas(t, aliceID, "the welcome", func(m telegramtest.Msg) bool { return strings.HasPrefix(m.Text, "Hello! This is ") })
		if !strings.Contains(welcome.Text, "\n/new — start a new conversation") || strings.Contains(welcome.Text, "session") {
			t.Errorf("welcome %q", welcome.Text)
		}
		e.tg.Text(aliceChat, alice, "/help")
		e.chatHas(t, aliceID, "the help", func(m telegramtest.Msg) bool { return strings.HasPrefix(m.Text, "Commands:\n/new") })
		// Neither reached the model.
		for _, m := range e.tg.Messages(aliceID) {
			if strings.HasPrefix(m.Text, "echo: /") {
				t.Errorf("a command went to the model: %q", m.Text)
			}
		}
	})

	t.Run("markdown rendered", func(t *testing.T) {
		e.tg.Text(aliceChat, alice, "say **bold**, `x < y` and [docs](https://example.com)")
		m := e.chatHas(t, aliceID, "the formatted echo", func(m telegramtest.Msg) bool {
			return strings.HasPrefix(m.Text, "echo: say bold, x < y and docs") && strings.HasSuffix(m.Text, "real answers)")
		})
		if m.ParseMode != "HTML" || !strings.Contains(m.Raw, "<b>bold</b>") || !strings.Contains(m.Raw, "<code>x &lt; y</code>") ||
			!strings.Contains(m.Raw, `<a href="https://example.com">docs</a>`) {
			t.Errorf("sent %q (mode %q)", m.Raw, m.ParseMode)
		}
	})

	t.Run("plain text when Telegram refuses the entities", func(t *testing.T) {
		e.tg.FailNext("sendMessage", 400, `Bad Request: can't parse entities: Unsupported start tag "x" at byte offset 0`, 0)
		e.tg.Text(aliceChat, alice, "fall *back*")
		e.chatHas(t, aliceID, "the echo after the refusal", func(m telegramtest.Msg) bool {
			return strings.HasPrefix(m.Text, "echo: fall *back*") && m.ParseMode == ""
		})
		var plain bool
		for _, c := range e.tg.Calls("sendMessage") {
			if c.Params["parse_mode"] == "" && strings.Contains(c.Params["text"], "fall *back*") {
				plain = true
			}
		}
		if !plain {
			t.Errorf("no plain-text resend after the refused entities: %+v", e.tg.Calls("sendMessage"))
		}
	})

	t.Run("stranger told once", func(t *testing.T) {
		mallory := telegramtest.User(666, "Mallory")
		for i := range 4 {
			e.tg.Text(telegramtest.PrivateChat(mallory), mallory, fmt.Sprint("let me in ", i))
		}
		e.tg.Wait(10*time.Second, "the stranger's updates confirmed", func() bool { return len(e.tg.Unconfirmed()) == 0 })
		e.tg.Wait(10*time.Second, "the refusal", func() bool { return len(e.tg.Messages(666)) >= 1 })
		logLines := func() int { return strings.Count(e.rawBridgeLog("telegram"), "not allowed refused") }
		e.tg.Wait(10*time.Second, "the refusal logged", func() bool { return logLines() >= 1 })
		if n := len(e.tg.Messages(666)); n != 1 {
			t.Errorf("%d refusals for 4 messages, want 1", n)
		}
		if n := logLines(); n != 1 {
			t.Errorf("%d log lines for the refusals, want 1", n)
		}
	})

	t.Run("no server paths shown", func(t *testing.T) {
		for _, m := range e.tg.Messages(aliceID) {
			if strings.Contains(m.Text, e.dir) {
				t.Errorf("a server path reached the user: %q", m.Text)
			}
		}
	})

	t.Run("no per-frame logs at info", func(t *testing.T) {
		log := e.rawBridgeLog("telegram")
		if strings.Contains(log, "level=DEBUG") || strings.Contains(log, "gateway frame") {
			t.Errorf("bridge log has debug records:\n%s", e.bridgeLog("telegram"))
		}
	})
}

// rawBridgeLog is the whole of logs/bridge-<name>.log.
func (e *bridgeEnv) rawBridgeLog(name string) string {
	b, _ := os.ReadFile(filepath.Join(e.dir, "logs", "bridge-"+name+".log"))
	return string(b)
}

// A second process polling the same bot: the bridge shows the conflict as
// its own state (not "unreachable"), reports it once however many polls
// fail, and clears it as soon as a poll succeeds again.
func TestBridgeTelegramPollConflict(t *testing.T) {
	e := newBridgeEnv(t, "")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { // the other instance: long polls, back to back
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := http.Post(e.tg.URL()+"/bot"+e.tg.Token+"/getUpdates", "application/json", bytes.NewReader([]byte(`{"timeout":1}`)))
			if err == nil {
				resp.Body.Close()
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	defer func() { close(stop); wg.Wait() }()
	e.waitBridge("telegram", 20*time.Second, "in conflict", func(b bridgeState) bool { return b.PlatformStatus == telegram.ConflictStatus })
	if r := agentd(t, nil, "bridge", "list", e.dir); !strings.Contains(r.stdout, telegram.ConflictStatus) {
		t.Errorf("bridge list does not show the conflict:\n%s", r.stdout)
	}
	// Many more polls fail meanwhile.
	calls := len(e.tg.Calls("getUpdates"))
	e.tg.Wait(20*time.Second, "ten more polls", func() bool { return len(e.tg.Calls("getUpdates")) >= calls+10 })
	close(stop)
	wg.Wait()
	stop = make(chan struct{})
	b := e.waitBridge("telegram", 20*time.Second, "out of conflict", func(b bridgeState) bool {
		return b.PlatformStatus == "connected to Telegram as @"+e.tg.Bot.Username
	})
	n := slices.IndexFunc(b.Events, func(ev struct {
		Kind string `json:"kind"`
		Text string `json:"text"`
	}) bool {
		return strings.Contains(ev.Text, "unreachable")
	})
	if n >= 0 {
		t.Errorf("the conflict was reported as unreachable: %+v", b.Events)
	}
	conflicts := 0
	for _, ev := range b.Events {
		if ev.Text == telegram.ConflictStatus {
			conflicts++
		}
	}
	if conflicts != 1 {
		t.Errorf("%d conflict events, want 1: %+v", conflicts, b.Events)
	}
	// It works again.
	e.tg.Text(aliceChat, alice, "after the conflict")
	e.waitReply(15*time.Second, "after the conflict")
}

// A revoked bridge certificate: the supervisor sees the refusal, gives the
// bridge a fresh identity and restarts it, and says so; the chat keeps its
// session.
func TestBridgeRevokedCertificateRenewed(t *testing.T) {
	e := newBridgeEnv(t, "")
	e.tg.Text(aliceChat, alice, "before the revoke")
	e.waitReply(15*time.Second, "before the revoke")
	pid := e.bridge("telegram").PID
	if r := agentd(t, nil, "device", "revoke", e.dir, "__bridge_telegram"); r.code != 0 {
		t.Fatalf("revoke: %d %s%s", r.code, r.stdout, r.stderr)
	}
	b := e.waitBridge("telegram", 30*time.Second, "relaunched with a fresh certificate", func(b bridgeState) bool {
		return b.State == "running" && b.GatewayConnected && b.PID != pid
	})
	said := false
	for _, ev := range b.Events {
		if strings.Contains(ev.Text, "issued a fresh one and restarted the bridge") {
			said = true
		}
	}
	if !said {
		t.Errorf("no event says what happened: %+v", b.Events)
	}
	e.tg.Text(aliceChat, alice, "after the revoke")
	e.waitReply(15*time.Second, "after the revoke")
	if ids := e.sessions(e.owner); !slices.Contains(ids, fmt.Sprintf("tg:%d", aliceID)) {
		t.Errorf("sessions %q", ids)
	}
}
