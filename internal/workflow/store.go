package workflow

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// runsKeep is how many runs per workflow are kept.
const runsKeep = 200

// Workflow is a workflow as stored and served.
type Workflow struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Enabled     bool      `json:"enabled"`
	Concurrency int       `json:"concurrency"`
	Graph       Graph     `json:"graph"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Run is one execution of a workflow.
type Run struct {
	ID         string         `json:"id"`
	WorkflowID string         `json:"workflow_id"`
	Trigger    string         `json:"trigger"`
	Status     string         `json:"status"`
	StartedAt  time.Time      `json:"started_at"`
	FinishedAt *time.Time     `json:"finished_at"`
	Inputs     map[string]any `json:"inputs"`
	Outputs    map[string]any `json:"outputs"`
	Error      string         `json:"error"`
	Trace      []Step         `json:"trace"`
}

// Step is one trace entry: a node's execution.
type Step struct {
	NodeID     string    `json:"node_id"`
	Type       string    `json:"type"`
	Iteration  *int      `json:"iteration,omitempty"` // loop index, for body nodes
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	Status     string    `json:"status"`
	Input      any       `json:"input"`
	Output     any       `json:"output"`
	Error      string    `json:"error"`
}

type db struct {
	sql *sql.DB
	// wmu serialises writes (SQLite has one writer).
	wmu sync.Mutex
}

var (
	errNoWorkflow = errors.New("no such workflow")
	errNoRun      = errors.New("no such run")
	errDuplicate  = errors.New("duplicate name")
)

func enc(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "null"
	}
	return string(b)
}

const wfCols = `id, name, description, enabled, concurrency, graph, created_at, updated_at`

func scanWorkflow(sc interface{ Scan(...any) error }) (Workflow, error) {
	var w Workflow
	var graph string
	var created, updated int64
	if err := sc.Scan(&w.ID, &w.Name, &w.Description, &w.Enabled, &w.Concurrency, &graph, &created, &updated); err != nil {
		return w, err
	}
	if err := json.Unmarshal([]byte(graph), &w.Graph); err != nil {
		return w, fmt.Errorf("workflow %s: graph: %w", w.ID, err)
	}
	w.CreatedAt, w.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
	return w, nil
}

func (d *db) list(ctx context.Context) ([]Workflow, error) {
	rows, err := d.sql.QueryContext(ctx, `SELECT `+wfCols+` FROM workflows ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list workflows: %w", err)
	}
	defer rows.Close()
	out := []Workflow{}
	for rows.Next() {
		w, err := scanWorkflow(rows)
		if err != nil {
			return nil, fmt.Errorf("list workflows: %w", err)
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

// get finds a workflow by id or unique name.
func (d *db) get(ctx context.Context, idOrName string) (Workflow, error) {
	w, err := scanWorkflow(d.sql.QueryRowContext(ctx, `SELECT `+wfCols+` FROM workflows WHERE id = ? OR name = ? ORDER BY id = ? DESC LIMIT 1`,
		idOrName, idOrName, idOrName))
	if errors.Is(err, sql.ErrNoRows) {
		return w, errNoWorkflow
	}
	if err != nil {
		return w, fmt.Errorf("read workflow %s: %w", idOrName, err)
	}
	return w, nil
}

func (d *db) put(ctx context.Context, w Workflow, insert bool) error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	var err error
	if insert {
		_, err = d.sql.ExecContext(ctx, `INSERT INTO workflows(`+wfCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			w.ID, w.Name, w.Description, w.Enabled, w.Concurrency, enc(w.Graph), w.CreatedAt.UnixMilli(), w.UpdatedAt.UnixMilli())
	} else {
		_, err = d.sql.ExecContext(ctx, `UPDATE workflows SET name = ?, description = ?, enabled = ?, concurrency = ?, graph = ?,
			updated_at = ? WHERE id = ?`, w.Name, w.Description, w.Enabled, w.Concurrency, enc(w.Graph), w.UpdatedAt.UnixMilli(), w.ID)
	}
	if err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed: workflows.name") {
		return fmt.Errorf("%w: a workflow named %q exists", errDuplicate, w.Name)
	}
	if err != nil {
		return fmt.Errorf("store workflow %s: %w", w.Name, err)
	}
	return nil
}

func (d *db) delete(ctx context.Context, id string) error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if _, err := d.sql.ExecContext(ctx, `DELETE FROM workflows WHERE id = ?`, id); err != nil {
		return fmt.Errorf("delete workflow %s: %w", id, err)
	}
	return nil
}

