package workflow

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/provider"
)

// manual → ai-prompt → if → (deliver | set-variable): the echo model's
// reply goes down the true branch to a Telegram chat; the other branch is
// traced as skipped.
func TestPromptIfDeliver(t *testing.T) {
	ev := startEnv(t, t.TempDir(), nil)
	wf := ev.create(t, "ask", graph(t, `{"version":1,
		"nodes":[
			{"id":"start","type":"trigger-manual","config":{"inputs":{"topic":{"required":true}}}},
			{"id":"ask","type":"ai-prompt","config":{"prompt":"Tell me about {{inputs.topic}}"}},
			{"id":"check","type":"if","config":{"expr":"contains nodes.ask.output \"echo:\""}},
			{"id":"tell","type":"deliver","config":{"sessions":["tg:7"],"text":"{{run_id}}: {{nodes.ask.output}}"}},
			{"id":"note","type":"set-variable","config":{"name":"answered","value":"no"}}],
		"edges":[
			{"source":"start","target":"ask"},{"source":"ask","target":"check"},
			{"source":"check","target":"tell","branch":"true"},{"source":"check","target":"note","branch":"false"}]}`))
	if _, err := ev.e.Run(context.Background(), wf.ID, nil); err == nil || !strings.Contains(err.Error(), `input "topic" is required`) {
		t.Fatalf("run without the required input: %v", err)
	}
	r := ev.runToEnd(t, wf, map[string]any{"topic": "otters"})
	reply := provider.EchoReply("Tell me about otters")
	if r.Status != "success" || r.Error != "" || r.Trigger != "manual" {
		t.Fatalf("run %+v", r)
	}
	if got, want := steps(r), []string{"start:success", "ask:success", "check:success", "note:skipped", "tell:success"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("trace %v\nwant  %v", got, want)
	}
	tr := r.Trace
	if tr[0].Output.(map[string]any)["topic"] != "otters" || tr[1].Output != reply || tr[2].Output != true ||
		tr[1].Input.(map[string]any)["prompt"] != "Tell me about otters" {
		t.Fatalf("trace values %+v", tr)
	}
	if tr[4].Output.(map[string]any)["text"] != r.ID+": "+reply {
		t.Fatalf("deliver output %+v", tr[4].Output)
	}
	for _, s := range tr {
		if s.StartedAt.IsZero() || s.FinishedAt.Before(s.StartedAt) {
			t.Fatalf("step times %+v", s)
		}
	}
	if rs := ev.Bridge.Responses(); len(rs) != 1 || rs[0].SessionID != "tg:7" || rs[0].Text != r.ID+": "+reply {
		t.Fatalf("delivered %+v", rs)
	}
	// The ephemeral prompt left no session behind.
	var n int
	ev.Store.DB().QueryRow(`SELECT COUNT(*) FROM sessions WHERE id LIKE 'workflow:%'`).Scan(&n)
	if n != 0 {
		t.Fatalf("%d workflow sessions", n)
	}
}

