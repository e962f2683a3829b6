// Package workflow runs block graphs (rest.md "Workflows"): validation that
// names the node at fault, an executor that runs ready blocks concurrently
// (bounded), takes branches, merges, loops and waits, and a trace entry per
// block written as the block finishes, so a crash mid-run leaves a readable
// trace and the run is marked "failed: agentd stopped" at the next start.
// A run belongs to the engine, not to the request that started it: only
// Cancel ends it early.
package workflow

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/agentd/agentd/internal/hook"
	"github.com/agentd/agentd/internal/session"
	"github.com/agentd/agentd/wire"
)

// Turns is what workflows need from the session manager.
type Turns interface {
	RunTurn(ctx context.Context, req session.TurnRequest) (session.TurnResult, error)
	Push(ctx context.Context, sid, text string, atts []wire.Attachment) error
}

// Tools calls MCP tools; nil when the agent has no MCP pool.
type Tools interface {
	// Lookup reports whether server is known and running and lists tool.
	Lookup(server, tool string) (known, running, listed bool)
	// Call calls tool on server with a JSON object of arguments and
	// returns its result text.
	Call(ctx context.Context, server, tool string, args json.RawMessage) (string, error)
}

// Schedules registers trigger-schedule blocks (the scheduler).
type Schedules interface {
	// Check parses a cron expression in zone tz ("" = default) as
	// Register would.
	Check(expr, tz string) error
	Register(key, expr, tz string, fn func(slot time.Time)) error
	Unregister(key string)
}

// Options configure an Engine.
type Options struct {
	DB        *sql.DB
	Turns     Turns
	Tools     Tools     // may be nil
	Schedules Schedules // may be nil: trigger-schedule blocks never fire
	// HTTP is the client of http-request blocks; nil: a plain client.
	HTTP *http.Client
	Log  *slog.Logger
	Now  func() time.Time
}

// Errors the REST layer maps to statuses.
var (
	ErrNotFound = errors.New("not found")
	ErrInvalid  = errors.New("invalid workflow")
	ErrConflict = errors.New("conflict")
	ErrStopped  = errors.New("workflows are not running")
)

// errCancelled is the cause of a run cancelled by request.
var errCancelled = errors.New("cancelled by request")

// storeTimeout bounds writes that must happen even during shutdown.
const storeTimeout = 5 * time.Second

// Engine owns the workflows and their runs.
type Engine struct {
	db        *db
	turns     Turns
	tools     Tools
	schedules Schedules
	http      *http.Client
	log       *slog.Logger
	now       func() time.Time

	// mu guards ctx and active.
	mu     sync.Mutex
	ctx    context.Context
	active map[string]*activeRun // run id → run in progress
	wg     sync.WaitGroup

	hooks hook.Changes
}

type activeRun struct {
	workflowID string
	cancel     context.CancelCauseFunc
	done       chan struct{}
}

