package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/agentd/agentd/wire"
)

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	fi, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	if s.Path() != filepath.Join(dir, FileName) {
		t.Fatalf("path %s", s.Path())
	}
	if _, err := Open(context.Background(), ""); err == nil {
		t.Fatal("Open without a directory succeeded")
	}
}

// Everything survives closing and reopening, as after a SIGKILL.
func TestStateSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s := open(t, dir)
	if err := s.MarkHandled(ctx, "c1", "42"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetChatSession(ctx, "c1", "tg:c1-2"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetValue(ctx, "offset", "77"); err != nil {
		t.Fatal(err)
	}
	// A reply streams into two messages, then its final response arrives.
	if err := s.SetStreamPart(ctx, "tg:c1", "c1", 0, Part{MsgID: "m1", Shown: "Hel"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetStreamPart(ctx, "tg:c1", "c1", 1, Part{MsgID: "m2", Shown: "lo"}); err != nil {
		t.Fatal(err)
	}
	r, existing, err := s.AddReply(ctx, Reply{SessionID: "tg:c1", TurnID: "t1", ChatID: "c1", Text: "Hello",
		Attachments: []wire.Attachment{{Kind: "image", Path: "/a.png", Filename: "a.png"}}})
	if err != nil || existing {
		t.Fatalf("AddReply = %v, %v", existing, err)
	}
	if fmt.Sprint(r.Parts) != "[{m1 Hel} {m2 lo}]" || r.State != Sending {
		t.Fatalf("reply %+v: want the streamed parts adopted", r)
	}
	if ps, _ := s.Stream(ctx, "tg:c1"); len(ps) != 0 {
		t.Fatalf("stream parts left after adoption: %v", ps)
	}
	if err := s.SetPart(ctx, r.ID, 0, Part{MsgID: "m1", Shown: "Hello"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetFilesSent(ctx, r.ID, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.SetComplete(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = open(t, dir)
	if ok, err := s.Handled(ctx, "c1", "42"); !ok || err != nil {
		t.Fatalf("Handled = %v, %v", ok, err)
	}
	if ok, _ := s.Handled(ctx, "c2", "42"); ok {
		t.Fatal("message id of another chat counted as handled")
	}
	if m, _ := s.ChatSessions(ctx); m["c1"] != "tg:c1-2" {
		t.Fatalf("chat sessions %v", m)
	}
	if v, ok, _ := s.Value(ctx, "offset"); !ok || v != "77" {
		t.Fatalf("value %q %v", v, ok)
	}
	if _, ok, _ := s.Value(ctx, "nope"); ok {
		t.Fatal("unset value reported set")
	}
	s.SetValue(ctx, "wait/bot", "1")
	s.SetValue(ctx, "wait/chat:c1", "2")
	if m, err := s.Values(ctx, "wait/"); err != nil || fmt.Sprint(m) != "map[wait/bot:1 wait/chat:c1:2]" {
		t.Fatalf("Values = %v, %v", m, err)
	}
	pend, err := s.Pending(ctx)
	if err != nil || len(pend) != 1 {
		t.Fatalf("Pending = %+v, %v", pend, err)
	}
	p := pend[0]
	if p.Text != "Hello" || !p.Complete || p.FilesSent != 1 || fmt.Sprint(p.Parts) != "[{m1 Hello} {m2 lo}]" || p.Attachments[0].Path != "/a.png" {
		t.Fatalf("pending reply %+v", p)
	}
	// The gateway sends the same turn again: recognised, not queued twice.
	again, existing, err := s.AddReply(ctx, Reply{SessionID: "tg:c1", TurnID: "t1", ChatID: "c1", Text: "Hello"})
	if err != nil || !existing || again.ID != p.ID {
		t.Fatalf("AddReply again = %+v, %v, %v", again, existing, err)
	}
	if err := s.SetState(ctx, p.ID, Done); err != nil {
		t.Fatal(err)
	}
	if pend, _ := s.Pending(ctx); len(pend) != 0 {
		t.Fatalf("done reply still pending: %+v", pend)
	}
	if r, ok, _ := s.FindReply(ctx, "tg:c1", "t1"); !ok || r.State != Done {
		t.Fatalf("FindReply = %+v, %v: a done reply must be remembered", r, ok)
	}
}

// The dedup window keeps the newest DedupWindow ids of each chat.
func TestHandledWindowIsBounded(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := context.Background()
	n := DedupWindow + 2*pruneEvery
	tx, err := s.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < n; i++ { // bulk insert; the last mark below trims
		if _, err := tx.Exec(`INSERT INTO handled(chat_id, msg_id, seq) VALUES ('c', ?, ?)`, fmt.Sprint(i), i); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	s.marks["c"] = pruneEvery - 1
	if err := s.MarkHandled(ctx, "c", fmt.Sprint(n)); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkHandled(ctx, "other", "1"); err != nil {
		t.Fatal(err)
	}
	var count int
	s.db.QueryRow(`SELECT COUNT(*) FROM handled WHERE chat_id = 'c'`).Scan(&count)
	if count != DedupWindow {
		t.Fatalf("%d ids kept, want %d", count, DedupWindow)
	}
	if ok, _ := s.Handled(ctx, "c", fmt.Sprint(n)); !ok {
		t.Fatal("newest id dropped")
	}
	if ok, _ := s.Handled(ctx, "c", "1"); ok {
		t.Fatal("oldest id kept")
	}
	if ok, _ := s.Handled(ctx, "other", "1"); !ok {
		t.Fatal("another chat's id dropped")
	}
}