// A loop runs its body once per item, at most max_iterations times; the
// body sees loop.item and loop.index, done runs after it.
func TestLoop(t *testing.T) {
	ev := startEnv(t, t.TempDir(), nil)
	wf := ev.create(t, "loop", graph(t, `{"version":1,
		"nodes":[
			{"id":"start","type":"trigger-manual","config":{}},
			{"id":"each","type":"loop","config":{"items":"{{inputs.names}}","max_iterations":3}},
			{"id":"greet","type":"set-variable","config":{"name":"last","value":"hi {{loop.item}} #{{loop.index}}"}},
			{"id":"after","type":"set-variable","config":{"name":"count","value":"{{nodes.each.output.iterations}}"}}],
		"edges":[
			{"source":"start","target":"each"},{"source":"each","target":"greet","branch":"body"},
			{"source":"greet","target":"each"},{"source":"each","target":"after","branch":"done"}]}`))
	r := ev.runToEnd(t, wf, map[string]any{"names": []any{"ann", "bob", "cy", "dee"}})
	if got, want := steps(r), []string{"start:success", "greet:success@0", "greet:success@1", "greet:success@2", "each:success", "after:success"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("trace %v\nwant  %v", got, want)
	}
	if r.Trace[3].Output != "hi cy #2" || r.Trace[5].Output != 3.0 {
		t.Fatalf("outputs %v %v", r.Trace[3].Output, r.Trace[5].Output)
	}
	vars := r.Outputs["vars"].(map[string]any)
	if vars["last"] != "hi cy #2" || vars["count"] != 3.0 {
		t.Fatalf("vars %v", vars)
	}
	// Items that are not a list fail the loop, naming why.
	r = ev.runToEnd(t, wf, map[string]any{"names": "ann"})
	if r.Status != "failed" || r.Error != `node each: items must be a list, got the text "ann"` {
		t.Fatalf("run %+v", r)
	}
}

// parallel fans out; merge(all) waits for both branches and outputs what
// each produced.
func TestParallelMergeAll(t *testing.T) {
	ev := startEnv(t, t.TempDir(), nil)
	wf := ev.create(t, "fan", graph(t, `{"version":1,"variables":{"base":"x"},
		"nodes":[
			{"id":"start","type":"trigger-manual","config":{}},
			{"id":"fan","type":"parallel","config":{}},
			{"id":"a","type":"wait","config":{"duration":"20ms"}},
			{"id":"b","type":"set-variable","config":{"name":"b","value":"{{vars.base}}-b"}},
			{"id":"join","type":"merge","config":{"mode":"all"}},
			{"id":"end","type":"set-variable","config":{"name":"seen","value":"{{json nodes.join.output}}"}}],
		"edges":[
			{"source":"start","target":"fan"},{"source":"fan","target":"a"},{"source":"fan","target":"b"},
			{"source":"a","target":"join"},{"source":"b","target":"join"},{"source":"join","target":"end"}]}`))
	r := ev.runToEnd(t, wf, nil)
	if r.Status != "success" {
		t.Fatalf("run %+v", r)
	}
	got := steps(r)
	if len(got) != 6 || got[0] != "start:success" || got[1] != "fan:success" || got[4] != "join:success" || got[5] != "end:success" {
		t.Fatalf("trace %v", got)
	}
	if out := r.Trace[5].Output; out != `{"a":"20ms","b":"x-b"}` {
		t.Fatalf("merge saw %v", out)
	}
}

