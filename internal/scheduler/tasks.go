package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
)

// Task is a task as the REST API shows it (rest.md "Scheduled tasks").
// Times are Unix seconds plus RFC 3339 in the task's time zone.
type Task struct {
	ID             string   `json:"id"`
	Name           string   `json:"name"`
	CronExpression string   `json:"cron_expression"`
	Timezone       string   `json:"timezone"`           // as set; "" = the default
	EffectiveTZ    string   `json:"effective_timezone"` // the zone it fires in
	Prompt         string   `json:"prompt"`
	SessionID      string   `json:"session_id"` // where its turns run
	DeliverTo      []string `json:"deliver_to"`
	Model          *string  `json:"model"`
	Enabled        bool     `json:"enabled"`
	CatchUp        string   `json:"catch_up"`
	LastRun        *int64   `json:"last_run"`
	LastRunISO     *string  `json:"last_run_iso"`
	NextRun        *int64   `json:"next_run"`
	NextRunISO     *string  `json:"next_run_iso"`
	LastStatus     string   `json:"last_status"`
	CreatedAt      int64    `json:"created_at"`
	CreatedAtISO   string   `json:"created_at_iso"`
	UpdatedAt      int64    `json:"updated_at"`
	UpdatedAtISO   string   `json:"updated_at_iso"`
}

// Input is a task to create, or the fields to change (nil: unchanged).
type Input struct {
	Name           *string   `json:"name"`
	CronExpression *string   `json:"cron_expression"`
	Timezone       *string   `json:"timezone"`
	Prompt         *string   `json:"prompt"`
	SessionID      *string   `json:"session_id"`
	DeliverTo      *[]string `json:"deliver_to"`
	Model          *string   `json:"model"` // "" clears the pin
	Enabled        *bool     `json:"enabled"`
	CatchUp        *string   `json:"catch_up"`
}

// maxPrompt bounds a task's prompt.
const maxPrompt = 32 << 10

// view renders a stored task.
func (s *Scheduler) view(r row) Task {
	loc, err := s.Location(r.Timezone)
	if err != nil {
		loc = time.UTC
	}
	t := Task{
		ID: r.ID, Name: r.Name, CronExpression: r.Cron, Timezone: r.Timezone, EffectiveTZ: loc.String(),
		Prompt: r.Prompt, SessionID: sessionOf(r), DeliverTo: nonNil(r.DeliverTo), Enabled: r.Enabled,
		CatchUp: r.CatchUp, LastStatus: r.LastStatus,
		CreatedAt: r.Created.Unix(), CreatedAtISO: r.Created.In(loc).Format(time.RFC3339),
		UpdatedAt: r.Updated.Unix(), UpdatedAtISO: r.Updated.In(loc).Format(time.RFC3339),
	}
	if r.Model != "" {
		t.Model = &r.Model
	}
	t.LastRun, t.LastRunISO = stamp(r.LastRun, loc)
	t.NextRun, t.NextRunISO = stamp(s.nextRun(r.ID), loc)
	return t
}

func stamp(t time.Time, loc *time.Location) (*int64, *string) {
	if t.IsZero() {
		return nil, nil
	}
	u, iso := t.Unix(), t.In(loc).Format(time.RFC3339)
	return &u, &iso
}

// List returns every task, oldest first.
func (s *Scheduler) List(ctx context.Context) ([]Task, error) {
	rows, err := s.db.tasks(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Task, 0, len(rows))
	for _, r := range rows {
		out = append(out, s.view(r))
	}
	return out, nil
}

// Get returns one task.
func (s *Scheduler) Get(ctx context.Context, id string) (Task, error) {
	r, err := s.get(ctx, id)
	if err != nil {
		return Task{}, err
	}
	return s.view(r), nil
}

