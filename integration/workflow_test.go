package integration

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentd/agentd/client"
	"github.com/agentd/agentd/devicecert"
)

// ownerREST is the owner's REST client of the agentd serving dir.
func ownerREST(t *testing.T, dir string) *client.Dialer {
	t.Helper()
	id, err := devicecert.LoadIdentity(filepath.Join(dir, "keys", "owner.identity"))
	if err != nil {
		t.Fatal(err)
	}
	c := client.Unix(filepath.Join(dir, "agentd.sock"), id)
	t.Cleanup(c.CloseIdle)
	return c
}

type wfRun struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Error  string `json:"error"`
	RunID  string `json:"run_id"`
	Trace  []struct {
		NodeID string `json:"node_id"`
		Status string `json:"status"`
	} `json:"trace"`
}

// A workflow run cut by SIGKILL of agentd keeps the trace of the blocks
// that finished and is marked failed: agentd stopped when agentd is back;
// a run started after that works.
func TestWorkflowRunSurvivesSIGKILL(t *testing.T) {
	dir := newAgent(t, false)
	d := startServe(t, dir)
	c := ownerREST(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	wf := map[string]any{"name": "slow", "graph": map[string]any{"version": 1,
		"nodes": []map[string]any{
			{"id": "start", "type": "trigger-manual", "config": map[string]any{}},
			{"id": "first", "type": "set-variable", "config": map[string]any{"name": "seen", "value": "{{run_id}}"}},
			{"id": "nap", "type": "wait", "config": map[string]any{"duration": "{{inputs.nap}}"}},
		},
		"edges": []map[string]any{{"source": "start", "target": "first"}, {"source": "first", "target": "nap"}},
	}}
	if err := c.PostJSON(ctx, "/api/workflows", wf, nil); err != nil {
		t.Fatal(err)
	}
	var started wfRun
	if err := c.PostJSON(ctx, "/api/workflows/slow/run", map[string]any{"inputs": map[string]any{"nap": "1h"}, "wait": false}, &started); err != nil {
		t.Fatal(err)
	}
	if started.RunID == "" {
		t.Fatalf("run answer %+v", started)
	}
	var run wfRun
	for deadline := time.Now().Add(20 * time.Second); len(run.Trace) < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("trace never reached the wait: %+v", run)
		}
		if err := c.GetJSON(ctx, "/api/workflow-runs/"+started.RunID, &run); err != nil {
			t.Fatal(err)
		}
	}
	d.cmd.Process.Kill()
	<-d.done
	d.done <- nil

	startServe(t, dir)
	c = ownerREST(t, dir)
	if err := c.GetJSON(ctx, "/api/workflow-runs/"+started.RunID, &run); err != nil {
		t.Fatal(err)
	}
	if run.Status != "failed" || run.Error != "agentd stopped" || len(run.Trace) != 2 ||
		run.Trace[0].NodeID != "start" || run.Trace[1].NodeID != "first" || run.Trace[1].Status != "success" {
		t.Fatalf("run after restart %+v", run)
	}
	var again wfRun
	if err := c.PostJSON(ctx, "/api/workflows/slow/run", map[string]any{"inputs": map[string]any{"nap": "10ms"}}, &again); err != nil {
		t.Fatal(err)
	}
	if again.Status != "success" || len(again.Trace) != 3 {
		t.Fatalf("run after restart %+v", again)
	}
	// A bad input fails the run, naming the block; the answer is the run.
	var bad wfRun
	if err := c.PostJSON(ctx, "/api/workflows/slow/run", map[string]any{"inputs": map[string]any{"nap": "soon"}}, &bad); err != nil {
		t.Fatal(err)
	}
	if bad.Status != "failed" || bad.Error != `node nap: duration "soon": want e.g. 30s, 5m` {
		t.Fatalf("bad input run %+v", bad)
	}
}
