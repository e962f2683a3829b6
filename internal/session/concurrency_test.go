package session

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/agentd/agentd/internal/provider/providertest"
	"github.com/agentd/agentd/wire"
)

// A pin is never undone by a read that raced with it: readers that
// queried the session before the pin committed must not cache the old pin
// afterwards (issue 21, item 5).
func TestPinNotUndoneByConcurrentRead(t *testing.T) {
	h := start(t, t.TempDir(), yamlWith("echo", ""))
	d, ctx := h.m.db, context.Background()
	if _, err := d.ensureSession(ctx, "s", alice.ClientID); err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		want := fmt.Sprint("model-", i)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := d.session(ctx, "s"); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		err := d.pin(ctx, "s", want)
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		row, err := d.session(ctx, "s")
		if err != nil {
			t.Fatal(err)
		}
		if row.Pinned != want {
			t.Fatalf("round %d: pin %q reads back as %q: a concurrent read cached the old pin", i, want, row.Pinned)
		}
	}
}

// A stop whose delete fails changes nothing: the queued turns stay queued
// in memory and in the database alike, so a restart cannot bring back
// turns the stop dropped, nor lose ones it did not (issue 21, item 8).
func TestStopFailingHalfWayChangesNothing(t *testing.T) {
	fake := providertest.NewOpenAI(t, providertest.Response{Hang: true})
	h := start(t, t.TempDir(), yamlWith("gpt", fake.BaseURL()))
	ctx := context.Background()
	rec := newRecorder()
	c := &Client{Identity: alice, Sink: rec}
	h.m.Connect(c)
	for _, text := range []string{"running", "queued one", "queued two"} {
		h.m.Handle(ctx, c, wire.TextFinal{Text: text, SessionID: "s"})
	}
	rec.wait(t, func(fs []wire.Message) bool { return len(framesOf[wire.Queued](fs)) == 2 })
	// A real SQLite failure on the second row's delete.
	if _, err := h.st.DB().Exec(`CREATE TRIGGER fail_drop BEFORE DELETE ON turns WHEN old.text = 'queued two'
		BEGIN SELECT RAISE(ABORT, 'injected failure'); END`); err != nil {
		t.Fatal(err)
	}
	h.m.Handle(ctx, c, wire.Command{Name: "stop", SessionID: "s"})
	fs := rec.wait(t, func(fs []wire.Message) bool { return len(framesOf[wire.Error](fs)) == 1 })
	if e := framesOf[wire.Error](fs)[0]; !strings.Contains(e.Text, "injected failure") {
		t.Fatalf("failed stop answered %#v", e)
	}
	var stored []string
	rows, err := h.st.DB().Query(`SELECT text FROM turns WHERE text LIKE 'queued%' ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		rows.Scan(&s)
		stored = append(stored, s)
	}
	rows.Close()
	h.m.mu.Lock()
	var queued []string
	if l := h.m.lanes[runKey(alice, "s")]; l != nil {
		for _, t := range l.queue {
			queued = append(queued, t.Text)
		}
	}
	h.m.mu.Unlock()
	if fmt.Sprint(stored) != "[queued one queued two]" || fmt.Sprint(queued) != fmt.Sprint(stored) {
		t.Fatalf("after a failed stop: queue in memory %q, in the database %q; want both [queued one queued two]", queued, stored)
	}
}

// framesOf returns the frames of type T.
func framesOf[T wire.Message](fs []wire.Message) []T {
	var out []T
	for _, f := range fs {
		if v, ok := f.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// An interrupt that lands before the run has read its history (here: as
// soon as the run exists, on a session whose history is not cached) ends
// the turn as interrupted, not failed (issue 21, item 7).
func TestEarlyInterruptIsNotAFailure(t *testing.T) {
	fake := providertest.NewOpenAI(t, providertest.Response{Hang: true})
	h := start(t, t.TempDir(), yamlWith("gpt", fake.BaseURL()))
	ctx := context.Background()
	for i := range 5 {
		sid := fmt.Sprint("early-", i)
		rec := newRecorder()
		c := &Client{Identity: alice, Sink: rec}
		bye := h.m.Connect(c)
		longHistory(t, h, sid)
		go h.m.Handle(ctx, c, wire.TextFinal{Text: "hi", SessionID: sid})
		for stopped := false; !stopped; {
			h.m.mu.Lock()
			if r := h.m.activeRun(runKey(alice, sid), sid); r != nil {
				r.stop()
				stopped = true
			}
			h.m.mu.Unlock()
		}
		fs := rec.wait(t, func(fs []wire.Message) bool { return len(framesOf[wire.TurnComplete](fs)) == 1 })
		if errs := framesOf[wire.Error](fs); len(errs) > 0 {
			t.Fatalf("turn %d interrupted early was reported as failed: %q", i, errs[0].Text)
		}
		if rs := responses(fs); len(rs) != 1 || !rs[0].Interrupted || rs[0].Model != "gpt" {
			t.Fatalf("turn %d interrupted early: responses %#v, want one interrupted by model gpt", i, rs)
		}
		var status string
		if err := h.st.DB().QueryRow(`SELECT status FROM turn_usage WHERE session_id = ?`, sid).Scan(&status); err != nil || status != "interrupted" {
			t.Fatalf("turn %d stored as %q (%v), want interrupted", i, status, err)
		}
		bye()
	}
}

// longHistory gives session sid (owned by alice) a history too long to be
// cached, so every turn reads it from the database.
func longHistory(t *testing.T, h *harness, sid string) {
	t.Helper()
	ctx := context.Background()
	if _, err := h.m.db.ensureSession(ctx, sid, alice.ClientID); err != nil {
		t.Fatal(err)
	}
	if _, err := h.st.DB().Exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
		INSERT INTO messages(session_id, role, content, tool_calls, tool_call_id, is_error, attachments, model,
			interrupted, failed, error, created_at)
		SELECT ?, CASE i % 2 WHEN 1 THEN 'user' ELSE 'assistant' END, printf('%.*c', 2000, 'x'), '', '', 0, '[]', '', 0, 0, '', 0 FROM n`,
		maxCachedMessages+500, sid); err != nil {
		t.Fatal(err)
	}
}

// Concurrent writes share transactions (group commit), yet each one
// commits or fails alone: a failing write leaves nothing behind and does
// not fail the writes committed with it.
func TestGroupCommitIsolatesWrites(t *testing.T) {
	h := start(t, t.TempDir(), yamlWith("echo", ""))
	d, ctx := h.m.db, context.Background()
	if _, err := h.st.DB().Exec(`CREATE TABLE gc_test(n INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	const writers = 200
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			errs[i] = d.inGroup(ctx, func(ctx context.Context, tx *sql.Tx) error {
				if _, err := tx.ExecContext(ctx, `INSERT INTO gc_test(n) VALUES (?)`, i); err != nil {
					return err
				}
				if i%7 == 0 {
					return fmt.Errorf("write %d fails after its insert", i)
				}
				return nil
			})
		})
	}
	wg.Wait()
	want := 0
	for i, err := range errs {
		if (err != nil) != (i%7 == 0) {
			t.Fatalf("write %d: err %v", i, err)
		}
		if err == nil {
			want += i
		}
	}
	var rows, sum int
	if err := h.st.DB().QueryRow(`SELECT COUNT(*), COALESCE(SUM(n), 0) FROM gc_test`).Scan(&rows, &sum); err != nil {
		t.Fatal(err)
	}
	if rows != writers-(writers+6)/7 || sum != want {
		t.Fatalf("%d rows summing to %d committed, want %d summing to %d", rows, sum, writers-(writers+6)/7, want)
	}
}