func (d *db) startRun(ctx context.Context, r *Run) error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	tx, err := d.sql.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("record run: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO workflow_runs(id, workflow_id, trigger, status, started_at, inputs) VALUES (?, ?, ?, ?, ?, ?)`,
		r.ID, r.WorkflowID, r.Trigger, r.Status, r.StartedAt.UnixMilli(), enc(r.Inputs)); err != nil {
		return fmt.Errorf("record run: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM workflow_runs WHERE workflow_id = ? AND status != 'running' AND id NOT IN (
		SELECT id FROM workflow_runs WHERE workflow_id = ? ORDER BY started_at DESC, rowid DESC LIMIT ?)`, r.WorkflowID, r.WorkflowID, runsKeep); err != nil {
		return fmt.Errorf("bound runs: %w", err)
	}
	return tx.Commit()
}

func (d *db) addStep(ctx context.Context, runID string, s Step) error {
	iter := -1
	if s.Iteration != nil {
		iter = *s.Iteration
	}
	d.wmu.Lock()
	defer d.wmu.Unlock()
	_, err := d.sql.ExecContext(ctx, `INSERT INTO workflow_trace(run_id, node_id, type, iteration, started_at, finished_at, status, input, output, error)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, runID, s.NodeID, s.Type, iter, s.StartedAt.UnixMilli(), s.FinishedAt.UnixMilli(),
		s.Status, enc(s.Input), enc(s.Output), s.Error)
	if err != nil {
		return fmt.Errorf("record step %s of run %s: %w", s.NodeID, runID, err)
	}
	return nil
}

func (d *db) finishRun(ctx context.Context, r *Run) error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	_, err := d.sql.ExecContext(ctx, `UPDATE workflow_runs SET status = ?, finished_at = ?, outputs = ?, error = ? WHERE id = ?`,
		r.Status, r.FinishedAt.UnixMilli(), enc(r.Outputs), r.Error, r.ID)
	if err != nil {
		return fmt.Errorf("finish run %s: %w", r.ID, err)
	}
	return nil
}

// failRunning closes the runs a previous process left running.
func (d *db) failRunning(ctx context.Context, now time.Time) (int64, error) {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	res, err := d.sql.ExecContext(ctx, `UPDATE workflow_runs SET status = 'failed', error = 'agentd stopped', finished_at = ?
		WHERE status = 'running'`, now.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("close interrupted runs: %w", err)
	}
	return res.RowsAffected()
}

const runCols = `id, workflow_id, trigger, status, started_at, finished_at, inputs, outputs, error`

func scanRun(sc interface{ Scan(...any) error }) (Run, error) {
	var r Run
	var started int64
	var fin sql.NullInt64
	var inputs, outputs string
	if err := sc.Scan(&r.ID, &r.WorkflowID, &r.Trigger, &r.Status, &started, &fin, &inputs, &outputs, &r.Error); err != nil {
		return r, err
	}
	r.StartedAt = time.UnixMilli(started).UTC()
	if fin.Valid {
		t := time.UnixMilli(fin.Int64).UTC()
		r.FinishedAt = &t
	}
	_ = json.Unmarshal([]byte(inputs), &r.Inputs)
	_ = json.Unmarshal([]byte(outputs), &r.Outputs)
	return r, nil
}

// run returns a run with its trace.
func (d *db) run(ctx context.Context, id string) (Run, error) {
	r, err := scanRun(d.sql.QueryRowContext(ctx, `SELECT `+runCols+` FROM workflow_runs WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, errNoRun
	}
	if err != nil {
		return r, fmt.Errorf("read run %s: %w", id, err)
	}
	rows, err := d.sql.QueryContext(ctx, `SELECT node_id, type, iteration, started_at, finished_at, status, input, output, error
		FROM workflow_trace WHERE run_id = ? ORDER BY id`, id)
	if err != nil {
		return r, fmt.Errorf("read trace of %s: %w", id, err)
	}
	defer rows.Close()
	r.Trace = []Step{}
	for rows.Next() {
		var s Step
		var iter int
		var st, fin int64
		var in, out string
		if err := rows.Scan(&s.NodeID, &s.Type, &iter, &st, &fin, &s.Status, &in, &out, &s.Error); err != nil {
			return r, fmt.Errorf("read trace of %s: %w", id, err)
		}
		if iter >= 0 {
			s.Iteration = &iter
		}
		s.StartedAt, s.FinishedAt = time.UnixMilli(st).UTC(), time.UnixMilli(fin).UTC()
		_ = json.Unmarshal([]byte(in), &s.Input)
		_ = json.Unmarshal([]byte(out), &s.Output)
		r.Trace = append(r.Trace, s)
	}
	return r, rows.Err()
}

func (d *db) runs(ctx context.Context, workflowID string, limit int) ([]Run, error) {
	rows, err := d.sql.QueryContext(ctx, `SELECT `+runCols+` FROM workflow_runs WHERE workflow_id = ? ORDER BY started_at DESC, rowid DESC LIMIT ?`,
		workflowID, limit)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	defer rows.Close()
	out := []Run{}
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, fmt.Errorf("list runs: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
