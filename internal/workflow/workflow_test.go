package workflow

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/session/sessiontest"
)

// env is an engine over a real store and session manager (echo model);
// session prefix "tg" belongs to a recorded bridge connection.
type env struct {
	*sessiontest.Env
	e   *Engine
	dir string
}

func startEnv(t *testing.T, dir string, tools Tools) *env {
	t.Helper()
	se := sessiontest.Start(t, dir, "", "")
	ev := &env{Env: se, dir: dir}
	var err error
	ev.e, err = New(Options{DB: se.Store.DB(), Turns: se.Manager, Tools: tools, Log: se.Log})
	if err != nil {
		t.Fatal(err)
	}
	if err := ev.e.Start(se.Ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ev.stop)
	return ev
}

func (ev *env) stop() { ev.Stop(ev.e.Wait) }

// graph decodes a JSON graph literal.
func graph(t testing.TB, js string) *Graph {
	t.Helper()
	var g Graph
	if err := json.Unmarshal([]byte(js), &g); err != nil {
		t.Fatalf("graph literal: %v", err)
	}
	return &g
}

func (ev *env) create(t *testing.T, name string, g *Graph) Workflow {
	t.Helper()
	s, err := ev.e.Create(context.Background(), Input{Name: &name, Graph: g})
	if err != nil {
		t.Fatal(err)
	}
	return s.Workflow
}

// runToEnd runs wf and waits for the run's end.
func (ev *env) runToEnd(t *testing.T, wf Workflow, inputs map[string]any) Run {
	t.Helper()
	id, err := ev.e.Run(context.Background(), wf.ID, inputs)
	if err != nil {
		t.Fatal(err)
	}
	if !ev.e.Await(context.Background(), id, time.Minute) {
		t.Fatal("run did not end")
	}
	r, err := ev.e.GetRun(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// steps renders the trace as "node:status" (with @iteration for loop bodies).
func steps(r Run) []string {
	var out []string
	for _, s := range r.Trace {
		x := s.NodeID + ":" + s.Status
		if s.Iteration != nil {
			x += "@" + string(rune('0'+*s.Iteration))
		}
		out = append(out, x)
	}
	return out
}

func isGraphError(err error, node string) bool {
	var ge *GraphError
	return errors.As(err, &ge) && ge.Node == node
}
