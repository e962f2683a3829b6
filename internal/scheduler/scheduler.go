// Package scheduler runs cron tasks: each task's prompt is a turn through
// the session manager, like any client's, and its reply is delivered to the
// task's deliver_to sessions (a "tg:…" session reaches its Telegram chat).
// Timing is gocron's (github.com/go-co-op/gocron/v2); what gocron does not
// do is done here: no task overlaps itself (a fire during a run is recorded
// as skipped), and slots that passed while agentd was down are caught up
// once or recorded as missed, from the persisted last slot. Other packages
// (workflows) register their own schedules with Register.
package scheduler

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/google/uuid"
	"github.com/jonboulle/clockwork"

	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/hook"
	"github.com/agentd/agentd/internal/session"
	"github.com/agentd/agentd/wire"
)

// Turns is what the scheduler needs from the session manager.
type Turns interface {
	RunTurn(ctx context.Context, req session.TurnRequest) (session.TurnResult, error)
	Push(ctx context.Context, sid, text string, atts []wire.Attachment) error
	CheckModel(id string) error
}

// Options configure a Scheduler.
type Options struct {
	DB     *sql.DB
	Config *config.Watcher // scheduler.enabled, scheduler.timezone
	Turns  Turns
	// Clock drives the schedules (tests pass a clockwork fake); nil is
	// the real clock.
	Clock clockwork.Clock
	Log   *slog.Logger
}

// Errors the REST layer maps to statuses.
var (
	ErrNotFound = errors.New("task not found")
	ErrInvalid  = errors.New("invalid task")
	ErrRunning  = errors.New("task is running")
	ErrStopped  = errors.New("scheduler not running")
)

// catchUpWindow bounds how old a missed slot may be to be caught up: a
// daily report from last week helps nobody.
const catchUpWindow = 24 * time.Hour

// maxSlotsCounted bounds the missed slots counted after a downtime (an
// every-second task down for a week).
const maxSlotsCounted = 10_000

// stopTimeout bounds the writes that record runs cut by a shutdown.
const stopTimeout = 5 * time.Second

// Scheduler owns the tasks. Create it with New, then call Start once.
type Scheduler struct {
	db    *db
	cfg   *config.Watcher
	turns Turns
	clock clockwork.Clock
	log   *slog.Logger
	gc    gocron.Scheduler

	// mu guards ctx and running; it is held while a run is recorded, so
	// two fires of one task cannot both start.
	mu      sync.Mutex
	ctx     context.Context
	running map[string]*active // task id → its active run
	wg      sync.WaitGroup

	// jobMu guards jobs and scheds; never held while gocron runs a job.
	jobMu  sync.Mutex
	jobs   map[string]job       // Register key → gocron job
	scheds map[string]*Schedule // task id → its parsed schedule

	hooks hook.Changes
}

type job struct {
	id    uuid.UUID
	sched *Schedule
}

type active struct {
	runID  int64
	cancel context.CancelFunc
}

// New returns a scheduler over the scheduler tables of opts.DB.
func New(opts Options) (*Scheduler, error) {
	if opts.DB == nil || opts.Config == nil || opts.Turns == nil {
		return nil, errors.New("scheduler: DB, Config and Turns are required")
	}
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	gc, err := gocron.NewScheduler(gocron.WithClock(opts.Clock), gocron.WithStopTimeout(stopTimeout))
	if err != nil {
		return nil, fmt.Errorf("scheduler: %w", err)
	}
	s := &Scheduler{
		db: &db{sql: opts.DB}, cfg: opts.Config, turns: opts.Turns, clock: opts.Clock, log: opts.Log, gc: gc,
		running: map[string]*active{}, jobs: map[string]job{}, scheds: map[string]*Schedule{},
	}
	opts.Config.Subscribe(func(old, cur *config.Config) {
		if old.Scheduler != cur.Scheduler {
			s.reload()
		}
	})
	return s, nil
}