// New returns an engine over the workflow tables of opts.DB.
func New(opts Options) (*Engine, error) {
	if opts.DB == nil || opts.Turns == nil {
		return nil, errors.New("workflow: DB and Turns are required")
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.HTTP == nil {
		opts.HTTP = &http.Client{}
	}
	return &Engine{db: &db{sql: opts.DB}, turns: opts.Turns, tools: opts.Tools, schedules: opts.Schedules,
		http: opts.HTTP, log: opts.Log, now: opts.Now, active: map[string]*activeRun{}}, nil
}

// Start marks the runs a previous process left running as failed, arms the
// trigger-schedule blocks and accepts runs until ctx is done.
func (e *Engine) Start(ctx context.Context) error {
	e.mu.Lock()
	if e.ctx != nil {
		e.mu.Unlock()
		return errors.New("workflow: already started")
	}
	e.ctx = ctx
	e.mu.Unlock()
	if n, err := e.db.failRunning(ctx, e.now()); err != nil {
		return err
	} else if n > 0 {
		e.log.Warn("workflow runs cut by the previous stop marked failed: agentd stopped", "runs", n)
	}
	wfs, err := e.db.list(ctx)
	if err != nil {
		return err
	}
	for _, w := range wfs {
		e.arm(w, nil)
	}
	return nil
}

// Wait returns once every run has ended (after Start's ctx is done).
func (e *Engine) Wait() { e.wg.Wait() }

// OnChange registers fn, called with (resource, action, id): "workflow"
// created/updated/deleted, "workflow_run" started/finished.
func (e *Engine) OnChange(fn func(resource, action, id string)) {
	e.hooks.Add(fn)
}

func (e *Engine) notify(resource, action, id string) { e.hooks.Notify(resource, action, id) }

func (e *Engine) lookup() ToolLookup {
	if e.tools == nil {
		return nil
	}
	return e.tools.Lookup
}

// Input is a workflow to create or the fields to change (nil: unchanged).
type Input struct {
	Name        *string `json:"name"`
	Description *string `json:"description"`
	Enabled     *bool   `json:"enabled"`
	Concurrency *int    `json:"concurrency"`
	Graph       *Graph  `json:"graph"`
}

// Saved is a stored workflow plus the warnings of its validation.
type Saved struct {
	Workflow Workflow `json:"workflow"`
	Warnings []string `json:"warnings"`
}

// List returns every workflow by name.
func (e *Engine) List(ctx context.Context) ([]Workflow, error) { return e.db.list(ctx) }

// Get returns a workflow by id or name.
func (e *Engine) Get(ctx context.Context, idOrName string) (Workflow, error) {
	w, err := e.db.get(ctx, idOrName)
	if errors.Is(err, errNoWorkflow) {
		return w, fmt.Errorf("%w: workflow %s", ErrNotFound, idOrName)
	}
	return w, err
}

// Create validates and stores a workflow.
func (e *Engine) Create(ctx context.Context, in Input) (Saved, error) {
	if in.Name == nil || in.Graph == nil {
		return Saved{}, fmt.Errorf("%w: name and graph are required", ErrInvalid)
	}
	now := e.now()
	w := Workflow{ID: newID(), Enabled: true, Concurrency: 1, CreatedAt: now, UpdatedAt: now}
	return e.save(ctx, w, in, true)
}

// Update changes a workflow; a run in progress keeps the graph it started
// with.
func (e *Engine) Update(ctx context.Context, idOrName string, in Input) (Saved, error) {
	w, err := e.Get(ctx, idOrName)
	if err != nil {
		return Saved{}, err
	}
	w.UpdatedAt = e.now()
	return e.save(ctx, w, in, false)
}

func (e *Engine) save(ctx context.Context, w Workflow, in Input, insert bool) (Saved, error) {
	prev := w
	if in.Name != nil {
		name := strings.TrimSpace(*in.Name)
		if name == "" || len(name) > 200 {
			return Saved{}, fmt.Errorf("%w: name must be 1 to 200 characters", ErrInvalid)
		}
		w.Name = name
	}
	if in.Description != nil {
		w.Description = *in.Description
	}
	if in.Enabled != nil {
		w.Enabled = *in.Enabled
	}
	if in.Concurrency != nil {
		if *in.Concurrency < 1 || *in.Concurrency > 16 {
			return Saved{}, fmt.Errorf("%w: concurrency must be 1 to 16", ErrInvalid)
		}
		w.Concurrency = *in.Concurrency
	}
	if in.Graph != nil {
		w.Graph = *in.Graph
	}
	if w.Graph.Variables == nil {
		w.Graph.Variables = map[string]any{}
	}
	if w.Graph.Edges == nil {
		w.Graph.Edges = []Edge{}
	}
	warnings, err := w.Graph.Validate(e.lookup())
	if err != nil {
		return Saved{}, err
	}
	if err := e.checkSchedules(w); err != nil {
		return Saved{}, err
	}
	if err := e.db.put(ctx, w, insert); err != nil {
		if errors.Is(err, errDuplicate) {
			return Saved{}, fmt.Errorf("%w: %v", ErrConflict, err)
		}
		return Saved{}, err
	}
	if insert {
		e.arm(w, nil)
	} else {
		e.arm(w, &prev)
	}
	action := "updated"
	if insert {
		action = "created"
	}
	e.notify("workflow", action, w.ID)
	return Saved{Workflow: w, Warnings: nonNil(warnings)}, nil
}

// checkSchedules validates the cron of trigger-schedule blocks.
func (e *Engine) checkSchedules(w Workflow) error {
	for _, n := range w.Graph.Nodes {
		if n.Type != "trigger-schedule" || e.schedules == nil {
			continue
		}
		if err := e.schedules.Check(fmt.Sprint(n.Config["cron"]), tzOf(n)); err != nil {
			return gerr(n.ID, "cron: %v", err)
		}
	}
	return nil
}

func tzOf(n Node) string {
	s, _ := n.Config["timezone"].(string)
	return s
}

func scheduleKey(wf, node string) string { return "workflow:" + wf + ":" + node }

// arm registers w's trigger-schedule blocks (those of old first removed).
func (e *Engine) arm(w Workflow, old *Workflow) {
	if e.schedules == nil {
		return
	}
	if old != nil {
		for _, n := range old.Graph.Nodes {
			e.schedules.Unregister(scheduleKey(old.ID, n.ID))
		}
	}
	if !w.Enabled {
		return
	}
	for _, n := range w.Graph.Nodes {
		if n.Type != "trigger-schedule" {
			continue
		}
		id, node := w.ID, n.ID
		if err := e.schedules.Register(scheduleKey(id, node), fmt.Sprint(n.Config["cron"]), tzOf(n), func(time.Time) {
			if _, err := e.start(id, node, "schedule", map[string]any{}); err != nil {
				e.log.Warn("scheduled workflow run not started", "workflow", id, "node", node, "err", err)
			}
		}); err != nil {
			e.log.Error("workflow schedule not armed", "workflow", id, "node", node, "err", err)
		}
	}
}

// Delete removes a workflow and its runs; its running runs are cancelled.
func (e *Engine) Delete(ctx context.Context, idOrName string) error {
	w, err := e.Get(ctx, idOrName)
	if err != nil {
		return err
	}
	e.mu.Lock()
	for _, a := range e.active {
		if a.workflowID == w.ID {
			a.cancel(errCancelled)
		}
	}
	e.mu.Unlock()
	if e.schedules != nil {
		for _, n := range w.Graph.Nodes {
			e.schedules.Unregister(scheduleKey(w.ID, n.ID))
		}
	}
	if err := e.db.delete(ctx, w.ID); err != nil {
		return err
	}
	e.notify("workflow", "deleted", w.ID)
	return nil
}

// RunRequest is POST /api/workflows/{id}/run.
type RunRequest struct {
	Inputs   map[string]any `json:"inputs"`
	Wait     *bool          `json:"wait"`
	TimeoutS *float64       `json:"timeout_s"`
}

// Run starts a manual run from the workflow's trigger-manual block.
func (e *Engine) Run(ctx context.Context, idOrName string, inputs map[string]any) (string, error) {
	w, err := e.Get(ctx, idOrName)
	if err != nil {
		return "", err
	}
	trigger := ""
	for _, n := range w.Graph.Nodes {
		if n.Type == "trigger-manual" {
			trigger = n.ID
			if inputs, err = applyInputs(n, inputs); err != nil {
				return "", err
			}
			break
		}
	}
	if trigger == "" {
		return "", fmt.Errorf("%w: workflow %s has no trigger-manual block", ErrInvalid, w.Name)
	}
	return e.start(w.ID, trigger, "manual", inputs)
}

// applyInputs checks inputs against trigger-manual's config.inputs
// ({name: {required, default}}) and fills defaults.
func applyInputs(n Node, in map[string]any) (map[string]any, error) {
	if in == nil {
		in = map[string]any{}
	}
	schema, _ := n.Config["inputs"].(map[string]any)
	for name, spec := range schema {
		s, _ := spec.(map[string]any)
		if _, ok := in[name]; ok {
			continue
		}
		if d, ok := s["default"]; ok {
			in[name] = d
		} else if req, _ := s["required"].(bool); req {
			return nil, fmt.Errorf("%w: input %q is required", ErrInvalid, name)
		}
	}
	return in, nil
}

// start begins a run of workflow id from trigger node, unless the
// workflow already has concurrency runs going (ErrConflict).
func (e *Engine) start(id, trigger, kind string, inputs map[string]any) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ctx == nil || e.ctx.Err() != nil {
		return "", ErrStopped
	}
	w, err := e.db.get(e.ctx, id)
	if err != nil {
		return "", fmt.Errorf("%w: workflow %s", ErrNotFound, id)
	}
	if !w.Enabled {
		return "", fmt.Errorf("%w: workflow %s is disabled", ErrConflict, w.Name)
	}
	var runningIDs []string
	for rid, a := range e.active {
		if a.workflowID == w.ID {
			runningIDs = append(runningIDs, rid)
		}
	}
	if len(runningIDs) >= w.Concurrency {
		return "", fmt.Errorf("%w: workflow %s is running (run %s); its concurrency is %d", ErrConflict, w.Name,
			strings.Join(runningIDs, ", "), w.Concurrency)
	}
	r := &Run{ID: newID(), WorkflowID: w.ID, Trigger: kind, Status: "running", StartedAt: e.now(), Inputs: inputs}
	if err := e.db.startRun(e.ctx, r); err != nil {
		return "", err
	}
	ctx, cancel := context.WithCancelCause(e.ctx)
	a := &activeRun{workflowID: w.ID, cancel: cancel, done: make(chan struct{})}
	e.active[r.ID] = a
	x := &execution{e: e, run: r, g: &w.Graph, by: map[string]*Node{}, sem: make(chan struct{}, maxParallel),
		vars: map[string]any{}, outputs: map[string]any{}}
	for k, v := range w.Graph.Variables {
		x.vars[k] = v
	}
	for i := range w.Graph.Nodes {
		x.by[w.Graph.Nodes[i].ID] = &w.Graph.Nodes[i]
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer close(a.done)
		defer cancel(nil)
		x.execute(ctx, trigger)
		e.mu.Lock()
		delete(e.active, r.ID)
		e.mu.Unlock()
		e.log.Info("workflow run finished", "workflow", w.Name, "run", r.ID, "status", r.Status, "err", r.Error)
		e.notify("workflow_run", "finished", r.ID)
	}()
	e.notify("workflow_run", "started", r.ID)
	return r.ID, nil
}

