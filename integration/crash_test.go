package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentd/agentd/client"
	"github.com/agentd/agentd/internal/provider/providertest"
	"github.com/agentd/agentd/wire"
)

// useFakeOpenAI points the agent at an in-test OpenAI-compatible server.
func useFakeOpenAI(t testing.TB, dir string, fake *providertest.Server) {
	t.Helper()
	p := filepath.Join(dir, "openagent.yaml")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	s = strings.Replace(s, "  default_model: echo", "  default_model: fake-model", 1)
	s = strings.Replace(s, "providers:\n", "providers:\n  - id: fake\n    kind: openai\n    base_url: "+fake.BaseURL()+"\n    api_key: "+fake.APIKey+"\n", 1)
	s = strings.Replace(s, "models:\n", "models:\n  - id: fake-model\n    provider: fake\n    name: gpt-fake\n    input_price_per_mtok: 1\n    output_price_per_mtok: 2\n", 1)
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func ownerWS(t *testing.T, dir string) *client.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := ownerClient(t, dir).DialWS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// recvUntil reads frames until pred is true for one, or the deadline.
func recvUntil(t *testing.T, c *client.Conn, d time.Duration, pred func(wire.Message) bool) []wire.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var got []wire.Message
	for {
		m, err := c.Recv(ctx)
		if err != nil {
			t.Fatalf("waiting for a frame: %v (got %d frames: %v)", err, len(got), got)
		}
		got = append(got, m)
		if pred(m) {
			return got
		}
	}
}

// TestQueuedTurnsSurviveSIGKILL: turns acknowledged with `queued` survive a
// SIGKILL of agentd; after the restart they run in order and their replies
// reach the client when it reconnects.
func TestQueuedTurnsSurviveSIGKILL(t *testing.T) {
	slow := providertest.Response{Text: strings.Split(strings.Repeat("slow ", 50), " "), Delay: 100 * time.Millisecond}
	fake := providertest.NewOpenAI(t, slow)
	dir := newAgent(t, false)
	useFakeOpenAI(t, dir, fake)
	d := startServe(t, dir)

	c := ownerWS(t, dir)
	for _, text := range []string{"one", "two", "three"} {
		if err := c.Send(wire.TextFinal{Text: text, SessionID: "s"}); err != nil {
			t.Fatal(err)
		}
	}
	var positions []int
	recvUntil(t, c, 10*time.Second, func(m wire.Message) bool {
		if q, ok := m.(wire.Queued); ok {
			positions = append(positions, q.Position)
		}
		return len(positions) == 2
	})
	if positions[0] != 1 || positions[1] != 2 {
		t.Fatalf("queued positions = %v, want [1 2]", positions)
	}
	// "one" is streaming slowly: kill agentd mid-turn with two turns queued.
	recvUntil(t, c, 10*time.Second, func(m wire.Message) bool { _, ok := m.(wire.Delta); return ok })
	d.cmd.Process.Kill()
	<-d.done
	d.done <- nil

	before := len(fake.Requests())
	fake.Push(
		providertest.Response{Text: []string{"reply ", "A"}},
		providertest.Response{Text: []string{"reply ", "B"}},
		providertest.Response{Text: []string{"reply ", "C"}},
	)
	startServe(t, dir)
	c2 := ownerWS(t, dir)
	var replies []string
	recvUntil(t, c2, 30*time.Second, func(m wire.Message) bool {
		if r, ok := m.(wire.Response); ok && r.SessionID == "s" {
			replies = append(replies, r.Text)
		}
		return len(replies) == 3
	})
	if strings.Join(replies, "|") != "reply A|reply B|reply C" {
		t.Errorf("replies after restart = %q", replies)
	}
	// The three turns reached the model again, in the order they were sent.
	var asked []string
	for _, r := range fake.Requests()[before:] {
		msgs := r.OpenAI(t).Messages
		asked = append(asked, msgs[len(msgs)-1].Text())
	}
	if strings.Join(asked, ",") != "one,two,three" {
		t.Errorf("turns run after restart = %v, want one,two,three", asked)
	}
}
