package session

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/provider/providertest"
	"github.com/agentd/agentd/wire"
)

// bridgesOf resolves the tg prefix to the tg identity, nothing else.
func bridgesOf(_ context.Context, p string) (string, bool, error) {
	if p == "tg" {
		return tg.ClientID, true, nil
	}
	return "", false, nil
}

// A pushed message reaches a bridge chat that never talked to the agent,
// like a reply: live to its connection, kept until acked (so a bridge
// restart re-sends it), and it is part of the session's history the model
// sees next.
func TestPushToBridgeSession(t *testing.T) {
	fake := providertest.NewOpenAI(t, providertest.Response{Text: []string{"ok"}})
	h := startWith(t, t.TempDir(), yamlWith("gpt", fake.BaseURL()), Options{Bridges: bridgesOf})
	ctx := context.Background()
	var created []string
	h.m.OnChange(func(_, action, id string) { created = append(created, action+" "+id) })

	_, rec1, bye1 := h.connectAcking(t, tg)
	if err := h.m.Push(ctx, "tg:155490357", "Discord is down since 14:02: invalid token", nil); err != nil {
		t.Fatal(err)
	}
	fs := rec1.wait(t, func(fs []wire.Message) bool { return len(fs) == 2 })
	if r, ok := fs[0].(wire.Response); !ok || r.Text != "Discord is down since 14:02: invalid token" || r.SessionID != "tg:155490357" || r.Model != "" {
		t.Fatalf("pushed frames %#v", fs)
	}
	if tc, ok := fs[1].(wire.TurnComplete); !ok || tc.SessionID != "tg:155490357" {
		t.Fatalf("pushed frames %#v", fs)
	}
	if strings.Join(created, ",") != "created tg:155490357" {
		t.Fatalf("change events %q", created)
	}
	waitRows(t, h, tg.ClientID, "[1:tg:155490357 1:tg:155490357]")
	bye1() // the bridge dies before posting it

	c2, rec2, bye2 := h.connectAcking(t, tg)
	defer bye2()
	fs = rec2.wait(t, func(fs []wire.Message) bool { return len(fs) == 2 })
	if r, ok := fs[0].(wire.Response); !ok || !strings.HasPrefix(r.Text, "Discord is down") {
		t.Fatalf("re-sent frames %#v", fs)
	}
	h.m.Handle(ctx, c2, wire.Ack{SessionID: "tg:155490357"})
	waitRows(t, h, tg.ClientID, "[]")

	// The chat's owner is the bridge: it may talk there, and the model sees
	// the pushed message as the agent's own.
	h.m.Handle(ctx, c2, wire.TextFinal{Text: "what happened?", SessionID: "tg:155490357"})
	rec2.wait(t, func(fs []wire.Message) bool { return len(responses(fs)) == 2 })
	var got []string
	for _, m := range fake.Requests()[0].OpenAI(t).Messages {
		got = append(got, m.Role+":"+m.Text())
	}
	if strings.Join(got, "|") != "assistant:Discord is down since 14:02: invalid token|user:what happened?" {
		t.Fatalf("model saw %q", got)
	}
}

// A pushed message to a device in ack mode is in the outbox from the commit
// that stores it in history, as a turn's reply is: a kill right after it
// still leaves the message for the bridge's next connection.
func TestPushStoredWithItsOutbox(t *testing.T) {
	h := startWith(t, t.TempDir(), yamlWith("echo", ""), Options{Bridges: bridgesOf})
	_, rec, bye := h.connectAcking(t, tg)
	defer bye()
	atCommit, release := blockAtCommit(t)
	pushed := make(chan error, 1)
	go func() { pushed <- h.m.Push(context.Background(), "tg:1", "pushed", nil) }()
	atCommit("push")
	if got := fmt.Sprint(h.outboxRows(t, tg.ClientID)); got != "[1:tg:1 1:tg:1]" {
		t.Fatalf("outbox right after the push's commit: %s, want its response and turn_complete", got)
	}
	release()
	if err := <-pushed; err != nil {
		t.Fatal(err)
	}
	fs := rec.wait(t, func(fs []wire.Message) bool { return completes(fs) == 1 })
	if rs := responses(fs); len(rs) != 1 || rs[0].Text != "pushed" {
		t.Fatalf("frames %#v, want the pushed message once", fs)
	}
	waitRows(t, h, tg.ClientID, "[1:tg:1 1:tg:1]")
}

