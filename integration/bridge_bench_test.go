package integration

// Benchmarks of the bridge path with the real binaries (agentd serve +
// bridge-telegram under the real supervisor) and the fake Bot API in the
// test process. Run them short, e.g.
//
//	go test -run '^$' -bench Bridge -benchtime 2s ./integration/

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/go-telegram/bot/models"

	"github.com/agentd/agentd/client"
	"github.com/agentd/agentd/plugins/bridge/telegram/telegramtest"
	"github.com/agentd/agentd/wire"
)

// benchChat is a fresh private chat per iteration: the runner throttles
// sends and edits per chat (one per second), which would otherwise add up
// to a second to a reply that follows the previous one closely.
func benchChat(i int) (models.Chat, models.User) {
	u := telegramtest.User(int64(50000+i), fmt.Sprintf("User%d", i))
	return telegramtest.PrivateChat(u), u
}

// firstSend waits until the fake has received a sendMessage for chat and
// returns when it arrived.
func firstSend(tb testing.TB, tg *telegramtest.Server, chat int64) time.Time {
	tb.Helper()
	want := fmt.Sprint(chat)
	var at time.Time
	tg.Wait(15*time.Second, "the first sendMessage to chat "+want, func() bool {
		for _, c := range tg.Calls("sendMessage") {
			if c.Params["chat_id"] == want {
				at = c.At
				return true
			}
		}
		return false
	})
	return at
}

// complete waits until the bot's reply in chat is the whole echo of text.
// telegramTurn sends text from bench user n to the bot and returns the
// time to the first sendMessage of its reply, once the reply is complete:
// the Telegram path the other bridges' benchmarks are measured against.
func telegramTurn(tb testing.TB, tg *telegramtest.Server, n int, text string) time.Duration {
	tb.Helper()
	c, u := benchChat(n)
	t0 := time.Now()
	tg.Text(c, u, text)
	first := firstSend(tb, tg, c.ID).Sub(t0)
	complete(tb, tg, c.ID, text)
	return first
}

func complete(tb testing.TB, tg *telegramtest.Server, chat int64, text string) {
	tb.Helper()
	tg.Wait(15*time.Second, "the complete reply in chat "+fmt.Sprint(chat), func() bool {
		for _, m := range tg.Messages(chat) {
			if isEchoOf(m, text) {
				return true
			}
		}
		return false
	})
}

// BenchmarkBridgeLatency compares, in the same run, a user turn through the
// bridge path (fake Telegram update → bridge → gateway → echo agent →
// bridge → first sendMessage at the fake) with a direct WebSocket client's
// turn (text_final → first delta, and text_final → response).
func BenchmarkBridgeLatency(b *testing.B) {
	e := newBridgeEnvAllowing(b, "*", "")
	ws, err := e.owner.DialWS(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	defer ws.Close()
	// Warm both paths once.
	wsTurn(b, ws, "bench-ws", "warm up")
	c, u := benchChat(-1)
	e.tg.Text(c, u, "warm up")
	complete(b, e.tg, c.ID, "warm up")

	var bridgeFirst, wsDelta, wsResp time.Duration
	n := 0
	for b.Loop() {
		text := fmt.Sprintf("bench message %d", n)
		bridgeFirst += telegramTurn(b, e.tg, n, text)

		d, r := wsTiming(b, ws, "bench-ws", text)
		wsDelta += d
		wsResp += r
		n++
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(n) / 1e6 }
	b.ReportMetric(ms(bridgeFirst), "bridge-first-send-ms")
	b.ReportMetric(ms(wsDelta), "ws-first-delta-ms")
	b.ReportMetric(ms(wsResp), "ws-response-ms")
	b.ReportMetric(float64(bridgeFirst)/float64(wsResp), "bridge/ws-response")
	b.ReportMetric(float64(bridgeFirst)/float64(wsDelta), "bridge/ws-first-delta")
	b.ReportMetric(ms(bridgeFirst-wsDelta), "bridge-extra-ms")
}

// wsTiming runs one WS turn and returns the time to the first delta and to
// the response frame.
func wsTiming(tb testing.TB, ws *client.Conn, sid, text string) (firstDelta, response time.Duration) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	t0 := time.Now()
	if err := ws.Send(wire.TextFinal{Text: text, SessionID: sid}); err != nil {
		tb.Fatal(err)
	}
	for {
		m, err := ws.Recv(ctx)
		if err != nil {
			tb.Fatalf("ws turn: %v", err)
		}
		switch m.(type) {
		case wire.Delta:
			if firstDelta == 0 {
				firstDelta = time.Since(t0)
			}
		case wire.Response:
			response = time.Since(t0)
		case wire.Error:
			tb.Fatalf("ws turn: %+v", m)
		case wire.TurnComplete:
			return firstDelta, response
		}
	}
}

