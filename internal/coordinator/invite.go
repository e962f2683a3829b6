package coordinator

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/agentd/agentd/devicecert"
	"github.com/agentd/agentd/internal/auth"
)

// Invitation limits.
const (
	DefaultInviteTTL = 24 * time.Hour
	MaxInviteTTL     = 30 * 24 * time.Hour
	MaxInviteUses    = 100
)

// Errors of Redeem.
var (
	ErrInviteUnknown = errors.New("unknown invitation code")
	ErrInviteExpired = errors.New("invitation expired")
	ErrInviteUsed    = errors.New("invitation already used")
)

// NodeAddr says where redeemers reach the coordinator over iroh. An empty
// NodeID means this agent's own node key.
type NodeAddr struct {
	NodeID string
	Addrs  []string
	Relay  string
}

var codeEnc = base32.StdEncoding.WithPadding(base32.NoPadding)

func hashCode(code string) string {
	h := sha256.Sum256([]byte(code))
	return hex.EncodeToString(h[:])
}

// CreateInvite stores a new invitation and returns its ticket. role is chat
// or admin; uses ≤ 0 means single use; ttl ≤ 0 means DefaultInviteTTL;
// handle binds the certificate's handle ("" gives each device its own).
// Only a hash of the code is stored: the ticket is the one copy.
func (c *Coordinator) CreateInvite(ctx context.Context, role string, uses int, ttl time.Duration, handle string, addr NodeAddr) (string, error) {
	if role != auth.CapChat && role != auth.CapAdmin {
		return "", fmt.Errorf("create invite: role %q must be chat or admin", role)
	}
	if uses <= 0 {
		uses = 1
	}
	if uses > MaxInviteUses {
		return "", fmt.Errorf("create invite: at most %d uses", MaxInviteUses)
	}
	if ttl <= 0 {
		ttl = DefaultInviteTTL
	}
	if ttl > MaxInviteTTL {
		return "", fmt.Errorf("create invite: ttl %s exceeds %s", ttl, MaxInviteTTL)
	}
	if handle != "" {
		if err := checkHandle(handle); err != nil {
			return "", fmt.Errorf("create invite: %w", err)
		}
		if err := checkInviteHandle(handle); err != nil {
			return "", fmt.Errorf("create invite: %w", err)
		}
	}
	if addr.NodeID == "" {
		nk, err := LoadNodeKey(c.dir)
		if err != nil {
			return "", fmt.Errorf("create invite: %w", err)
		}
		addr.NodeID = hex.EncodeToString(nk.Public().(ed25519.PublicKey))
	}
	raw := make([]byte, 20)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("create invite: %w", err)
	}
	code := strings.ToLower(codeEnc.EncodeToString(raw))
	now := c.now()
	exp := now.Add(ttl).Truncate(time.Second)
	ticket, err := devicecert.EncodeTicket(devicecert.Ticket{
		Code: code, NodeID: addr.NodeID, Name: c.agentName, NetworkID: c.networkID,
		Role: role, Expires: exp.Unix(), Addrs: addr.Addrs, Relay: addr.Relay,
	})
	if err != nil {
		return "", fmt.Errorf("create invite: %w", err)
	}
	// Expired invitations are useless; sweep them while we are here.
	if _, err := c.db.ExecContext(ctx, `DELETE FROM invitations WHERE expires_at <= ?`, now.Add(-7*24*time.Hour).Unix()); err != nil {
		return "", fmt.Errorf("create invite: %w", err)
	}
	if _, err := c.db.ExecContext(ctx, `INSERT INTO invitations(code_hash, role, uses_left, expires_at, handle, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		hashCode(code), role, uses, exp.Unix(), handle, now.Unix()); err != nil {
		return "", fmt.Errorf("create invite: %w", err)
	}
	return ticket, nil
}

// checkInviteHandle refuses the handles agentd gives its own identities:
// a device invited as "owner" would share the local owner's handle, and as
// the owner cannot be revoked, revoking by that handle would refuse it too.
func checkInviteHandle(h string) error {
	switch {
	case h == OwnerHandle:
		return fmt.Errorf("%w: handle %q is reserved for the local owner", ErrInvalid, h)
	case strings.HasPrefix(h, bridgeHandlePrefix):
		return fmt.Errorf("%w: handles starting %q are reserved for bridges", ErrInvalid, bridgeHandlePrefix)
	}
	return nil
}

// Redeem spends one use of an invitation code and issues a certificate for
// devicePub with the invitation's role. The use and the device row commit
// together: a failed issue leaves the invitation as it was.
func (c *Coordinator) Redeem(ctx context.Context, code string, devicePub ed25519.PublicKey, label string) ([]byte, error) {
	if len(devicePub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("redeem: public key is %d bytes, want %d", len(devicePub), ed25519.PublicKeySize)
	}
	c.issueMu.Lock()
	defer c.issueMu.Unlock()
	id := hex.EncodeToString(devicePub)
	var exists int
	if err := c.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM network_devices WHERE pubkey = ?`, id).Scan(&exists); err != nil {
		return nil, fmt.Errorf("redeem: %w", err)
	}
	if exists > 0 {
		return nil, fmt.Errorf("redeem: device %s is already enrolled; enroll with a new key", id[:12])
	}
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("redeem: %w", err)
	}
	defer tx.Rollback()
	var (
		role, handle string
		uses         int
		exp          int64
	)
	err = tx.QueryRowContext(ctx, `SELECT role, uses_left, expires_at, handle FROM invitations WHERE code_hash = ?`, hashCode(code)).Scan(&role, &uses, &exp, &handle)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("redeem: %w", ErrInviteUnknown)
	case err != nil:
		return nil, fmt.Errorf("redeem: %w", err)
	case c.now().Unix() >= exp:
		return nil, fmt.Errorf("redeem: %w at %s", ErrInviteExpired, time.Unix(exp, 0).UTC().Format(time.RFC3339))
	case uses <= 0:
		return nil, fmt.Errorf("redeem: %w", ErrInviteUsed)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE invitations SET uses_left = uses_left - 1 WHERE code_hash = ?`, hashCode(code)); err != nil {
		return nil, fmt.Errorf("redeem: %w", err)
	}
	if handle == "" {
		handle = "device-" + id[:8]
	}
	wire, err := c.issueLocked(ctx, tx, devicePub, handle, label, []string{role})
	if err != nil {
		return nil, fmt.Errorf("redeem: %w", err)
	}
	if err := tx.Commit(); err != nil {
		c.mu.Lock()
		delete(c.active, id)
		c.mu.Unlock()
		return nil, fmt.Errorf("redeem: %w", err)
	}
	return wire, nil
}