func (s *Scheduler) get(ctx context.Context, id string) (row, error) {
	r, err := s.db.task(ctx, id)
	if errors.Is(err, errNoTask) {
		return r, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return r, err
}

// Create validates in and stores a new task; name, cron_expression and
// prompt are required.
func (s *Scheduler) Create(ctx context.Context, in Input) (Task, error) {
	if in.Name == nil || in.CronExpression == nil || in.Prompt == nil {
		return Task{}, fmt.Errorf("%w: name, cron_expression and prompt are required", ErrInvalid)
	}
	now := s.clock.Now()
	r := row{ID: newID(), Enabled: true, ArmedAt: now, Created: now, Updated: now}
	if err := s.apply(&r, in, now); err != nil {
		return Task{}, err
	}
	if err := s.db.putTask(ctx, r, true); err != nil {
		return Task{}, err
	}
	s.arm(r)
	s.notify("created", r.ID)
	return s.view(r), nil
}

// Update changes the fields in sets; a new schedule (or enabling) counts
// from now, so no slot before it is caught up.
func (s *Scheduler) Update(ctx context.Context, id string, in Input) (Task, error) {
	r, err := s.get(ctx, id)
	if err != nil {
		return Task{}, err
	}
	old := r
	now := s.clock.Now()
	if err := s.apply(&r, in, now); err != nil {
		return Task{}, err
	}
	if r.Cron != old.Cron || r.Timezone != old.Timezone || (r.Enabled && !old.Enabled) {
		r.ArmedAt = now
	}
	r.Updated = now
	if err := s.db.putTask(ctx, r, false); err != nil {
		return Task{}, err
	}
	s.arm(r)
	s.notify("updated", id)
	return s.view(r), nil
}

// Delete removes a task, its history and its schedule; a running run is
// cancelled.
func (s *Scheduler) Delete(ctx context.Context, id string) error {
	if err := s.db.deleteTask(ctx, id); err != nil {
		if errors.Is(err, errNoTask) {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return err
	}
	s.Unregister(taskKey(id))
	s.mu.Lock()
	if a := s.running[id]; a != nil {
		a.cancel()
	}
	s.mu.Unlock()
	s.notify("deleted", id)
	return nil
}

// RunNow starts a run at once (ErrRunning while one is active) and returns
// its id.
func (s *Scheduler) RunNow(ctx context.Context, id string) (int64, error) {
	if _, err := s.get(ctx, id); err != nil {
		return 0, err
	}
	r, err := s.fire(id, "manual", time.Time{})
	if err != nil {
		return 0, err
	}
	return r.ID, nil
}

// Runs returns the newest limit runs of a task, newest first.
func (s *Scheduler) Runs(ctx context.Context, id string, limit int) ([]Run, error) {
	if _, err := s.get(ctx, id); err != nil {
		return nil, err
	}
	return s.db.runs(ctx, id, limit)
}

// apply validates in and writes it into r.
func (s *Scheduler) apply(r *row, in Input, now time.Time) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, a...)...)
	}
	if in.Name != nil {
		name := strings.TrimSpace(*in.Name)
		if name == "" || len(name) > 200 {
			return bad("name must be 1 to 200 characters")
		}
		r.Name = name
	}
	if in.Prompt != nil {
		if strings.TrimSpace(*in.Prompt) == "" || len(*in.Prompt) > maxPrompt {
			return bad("prompt must be non-empty and at most %d bytes", maxPrompt)
		}
		r.Prompt = *in.Prompt
	}
	if in.Timezone != nil {
		r.Timezone = strings.TrimSpace(*in.Timezone)
	}
	if in.CronExpression != nil {
		r.Cron = strings.TrimSpace(*in.CronExpression)
	}
	loc, err := s.Location(r.Timezone)
	if err != nil {
		return bad("timezone: %v", err)
	}
	sched, err := ParseSchedule(r.Cron, loc, now)
	if err != nil {
		return bad("cron_expression %q: %v", r.Cron, err)
	}
	if in.SessionID != nil {
		if *in.SessionID != "" {
			if err := checkSession(*in.SessionID); err != nil {
				return bad("session_id: %v", err)
			}
		}
		r.SessionID = *in.SessionID
	}
	if in.DeliverTo != nil {
		if len(*in.DeliverTo) > 20 {
			return bad("deliver_to: at most 20 sessions")
		}
		var ds []string
		for _, sid := range *in.DeliverTo {
			if err := checkSession(sid); err != nil {
				return bad("deliver_to %q: %v", sid, err)
			}
			if !slices.Contains(ds, sid) {
				ds = append(ds, sid)
			}
		}
		r.DeliverTo = ds
	}
	if in.Model != nil {
		if *in.Model != "" {
			if err := s.turns.CheckModel(*in.Model); err != nil {
				return bad("model: %v", err)
			}
		}
		r.Model = *in.Model
	}
	if in.Enabled != nil {
		r.Enabled = *in.Enabled
	}
	switch {
	case in.CatchUp != nil && (*in.CatchUp == "skip" || *in.CatchUp == "once"):
		r.CatchUp = *in.CatchUp
	case in.CatchUp != nil:
		return bad("catch_up must be skip or once, not %q", *in.CatchUp)
	case r.CatchUp == "" && sched.dailyLike(now):
		r.CatchUp = "once"
	case r.CatchUp == "":
		r.CatchUp = "skip"
	}
	return nil
}

// checkSession refuses session ids no client could use (the rules of the
// session manager).
func checkSession(sid string) error {
	switch {
	case sid == "":
		return errors.New("must not be empty")
	case len(sid) > 128:
		return errors.New("longer than 128 bytes")
	case strings.IndexFunc(sid, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return errors.New("must not contain spaces or control characters")
	}
	return nil
}
