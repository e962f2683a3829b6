package mcp

import (
	"net/http"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/route"
)

// Routes returns the MCP REST API (docs/mcp.md). Reads need chat; every
// change needs admin, since adding or enabling a server starts a process
// and its env and headers hold credentials.
func Routes(p *Pool) []route.Route {
	a := &api{p: p, errs: restErrors(p)}
	chat, admin := auth.CapChat, auth.CapAdmin
	return []route.Route{
		{Pattern: "GET /api/mcps", Cap: chat, Handler: http.HandlerFunc(a.list)},
		{Pattern: "GET /api/mcps/{name}", Cap: chat, Handler: http.HandlerFunc(a.get)},
		{Pattern: "POST /api/mcps", Cap: admin, Handler: http.HandlerFunc(a.create)},
		{Pattern: "PUT /api/mcps/{name}", Cap: admin, Handler: http.HandlerFunc(a.update)},
		{Pattern: "DELETE /api/mcps/{name}", Cap: admin, Handler: http.HandlerFunc(a.delete)},
		{Pattern: "POST /api/mcps/{name}/enable", Cap: admin, Handler: http.HandlerFunc(a.enable)},
		{Pattern: "POST /api/mcps/{name}/disable", Cap: admin, Handler: http.HandlerFunc(a.disable)},
		{Pattern: "GET /api/mcp-tools", Cap: chat, Handler: http.HandlerFunc(a.tools)},
	}
}

type api struct {
	p    *Pool
	errs route.Errors
}

func (a *api) list(w http.ResponseWriter, r *http.Request) {
	route.JSON(w, http.StatusOK, map[string]any{"mcps": a.p.List()})
}

func (a *api) get(w http.ResponseWriter, r *http.Request) {
	v, err := a.p.Get(r.PathValue("name"))
	a.errs.Reply(w, err, http.StatusOK, map[string]any{"mcp": v})
}

func (a *api) create(w http.ResponseWriter, r *http.Request) {
	var in Input
	if !route.Decode(w, r, &in) {
		return
	}
	v, err := a.p.Create(r.Context(), in)
	a.errs.Reply(w, err, http.StatusCreated, map[string]any{"ok": true, "mcp": v})
}

func (a *api) update(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Name *string `json:"name"`
		Patch
	}
	if !route.Decode(w, r, &body) {
		return
	}
	if body.Name != nil && *body.Name != r.PathValue("name") {
		route.Error(w, http.StatusBadRequest, "bad_request", "name: cannot be changed (the body's name differs from the URL's)")
		return
	}
	v, err := a.p.Update(r.Context(), r.PathValue("name"), body.Patch)
	a.errs.Reply(w, err, http.StatusOK, map[string]any{"ok": true, "mcp": v})
}

func (a *api) delete(w http.ResponseWriter, r *http.Request) {
	err := a.p.Delete(r.Context(), r.PathValue("name"))
	a.errs.Reply(w, err, http.StatusOK, map[string]any{"ok": true})
}

func (a *api) enable(w http.ResponseWriter, r *http.Request)  { a.setEnabled(w, r, true) }
func (a *api) disable(w http.ResponseWriter, r *http.Request) { a.setEnabled(w, r, false) }

func (a *api) setEnabled(w http.ResponseWriter, r *http.Request, on bool) {
	v, err := a.p.SetEnabled(r.Context(), r.PathValue("name"), on)
	a.errs.Reply(w, err, http.StatusOK, map[string]any{"ok": true, "mcp": v})
}

func (a *api) tools(w http.ResponseWriter, r *http.Request) {
	route.JSON(w, http.StatusOK, map[string]any{"tools": a.p.Tools()})
}

// restErrors maps the pool's refusals to statuses; any other failure is
// logged and its text kept out of the answer.
func restErrors(p *Pool) route.Errors {
	return route.Errors{
		Codes: []route.Code{
			{Err: ErrNotFound, Status: http.StatusNotFound, Code: "not_found"},
			{Err: ErrExists, Status: http.StatusConflict, Code: "conflict"},
			{Err: ErrBuiltin, Status: http.StatusBadRequest, Code: "builtin"},
			{Err: ErrInvalid, Status: http.StatusBadRequest, Code: "bad_request"},
		},
		Other: route.Logged(p.log, "MCP request failed", "internal error"),
	}
}
