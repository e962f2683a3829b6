package scheduler

import (
	"net/http"
	"strconv"
	"time"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/route"
)

// Routes are the scheduled-task endpoints of rest.md: reading is chat,
// everything that changes or runs a task is admin.
func Routes(s *Scheduler) []route.Route {
	return []route.Route{
		{Pattern: "GET /api/scheduled-tasks", Cap: auth.CapChat, Handler: http.HandlerFunc(s.restList)},
		{Pattern: "POST /api/scheduled-tasks", Cap: auth.CapAdmin, Handler: http.HandlerFunc(s.restCreate)},
		{Pattern: "GET /api/scheduled-tasks/{id}", Cap: auth.CapChat, Handler: http.HandlerFunc(s.restGet)},
		{Pattern: "PUT /api/scheduled-tasks/{id}", Cap: auth.CapAdmin, Handler: http.HandlerFunc(s.restUpdate)},
		{Pattern: "PATCH /api/scheduled-tasks/{id}", Cap: auth.CapAdmin, Handler: http.HandlerFunc(s.restUpdate)},
		{Pattern: "DELETE /api/scheduled-tasks/{id}", Cap: auth.CapAdmin, Handler: http.HandlerFunc(s.restDelete)},
		{Pattern: "POST /api/scheduled-tasks/{id}/run", Cap: auth.CapAdmin, Handler: http.HandlerFunc(s.restRun)},
		{Pattern: "GET /api/scheduled-tasks/{id}/runs", Cap: auth.CapChat, Handler: http.HandlerFunc(s.restRuns)},
	}
}

func (s *Scheduler) restList(w http.ResponseWriter, r *http.Request) {
	tasks, err := s.List(r.Context())
	restErrors.Reply(w, err, http.StatusOK, map[string]any{"tasks": tasks})
}

func (s *Scheduler) restCreate(w http.ResponseWriter, r *http.Request) {
	var in Input
	if !route.Decode(w, r, &in) {
		return
	}
	t, err := s.Create(r.Context(), in)
	restErrors.Reply(w, err, http.StatusCreated, map[string]any{"task": t})
}

func (s *Scheduler) restGet(w http.ResponseWriter, r *http.Request) {
	t, err := s.Get(r.Context(), r.PathValue("id"))
	restErrors.Reply(w, err, http.StatusOK, map[string]any{"task": t})
}

// restUpdate serves PUT and PATCH alike: the fields sent change, the
// others stay.
func (s *Scheduler) restUpdate(w http.ResponseWriter, r *http.Request) {
	var in Input
	if !route.Decode(w, r, &in) {
		return
	}
	t, err := s.Update(r.Context(), r.PathValue("id"), in)
	restErrors.Reply(w, err, http.StatusOK, map[string]any{"task": t})
}

func (s *Scheduler) restDelete(w http.ResponseWriter, r *http.Request) {
	err := s.Delete(r.Context(), r.PathValue("id"))
	restErrors.Reply(w, err, http.StatusOK, map[string]any{"ok": true})
}

func (s *Scheduler) restRun(w http.ResponseWriter, r *http.Request) {
	id, err := s.RunNow(r.Context(), r.PathValue("id"))
	restErrors.Reply(w, err, http.StatusAccepted, map[string]any{"run_id": id})
}

// runJSON is a run as the REST API shows it.
type runJSON struct {
	ID            int64   `json:"id"`
	Trigger       string  `json:"trigger"`
	ScheduledAt   *int64  `json:"scheduled_at"`
	StartedAt     int64   `json:"started_at"`
	StartedAtISO  string  `json:"started_at_iso"`
	FinishedAt    *int64  `json:"finished_at"`
	FinishedAtISO *string `json:"finished_at_iso"`
	DurationMS    *int64  `json:"duration_ms"`
	Status        string  `json:"status"`
	Output        string  `json:"output"`
	Error         string  `json:"error"`
	Usage         any     `json:"usage"`
}

func (s *Scheduler) restRuns(w http.ResponseWriter, r *http.Request) {
	limit := 20
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > historyKeep {
			route.Error(w, http.StatusBadRequest, "bad_request", "limit must be an integer from 1 to 100")
			return
		}
		limit = n
	}
	id := r.PathValue("id")
	runs, err := s.Runs(r.Context(), id, limit)
	if err != nil {
		restErrors.Write(w, err)
		return
	}
	t, _ := s.db.task(r.Context(), id)
	loc, err := s.Location(t.Timezone)
	if err != nil {
		loc = time.UTC
	}
	out := make([]runJSON, 0, len(runs))
	for _, x := range runs {
		j := runJSON{ID: x.ID, Trigger: x.Trigger, StartedAt: x.StartedAt.Unix(), StartedAtISO: x.StartedAt.In(loc).Format(time.RFC3339),
			Status: x.Status, Output: x.Output, Error: x.Error, Usage: x.Usage}
		j.ScheduledAt, _ = stamp(x.ScheduledAt, loc)
		j.FinishedAt, j.FinishedAtISO = stamp(x.FinishedAt, loc)
		if !x.FinishedAt.IsZero() {
			d := x.FinishedAt.Sub(x.StartedAt).Milliseconds()
			j.DurationMS = &d
		}
		out = append(out, j)
	}
	route.JSON(w, http.StatusOK, map[string]any{"runs": out})
}

// restErrors answers the scheduler's errors (rest.md "Scheduled tasks").
var restErrors = route.Errors{Codes: []route.Code{
	{Err: ErrNotFound, Status: http.StatusNotFound, Code: "not_found"},
	{Err: ErrInvalid, Status: http.StatusBadRequest, Code: "invalid_task", Trim: true},
	{Err: ErrRunning, Status: http.StatusConflict, Code: "running"},
	{Err: ErrStopped, Status: http.StatusServiceUnavailable, Code: "unavailable"},
}}
