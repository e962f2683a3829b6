package workflow

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/route"
)

// Wait limits of POST /api/workflows/{id}/run.
const (
	defaultWaitS = 300
	maxWaitS     = 3600
)

// Routes are the workflow endpoints of rest.md: reading is chat; writing,
// running and cancelling are admin (a workflow makes HTTP requests and
// calls tools).
func Routes(e *Engine) []route.Route {
	return []route.Route{
		{Pattern: "GET /api/workflows", Cap: auth.CapChat, Handler: http.HandlerFunc(e.restList)},
		{Pattern: "POST /api/workflows", Cap: auth.CapAdmin, Handler: http.HandlerFunc(e.restCreate)},
		{Pattern: "GET /api/workflows/{id}", Cap: auth.CapChat, Handler: http.HandlerFunc(e.restGet)},
		{Pattern: "PUT /api/workflows/{id}", Cap: auth.CapAdmin, Handler: http.HandlerFunc(e.restUpdate)},
		{Pattern: "DELETE /api/workflows/{id}", Cap: auth.CapAdmin, Handler: http.HandlerFunc(e.restDelete)},
		{Pattern: "POST /api/workflows/{id}/run", Cap: auth.CapAdmin, Handler: http.HandlerFunc(e.restRun)},
		{Pattern: "GET /api/workflows/{id}/runs", Cap: auth.CapChat, Handler: http.HandlerFunc(e.restRuns)},
		{Pattern: "GET /api/workflow-runs/{id}", Cap: auth.CapChat, Handler: http.HandlerFunc(e.restGetRun)},
		{Pattern: "POST /api/workflow-runs/{id}/cancel", Cap: auth.CapAdmin, Handler: http.HandlerFunc(e.restCancel)},
	}
}

func (e *Engine) restList(w http.ResponseWriter, r *http.Request) {
	wfs, err := e.List(r.Context())
	restErrors.Reply(w, err, http.StatusOK, map[string]any{"workflows": wfs})
}

func (e *Engine) restCreate(w http.ResponseWriter, r *http.Request) {
	var in Input
	if !route.Decode(w, r, &in) {
		return
	}
	s, err := e.Create(r.Context(), in)
	restErrors.Reply(w, err, http.StatusCreated, s)
}

func (e *Engine) restGet(w http.ResponseWriter, r *http.Request) {
	wf, err := e.Get(r.Context(), r.PathValue("id"))
	restErrors.Reply(w, err, http.StatusOK, map[string]any{"workflow": wf})
}

func (e *Engine) restUpdate(w http.ResponseWriter, r *http.Request) {
	var in Input
	if !route.Decode(w, r, &in) {
		return
	}
	s, err := e.Update(r.Context(), r.PathValue("id"), in)
	restErrors.Reply(w, err, http.StatusOK, s)
}

func (e *Engine) restDelete(w http.ResponseWriter, r *http.Request) {
	err := e.Delete(r.Context(), r.PathValue("id"))
	restErrors.Reply(w, err, http.StatusOK, map[string]any{"ok": true})
}

// restRun starts a run; with wait (the default) it answers the finished
// run, or 202 {run_id} once timeout_s passed — the run goes on either way.
func (e *Engine) restRun(w http.ResponseWriter, r *http.Request) {
	var req RunRequest
	if r.ContentLength != 0 && !route.Decode(w, r, &req) {
		return
	}
	wait, timeout := true, float64(defaultWaitS)
	if req.Wait != nil {
		wait = *req.Wait
	}
	if req.TimeoutS != nil {
		if *req.TimeoutS < 0 || *req.TimeoutS > maxWaitS {
			route.Error(w, http.StatusBadRequest, "bad_request", "timeout_s must be from 0 to 3600")
			return
		}
		timeout = *req.TimeoutS
	}
	id, err := e.Run(r.Context(), r.PathValue("id"), req.Inputs)
	if err != nil {
		restErrors.Write(w, err)
		return
	}
	if !wait || !e.Await(r.Context(), id, time.Duration(timeout*float64(time.Second))) {
		route.JSON(w, http.StatusAccepted, map[string]any{"run_id": id, "status": "running"})
		return
	}
	run, err := e.GetRun(r.Context(), id)
	restErrors.Reply(w, err, http.StatusOK, run)
}

func (e *Engine) restRuns(w http.ResponseWriter, r *http.Request) {
	limit := 20
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > runsKeep {
			route.Error(w, http.StatusBadRequest, "bad_request", "limit must be an integer from 1 to 200")
			return
		}
		limit = n
	}
	runs, err := e.Runs(r.Context(), r.PathValue("id"), limit)
	restErrors.Reply(w, err, http.StatusOK, map[string]any{"runs": runs})
}

func (e *Engine) restGetRun(w http.ResponseWriter, r *http.Request) {
	run, err := e.GetRun(r.Context(), r.PathValue("id"))
	restErrors.Reply(w, err, http.StatusOK, run)
}

func (e *Engine) restCancel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := e.Cancel(r.Context(), id); err != nil {
		restErrors.Write(w, err)
		return
	}
	run, err := e.GetRun(r.Context(), id)
	restErrors.Reply(w, err, http.StatusOK, run)
}

// restErrors answers the engine's errors (rest.md "Workflows"); a graph
// error also names the node at fault.
var restErrors = route.Errors{
	Before: func(w http.ResponseWriter, err error) bool {
		var ge *GraphError
		if !errors.As(err, &ge) {
			return false
		}
		route.JSON(w, http.StatusUnprocessableEntity, map[string]any{"error": map[string]any{
			"code": "invalid_graph", "message": ge.Error(), "node_id": ge.Node}})
		return true
	},
	Codes: []route.Code{
		{Err: ErrNotFound, Status: http.StatusNotFound, Code: "not_found"},
		{Err: ErrInvalid, Status: http.StatusBadRequest, Code: "bad_request"},
		{Err: ErrConflict, Status: http.StatusConflict, Code: "conflict"},
		{Err: ErrStopped, Status: http.StatusServiceUnavailable, Code: "unavailable"},
	},
}