// Start closes the runs a previous process left running, catches up what
// was missed while agentd was down, registers the enabled tasks and runs
// them until ctx is done.
func (s *Scheduler) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.ctx != nil {
		s.mu.Unlock()
		return errors.New("scheduler: already started")
	}
	s.ctx = ctx
	s.mu.Unlock()
	now := s.clock.Now()
	if n, err := s.db.failRunning(ctx, now, "agentd stopped"); err != nil {
		return err
	} else if n > 0 {
		s.log.Warn("task runs cut by the previous stop recorded as failed", "runs", n)
	}
	tasks, err := s.db.tasks(ctx)
	if err != nil {
		return err
	}
	on := s.cfg.Current().Scheduler.Enabled
	for _, t := range tasks {
		if on && t.Enabled {
			s.catchUp(ctx, t, now)
		}
		s.arm(t)
	}
	s.gc.Start()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		<-ctx.Done()
		if err := s.gc.Shutdown(); err != nil {
			s.log.Warn("gocron shutdown", "err", err)
		}
	}()
	s.log.Info("scheduler started", "tasks", len(tasks), "enabled", on)
	return nil
}

// Wait returns once every run and the timer loop have ended (after Start's
// ctx is done).
func (s *Scheduler) Wait() { s.wg.Wait() }

// OnChange registers fn, called with ("task", action, id) after every
// change of a task and at the end of every run; meant for resource_event.
func (s *Scheduler) OnChange(fn func(resource, action, id string)) {
	s.hooks.Add(fn)
}

func (s *Scheduler) notify(action, id string) { s.hooks.Notify("task", action, id) }

// Location resolves a task's time zone: its own, else scheduler.timezone,
// else the machine's.
func (s *Scheduler) Location(tz string) (*time.Location, error) {
	if tz == "" {
		tz = s.cfg.Current().Scheduler.Timezone
	}
	if tz == "" {
		return time.Local, nil
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q (want an IANA name such as Europe/Berlin)", tz)
	}
	return loc, nil
}

// Check parses expr in time zone tz ("" for the default) as Register
// would, without registering anything.
func (s *Scheduler) Check(expr, tz string) error {
	loc, err := s.Location(tz)
	if err != nil {
		return err
	}
	_, err = ParseSchedule(expr, loc, s.clock.Now())
	return err
}

// Register fires fn at every slot of expr (in time zone tz, "" for the
// default) under key, replacing what key had. It is how workflows'
// trigger-schedule blocks run; tasks use it too.
func (s *Scheduler) Register(key, expr, tz string, fn func(slot time.Time)) error {
	loc, err := s.Location(tz)
	if err != nil {
		return err
	}
	sched, err := ParseSchedule(expr, loc, s.clock.Now())
	if err != nil {
		return err
	}
	s.Unregister(key)
	if !s.cfg.Current().Scheduler.Enabled || (sched.Once() && !sched.once.After(s.clock.Now())) {
		return nil // nothing to time: off, or a one-shot in the past
	}
	j, err := s.gc.NewJob(sched.def, gocron.NewTask(func() { fn(sched.slot(s.clock.Now())) }), gocron.WithName(key),
		gocron.WithCronImplementation(sched))
	if err != nil {
		return fmt.Errorf("schedule %s: %w", key, err)
	}
	s.jobMu.Lock()
	s.jobs[key] = job{id: j.ID(), sched: sched}
	s.jobMu.Unlock()
	return nil
}

// Scheduled reports whether a schedule is registered under key.
func (s *Scheduler) Scheduled(key string) bool {
	s.jobMu.Lock()
	defer s.jobMu.Unlock()
	_, ok := s.jobs[key]
	return ok
}

// Unregister stops the schedule under key, if any.
func (s *Scheduler) Unregister(key string) {
	s.jobMu.Lock()
	j, ok := s.jobs[key]
	delete(s.jobs, key)
	s.jobMu.Unlock()
	if ok {
		if err := s.gc.RemoveJob(j.id); err != nil && !errors.Is(err, gocron.ErrJobNotFound) {
			s.log.Warn("remove schedule", "key", key, "err", err)
		}
	}
}

