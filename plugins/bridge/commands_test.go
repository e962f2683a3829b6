package bridge_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/agentd/agentd/client/clienttest"
	"github.com/agentd/agentd/plugins/bridge"
)

// A stranger who keeps writing is told once (per hour), and each user
// separately.
func TestRunnerRefusesStrangerOnce(t *testing.T) {
	gw := clienttest.New(t)
	p := newRunnerPlatform("pl", 0)
	startRunner(t, gw, p, "pl", "u-ok")
	for i := range 5 {
		for _, u := range []string{"u1", "u2"} {
			if err := p.host.Deliver(context.Background(), bridge.Incoming{ChatID: "c-" + u, UserID: u, Text: fmt.Sprint("hi ", i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, u := range []string{"u1", "u2"} {
		p.waitTexts(t, "c-"+u, 1) // sent by the chat's worker
	}
	time.Sleep(50 * time.Millisecond) // a second refusal would be sent by now
	for _, u := range []string{"u1", "u2"} {
		if got := p.texts("c-" + u); len(got) != 1 || got[0] != fmt.Sprintf(bridge.Refusal, u) {
			t.Errorf("chat of %s got %q, want one refusal", u, got)
		}
	}
	if n := len(gw.Turns()); n != 0 {
		t.Fatalf("%d turns reached the gateway", n)
	}
}

// /start and /help are answered by the bridge in user words, with the
// slash, and never reach the agent.
func TestRunnerStartAndHelp(t *testing.T) {
	gw := clienttest.New(t)
	p := newRunnerPlatform("pl", 0)
	r := startRunner(t, gw, p, "pl", "u1")
	for !r.Connected() { // the welcome names the agent, from auth_ok
		time.Sleep(time.Millisecond)
	}
	for _, text := range []string{"/start", "/help@some_bot"} {
		if err := p.host.Deliver(context.Background(), bridge.Incoming{ChatID: "c1", UserID: "u1", Text: text}); err != nil {
			t.Fatal(err)
		}
	}
	got := p.waitTexts(t, "c1", 2)
	if !strings.HasPrefix(got[0], "Hello! This is "+clienttest.AgentName+", your personal AI agent.") {
		t.Errorf("welcome %q", got[0])
	}
	for _, text := range got {
		for _, c := range bridge.Commands {
			if !strings.Contains(text, "\n/"+c.Name+" ") {
				t.Errorf("%q does not list /%s", text, c.Name)
			}
		}
		for _, jargon := range []string{"session", "new_session_id", "frame"} {
			if strings.Contains(text, jargon) {
				t.Errorf("%q speaks of %q", text, jargon)
			}
		}
	}
	if n := len(gw.Turns()); n != 0 {
		t.Fatalf("%d turns reached the gateway", n)
	}
}

func TestUserTextHidesPaths(t *testing.T) {
	for in, want := range map[string]string{
		"(attachment /srv/agent/uploads/telegram/ab12-r.pdf could not be sent)": "(attachment ab12-r.pdf could not be sent)",
		"stat /home/u/agent/x.png: no such file":                                "stat x.png: no such file",
		"path=/a/b/c.txt and 'q/r/s'":                                           "path=c.txt and 'q/r/s'",
		"a ratio 1/2 or /single stays":                                          "a ratio 1/2 or /single stays",
	} {
		if got := bridge.UserText(in); got != want {
			t.Errorf("UserText(%q) = %q, want %q", in, got, want)
		}
	}
}
