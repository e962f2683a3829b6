package scheduler

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/agentd/agentd/internal/provider"
	"github.com/agentd/agentd/internal/provider/providertest"
	"github.com/agentd/agentd/internal/session/sessiontest"
	"github.com/agentd/agentd/internal/store"
)

// env is a scheduler over a real store and session manager (echo model,
// optionally an OpenAI fake as model "gpt"), driven by a fake clock. The
// "tg" session prefix belongs to a recorded bridge connection.
type env struct {
	*sessiontest.Env
	clock  *clockwork.FakeClock
	s      *Scheduler
	events chan string // "action id" of every task change
}

func startEnv(t *testing.T, dir string, now time.Time, tz, openAI string) *env {
	t.Helper()
	se := sessiontest.Start(t, dir, openAI, "scheduler:\n  enabled: true\n  timezone: "+tz+"\n")
	e := &env{Env: se, clock: clockwork.NewFakeClockAt(now), events: make(chan string, 1000)}
	var err error
	e.s, err = New(Options{DB: se.Store.DB(), Config: se.Config, Turns: se.Manager, Clock: e.clock, Log: se.Log})
	if err != nil {
		t.Fatal(err)
	}
	e.s.OnChange(func(res, action, id string) {
		if res != "task" {
			t.Errorf("resource %q", res)
		}
		e.events <- action + " " + id
	})
	if err := e.s.Start(se.Ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.stop)
	return e
}

// stop shuts the scheduler and sessions down, as agentd does.
func (e *env) stop() { e.Stop(e.s.Wait) }

// waitEvent returns once action happened to a task, failing after 10 s.
func (e *env) waitEvent(t *testing.T, action string) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-e.events:
			if a, id, _ := strings.Cut(ev, " "); a == action {
				return id
			}
		case <-timeout:
			t.Fatalf("no %s event", action)
		}
	}
}

// advanceToNext moves the fake clock to the task's next fire, once gocron
// has armed its timer, and returns that instant.
func (e *env) advanceToNext(t *testing.T, id string) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal("gocron armed no timer")
	}
	task, err := e.s.Get(ctx, id)
	if err != nil || task.NextRun == nil {
		t.Fatalf("next run of %s: %v %v", id, task.NextRun, err)
	}
	next := time.Unix(*task.NextRun, 0)
	e.clock.Advance(next.Sub(e.clock.Now()))
	return next
}

func create(t *testing.T, s *Scheduler, in Input) Task {
	t.Helper()
	task, err := s.Create(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	return task
}

func ptr[T any](v T) *T { return &v }

func runsOf(t *testing.T, s *Scheduler, id string) []Run {
	t.Helper()
	runs, err := s.Runs(context.Background(), id, 100)
	if err != nil {
		t.Fatal(err)
	}
	return runs
}

// A daily task in New York fires at its wall-clock time on both sides of
// both DST changes of 2026; the 02:30 that does not exist on 8 March fires
// at 03:30 EDT, and the 01:30 that happens twice on 1 November fires once.
func TestFiresAcrossDST(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, cron string
		from       time.Time
		want       []string
	}{
		{"spring forward", "30 2 * * *", time.Date(2026, 3, 6, 12, 0, 0, 0, ny), []string{
			"2026-03-07T02:30:00-05:00", "2026-03-08T03:30:00-04:00", "2026-03-09T02:30:00-04:00"}},
		{"fall back", "30 1 * * *", time.Date(2026, 10, 31, 12, 0, 0, 0, ny), []string{
			"2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00", "2026-11-03T01:30:00-05:00"}},
		{"seconds field, hourly over the gap", "15 0 * * * *", time.Date(2026, 3, 8, 0, 30, 0, 0, ny), []string{
			"2026-03-08T01:00:15-05:00", "2026-03-08T03:00:15-04:00", "2026-03-08T04:00:15-04:00"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := startEnv(t, t.TempDir(), tt.from, "America/New_York", "")
			task := create(t, e.s, Input{Name: ptr("brief"), CronExpression: ptr(tt.cron), Prompt: ptr("morning brief")})
			var got []string
			for range tt.want {
				at := e.advanceToNext(t, task.ID)
				e.waitEvent(t, "run_finished")
				got = append(got, at.In(ny).Format(time.RFC3339))
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Fatalf("fired at %v\nwant     %v", got, tt.want)
			}
			runs := runsOf(t, e.s, task.ID)
			if len(runs) != len(tt.want) {
				t.Fatalf("%d runs recorded, want %d", len(runs), len(tt.want))
			}
			for i, r := range runs {
				want := tt.want[len(tt.want)-1-i]
				if r.Status != "success" || r.Trigger != "schedule" || r.ScheduledAt.In(ny).Format(time.RFC3339) != want {
					t.Errorf("run %d: %+v, want success at %s", i, r, want)
				}
				if r.Output != provider.EchoReply("morning brief") {
					t.Errorf("run %d output %q", i, r.Output)
				}
			}
		})
	}
}

