package gateway

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/route"
	"github.com/agentd/agentd/internal/session"
)

func (g *Gateway) agentInfo(w http.ResponseWriter, r *http.Request) {
	out := map[string]any{}
	// The daemon's own facts (listeners, iroh endpoint, network) first, so
	// the gateway's basics cannot be overridden by them.
	if g.opts.Info != nil {
		for k, v := range g.opts.Info() {
			out[k] = v
		}
	}
	out["name"] = g.opts.Config.Current().Agent.Name
	out["dir"] = g.opts.AgentDir
	out["version"] = g.opts.Version
	out["started_at"] = g.opts.StartedAt.UTC().Format(time.RFC3339)
	out["uptime_seconds"] = int64(time.Since(g.opts.StartedAt).Seconds())
	writeJSON(w, http.StatusOK, out)
}

func (g *Gateway) sessions(w http.ResponseWriter) bool {
	if g.opts.Sessions == nil {
		auth.WriteError(w, http.StatusServiceUnavailable, "unavailable", "sessions are not available on this agent")
		return false
	}
	return true
}

func (g *Gateway) listSessions(w http.ResponseWriter, r *http.Request) {
	if !g.sessions(w) {
		return
	}
	id, _ := auth.FromContext(r.Context())
	list, err := g.opts.Sessions.List(r.Context(), id)
	if err != nil {
		g.sessionError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": list})
}

func (g *Gateway) pinSession(w http.ResponseWriter, r *http.Request) {
	if !g.sessions(w) {
		return
	}
	var body struct {
		Model *string `json:"model"`
	}
	if !route.Decode(w, r, &body) {
		return
	}
	if body.Model == nil {
		auth.WriteError(w, http.StatusBadRequest, "bad_request", `missing field "model" (a model id, or "" to unpin)`)
		return
	}
	id, _ := auth.FromContext(r.Context())
	sid := r.PathValue("id")
	if err := g.opts.Sessions.Pin(r.Context(), id, sid, *body.Model); err != nil {
		g.sessionError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"id": sid, "pinned_model": *body.Model})
}

func (g *Gateway) clearSession(w http.ResponseWriter, r *http.Request) {
	if !g.sessions(w) {
		return
	}
	id, _ := auth.FromContext(r.Context())
	sid := r.PathValue("id")
	if err := g.opts.Sessions.Clear(r.Context(), id, sid); err != nil {
		g.sessionError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"id": sid})
}

func (g *Gateway) sessionMessages(w http.ResponseWriter, r *http.Request) {
	if !g.sessions(w) {
		return
	}
	limit := 100
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > session.MaxHistoryLimit {
			auth.WriteError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("limit: want a whole number from 1 to %d", session.MaxHistoryLimit))
			return
		}
		limit = n
	}
	id, _ := auth.FromContext(r.Context())
	msgs, err := g.opts.Sessions.Messages(r.Context(), id, r.PathValue("id"), limit)
	if err != nil {
		g.sessionError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"messages": msgs})
}

func (g *Gateway) deleteSession(w http.ResponseWriter, r *http.Request) {
	if !g.sessions(w) {
		return
	}
	id, _ := auth.FromContext(r.Context())
	if err := g.opts.Sessions.Delete(r.Context(), id, r.PathValue("id")); err != nil {
		g.sessionError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

// sessionError maps session errors to statuses.
func (g *Gateway) sessionError(w http.ResponseWriter, err error) {
	route.Errors{
		Codes: []route.Code{
			{Err: session.ErrNotFound, Status: http.StatusNotFound, Code: "not_found"},
			{Err: session.ErrBusy, Status: http.StatusConflict, Code: "busy"},
			{Err: session.ErrForbidden, Status: http.StatusForbidden, Code: "forbidden"},
			{Err: session.ErrInvalid, Status: http.StatusBadRequest, Code: "bad_request"},
			{Err: session.ErrUnknownModel, Status: http.StatusBadRequest, Code: "bad_request"},
		},
		Other: route.Logged(g.log, "session request failed", "internal error"),
	}.Write(w, err)
}
