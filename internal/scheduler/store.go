package scheduler

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/agentd/agentd/wire"
)

// historyKeep is how many runs per task the history keeps.
const historyKeep = 100

// row is a task as stored.
type row struct {
	ID, Name, Cron, Timezone, Prompt, SessionID, Model, CatchUp, LastStatus string
	DeliverTo                                                               []string
	Enabled                                                                 bool
	ArmedAt, Created, Updated                                               time.Time
	LastSlot, LastRun                                                       time.Time // zero: never
}

// Run is one entry of a task's run history.
type Run struct {
	ID          int64
	TaskID      string
	Trigger     string // schedule, manual, catch_up
	ScheduledAt time.Time
	StartedAt   time.Time
	FinishedAt  time.Time
	Status      string
	Output      string
	Error       string
	Usage       wire.Usage
}

// db holds the scheduler's tables (migration 0009).
type db struct {
	sql *sql.DB
	// wmu serialises writes (SQLite has one writer; see session's db).
	wmu sync.Mutex
}

var errNoTask = errors.New("no such task")

func ms(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

func fromMS(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64)
}

const taskCols = `id, name, cron_expression, timezone, prompt, session_id, deliver_to, model, enabled, catch_up,
	armed_at, last_slot, last_run, last_status, created_at, updated_at`

func scanTask(sc interface{ Scan(...any) error }) (row, error) {
	var r row
	var deliver string
	var armed, created, updated int64
	var slot, last sql.NullInt64
	if err := sc.Scan(&r.ID, &r.Name, &r.Cron, &r.Timezone, &r.Prompt, &r.SessionID, &deliver, &r.Model, &r.Enabled,
		&r.CatchUp, &armed, &slot, &last, &r.LastStatus, &created, &updated); err != nil {
		return r, err
	}
	if err := json.Unmarshal([]byte(deliver), &r.DeliverTo); err != nil {
		return r, fmt.Errorf("task %s: deliver_to: %w", r.ID, err)
	}
	r.ArmedAt, r.Created, r.Updated = time.UnixMilli(armed), time.UnixMilli(created), time.UnixMilli(updated)
	r.LastSlot, r.LastRun = fromMS(slot), fromMS(last)
	return r, nil
}

func (d *db) tasks(ctx context.Context) ([]row, error) {
	rows, err := d.sql.QueryContext(ctx, `SELECT `+taskCols+` FROM scheduled_tasks ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	defer rows.Close()
	var out []row
	for rows.Next() {
		r, err := scanTask(rows)
		if err != nil {
			return nil, fmt.Errorf("list tasks: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func (d *db) task(ctx context.Context, id string) (row, error) {
	r, err := scanTask(d.sql.QueryRowContext(ctx, `SELECT `+taskCols+` FROM scheduled_tasks WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, errNoTask
	}
	if err != nil {
		return r, fmt.Errorf("read task %s: %w", id, err)
	}
	return r, nil
}