// slot is the schedule slot a fire at now belongs to: gocron's timer fires
// at the slot, the clock reads a little later.
func (sc *Schedule) slot(now time.Time) time.Time {
	if sc.Once() {
		return sc.once
	}
	return now.Truncate(time.Second)
}

func taskKey(id string) string { return "task:" + id }

// arm (re)registers task t's schedule, or unregisters it when disabled.
func (s *Scheduler) arm(t row) {
	if !t.Enabled {
		s.Unregister(taskKey(t.ID))
		return
	}
	id := t.ID
	if err := s.Register(taskKey(id), t.Cron, t.Timezone, func(slot time.Time) {
		if _, err := s.fire(id, "schedule", slot); err != nil && !errors.Is(err, ErrRunning) {
			s.log.Error("task not run", "task", id, "err", err)
		}
	}); err != nil {
		s.log.Error("task not scheduled", "task", id, "err", err)
	}
}

// reload re-registers every task after a change of the scheduler section
// (enabled, default time zone).
func (s *Scheduler) reload() {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	tasks, err := s.db.tasks(ctx)
	if err != nil {
		s.log.Error("tasks not rescheduled after config change", "err", err)
		return
	}
	for _, t := range tasks {
		s.arm(t)
	}
	s.log.Info("tasks rescheduled after config change", "tasks", len(tasks))
}

// nextRun is when the task fires next, zero when it is not scheduled.
func (s *Scheduler) nextRun(id string) time.Time {
	s.jobMu.Lock()
	j, ok := s.jobs[taskKey(id)]
	s.jobMu.Unlock()
	if !ok {
		return time.Time{}
	}
	return j.sched.Next(s.clock.Now())
}

// catchUp deals with the slots of t that passed while agentd was down:
// with catch_up once the newest runs now, if it is recent enough; every
// other one is recorded as missed.
func (s *Scheduler) catchUp(ctx context.Context, t row, now time.Time) {
	loc, err := s.Location(t.Timezone)
	if err != nil {
		return
	}
	sched, err := ParseSchedule(t.Cron, loc, now)
	if err != nil {
		return
	}
	from := t.ArmedAt
	if t.LastSlot.After(from) {
		from = t.LastSlot
	}
	n, last := sched.Slots(from, now, maxSlotsCounted)
	if n == 0 {
		return
	}
	run := t.CatchUp == "once" && now.Sub(last) <= catchUpWindow
	missed := n
	if run {
		missed--
	}
	if missed > 0 {
		count := fmt.Sprint(missed)
		if n == maxSlotsCounted {
			count = "at least " + count
		}
		why := "agentd was not running"
		if t.CatchUp == "once" && !run {
			why += fmt.Sprintf("; the last slot is older than %s, so it was not caught up", catchUpWindow)
		}
		r := &Run{TaskID: t.ID, Trigger: "schedule", ScheduledAt: last, StartedAt: now, FinishedAt: now, Status: "missed",
			Error: fmt.Sprintf("%s run(s) missed up to %s: %s", count, last.In(loc).Format(time.RFC3339), why)}
		slot := last
		if run {
			slot = time.Time{} // the catch-up run below accounts for it
		}
		if err := s.db.startRun(ctx, r, slot); err != nil {
			s.log.Error("missed runs not recorded", "task", t.ID, "err", err)
		}
		s.log.Warn("task runs missed while agentd was down", "task", t.ID, "missed", count, "last_slot", last)
		s.notify("run_missed", t.ID)
	}
	if run {
		if _, err := s.fire(t.ID, "catch_up", last); err != nil {
			s.log.Error("catch-up run not started", "task", t.ID, "err", err)
		}
	}
}