// Await waits up to d for run id to end; false when it is still running.
func (e *Engine) Await(ctx context.Context, id string, d time.Duration) bool {
	e.mu.Lock()
	a := e.active[id]
	e.mu.Unlock()
	if a == nil {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-a.done:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// Cancel cancels a running run.
func (e *Engine) Cancel(ctx context.Context, id string) error {
	e.mu.Lock()
	a := e.active[id]
	e.mu.Unlock()
	if a == nil {
		if _, err := e.GetRun(ctx, id); err != nil {
			return err
		}
		return fmt.Errorf("%w: run %s is not running", ErrConflict, id)
	}
	a.cancel(errCancelled)
	<-a.done
	return nil
}

// GetRun returns a run with its trace.
func (e *Engine) GetRun(ctx context.Context, id string) (Run, error) {
	r, err := e.db.run(ctx, id)
	if errors.Is(err, errNoRun) {
		return r, fmt.Errorf("%w: run %s", ErrNotFound, id)
	}
	return r, err
}

// Runs returns a workflow's newest runs (without traces).
func (e *Engine) Runs(ctx context.Context, idOrName string, limit int) ([]Run, error) {
	w, err := e.Get(ctx, idOrName)
	if err != nil {
		return nil, err
	}
	return e.db.runs(ctx, w.ID, limit)
}

func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