// The reply of a run reaches every deliver_to session: here a Telegram
// chat's session, through the bridge's connection.
func TestRunDeliversReply(t *testing.T) {
	e := startEnv(t, t.TempDir(), time.Date(2026, 5, 4, 8, 0, 0, 0, time.UTC), "UTC", "")
	task := create(t, e.s, Input{Name: ptr("brief"), CronExpression: ptr("0 9 * * *"), Prompt: ptr("weather please"),
		DeliverTo: &[]string{"tg:155490357"}})
	if task.SessionID != "scheduler:"+task.ID || task.CatchUp != "once" || task.NextRunISO == nil || *task.NextRunISO != "2026-05-04T09:00:00Z" {
		t.Fatalf("task %+v", task)
	}
	e.advanceToNext(t, task.ID)
	e.waitEvent(t, "run_finished")
	rs := e.Bridge.Responses()
	if len(rs) != 1 || rs[0].SessionID != "tg:155490357" || rs[0].Text != provider.EchoReply("weather please") {
		t.Fatalf("bridge got %+v", rs)
	}
	runs := runsOf(t, e.s, task.ID)
	if len(runs) != 1 || runs[0].Status != "success" || runs[0].Usage.TotalTokens == 0 {
		t.Fatalf("runs %+v", runs)
	}
	got, _ := e.s.Get(context.Background(), task.ID)
	if got.LastStatus != "success" || got.LastRun == nil || *got.LastRun != time.Date(2026, 5, 4, 9, 0, 0, 0, time.UTC).Unix() {
		t.Fatalf("task after run %+v", got)
	}
}

// A fire while the task's previous run is still active does not start a
// second run: it is recorded as skipped. A manual run then is refused.
func TestNoOverlap(t *testing.T) {
	fake := providertest.NewOpenAI(t, providertest.Response{Hang: true})
	e := startEnv(t, t.TempDir(), time.Date(2026, 5, 4, 8, 0, 0, 0, time.UTC), "UTC", fake.BaseURL())
	task := create(t, e.s, Input{Name: ptr("slow"), CronExpression: ptr("*/5 * * * *"), Prompt: ptr("think hard"), Model: ptr("gpt")})
	e.advanceToNext(t, task.ID)
	e.waitEvent(t, "run_started")
	e.advanceToNext(t, task.ID)
	e.waitEvent(t, "run_skipped")
	if _, err := e.s.RunNow(context.Background(), task.ID); !errors.Is(err, ErrRunning) {
		t.Fatalf("manual run during a run: %v", err)
	}
	runs := runsOf(t, e.s, task.ID)
	if len(runs) != 2 || runs[0].Status != "skipped" || runs[1].Status != "running" ||
		!strings.Contains(runs[0].Error, "still running") {
		t.Fatalf("runs %+v", runs)
	}
	// Deleting the task cancels its run.
	if err := e.s.Delete(context.Background(), task.ID); err != nil {
		t.Fatal(err)
	}
	e.waitEvent(t, "run_finished")
}