// putTask inserts or replaces the task's definition (not its run state).
func (d *db) putTask(ctx context.Context, r row, insert bool) error {
	deliver, err := json.Marshal(nonNil(r.DeliverTo))
	if err != nil {
		return err
	}
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if insert {
		_, err = d.sql.ExecContext(ctx, `INSERT INTO scheduled_tasks(id, name, cron_expression, timezone, prompt, session_id,
			deliver_to, model, enabled, catch_up, armed_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.ID, r.Name, r.Cron, r.Timezone, r.Prompt, r.SessionID, string(deliver), r.Model, r.Enabled, r.CatchUp,
			r.ArmedAt.UnixMilli(), r.Created.UnixMilli(), r.Updated.UnixMilli())
	} else {
		_, err = d.sql.ExecContext(ctx, `UPDATE scheduled_tasks SET name = ?, cron_expression = ?, timezone = ?, prompt = ?,
			session_id = ?, deliver_to = ?, model = ?, enabled = ?, catch_up = ?, armed_at = ?, updated_at = ? WHERE id = ?`,
			r.Name, r.Cron, r.Timezone, r.Prompt, r.SessionID, string(deliver), r.Model, r.Enabled, r.CatchUp,
			r.ArmedAt.UnixMilli(), r.Updated.UnixMilli(), r.ID)
	}
	if err != nil {
		return fmt.Errorf("store task %s: %w", r.ID, err)
	}
	return nil
}

func (d *db) deleteTask(ctx context.Context, id string) error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	res, err := d.sql.ExecContext(ctx, `DELETE FROM scheduled_tasks WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("delete task %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errNoTask
	}
	return nil
}

// startRun records a run (running, or at once skipped/missed when
// finished is set) and moves the task's run state: last_run, last_status,
// and last_slot when the run accounts for a schedule slot. It keeps the
// newest historyKeep runs.
func (d *db) startRun(ctx context.Context, r *Run, slot time.Time) error {
	usage, _ := json.Marshal(r.Usage)
	d.wmu.Lock()
	defer d.wmu.Unlock()
	tx, err := d.sql.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("record run of %s: %w", r.TaskID, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `INSERT INTO scheduled_task_runs(task_id, trigger, scheduled_at, started_at, finished_at,
		status, output, error, usage) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.TaskID, r.Trigger, ms(r.ScheduledAt), r.StartedAt.UnixMilli(), ms(r.FinishedAt), r.Status, r.Output, r.Error, string(usage))
	if err != nil {
		return fmt.Errorf("record run of %s: %w", r.TaskID, err)
	}
	if r.ID, err = res.LastInsertId(); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE scheduled_tasks SET last_status = ?,
		last_run = CASE WHEN ? IN ('skipped', 'missed') THEN last_run ELSE ? END,
		last_slot = COALESCE(?, last_slot) WHERE id = ?`,
		r.Status, r.Status, r.StartedAt.UnixMilli(), ms(slot), r.TaskID); err != nil {
		return fmt.Errorf("record run of %s: %w", r.TaskID, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM scheduled_task_runs WHERE task_id = ? AND id NOT IN (
		SELECT id FROM scheduled_task_runs WHERE task_id = ? ORDER BY id DESC LIMIT ?)`, r.TaskID, r.TaskID, historyKeep); err != nil {
		return fmt.Errorf("bound run history of %s: %w", r.TaskID, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("record run of %s: %w", r.TaskID, err)
	}
	return nil
}

// finishRun stores a run's end and the task's last_status.
func (d *db) finishRun(ctx context.Context, r *Run) error {
	usage, _ := json.Marshal(r.Usage)
	d.wmu.Lock()
	defer d.wmu.Unlock()
	tx, err := d.sql.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("finish run %d: %w", r.ID, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `UPDATE scheduled_task_runs SET finished_at = ?, status = ?, output = ?, error = ?, usage = ?
		WHERE id = ?`, r.FinishedAt.UnixMilli(), r.Status, r.Output, r.Error, string(usage), r.ID); err != nil {
		return fmt.Errorf("finish run %d: %w", r.ID, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE scheduled_tasks SET last_status = ? WHERE id = ?`, r.Status, r.TaskID); err != nil {
		return fmt.Errorf("finish run %d: %w", r.ID, err)
	}
	return tx.Commit()
}

// failRunning marks the runs left running by a previous process as failed.
func (d *db) failRunning(ctx context.Context, now time.Time, reason string) (int64, error) {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	res, err := d.sql.ExecContext(ctx, `UPDATE scheduled_task_runs SET status = 'failed', error = ?, finished_at = ?
		WHERE status = 'running'`, reason, now.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("close interrupted runs: %w", err)
	}
	if _, err := d.sql.ExecContext(ctx, `UPDATE scheduled_tasks SET last_status = 'failed' WHERE last_status = 'running'`); err != nil {
		return 0, fmt.Errorf("close interrupted runs: %w", err)
	}
	return res.RowsAffected()
}

func (d *db) runs(ctx context.Context, taskID string, limit int) ([]Run, error) {
	rows, err := d.sql.QueryContext(ctx, `SELECT id, task_id, trigger, scheduled_at, started_at, finished_at, status, output, error, usage
		FROM scheduled_task_runs WHERE task_id = ? ORDER BY id DESC LIMIT ?`, taskID, limit)
	if err != nil {
		return nil, fmt.Errorf("list runs of %s: %w", taskID, err)
	}
	defer rows.Close()
	out := []Run{}
	for rows.Next() {
		var r Run
		var sched, fin sql.NullInt64
		var started int64
		var usage string
		if err := rows.Scan(&r.ID, &r.TaskID, &r.Trigger, &sched, &started, &fin, &r.Status, &r.Output, &r.Error, &usage); err != nil {
			return nil, fmt.Errorf("list runs of %s: %w", taskID, err)
		}
		r.ScheduledAt, r.StartedAt, r.FinishedAt = fromMS(sched), time.UnixMilli(started), fromMS(fin)
		_ = json.Unmarshal([]byte(usage), &r.Usage)
		out = append(out, r)
	}
	return out, rows.Err()
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
