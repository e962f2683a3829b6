package supervisor

import (
	"context"
	"errors"
	"fmt"
	"slices"

	bridgev1 "github.com/agentd/agentd/proto/bridge/v1"
)

// Pairer decides the pairing requests bridges relay (internal/pairing): it
// answers with an outcome ("pending", "full", "denied", "allowed") and,
// when pending, the code to show. Approved users come from Approved.
type Pairer interface {
	Request(ctx context.Context, bridge, userID, userName, chatID string) (outcome, code string, err error)
	Approved(ctx context.Context, bridge string) ([]string, error)
}

var outcomes = map[string]bridgev1.PairingOutcome{
	"pending": bridgev1.PairingOutcome_PAIRING_OUTCOME_PENDING,
	"full":    bridgev1.PairingOutcome_PAIRING_OUTCOME_FULL,
	"denied":  bridgev1.PairingOutcome_PAIRING_OUTCOME_DENIED,
	"allowed": bridgev1.PairingOutcome_PAIRING_OUTCOME_ALLOWED,
}

// RequestPairing relays a bridge's pairing request to the Pairer, for a
// bridge whose dm_policy is pairing only: a bridge cannot open requests
// its owner did not ask for.
func (h *hostServer) RequestPairing(ctx context.Context, r *bridgev1.PairingRequest) (*bridgev1.PairingResponse, error) {
	h.s.mu.Lock()
	policy := h.e.cfg.DMPolicy
	h.s.mu.Unlock()
	if h.s.opts.Pairing == nil || (policy != "" && policy != "pairing") {
		return nil, fmt.Errorf("bridge %s: pairing is not enabled (dm_policy %q)", h.e.name, policy)
	}
	if len(r.UserId) > 128 || len(r.UserName) > 256 || len(r.ChatId) > 128 {
		return nil, errors.New("pairing request: field too long")
	}
	out, code, err := h.s.opts.Pairing.Request(ctx, h.e.name, r.UserId, r.UserName, r.ChatId)
	if err != nil {
		h.log.Error("pairing request failed", "user_id", r.UserId, "err", err)
		return nil, err
	}
	return &bridgev1.PairingResponse{Outcome: outcomes[out], Code: code}, nil
}

// approvedUsers loads bridge name's approved users for a launch and
// records them for its status.
func (s *Supervisor) approvedUsers(ctx context.Context, e *entry) []string {
	if s.opts.Pairing == nil {
		return nil
	}
	users, err := s.opts.Pairing.Approved(ctx, e.name)
	if err != nil {
		s.log.Error("approved users not loaded", "bridge", e.name, "err", err)
	}
	s.mu.Lock()
	e.status.ApprovedUsers = users
	e.status.AllowedUsers = allowedUsers(e.cfg.AllowedUsers, users)
	s.mu.Unlock()
	return users
}

// allowedUsers is a bridge's whole allow-list: the config file's seed and
// the users approved in the database.
func allowedUsers(seed, approved []string) []string {
	out := slices.Clone(seed)
	for _, u := range approved {
		if !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out
}

// SetApproved applies bridge name's approved users at once: a running
// bridge gets its new allow-list (and welcomeChat its "You're in.")
// without a restart; a stopped one gets it at launch.
func (s *Supervisor) SetApproved(ctx context.Context, name string, approved []string, welcomeChat string) error {
	s.mu.Lock()
	e, ok := s.bridges[name]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("bridge %q: %w", name, ErrUnknown)
	}
	e.status.ApprovedUsers = slices.Clone(approved)
	users := allowedUsers(e.cfg.AllowedUsers, approved)
	e.status.AllowedUsers = users
	inst := e.inst
	s.mu.Unlock()
	s.notify(name, ActionEvent)
	if inst == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, RPCTimeout)
	defer cancel()
	if err := inst.bc.SetAllowedUsers(ctx, users, welcomeChat); err != nil {
		return fmt.Errorf("bridge %s: set allowed users: %w", name, err)
	}
	return nil
}
