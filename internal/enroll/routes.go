package enroll

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/agentd/agentd/devicecert"
	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/coordinator"
	"github.com/agentd/agentd/internal/iroh"
	"github.com/agentd/agentd/internal/route"
)

// Inviter mints invitations; *coordinator.Coordinator implements it.
type Inviter interface {
	CreateInvite(ctx context.Context, role string, uses int, ttl time.Duration, handle string, addr coordinator.NodeAddr) (string, error)
}

// InviteRequest is the body of POST /api/invites.
type InviteRequest struct {
	Role       string `json:"role"`        // chat (default) or admin
	Uses       int    `json:"uses"`        // default 1
	TTLSeconds int64  `json:"ttl_seconds"` // default coordinator.DefaultInviteTTL
	Handle     string `json:"handle"`      // optional bound handle
}

// InviteResponse is its answer.
type InviteResponse struct {
	Ticket    string    `json:"ticket"`
	Name      string    `json:"name"`
	NetworkID string    `json:"network_id"`
	Role      string    `json:"role"`
	ExpiresAt time.Time `json:"expires_at"`
	NodeID    string    `json:"node_id"`
	Addrs     []string  `json:"addrs"`
	Relay     string    `json:"relay"`
}

// Routes returns the invitation REST handler keyed by http.ServeMux pattern:
// "POST /api/invites" (admin). info reports the running iroh endpoint (the
// serve sidecar's Info); the ticket carries its NodeId, direct addresses and
// relay so a device can enroll even with relays disabled. A nil info, or one
// without a NodeId, answers 503: a ticket nobody can dial would be useless.
func Routes(inv Inviter, info func() iroh.Info) []route.Route {
	return []route.Route{
		{Pattern: "POST /api/invites", Cap: auth.CapAdmin, Handler: InviteHandler(inv, info)},
	}
}

// InviteHandler serves POST /api/invites; the capability check is the
// route's (the gateway mounts it).
func InviteHandler(inv Inviter, info func() iroh.Info) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req InviteRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, 16<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
			auth.WriteError(w, http.StatusBadRequest, "bad_request", "invite request: "+err.Error())
			return
		}
		if req.Role == "" {
			req.Role = auth.CapChat
		}
		if req.TTLSeconds < 0 || req.Uses < 0 {
			auth.WriteError(w, http.StatusBadRequest, "bad_request", "uses and ttl_seconds must not be negative")
			return
		}
		var ni iroh.Info
		if info != nil {
			ni = info()
		}
		if ni.NodeID == "" {
			auth.WriteError(w, http.StatusServiceUnavailable, "iroh_unavailable",
				"the iroh listener is not running (enable listeners.iroh in openagent.yaml); an invitation needs the agent's iroh address")
			return
		}
		ticket, err := inv.CreateInvite(r.Context(), req.Role, req.Uses, time.Duration(req.TTLSeconds)*time.Second, req.Handle,
			coordinator.NodeAddr{NodeID: ni.NodeID, Addrs: ni.Addrs, Relay: ni.Relay})
		if err != nil {
			auth.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
		t, err := devicecert.ParseTicket(ticket)
		if err != nil {
			auth.WriteError(w, http.StatusInternalServerError, "internal", fmt.Sprintf("the coordinator made an unreadable ticket: %v", err))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(InviteResponse{
			Ticket: ticket, Name: t.Name, NetworkID: t.NetworkID, Role: t.Role,
			ExpiresAt: time.Unix(t.Expires, 0).UTC(), NodeID: t.NodeID, Addrs: t.Addrs, Relay: t.Relay,
		})
	})
}
