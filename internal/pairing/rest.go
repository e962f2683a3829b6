package pairing

import (
	"context"
	"errors"
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
				writeErr(w, err)
				return
			}
			users, err := p.Users(r.Context())
			if err != nil {
				writeErr(w, err)
				return
			}
			route.JSON(w, http.StatusOK, map[string]any{"requests": reqs, "users": users})
		})},
		{Pattern: "POST /api/pairing/{code}/approve", Cap: admin, Handler: decide(lim, p.Approve)},
		{Pattern: "POST /api/pairing/{code}/deny", Cap: admin, Handler: decide(lim, p.Deny)},
		{Pattern: "DELETE /api/pairing/users/{bridge}/{user}", Cap: admin, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := p.Revoke(r.Context(), r.PathValue("bridge"), r.PathValue("user")); err != nil {
				writeErr(w, err)
				return
			}
			route.JSON(w, http.StatusOK, map[string]any{"bridge": r.PathValue("bridge"), "user_id": r.PathValue("user"), "revoked": true})
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
		if err != nil {
			writeErr(w, err)
			return
		}
		route.JSON(w, http.StatusOK, req)
	})
}

func writeErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrBadInput):
		route.Error(w, http.StatusBadRequest, "invalid_code", err.Error())
	case errors.Is(err, ErrUnknownCode):
		route.Error(w, http.StatusNotFound, "unknown_code", err.Error())
	case errors.Is(err, ErrExpired):
		route.Error(w, http.StatusGone, "code_expired", err.Error())
	case errors.Is(err, ErrDecided):
		route.Error(w, http.StatusConflict, "already_denied", err.Error())
	case errors.Is(err, ErrNotApproved):
		route.Error(w, http.StatusNotFound, "not_approved", err.Error())
	default:
		route.Error(w, http.StatusInternalServerError, "pairing_error", err.Error())
	}
}
