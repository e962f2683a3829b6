package scheduler

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/route/routetest"
)

func TestREST(t *testing.T) {
	e := startEnv(t, t.TempDir(), time.Date(2026, 5, 4, 8, 0, 0, 0, time.UTC), "Europe/Berlin", "")
	c := routetest.Serve(t, Routes(e.s))
	good := `{"name":"brief","cron_expression":"0 9 * * *","prompt":"news","deliver_to":["tg:42"]}`

	// A chat device reads but cannot create, change, run or delete.
	if st, out := c.Do(auth.CapChat, "POST", "/api/scheduled-tasks", good); st != http.StatusForbidden {
		t.Fatalf("chat create: %d %v", st, out)
	}
	for _, tt := range []struct{ body, want string }{
		{`{"name":"a","cron_expression":"61 * * * *","prompt":"p"}`, "invalid_task: cron_expression \"61 * * * *\": invalid cron expression: end of range (61) above maximum (59): 61"},
		{`{"name":"a","cron_expression":"@daily"}`, "invalid_task: name, cron_expression and prompt are required"},
		{`{"name":"a","cron_expression":"@daily","prompt":"p","colour":"red"}`, `bad_request: invalid JSON body: json: unknown field "colour"`},
		{`{"name":"a","cron_expression":"@daily","prompt":"p","timezone":"Europe/Atlantis"}`, `invalid_task: timezone: unknown time zone "Europe/Atlantis" (want an IANA name such as Europe/Berlin)`},
	} {
		if st, out := c.Do(auth.CapAdmin, "POST", "/api/scheduled-tasks", tt.body); st != http.StatusBadRequest || routetest.ErrorText(out) != tt.want {
			t.Errorf("POST %s: %d %q\nwant 400 %q", tt.body, st, routetest.ErrorText(out), tt.want)
		}
	}
	if st, out := c.Do(auth.CapChat, "GET", "/api/scheduled-tasks", ""); st != 200 || len(out["tasks"].([]any)) != 0 {
		t.Fatalf("bad input stored something: %d %v", st, out)
	}

	st, out := c.Do(auth.CapAdmin, "POST", "/api/scheduled-tasks", good)
	if st != http.StatusCreated {
		t.Fatalf("create: %d %v", st, out)
	}
	task := out["task"].(map[string]any)
	id := task["id"].(string)
	if task["effective_timezone"] != "Europe/Berlin" || task["next_run_iso"] != "2026-05-05T09:00:00+02:00" ||
		task["model"] != nil || task["last_run"] != nil || task["catch_up"] != "once" {
		t.Fatalf("task %v", task)
	}
	if ev := e.waitEvent(t, "created"); ev != id {
		t.Fatalf("created event for %s", ev)
	}
	for _, m := range []string{"PATCH", "PUT", "DELETE"} {
		if st, _ := c.Do(auth.CapChat, m, "/api/scheduled-tasks/"+id, `{"enabled":false}`); st != http.StatusForbidden {
			t.Errorf("chat %s: %d", m, st)
		}
	}
	if st, _ := c.Do(auth.CapChat, "POST", "/api/scheduled-tasks/"+id+"/run", ""); st != http.StatusForbidden {
		t.Errorf("chat run: %d", st)
	}

	st, out = c.Do(auth.CapAdmin, "PATCH", "/api/scheduled-tasks/"+id, `{"enabled":false}`)
	if st != 200 || out["task"].(map[string]any)["next_run"] != nil {
		t.Fatalf("disable: %d %v", st, out)
	}
	if st, out := c.Do(auth.CapAdmin, "PATCH", "/api/scheduled-tasks/"+id, `{"cron_expression":"* * *"}`); st != 400 {
		t.Fatalf("bad patch: %d %v", st, out)
	}
	if st, out := c.Do(auth.CapChat, "GET", "/api/scheduled-tasks/"+id, ""); st != 200 || out["task"].(map[string]any)["cron_expression"] != "0 9 * * *" {
		t.Fatalf("bad patch changed the task: %v", out)
	}

	st, out = c.Do(auth.CapAdmin, "POST", "/api/scheduled-tasks/"+id+"/run", "")
	if st != http.StatusAccepted || out["run_id"] == nil {
		t.Fatalf("run: %d %v", st, out)
	}
	e.waitEvent(t, "run_finished")
	st, out = c.Do(auth.CapChat, "GET", "/api/scheduled-tasks/"+id+"/runs?limit=5", "")
	runs, _ := out["runs"].([]any)
	if st != 200 || len(runs) != 1 {
		t.Fatalf("runs: %d %v", st, out)
	}
	r := runs[0].(map[string]any)
	if r["status"] != "success" || r["trigger"] != "manual" || r["started_at_iso"] != "2026-05-04T10:00:00+02:00" ||
		!strings.HasPrefix(r["output"].(string), "echo: news") {
		t.Fatalf("run %v", r)
	}
	if st, _ := c.Do(auth.CapChat, "GET", "/api/scheduled-tasks/"+id+"/runs?limit=0", ""); st != 400 {
		t.Errorf("limit 0: %d", st)
	}
	if st, _ := c.Do(auth.CapAdmin, "DELETE", "/api/scheduled-tasks/"+id, ""); st != 200 {
		t.Fatalf("delete: %d", st)
	}
	if st, out := c.Do(auth.CapChat, "GET", "/api/scheduled-tasks/"+id, ""); st != 404 {
		t.Fatalf("after delete: %d %v", st, out)
	}
	if st, _ := c.Do("", "GET", "/api/scheduled-tasks", ""); st != http.StatusUnauthorized {
		t.Fatalf("anonymous: %d", st)
	}
}