// After a downtime a daily task with catch_up once runs once, for its
// newest missed slot, and the older missed slot is recorded; with
// catch_up skip both are recorded as missed and nothing runs.
func TestCatchUpAfterDowntime(t *testing.T) {
	for _, mode := range []string{"once", "skip"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			start := time.Date(2026, 5, 4, 8, 0, 0, 0, time.UTC)
			e := startEnv(t, dir, start, "UTC", "")
			task := create(t, e.s, Input{Name: ptr("daily"), CronExpression: ptr("@daily"), Prompt: ptr("summary"),
				CatchUp: ptr(mode), DeliverTo: &[]string{"tg:1"}})
			e.stop()
			// Down from 08:00 on the 4th until 10:00 on the 6th: the slots
			// of the 5th and 6th passed.
			e = startEnv(t, dir, start.Add(50*time.Hour), "UTC", "")
			runs := runsOf(t, e.s, task.ID)
			if mode == "once" {
				e.waitEvent(t, "run_finished")
				runs = runsOf(t, e.s, task.ID)
				if len(runs) != 2 || runs[1].Status != "missed" || runs[0].Trigger != "catch_up" || runs[0].Status != "success" ||
					!runs[0].ScheduledAt.Equal(time.Date(2026, 5, 6, 0, 0, 0, 0, time.UTC)) ||
					!strings.HasPrefix(runs[1].Error, "1 run(s) missed up to") {
					t.Fatalf("runs %+v", runs)
				}
				if rs := e.Bridge.Responses(); len(rs) != 1 {
					t.Fatalf("delivered %+v", rs)
				}
			} else {
				if len(runs) != 1 || runs[0].Status != "missed" || !strings.HasPrefix(runs[0].Error, "2 run(s) missed up to 2026-05-06T00:00:00Z") {
					t.Fatalf("runs %+v", runs)
				}
				if rs := e.Bridge.Responses(); len(rs) != 0 {
					t.Fatalf("delivered %+v", rs)
				}
			}
			// A third start with no further slot passed catches up nothing.
			e.stop()
			e = startEnv(t, dir, start.Add(51*time.Hour), "UTC", "")
			if n := len(runsOf(t, e.s, task.ID)); n != len(runs) {
				t.Fatalf("%d runs after a restart without missed slots, want %d", n, len(runs))
			}
		})
	}
}

// A run cut by a shutdown is failed "agentd stopped"; one left running by
// a killed process (no chance to write) is closed the same way at start.
func TestRunCutByStop(t *testing.T) {
	fake := providertest.NewOpenAI(t, providertest.Response{Hang: true})
	dir := t.TempDir()
	e := startEnv(t, dir, time.Date(2026, 5, 4, 8, 0, 0, 0, time.UTC), "UTC", fake.BaseURL())
	task := create(t, e.s, Input{Name: ptr("slow"), CronExpression: ptr("@hourly"), Prompt: ptr("x"), Model: ptr("gpt")})
	id, err := e.s.RunNow(context.Background(), task.ID)
	if err != nil {
		t.Fatal(err)
	}
	e.waitEvent(t, "run_started")
	e.stop()
	// What a SIGKILL leaves behind: a run still marked running.
	st, err := store.Open(context.Background(), filepath.Join(dir, store.FileName))
	if err != nil {
		t.Fatal(err)
	}
	var status, why string
	st.DB().QueryRow(`SELECT status, error FROM scheduled_task_runs WHERE id = ?`, id).Scan(&status, &why)
	if status != "failed" || why != "agentd stopped" {
		t.Fatalf("after stop: %s %q", status, why)
	}
	if _, err := st.DB().Exec(`UPDATE scheduled_task_runs SET status = 'running', error = '', finished_at = NULL`); err != nil {
		t.Fatal(err)
	}
	st.Close()
	e = startEnv(t, dir, time.Date(2026, 5, 4, 8, 30, 0, 0, time.UTC), "UTC", fake.BaseURL())
	runs := runsOf(t, e.s, task.ID)
	if len(runs) != 1 || runs[0].Status != "failed" || runs[0].Error != "agentd stopped" || runs[0].FinishedAt.IsZero() {
		t.Fatalf("runs after restart %+v", runs)
	}
}

