package workflow

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"
)

// maxParallel bounds the blocks of one run that work at the same time.
const maxParallel = 4

// execution is one run in progress.
type execution struct {
	e   *Engine
	run *Run
	g   *Graph
	by  map[string]*Node
	sem chan struct{}

	// mu guards vars and outputs.
	mu      sync.Mutex
	vars    map[string]any
	outputs map[string]any // node id → output of its last execution
}

// result is what one node's execution produced.
type result struct {
	output any
	branch string // the outlet taken: "" (default), true/false, done
	err    error
}

// data is the template scope at this moment.
func (x *execution) data(loop map[string]any) map[string]any {
	x.mu.Lock()
	defer x.mu.Unlock()
	nodes := make(map[string]any, len(x.outputs))
	for id, out := range x.outputs {
		nodes[id] = map[string]any{"output": out}
	}
	d := map[string]any{
		"inputs": x.run.Inputs, "vars": maps.Clone(x.vars), "nodes": nodes,
		"run_id": x.run.ID, "now": x.e.now().Format(time.RFC3339),
	}
	if loop != nil {
		d["loop"] = loop
	}
	return d
}

// errHalted ends a run whose node failed with on_error halt.
type haltError struct {
	node string
	err  error
}

func (h *haltError) Error() string { return "node " + h.node + ": " + h.err.Error() }
func (h *haltError) Unwrap() error { return h.err }

// edge states while a (sub)graph runs.
const (
	pending = iota
	active
	skipped
)

// runGraph executes the nodes in members, starting with the nodes in
// starts: a node runs once every edge into it (from members) is decided
// and one of them was taken (merge first: as soon as one is taken); a node
// none of whose edges was taken is skipped, and so is what only it leads
// to. loop is the {{loop}} scope of a loop body (nil outside). It returns
// the first halting error.
func (x *execution) runGraph(ctx context.Context, members map[string]bool, starts []string, loop map[string]any) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var in []int // edge indexes between members
	into := map[string][]int{}
	from := map[string][]int{}
	for i, e := range x.g.Edges {
		if members[e.Source] && members[e.Target] {
			in = append(in, i)
			into[e.Target] = append(into[e.Target], i)
			from[e.Source] = append(from[e.Source], i)
		}
	}
	state := make(map[int]int, len(in))
	done := map[string]bool{}
	isStart := map[string]bool{}
	for _, s := range starts {
		isStart[s] = true
	}
	type finished struct {
		id  string
		res result
	}
	fin := make(chan finished)
	running := 0
	var halt error
	launch := func(id string) {
		done[id] = true
		running++
		go func() {
			fin <- finished{id, x.step(ctx, x.by[id], loop)}
		}()
	}
	// settle decides every node it can: runs, or skips (recursively).
	var settle func()
	settle = func() {
		for changed := true; changed && halt == nil; {
			changed = false
			for id := range members {
				if done[id] {
					continue
				}
				edges := into[id]
				if isStart[id] {
					launch(id)
					changed = true
					continue
				}
				nActive, nPending := 0, 0
				for _, i := range edges {
					switch state[i] {
					case active:
						nActive++
					case pending:
						nPending++
					}
				}
				first := x.by[id].Type == "merge" && x.by[id].Config["mode"] == "first"
				switch {
				case nActive > 0 && (nPending == 0 || first):
					launch(id)
					changed = true
				case nPending == 0:
					done[id] = true
					x.traceSkip(id, loop)
					for _, i := range from[id] {
						state[i] = skipped
					}
					changed = true
				}
			}
		}
	}
	settle()
	for running > 0 {
		f := <-fin
		running--
		n := x.by[f.id]
		if f.res.err != nil && halt == nil {
			mode := onError(n)
			if ctx.Err() != nil {
				mode = "halt" // cancelled or stopping: nothing else runs
			}
			switch mode {
			case "continue":
				f.res.branch, f.res.output = "", map[string]any{"error": f.res.err.Error()}
			case "branch":
				f.res.branch = "error"
			default:
				halt = &haltError{node: f.id, err: f.res.err}
				cancel(halt)
			}
		}
		for _, i := range from[f.id] {
			if x.g.Edges[i].Branch == f.res.branch && halt == nil {
				state[i] = active
			} else {
				state[i] = skipped
			}
		}
		settle()
	}
	return halt
}

