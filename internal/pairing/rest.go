package pairing

import (
	"context"
	"net/http"
	"time"

	"golang.org/x/time/rate"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/route"
)

// Approve and deny attempts over REST: 10 per minute in all, so guessing
// a 40-bit code before it expires is hopeless even for a stolen admin key.
const attemptsPerMinute = 10

// Routes are the pairing endpoints, all admin: they decide who may talk
// to the agent.
func Routes(p *Pairing) []route.Route {
	lim := rate.NewLimiter(rate.Every(time.Minute/attemptsPerMinute), attemptsPerMinute)
	admin := auth.CapAdmin
	return []route.Route{
		{Pattern: "GET /api/pairing", Cap: admin, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			reqs, err := p.List(r.Context())
			if err != nil {
				restErrors.Write(w, err)
				return
			}
			users, err := p.Users(r.Context())
			if err != nil {
				restErrors.Write(w, err)
				return
			}
			route.JSON(w, http.StatusOK, map[string]any{"requests": reqs, "users": users})
		})},
		{Pattern: "POST /api/pairing/{code}/approve", Cap: admin, Handler: decide(lim, p.Approve)},
		{Pattern: "POST /api/pairing/{code}/deny", Cap: admin, Handler: decide(lim, p.Deny)},
		{Pattern: "DELETE /api/pairing/users/{bridge}/{user}", Cap: admin, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			err := p.Revoke(r.Context(), r.PathValue("bridge"), r.PathValue("user"))
			restErrors.Reply(w, err, http.StatusOK, map[string]any{"bridge": r.PathValue("bridge"), "user_id": r.PathValue("user"), "revoked": true})
		})},
	}
}

// decide runs approve or deny on the path's code, within the attempt limit.
func decide(lim *rate.Limiter, op func(context.Context, string) (Request, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !lim.Allow() {
			w.Header().Set("Retry-After", "60")
			route.Error(w, http.StatusTooManyRequests, "rate_limited", "too many pairing attempts: at most 10 per minute")
			return
		}
		req, err := op(r.Context(), r.PathValue("code"))
		restErrors.Reply(w, err, http.StatusOK, req)
	})
}

// restErrors answers the pairing errors; any other failure is a 500
// "pairing_error".
var restErrors = route.Errors{
	Codes: []route.Code{
		{Err: ErrBadInput, Status: http.StatusBadRequest, Code: "invalid_code"},
		{Err: ErrUnknownCode, Status: http.StatusNotFound, Code: "unknown_code"},
		{Err: ErrExpired, Status: http.StatusGone, Code: "code_expired"},
		{Err: ErrDecided, Status: http.StatusConflict, Code: "already_denied"},
		{Err: ErrNotApproved, Status: http.StatusNotFound, Code: "not_approved"},
	},
	Other: func(w http.ResponseWriter, err error) {
		route.Error(w, http.StatusInternalServerError, "pairing_error", err.Error())
	},
}
