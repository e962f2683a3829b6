package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// alertsYAML is an alerts: section.
func alertsYAML(after string, to ...string) string {
	return fmt.Sprintf("\nalerts:\n  deliver_to: [%s]\n  after: %s\n", `"`+strings.Join(to, `", "`)+`"`, after)
}

// A crash-looping bridge is reported once to the operator through the
// running Telegram bridge (and not through itself), however many times the
// supervisor relaunches it.
func TestBridgeAlertThroughTelegram(t *testing.T) {
	crashy := testPluginBinary(t, "crashy", "")
	e := newBridgeEnvEditing(t, fmt.Sprint(aliceID), testPluginYAML("crashy", crashy, "crash"), func(dir string) {
		replaceInConfig(t, dir, "\nalerts:\n  deliver_to: []\n  after: 60s\n", alertsYAML("60s", fmt.Sprintf("tg:%d", aliceID), "crashy:1"))
	})
	isAlert := func(text string) bool { return strings.HasPrefix(text, "Crashy is crash-looping since ") }
	var alert string
	e.tg.Wait(30*time.Second, "the crash-loop alert in alice's chat", func() bool {
		for _, m := range e.tg.Messages(aliceID) {
			if isAlert(m.Text) {
				alert = m.Text
				return true
			}
		}
		return false
	})
	if !strings.Contains(alert, "exit status 1") || !strings.Contains(alert, "crashing at start as configured") {
		t.Errorf("alert %q does not say why", alert)
	}
	// More relaunches come (3.2 s, 6.4 s later): still one alert.
	b := e.bridge("crashy")
	e.waitBridge("crashy", 30*time.Second, "relaunched twice more", func(s bridgeState) bool { return s.Restarts >= b.Restarts+2 })
	n := 0
	for _, m := range e.tg.Messages(aliceID) {
		if isAlert(m.Text) || strings.HasPrefix(m.Text, "Crashy is down") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d alert messages for one crash loop, want 1: %+v", n, e.tg.Messages(aliceID))
	}
	// It is in the chat's history as the agent's message, so the model
	// sees it when alice answers.
	e.tg.Text(aliceChat, alice, "what is wrong?")
	e.waitReply(15*time.Second, "what is wrong?")
}

// A bridge down for longer than alerts.after is reported once (its retries
// and its crash loop say nothing more), and once when it is back up.
func TestBridgeAlertDownThenBackUp(t *testing.T) {
	crashy := testPluginBinary(t, "flaky", "")
	e := newBridgeEnvEditing(t, fmt.Sprint(aliceID), testPluginYAML("flaky", crashy, "crash"), func(dir string) {
		replaceInConfig(t, dir, "\nalerts:\n  deliver_to: []\n  after: 60s\n", alertsYAML("1s", fmt.Sprintf("tg:%d", aliceID)))
	})
	about := func() []string {
		var out []string
		for _, m := range e.tg.Messages(aliceID) {
			if strings.HasPrefix(m.Text, "Flaky ") {
				out = append(out, m.Text)
			}
		}
		return out
	}
	e.tg.Wait(30*time.Second, "the down alert", func() bool { return len(about()) == 1 })
	if got := about()[0]; !strings.HasPrefix(got, "Flaky is down since ") && !strings.HasPrefix(got, "Flaky is crash-looping since ") {
		t.Errorf("alert %q", got)
	}
	e.waitBridge("flaky", 30*time.Second, "in crashloop", func(b bridgeState) bool { return b.State == "crashloop" })
	// Fixed by the operator (a hot reload of the file): back up.
	replaceInConfig(t, e.dir, "      mode: crash\n", "      mode: run\n")
	e.waitBridge("flaky", 30*time.Second, "running again", func(b bridgeState) bool { return b.State == "running" })
	e.tg.Wait(30*time.Second, "the back-up message", func() bool { return len(about()) >= 2 })
	got := about()
	if len(got) != 2 || !strings.HasPrefix(got[1], "Flaky is back up (it was down since ") {
		t.Errorf("messages about the bridge: %q, want one alert and one back-up", got)
	}
}
