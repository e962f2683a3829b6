package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentd/agentd/plugins/bridge/whatsapp/whatsapptest"
)

// BenchmarkWhatsAppLatency compares, in the same run and the same agentd,
// the time from an incoming message event to the reply's first send call
// on the WhatsApp path (the fake client's message event → bridge-whatsapp
// → gateway → echo agent → SendMessage) and on the Telegram path (a fake
// Bot API update → bridge-telegram → … → sendMessage). Each iteration uses
// a fresh chat on both, so per-chat pacing adds nothing.
//
//	go test -run '^$' -bench WhatsAppLatency -benchtime 20x ./integration/
func BenchmarkWhatsAppLatency(b *testing.B) {
	e := newWAEnvAllowing(b, true, "*", "*")
	e.waitConnected()
	var wa, tg time.Duration
	n := 0
	for b.Loop() {
		text := fmt.Sprintf("bench message %d", n)
		phone := fmt.Sprintf("4477009%05d", n)
		id := fmt.Sprintf("BENCH%d", n)
		e.do(whatsapptest.Command{Op: "dm", ID: id, From: phone, Text: text})
		e.waitEcho(phone+"@s.whatsapp.net", text)
		wa += e.firstSendAfter(b, id, phone+"@s.whatsapp.net")

		tg += telegramTurn(b, e.tg, n, text)
		n++
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(n) / 1e6 }
	b.ReportMetric(ms(wa), "whatsapp-event-to-send-ms")
	b.ReportMetric(ms(tg), "telegram-update-to-send-ms")
	b.ReportMetric(float64(wa)/float64(tg), "whatsapp/telegram")
}

// firstSendAfter is the time from the event of message id to the first
// send to the JID to, both from the fake's logs.
func (e *waEnv) firstSendAfter(tb testing.TB, id, to string) time.Duration {
	tb.Helper()
	var at time.Time
	f, err := os.Open(filepath.Join(e.fake, "emitted.jsonl"))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l whatsapptest.EmittedLine
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.ID == id {
			at = l.At
		}
	}
	for _, l := range e.sent() {
		if l.To == to {
			return l.At.Sub(at)
		}
	}
	tb.Fatalf("no send to %s", to)
	return 0
}
