package usage

import (
	"net/http"
	"strconv"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/route"
)

// Routes are the usage and budget routes (rest.md "Usage"): reading is for
// every chat device (it is one person's agent), changing budgets is admin.
func Routes(u *Usage) []route.Route {
	return []route.Route{
		{Pattern: "GET /api/usage", Cap: auth.CapChat, Handler: http.HandlerFunc(u.handleMonth)},
		{Pattern: "GET /api/usage/daily", Cap: auth.CapChat, Handler: http.HandlerFunc(u.handleDaily)},
		{Pattern: "GET /api/usage/pricing", Cap: auth.CapChat, Handler: http.HandlerFunc(u.handlePricing)},
		{Pattern: "GET /api/budgets", Cap: auth.CapChat, Handler: http.HandlerFunc(u.handleList)},
		{Pattern: "GET /api/budgets/{id}", Cap: auth.CapChat, Handler: http.HandlerFunc(u.handleGet)},
		{Pattern: "POST /api/budgets", Cap: auth.CapAdmin, Handler: http.HandlerFunc(u.handleCreate)},
		{Pattern: "PUT /api/budgets/{id}", Cap: auth.CapAdmin, Handler: http.HandlerFunc(u.handleUpdate)},
		{Pattern: "DELETE /api/budgets/{id}", Cap: auth.CapAdmin, Handler: http.HandlerFunc(u.handleDelete)},
	}
}

func (u *Usage) handleMonth(w http.ResponseWriter, r *http.Request) {
	m, err := u.Month(r.Context())
	restErrors.Reply(w, err, http.StatusOK, m)
}

func (u *Usage) handleDaily(w http.ResponseWriter, r *http.Request) {
	days := 7
	if s := r.URL.Query().Get("days"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 366 {
			route.Error(w, http.StatusBadRequest, "bad_request", "days: want a whole number from 1 to 366")
			return
		}
		days = n
	}
	ds, err := u.Daily(r.Context(), days)
	restErrors.Reply(w, err, http.StatusOK, map[string]any{"entries": ds})
}

func (u *Usage) handlePricing(w http.ResponseWriter, r *http.Request) {
	route.JSON(w, http.StatusOK, map[string]any{"pricing": u.Pricing()})
}

func (u *Usage) handleList(w http.ResponseWriter, r *http.Request) {
	ss, err := u.Statuses(r.Context())
	restErrors.Reply(w, err, http.StatusOK, map[string]any{"budgets": ss})
}

func (u *Usage) handleGet(w http.ResponseWriter, r *http.Request) {
	b, err := u.Budget(r.Context(), r.PathValue("id"))
	restErrors.Reply(w, err, http.StatusOK, map[string]any{"budget": b})
}

// budgetInput is the body of POST and PUT; absent fields keep their value
// (PUT) or take the default (POST: window month, enabled).
type budgetInput struct {
	ID       *string    `json:"id"`
	Scope    *string    `json:"scope"`
	Window   *string    `json:"window"`
	LimitUSD *float64   `json:"limit_usd"`
	AlertAt  *[]float64 `json:"alert_at"`
	Enabled  *bool      `json:"enabled"`
}

func (in budgetInput) apply(b *Budget) {
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = *src
		}
	}
	set(&b.Scope, in.Scope)
	set(&b.Window, in.Window)
	if in.LimitUSD != nil {
		b.LimitUSD = *in.LimitUSD
	}
	if in.AlertAt != nil {
		b.AlertAt = *in.AlertAt
	}
	if in.Enabled != nil {
		b.Enabled = *in.Enabled
	}
}

func (u *Usage) handleCreate(w http.ResponseWriter, r *http.Request) {
	var in budgetInput
	if !route.Decode(w, r, &in) {
		return
	}
	b := Budget{Scope: "all", Window: "month", Enabled: true}
	if in.ID != nil {
		b.ID = *in.ID
	}
	in.apply(&b)
	b, err := u.Create(r.Context(), b)
	restErrors.Reply(w, err, http.StatusCreated, map[string]any{"ok": true, "budget": b})
}

func (u *Usage) handleUpdate(w http.ResponseWriter, r *http.Request) {
	var in budgetInput
	if !route.Decode(w, r, &in) {
		return
	}
	if in.ID != nil && *in.ID != r.PathValue("id") {
		route.Error(w, http.StatusBadRequest, "bad_request", "id: a budget's id cannot change")
		return
	}
	b, err := u.Update(r.Context(), r.PathValue("id"), in.apply)
	restErrors.Reply(w, err, http.StatusOK, map[string]any{"ok": true, "budget": b})
}

func (u *Usage) handleDelete(w http.ResponseWriter, r *http.Request) {
	err := u.Delete(r.Context(), r.PathValue("id"))
	restErrors.Reply(w, err, http.StatusOK, map[string]any{"ok": true})
}

// restErrors answers the budget errors (rest.md "Usage").
var restErrors = route.Errors{Codes: []route.Code{
	{Err: ErrNotFound, Status: http.StatusNotFound, Code: "not_found"},
	{Err: ErrExists, Status: http.StatusConflict, Code: "exists"},
	{Err: ErrInvalid, Status: http.StatusBadRequest, Code: "invalid"},
}}