// A pushed message for a device that is away waits in its outbox; a
// non-bridge session must exist, and bad input changes nothing.
func TestPushToDeviceSessionAndRefusals(t *testing.T) {
	dir := t.TempDir()
	h := startWith(t, dir, yamlWith("echo", ""), Options{Bridges: bridgesOf})
	ctx := context.Background()
	rec := newRecorder()
	c := &Client{Identity: alice, Sink: rec}
	bye := h.m.Connect(c)
	h.m.Handle(ctx, c, wire.TextFinal{Text: "hi", SessionID: "cli-1"})
	rec.wait(t, func(fs []wire.Message) bool { return len(responses(fs)) == 1 })
	bye()

	file := filepath.Join(dir, "uploads", "report.txt")
	os.MkdirAll(filepath.Dir(file), 0o700)
	os.WriteFile(file, []byte("r"), 0o600)
	if err := h.m.Push(ctx, "cli-1", "reminder: stand-up", []wire.Attachment{{Kind: "file", Path: file, Filename: "report.txt"}}); err != nil {
		t.Fatal(err)
	}
	waitRows(t, h, alice.ClientID, "[0:cli-1 0:cli-1]")
	rec2 := newRecorder()
	defer h.m.Connect(&Client{Identity: alice, Sink: rec2})()
	fs := rec2.wait(t, func(fs []wire.Message) bool { return len(fs) == 2 })
	if r, ok := fs[0].(wire.Response); !ok || r.Text != "reminder: stand-up" || len(r.Attachments) != 1 || r.Attachments[0].Path != file {
		t.Fatalf("outbox frames %#v", fs)
	}

	for _, c := range []struct {
		sid, text string
		atts      []wire.Attachment
		want      error
	}{
		{"nobody", "x", nil, ErrNotFound},
		{"dc:1", "x", nil, ErrNotFound}, // no bridge holds dc
		{"cli-1", "  ", nil, ErrInvalid},
		{"has space", "x", nil, ErrInvalid},
		{"cli-1", "x", []wire.Attachment{{Kind: "file", Path: "/etc/passwd"}}, ErrInvalid},
	} {
		if err := h.m.Push(ctx, c.sid, c.text, c.atts); !errors.Is(err, c.want) {
			t.Errorf("Push(%q, %q): %v, want %v", c.sid, c.text, err, c.want)
		}
	}
	var n int
	h.st.DB().QueryRow(`SELECT COUNT(*) FROM messages`).Scan(&n)
	if n != 3 { // hi, its reply, the reminder
		t.Fatalf("%d history rows, want 3", n)
	}
	if got := fmt.Sprint(h.outboxRows(t, alice.ClientID)); got != "[]" {
		t.Fatalf("outbox after refusals: %s", got)
	}
}

// rekeyable resolves the tg prefix to holder's client id, first at the
// start, another once the test stores it (a re-keyed bridge). The resolver
// is called from the manager's goroutines too.
func rekeyable(first string) (holder *atomic.Value, resolve BridgeResolver) {
	holder = &atomic.Value{}
	holder.Store(first)
	return holder, func(_ context.Context, p string) (string, bool, error) { return holder.Load().(string), p == "tg", nil }
}

// A bridge re-keyed after a revoke (new client id, same prefix) keeps its
// chats: history, and the replies that waited for the old key.
func TestBridgeReKeyAdoptsSessions(t *testing.T) {
	holder, resolve := rekeyable(tg.ClientID)
	h := startWith(t, t.TempDir(), yamlWith("echo", ""), Options{Bridges: resolve})
	ctx := context.Background()
	c1, rec1, bye1 := h.connectAcking(t, tg)
	h.m.Handle(ctx, c1, wire.TextFinal{Text: "hi", SessionID: "tg:1"})
	rec1.wait(t, func(fs []wire.Message) bool { return len(responses(fs)) == 1 })
	bye1() // revoked before it showed the reply

	fresh := &auth.Identity{ClientID: "f7e5", Capabilities: tg.Capabilities}
	holder.Store(fresh.ClientID)
	c2, rec2, bye2 := h.connectAcking(t, fresh)
	defer bye2()
	fs := rec2.wait(t, func(fs []wire.Message) bool { return len(responses(fs)) == 1 })
	if r := responses(fs)[0]; r.SessionID != "tg:1" {
		t.Fatalf("re-sent %+v", r)
	}
	h.m.Handle(ctx, c2, wire.TextFinal{Text: "again", SessionID: "tg:1"})
	fs = rec2.wait(t, func(fs []wire.Message) bool { return len(responses(fs)) == 2 && completes(fs) == 2 })
	if _, ok := fs[len(fs)-1].(wire.TurnComplete); !ok {
		t.Fatalf("second turn frames %#v", fs)
	}
}

// A bridge re-keyed while one of its turns runs gets that turn's reply on
// the new key, live: the old key's outbox is never read again.
func TestBridgeReplyFollowsReKey(t *testing.T) {
	release := make(chan struct{})
	fake := providertest.NewOpenAI(t, providertest.Response{Respond: func([]byte) providertest.Response {
		<-release
		return providertest.Response{Text: []string{"late answer"}}
	}})
	holder, resolve := rekeyable(tg.ClientID)
	h := startWith(t, t.TempDir(), yamlWith("gpt", fake.BaseURL()), Options{Bridges: resolve})
	ctx := context.Background()
	c1, _, bye1 := h.connectAcking(t, tg)
	h.m.Handle(ctx, c1, wire.TextFinal{Text: "slow one", SessionID: "tg:1"})
	deadline := time.Now().Add(10 * time.Second)
	for len(fake.Requests()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the turn never reached the model")
		}
		time.Sleep(5 * time.Millisecond)
	}
	bye1()
	fresh := &auth.Identity{ClientID: "f7e5", Capabilities: tg.Capabilities}
	holder.Store(fresh.ClientID)
	_, rec2, bye2 := h.connectAcking(t, fresh)
	defer bye2()
	close(release)
	fs := rec2.wait(t, func(fs []wire.Message) bool { return completes(fs) == 1 })
	if rs := responses(fs); len(rs) != 1 || rs[0].Text != "late answer" || rs[0].SessionID != "tg:1" {
		t.Fatalf("the new key got %#v", fs)
	}
	waitRows(t, h, fresh.ClientID, "[1:tg:1 1:tg:1]") // sent, awaiting the new key's ack
	if got := fmt.Sprint(h.outboxRows(t, tg.ClientID)); got != "[]" {
		t.Fatalf("rows left for the old key: %s", got)
	}
}