// The history keeps the newest 100 runs.
func TestHistoryBounded(t *testing.T) {
	e := startEnv(t, t.TempDir(), time.Date(2026, 5, 4, 8, 0, 0, 0, time.UTC), "UTC", "")
	task := create(t, e.s, Input{Name: ptr("often"), CronExpression: ptr("* * * * *"), Prompt: ptr("tick")})
	for i := 0; i < historyKeep+5; i++ {
		if _, err := e.s.RunNow(context.Background(), task.ID); err != nil {
			t.Fatal(err)
		}
		e.waitEvent(t, "run_finished")
	}
	runs := runsOf(t, e.s, task.ID)
	if len(runs) != historyKeep || runs[0].ID != int64(historyKeep+5) || runs[len(runs)-1].ID != 6 {
		t.Fatalf("%d runs, newest %d oldest %d", len(runs), runs[0].ID, runs[len(runs)-1].ID)
	}
}

// Bad input is refused with the reason, and nothing is stored.
func TestValidation(t *testing.T) {
	e := startEnv(t, t.TempDir(), time.Date(2026, 5, 4, 8, 0, 0, 0, time.UTC), "", "")
	for _, tt := range []struct {
		name string
		in   Input
		want string
	}{
		{"missing prompt", Input{Name: ptr("a"), CronExpression: ptr("@daily")}, "name, cron_expression and prompt are required"},
		{"four fields", Input{Name: ptr("a"), CronExpression: ptr("0 9 * *"), Prompt: ptr("p")}, `cron_expression "0 9 * *": invalid cron expression: expected 5 to 6 fields, found 4: [0 9 * *]`},
		{"bad hour", Input{Name: ptr("a"), CronExpression: ptr("0 25 * * *"), Prompt: ptr("p")}, "end of range (25) above maximum (23): 25"},
		{"bad once", Input{Name: ptr("a"), CronExpression: ptr("@once:tomorrow"), Prompt: ptr("p")}, "@once wants an RFC 3339 time"},
		{"tz in cron", Input{Name: ptr("a"), CronExpression: ptr("CRON_TZ=UTC 0 9 * * *"), Prompt: ptr("p")}, "put the time zone in the timezone field"},
		{"bad zone", Input{Name: ptr("a"), CronExpression: ptr("@daily"), Prompt: ptr("p"), Timezone: ptr("Mars/Base")}, `unknown time zone "Mars/Base"`},
		{"bad model", Input{Name: ptr("a"), CronExpression: ptr("@daily"), Prompt: ptr("p"), Model: ptr("gpt-9")}, `model: unknown model "gpt-9"`},
		{"bad deliver", Input{Name: ptr("a"), CronExpression: ptr("@daily"), Prompt: ptr("p"), DeliverTo: &[]string{"tg: 1"}}, "must not contain spaces"},
		{"bad catch_up", Input{Name: ptr("a"), CronExpression: ptr("@daily"), Prompt: ptr("p"), CatchUp: ptr("all")}, "catch_up must be skip or once"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.s.Create(context.Background(), tt.in)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	if tasks, _ := e.s.List(context.Background()); len(tasks) != 0 {
		t.Fatalf("stored %+v", tasks)
	}
	// Defaults: catch-up once for daily-like schedules, skip for frequent
	// ones; one-shot tasks fire at their instant.
	for expr, want := range map[string]string{"@weekly": "once", "0 9 * * 1-5": "once", "@hourly": "skip", "*/10 * * * *": "skip", "@once:2026-05-05T10:00:00+02:00": "once"} {
		task := create(t, e.s, Input{Name: ptr("d"), CronExpression: ptr(expr), Prompt: ptr("p")})
		if task.CatchUp != want {
			t.Errorf("%s: catch_up %s, want %s", expr, task.CatchUp, want)
		}
		if expr[0] == '@' && expr[1] == 'o' && (task.NextRun == nil || *task.NextRun != time.Date(2026, 5, 5, 8, 0, 0, 0, time.UTC).Unix()) {
			t.Errorf("once: next_run %v", task.NextRun)
		}
	}
}
