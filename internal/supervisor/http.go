package supervisor

import (
	"errors"
	"net/http"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/route"
)

// Routes are the bridge REST endpoints. All are admin: they show and
// start and stop processes.
func Routes(s *Supervisor) []route.Route {
	admin := auth.CapAdmin
	return []route.Route{
		{Pattern: "GET /api/bridges", Cap: admin, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]any{"bridges": s.List()})
		})},
		{Pattern: "GET /api/bridges/{name}", Cap: admin, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			st, err := s.Get(r.PathValue("name"))
			if err != nil {
				writeErr(w, err)
				return
			}
			writeJSON(w, http.StatusOK, st)
		})},
		{Pattern: "POST /api/bridges/{name}/enable", Cap: admin, Handler: control(s, s.Enable)},
		{Pattern: "POST /api/bridges/{name}/disable", Cap: admin, Handler: control(s, s.Disable)},
		{Pattern: "POST /api/bridges/{name}/restart", Cap: admin, Handler: control(s, s.Restart)},
		// Changes the platform credentials (a new link): admin.
		{Pattern: "POST /api/bridges/{name}/login", Cap: admin, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var req struct {
				Phone string `json:"phone"`
			}
			if r.ContentLength != 0 && !route.Decode(w, r, &req) {
				return
			}
			if p := req.Phone; p != "" && !phoneLike(p) {
				route.Error(w, http.StatusBadRequest, "invalid_phone", "phone must be an international number such as +391234567")
				return
			}
			control(s, func(name string) error { return s.Login(name, req.Phone) }).ServeHTTP(w, r)
		})},
	}
}

// control runs op on the named bridge and answers with its new status.
func control(s *Supervisor, op func(string) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if err := op(name); err != nil {
			writeErr(w, err)
			return
		}
		st, err := s.Get(name)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
}

func writeErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrUnknown):
		auth.WriteError(w, http.StatusNotFound, "unknown_bridge", err.Error())
	case errors.Is(err, ErrDisabled):
		auth.WriteError(w, http.StatusConflict, "bridge_disabled", err.Error())
	case errors.Is(err, ErrClosed):
		auth.WriteError(w, http.StatusServiceUnavailable, "shutting_down", err.Error())
	default:
		auth.WriteError(w, http.StatusInternalServerError, "bridge_error", err.Error())
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) { route.JSON(w, status, v) }

// phoneLike: "+", digits, spaces, dashes; 6 to 15 digits.
func phoneLike(p string) bool {
	n := 0
	for i, r := range p {
		switch {
		case r >= '0' && r <= '9':
			n++
		case r == '+' && i == 0, r == ' ', r == '-':
		default:
			return false
		}
	}
	return n >= 6 && n <= 15
}
