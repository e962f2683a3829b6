package workflow

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/agentd/agentd/internal/scheduler"
	"github.com/agentd/agentd/internal/session/sessiontest"
)

// A trigger-schedule block registers with the scheduler: at its slot the
// workflow runs from that block (trigger "schedule"); disabling the
// workflow unregisters it; a bad cron is refused naming the block.
func TestTriggerSchedule(t *testing.T) {
	se := sessiontest.Start(t, t.TempDir(), "", "scheduler:\n  enabled: true\n  timezone: UTC\n")
	clock := clockwork.NewFakeClockAt(time.Date(2026, 5, 4, 8, 59, 0, 0, time.UTC))
	s, err := scheduler.New(scheduler.Options{DB: se.Store.DB(), Config: se.Config, Turns: se.Manager, Clock: clock, Log: se.Log})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(se.Ctx); err != nil {
		t.Fatal(err)
	}
	e, err := New(Options{DB: se.Store.DB(), Turns: se.Manager, Schedules: s, Log: se.Log, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	finished := make(chan string, 10)
	e.OnChange(func(res, action, id string) {
		if res == "workflow_run" && action == "finished" {
			finished <- id
		}
	})
	if err := e.Start(se.Ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { se.Stop(e.Wait, s.Wait) })
	name := "hourly"
	bad := graph(t, `{"version":1,"nodes":[{"id":"tick","type":"trigger-schedule","config":{"cron":"0 * * *"}}],"edges":[]}`)
	if _, err := e.Create(context.Background(), Input{Name: &name, Graph: bad}); !isGraphError(err, "tick") {
		t.Fatalf("bad cron: %v", err)
	}
	wf := (func() Workflow {
		sv, err := e.Create(context.Background(), Input{Name: &name, Graph: graph(t, `{"version":1,
			"nodes":[{"id":"tick","type":"trigger-schedule","config":{"cron":"0 * * * *"}},
				{"id":"note","type":"deliver","config":{"sessions":["tg:9"],"text":"tick at {{now}}"}}],
			"edges":[{"source":"tick","target":"note"}]}`)})
		if err != nil {
			t.Fatal(err)
		}
		return sv.Workflow
	})()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal("no timer armed")
	}
	clock.Advance(time.Minute)
	var id string
	select {
	case id = <-finished:
	case <-ctx.Done():
		t.Fatal("the scheduled run did not finish")
	}
	r, err := e.GetRun(context.Background(), id)
	if err != nil || r.Status != "success" || r.Trigger != "schedule" || r.WorkflowID != wf.ID {
		t.Fatalf("run %+v %v", r, err)
	}
	if rs := se.Bridge.Responses(); len(rs) != 1 || rs[0].Text != "tick at 2026-05-04T09:00:00Z" {
		t.Fatalf("delivered %+v", rs)
	}
	key := scheduleKey(wf.ID, "tick")
	if !s.Scheduled(key) {
		t.Fatal("not scheduled")
	}
	off := false
	if _, err := e.Update(context.Background(), wf.ID, Input{Enabled: &off}); err != nil {
		t.Fatal(err)
	}
	if s.Scheduled(key) {
		t.Fatal("a disabled workflow is still scheduled")
	}
	if err := e.Delete(context.Background(), wf.ID); err != nil || s.Scheduled(key) {
		t.Fatalf("delete: %v", err)
	}
}
