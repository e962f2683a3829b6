package supervisor

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/agentd/agentd/internal/auth"
)

// Routes are the bridge REST endpoints, keyed by ServeMux pattern. They
// start and stop processes, so the caller mounts them behind
// auth.Require(auth.CapAdmin, …).
func Routes(s *Supervisor) map[string]http.Handler {
	return map[string]http.Handler{
		"GET /api/bridges": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]any{"bridges": s.List()})
		}),
		"GET /api/bridges/{name}": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			st, err := s.Get(r.PathValue("name"))
			if err != nil {
				writeErr(w, err)
				return
			}
			writeJSON(w, http.StatusOK, st)
		}),
		"POST /api/bridges/{name}/enable":  control(s, s.Enable),
		"POST /api/bridges/{name}/disable": control(s, s.Disable),
		"POST /api/bridges/{name}/restart": control(s, s.Restart),
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
	default:
		auth.WriteError(w, http.StatusInternalServerError, "bridge_error", err.Error())
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
