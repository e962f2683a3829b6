package coordinator

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/agentd/agentd/internal/auth"
)

// Routes returns the device REST handlers, keyed by http.ServeMux pattern.
// Listing and revoking require admin; renewing needs any authenticated
// device and renews the certificate the stream presented.
func Routes(c *Coordinator) map[string]http.Handler {
	return map[string]http.Handler{
		"GET /api/devices":              auth.Require(auth.CapAdmin, http.HandlerFunc(c.handleList)),
		"POST /api/devices/{id}/revoke": auth.Require(auth.CapAdmin, http.HandlerFunc(c.handleRevoke)),
		"POST /api/devices/renew":       http.HandlerFunc(c.handleRenew),
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (c *Coordinator) handleList(w http.ResponseWriter, r *http.Request) {
	ds, err := c.Devices(r.Context())
	if err != nil {
		auth.WriteError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"devices": ds})
}

func (c *Coordinator) handleRevoke(w http.ResponseWriter, r *http.Request) {
	ds, err := c.Revoke(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, ErrNoMatch):
		auth.WriteError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, ErrAmbiguous):
		auth.WriteError(w, http.StatusConflict, "ambiguous", err.Error())
	case errors.Is(err, ErrOwner):
		auth.WriteError(w, http.StatusForbidden, "forbidden", err.Error())
	case err != nil:
		auth.WriteError(w, http.StatusInternalServerError, "internal", err.Error())
	default:
		writeJSON(w, http.StatusOK, map[string]any{"revoked": ds})
	}
}

func (c *Coordinator) handleRenew(w http.ResponseWriter, r *http.Request) {
	id, ok := auth.FromContext(r.Context())
	if !ok {
		auth.WriteError(w, http.StatusUnauthorized, "unauthorized", "authentication required")
		return
	}
	wire, err := c.Renew(r.Context(), id.CertWire)
	switch {
	case errors.Is(err, ErrNotDue):
		auth.WriteError(w, http.StatusConflict, "not_due", err.Error())
	case err != nil:
		auth.WriteError(w, http.StatusForbidden, "forbidden", err.Error())
	default:
		writeJSON(w, http.StatusOK, map[string]any{"cert": wire}) // base64 by encoding/json
	}
}