// BenchmarkBridgeKillRecovery measures, per SIGKILL of the telegram bridge
// process, the time until GET /api/bridges shows it running again, and
// until a message sent right after the kill reaches the fake as the first
// sendMessage of its reply. Between iterations a REST restart resets the
// supervisor's backoff, so every kill is a first crash.
func BenchmarkBridgeKillRecovery(b *testing.B) {
	e := newBridgeEnvAllowing(b, "*", "")
	ctx := context.Background()
	var running, served time.Duration
	n := 0
	for b.Loop() {
		before := e.bridge("telegram")
		c, u := benchChat(n)
		text := fmt.Sprintf("after kill %d", n)
		t0 := time.Now()
		if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
			b.Fatal(err)
		}
		e.tg.Text(c, u, text)
		e.waitBridge("telegram", 10*time.Second, "running again", func(s bridgeState) bool {
			return s.State == "running" && s.PID != before.PID
		})
		running += time.Since(t0)
		served += firstSend(b, e.tg, c.ID).Sub(t0)

		b.StopTimer()
		complete(b, e.tg, c.ID, text)
		if err := e.owner.PostJSON(ctx, "/api/bridges/telegram/restart", nil, nil); err != nil {
			b.Fatal(err)
		}
		e.waitBridge("telegram", 10*time.Second, "running and connected", func(s bridgeState) bool {
			return s.State == "running" && s.GatewayConnected
		})
		b.StartTimer()
		n++
	}
	b.ReportMetric(float64(running)/float64(n)/1e6, "kill-to-running-ms")
	b.ReportMetric(float64(served)/float64(n)/1e6, "kill-to-answer-ms")
}

// BenchmarkBridgeFloodThroughput: the messages per second (sendMessage and
// editMessageText calls Telegram accepted) one bridge sustains into 1 and
// into 20 chats while the fake enforces a per-chat limit of 1 per second,
// against the platform's ideal, printed as a ratio. Each chat gets a burst
// of messages at once (replies, queued notices and streamed edits all
// count). Over a window from the burst to the last call, a platform
// allowing 1 call per second per chat accepts at most chats × (1 + window
// in seconds) calls: that is the ideal (limit × chats, counted without the
// fencepost error of a short window).
func BenchmarkBridgeFloodThroughput(b *testing.B) {
	for _, chats := range []int{1, 20} {
		b.Run(fmt.Sprintf("chats=%d", chats), func(b *testing.B) {
			e := newBridgeEnvAllowing(b, "*", "")
			e.tg.AddRule(telegramtest.Rule{Methods: []string{"sendMessage", "editMessageText"}, PerChat: true, Limit: 1, Window: time.Second})
			const burst = 5
			var accepted int
			var ideal, window float64
			iter := 0
			for b.Loop() {
				before := len(e.tg.Calls("sendMessage")) + len(e.tg.Calls("editMessageText"))
				refused := e.tg.Flood().Refused
				t0 := time.Now()
				type sent struct {
					chat int64
					text string
				}
				var all []sent
				for k := range burst {
					for i := range chats {
						c, u := benchChat(100_000 + iter*chats + i)
						text := fmt.Sprintf("flood %d/%d", iter, k)
						e.tg.Text(c, u, text)
						all = append(all, sent{c.ID, text})
					}
				}
				e.tg.Wait(5*time.Minute, "every reply complete", func() bool {
					for _, s := range all {
						if !answered(e.tg.Messages(s.chat), s.text) {
							return false
						}
					}
					return true
				})
				var last time.Time
				for _, c := range append(e.tg.Calls("sendMessage"), e.tg.Calls("editMessageText")...) {
					if c.At.After(last) {
						last = c.At
					}
				}
				n := len(e.tg.Calls("sendMessage")) + len(e.tg.Calls("editMessageText")) - before - (e.tg.Flood().Refused - refused)
				w := last.Sub(t0).Seconds()
				accepted += n
				window += w
				ideal += float64(chats) * (1 + w)
				iter++
			}
			b.ReportMetric(float64(accepted)/window, "msgs/s")
			b.ReportMetric(float64(chats), "limit×chats")
			b.ReportMetric(float64(accepted)/ideal, "x-ideal")
			b.ReportMetric(float64(e.tg.Flood().Violations), "violations")
			b.ReportMetric(float64(e.tg.Flood().Refused), "429s")
		})
	}
}
