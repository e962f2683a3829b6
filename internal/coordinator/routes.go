package coordinator

import (
	"errors"
	"net/http"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/route"
)

// Routes returns the device REST handlers, keyed by http.ServeMux pattern.
// Listing and revoking require admin; renewing needs any authenticated
// device and renews the certificate the stream presented.
func Routes(c *Coordinator) []route.Route {
	return []route.Route{
		{Pattern: "GET /api/devices", Cap: auth.CapAdmin, Handler: http.HandlerFunc(c.handleList)},
		{Pattern: "POST /api/devices/{id}/revoke", Cap: auth.CapAdmin, Handler: http.HandlerFunc(c.handleRevoke)},
		{Pattern: "POST /api/devices/renew", Cap: route.Device, Handler: http.HandlerFunc(c.handleRenew)},
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) { route.JSON(w, status, v) }

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
	case errors.Is(err, ErrInvalid):
		auth.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
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