// A failing http-request with on_error: branch takes its error edge; the
// default edge is skipped and the run succeeds. Too large a response and
// no answer in time are errors too.
func TestHTTPRequestErrorBranch(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/fail":
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		case "/big":
			w.Write([]byte(strings.Repeat("x", maxResponseBytes+1)))
		case "/slow":
			<-r.Context().Done()
		case "/json":
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"temp":21.5}`))
		}
	}))
	defer srv.Close()
	ev := startEnv(t, t.TempDir(), nil)
	g := func(path string) *Graph {
		return graph(t, `{"version":1,
		"nodes":[
			{"id":"start","type":"trigger-manual","config":{}},
			{"id":"get","type":"http-request","config":{"method":"GET","url":"`+srv.URL+path+`","timeout_s":0.5,"on_error":"branch"}},
			{"id":"ok","type":"set-variable","config":{"name":"temp","value":"{{nodes.get.output.body.temp}}"}},
			{"id":"handled","type":"set-variable","config":{"name":"fallback","value":"unknown"}}],
		"edges":[
			{"source":"start","target":"get"},{"source":"get","target":"ok"},
			{"source":"get","target":"handled","branch":"error"}]}`)
	}
	for _, tt := range []struct{ path, want, err string }{
		{"/fail", "handled", "http-request: " + srv.URL + "/fail answered 503"},
		{"/big", "handled", "http-request: response larger than 1048576 bytes"},
		{"/slow", "handled", "http-request: no answer within 500ms"},
		{"/json", "ok", ""},
	} {
		wf := ev.create(t, "http"+strings.TrimPrefix(tt.path, "/"), g(tt.path))
		r := ev.runToEnd(t, wf, nil)
		other := map[string]string{"ok": "handled", "handled": "ok"}[tt.want]
		want := []string{"start:success", "get:failed", other + ":skipped", tt.want + ":success"}
		if tt.err == "" {
			want = []string{"start:success", "get:success", "handled:skipped", "ok:success"}
		}
		if got := steps(r); r.Status != "success" || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: %s %v\nwant %v", tt.path, r.Status, got, want)
		}
		if r.Trace[1].Error != tt.err {
			t.Errorf("%s: error %q, want %q", tt.path, r.Trace[1].Error, tt.err)
		}
		if tt.err == "" && r.Trace[3].Output != 21.5 {
			t.Errorf("json body: %v", r.Trace[3].Output)
		}
	}
}

// Cancel stops a running wait at once; the run is cancelled and the wait's
// trace entry says so. A second run while one is active is refused.
func TestCancelWaitAndConcurrency(t *testing.T) {
	ev := startEnv(t, t.TempDir(), nil)
	wf := ev.create(t, "sleepy", graph(t, `{"version":1,
		"nodes":[{"id":"start","type":"trigger-manual","config":{}},{"id":"nap","type":"wait","config":{"duration":"1h"}}],
		"edges":[{"source":"start","target":"nap"}]}`))
	id, err := ev.e.Run(context.Background(), wf.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ev.e.Run(context.Background(), wf.ID, nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("second run: %v", err)
	}
	waitTrace(t, ev.e, id, 1)
	if err := ev.e.Cancel(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	r, _ := ev.e.GetRun(context.Background(), id)
	if r.Status != "cancelled" || !reflect.DeepEqual(steps(r), []string{"start:success", "nap:cancelled"}) || r.FinishedAt == nil {
		t.Fatalf("run %+v", r)
	}
	if err := ev.e.Cancel(context.Background(), id); !errors.Is(err, ErrConflict) {
		t.Fatalf("cancel of a finished run: %v", err)
	}
	// concurrency 2 admits a second run.
	two := 2
	if _, err := ev.e.Update(context.Background(), wf.ID, Input{Concurrency: &two}); err != nil {
		t.Fatal(err)
	}
	a, err1 := ev.e.Run(context.Background(), wf.ID, nil)
	b, err2 := ev.e.Run(context.Background(), wf.ID, nil)
	if err1 != nil || err2 != nil {
		t.Fatalf("two runs with concurrency 2: %v %v", err1, err2)
	}
	ev.e.Cancel(context.Background(), a)
	ev.e.Cancel(context.Background(), b)
}

// A run left running by a process that died is failed "agentd stopped" at
// the next start, its trace kept; a run cut by shutdown likewise.
func TestRunCutByStop(t *testing.T) {
	dir := t.TempDir()
	ev := startEnv(t, dir, nil)
	wf := ev.create(t, "sleepy", graph(t, `{"version":1,
		"nodes":[{"id":"start","type":"trigger-manual","config":{}},{"id":"nap","type":"wait","config":{"duration":"1h"}}],
		"edges":[{"source":"start","target":"nap"}]}`))
	id, err := ev.e.Run(context.Background(), wf.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitTrace(t, ev.e, id, 1)
	ev.stop()
	ev = startEnv(t, dir, nil)
	r, err := ev.e.GetRun(context.Background(), id)
	if err != nil || r.Status != "failed" || r.Error != "agentd stopped" || len(r.Trace) < 1 || r.Trace[0].NodeID != "start" {
		t.Fatalf("run after restart %+v %v", r, err)
	}
	// A run row still 'running' (what SIGKILL leaves) is closed at start.
	if _, err := ev.Store.DB().Exec(`UPDATE workflow_runs SET status = 'running', error = '' WHERE id = ?`, id); err != nil {
		t.Fatal(err)
	}
	ev.stop()
	ev = startEnv(t, dir, nil)
	if r, _ := ev.e.GetRun(context.Background(), id); r.Status != "failed" || r.Error != "agentd stopped" {
		t.Fatalf("after a crash %+v", r)
	}
}

// Invalid graphs are refused naming the node at fault.
func TestValidation(t *testing.T) {
	ev := startEnv(t, t.TempDir(), nil)
	trig := `{"id":"start","type":"trigger-manual","config":{}}`
	for _, tt := range []struct{ name, nodes, edges, node, msg string }{
		{"unknown type", trig + `,{"id":"x","type":"teleport","config":{}}`, ``, "x", `unknown block type "teleport"`},
		{"missing config", trig + `,{"id":"ask","type":"ai-prompt","config":{}}`, ``, "ask", "ai-prompt needs config.prompt"},
		{"no trigger", `{"id":"v","type":"set-variable","config":{"name":"a","value":"b"}}`, ``, "", "at least one trigger"},
		{"bad branch", trig + `,{"id":"c","type":"if","config":{"expr":"true"}},{"id":"v","type":"set-variable","config":{"name":"a","value":"b"}}`,
			`{"source":"start","target":"c"},{"source":"c","target":"v","branch":"maybe"}`, "c", `if edges need branch true or false (got "maybe")`},
		{"cycle", trig + `,{"id":"a","type":"set-variable","config":{"name":"a","value":"1"}},{"id":"b","type":"set-variable","config":{"name":"b","value":"1"}}`,
			`{"source":"start","target":"a"},{"source":"a","target":"b"},{"source":"b","target":"a"}`, "a", "is part of a cycle"},
		{"edge to nowhere", trig, `{"source":"start","target":"ghost"}`, "ghost", "edge (from start) to an unknown node"},
		{"error edge without on_error", trig + `,{"id":"v","type":"set-variable","config":{"name":"a","value":"b"}}`,
			`{"source":"start","target":"v","branch":"error"}`, "start", "an error edge needs config.on_error: branch"},
		{"loop body entered from outside", trig + `,{"id":"l","type":"loop","config":{"items":"[]"}},{"id":"b","type":"set-variable","config":{"name":"a","value":"b"}}`,
			`{"source":"start","target":"l"},{"source":"l","target":"b","branch":"body"},{"source":"start","target":"b"}`, "b", "may only be entered from it"},
		{"too many iterations", trig + `,{"id":"l","type":"loop","config":{"items":"[]","max_iterations":500}}`, ``, "l", "max_iterations must be an integer from 1 to 100"},
		{"bad template", trig + `,{"id":"v","type":"set-variable","config":{"name":"a","value":"{{nodes.x"}}`, ``, "v", "config.value: template"},
		{"bad duration", trig + `,{"id":"w","type":"wait","config":{"duration":"soon"}}`, ``, "w", `duration "soon"`},
		{"mcp without pool", trig + `,{"id":"m","type":"mcp-tool","config":{"mcp":"x","tool":"y"}}`, ``, "m", "no MCP servers"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := graph(t, `{"version":1,"nodes":[`+tt.nodes+`],"edges":[`+tt.edges+`]}`)
			name := "wf"
			_, err := ev.e.Create(context.Background(), Input{Name: &name, Graph: g})
			if !isGraphError(err, tt.node) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want node %q: %q", err, tt.node, tt.msg)
			}
		})
	}
	if wfs, _ := ev.e.List(context.Background()); len(wfs) != 0 {
		t.Fatalf("stored %v", wfs)
	}
}

// waitTrace returns once run id has n trace entries.
func waitTrace(t *testing.T, e *Engine, id string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := e.GetRun(context.Background(), id)
		if err == nil && len(r.Trace) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s: no %d trace entries: %+v %v", id, n, r, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