// traceSkip records a node that did not run because no edge into it was
// taken.
func (x *execution) traceSkip(id string, loop map[string]any) {
	now := x.e.now()
	x.record(Step{NodeID: id, Type: x.by[id].Type, Iteration: iteration(loop), StartedAt: now, FinishedAt: now, Status: "skipped"})
}

func iteration(loop map[string]any) *int {
	if loop == nil {
		return nil
	}
	i, _ := loop["index"].(int)
	return &i
}

// step runs one node and records its trace entry.
func (x *execution) step(ctx context.Context, n *Node, loop map[string]any) result {
	if n.Type != "loop" {
		select {
		case x.sem <- struct{}{}:
			defer func() { <-x.sem }()
		case <-ctx.Done():
			now := x.e.now()
			err := context.Cause(ctx)
			x.record(Step{NodeID: n.ID, Type: n.Type, Iteration: iteration(loop), StartedAt: now, FinishedAt: now,
				Status: "cancelled", Error: err.Error()})
			return result{err: err}
		}
	}
	start := x.e.now()
	input, res := x.exec(ctx, n, loop)
	s := Step{NodeID: n.ID, Type: n.Type, Iteration: iteration(loop), StartedAt: start, FinishedAt: x.e.now(),
		Status: "success", Input: input, Output: res.output}
	if res.err != nil {
		s.Status, s.Error = "failed", res.err.Error()
		if ctx.Err() != nil {
			s.Status = "cancelled"
			res.err = context.Cause(ctx)
			s.Error = res.err.Error()
		}
	}
	if res.err == nil {
		x.mu.Lock()
		x.outputs[n.ID] = res.output
		x.mu.Unlock()
	}
	x.record(s)
	return res
}

// record writes a trace entry at once, so a crash leaves what finished.
func (x *execution) record(s Step) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := x.e.db.addStep(ctx, x.run.ID, s); err != nil {
		x.e.log.Error("trace step not recorded", "run", x.run.ID, "node", s.NodeID, "err", err)
	}
}

// runLoop runs the body of loop n once per item.
func (x *execution) runLoop(ctx context.Context, n *Node, items []any, limit int) (any, error) {
	body := x.g.bodyOf(n.ID)
	var starts []string
	for _, e := range x.g.Edges {
		if e.Source == n.ID && e.Branch == "body" {
			starts = append(starts, e.Target)
		}
	}
	results := []any{}
	for i, item := range items {
		if i >= limit {
			break
		}
		if err := x.runGraph(ctx, body, starts, map[string]any{"item": item, "index": i}); err != nil {
			return map[string]any{"iterations": i, "results": results}, fmt.Errorf("iteration %d: %w", i, err)
		}
		x.mu.Lock()
		it := map[string]any{}
		for id := range body {
			if out, ok := x.outputs[id]; ok {
				it[id] = out
			}
		}
		x.mu.Unlock()
		results = append(results, it)
	}
	return map[string]any{"iterations": len(results), "results": results}, nil
}

// execute runs the whole graph from trigger and records the end of the run.
func (x *execution) execute(ctx context.Context, trigger string) {
	members := map[string]bool{}
	for _, n := range x.g.Nodes {
		members[n.ID] = true
	}
	for _, n := range x.g.Nodes {
		if n.Type == "loop" {
			for id := range x.g.bodyOf(n.ID) {
				delete(members, id)
			}
		}
	}
	err := x.runGraph(ctx, members, []string{trigger}, nil)
	r := x.run
	now := x.e.now()
	r.FinishedAt = &now
	x.mu.Lock()
	r.Outputs = map[string]any{"nodes": maps.Clone(x.outputs), "vars": maps.Clone(x.vars)}
	x.mu.Unlock()
	switch {
	case x.e.ctx.Err() != nil:
		r.Status, r.Error = "failed", "agentd stopped"
	case errors.Is(context.Cause(ctx), errCancelled):
		r.Status, r.Error = "cancelled", "cancelled by request"
	case err != nil:
		r.Status, r.Error = "failed", err.Error()
	default:
		r.Status = "success"
	}
	wctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := x.e.db.finishRun(wctx, r); err != nil {
		x.e.log.Error("run end not recorded", "run", r.ID, "err", err)
	}
}