// fire starts a run of task id, or records it as skipped while the task's
// previous run is active (ErrRunning). slot is the schedule slot the run
// accounts for (zero for a manual run).
func (s *Scheduler) fire(id, trigger string, slot time.Time) (*Run, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil || s.ctx.Err() != nil {
		return nil, ErrStopped
	}
	ctx := s.ctx
	t, err := s.db.task(ctx, id)
	if errors.Is(err, errNoTask) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	now := s.clock.Now()
	r := &Run{TaskID: id, Trigger: trigger, ScheduledAt: slot, StartedAt: now, Status: "running"}
	if a := s.running[id]; a != nil {
		if trigger == "manual" {
			return nil, fmt.Errorf("%w: run %d has not finished", ErrRunning, a.runID)
		}
		r.Status, r.FinishedAt = "skipped", now
		r.Error = fmt.Sprintf("run %d was still running; a task never overlaps itself", a.runID)
		if err := s.db.startRun(ctx, r, slot); err != nil {
			return nil, err
		}
		s.log.Warn("task fire skipped: previous run still active", "task", id, "run", a.runID)
		s.notify("run_skipped", id)
		return r, ErrRunning
	}
	if err := s.db.startRun(ctx, r, slot); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	s.running[id] = &active{runID: r.ID, cancel: cancel}
	s.wg.Add(1)
	go s.execute(rctx, cancel, t, r)
	s.notify("run_started", id)
	return r, nil
}

// sessionOf is the session a task's turns run in.
func sessionOf(t row) string {
	if t.SessionID != "" {
		return t.SessionID
	}
	return "scheduler:" + t.ID
}

// execute runs the task's turn, delivers the reply and records the end.
func (s *Scheduler) execute(ctx context.Context, cancel context.CancelFunc, t row, r *Run) {
	defer s.wg.Done()
	defer cancel()
	res, err := s.turns.RunTurn(ctx, session.TurnRequest{
		Client: "scheduler:" + t.ID, SessionID: sessionOf(t), Text: t.Prompt, Model: t.Model,
	})
	r.Output, r.Usage = res.Text, res.Usage
	switch {
	case s.ctx.Err() != nil || errors.Is(err, session.ErrStopped):
		r.Status, r.Error = "failed", "agentd stopped"
	case err != nil:
		r.Status, r.Error = "failed", err.Error()
	case ctx.Err() != nil:
		r.Status, r.Error = "failed", "cancelled: the task was deleted"
	default:
		r.Status = "success"
		if derr := s.deliver(ctx, t, res); derr != nil {
			r.Status, r.Error = "failed", derr.Error()
		}
	}
	r.FinishedAt = s.clock.Now()
	wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
	defer wcancel()
	if err := s.db.finishRun(wctx, r); err != nil {
		s.log.Error("task run end not recorded", "task", t.ID, "run", r.ID, "err", err)
	}
	s.mu.Lock()
	if a := s.running[t.ID]; a != nil && a.runID == r.ID {
		delete(s.running, t.ID)
	}
	s.mu.Unlock()
	s.log.Info("task run finished", "task", t.ID, "run", r.ID, "status", r.Status, "err", r.Error,
		"duration", r.FinishedAt.Sub(r.StartedAt))
	s.notify("run_finished", t.ID)
}

// deliver pushes the reply into every deliver_to session; it tries them
// all and reports those that failed.
func (s *Scheduler) deliver(ctx context.Context, t row, res session.TurnResult) error {
	text := res.Text
	if text == "" && len(res.Attachments) == 0 {
		text = "(task " + t.Name + ": the model returned no text)"
	}
	var errs []error
	for _, sid := range t.DeliverTo {
		if err := s.turns.Push(ctx, sid, text, res.Attachments); err != nil {
			errs = append(errs, fmt.Errorf("deliver to %s: %w", sid, err))
		}
	}
	return errors.Join(errs...)
}

// newID returns a fresh task id.
func newID() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
