package coordinator

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/agentd/agentd/devicecert"
	"github.com/agentd/agentd/internal/auth"
)

// Device is one row of network_devices.
type Device struct {
	ClientID      string     `json:"client_id"`
	Handle        string     `json:"handle"`
	Label         string     `json:"label"`
	Capabilities  []string   `json:"capabilities"`
	Status        string     `json:"status"` // active or revoked
	CreatedAt     time.Time  `json:"created_at"`
	LastSeenAt    *time.Time `json:"last_seen_at,omitempty"`
	CertExpiresAt time.Time  `json:"cert_expires_at"`
	RevokedAt     *time.Time `json:"revoked_at,omitempty"`
}

// Errors callers (CLI, REST) tell apart.
var (
	ErrRevoked   = errors.New("device is revoked")
	ErrNotDue    = errors.New("certificate is not due for renewal")
	ErrNoMatch   = errors.New("no device matches")
	ErrAmbiguous = errors.New("ambiguous device")
	ErrOwner     = errors.New("the owner's local identity cannot be revoked")
	ErrInvalid   = errors.New("invalid request")
)

var prefixRE = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)

// checkCaps accepts chat, admin, bridge and exactly one session_prefix for
// a bridge; anything else would be a capability no one enforces.
func checkCaps(caps []string) error {
	if len(caps) == 0 {
		return errors.New("no capabilities")
	}
	prefixes := 0
	for _, c := range caps {
		switch {
		case c == auth.CapChat || c == auth.CapAdmin || c == auth.CapBridge:
		case strings.HasPrefix(c, auth.SessionPrefixCap):
			if !prefixRE.MatchString(strings.TrimPrefix(c, auth.SessionPrefixCap)) {
				return fmt.Errorf("capability %q: session prefix must match %s", c, prefixRE)
			}
			prefixes++
		default:
			return fmt.Errorf("unknown capability %q", c)
		}
	}
	bridge := slices.Contains(caps, auth.CapBridge)
	if bridge && prefixes != 1 {
		return errors.New("a bridge certificate needs exactly one session_prefix capability")
	}
	if !bridge && prefixes > 0 {
		return errors.New("session_prefix is only for bridge certificates")
	}
	return nil
}

func checkHandle(h string) error {
	if h == "" || len(h) > 64 {
		return fmt.Errorf("handle %q must be 1 to 64 bytes", h)
	}
	for _, r := range h {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return fmt.Errorf("handle %q: only printable characters without spaces", h)
		}
	}
	return nil
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func upsertDevice(ctx context.Context, db execer, id, handle, label string, caps []string, now, expires time.Time) error {
	cj, err := json.Marshal(caps)
	if err != nil {
		return err
	}
	// An upsert keeps created_at and last_seen_at; the status guard makes
	// a race with Revoke fail closed instead of resurrecting the device.
	res, err := db.ExecContext(ctx, `INSERT INTO network_devices(pubkey, handle, label, capabilities, status, created_at, cert_expires_at)
		VALUES (?, ?, ?, ?, 'active', ?, ?)
		ON CONFLICT(pubkey) DO UPDATE SET handle = excluded.handle, label = excluded.label,
			capabilities = excluded.capabilities, cert_expires_at = excluded.cert_expires_at
		WHERE network_devices.status = 'active'`, id, handle, label, string(cj), now.Unix(), expires.Unix())
	if err != nil {
		return fmt.Errorf("register device: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("register device %s: %w", id, ErrRevoked)
	}
	return nil
}

// Issue signs a certificate for pubkey and registers (or updates) the
// device as active. A revoked key stays revoked: the device needs a new key.
func (c *Coordinator) Issue(ctx context.Context, pubkey ed25519.PublicKey, handle, label string, caps []string) ([]byte, error) {
	c.issueMu.Lock()
	defer c.issueMu.Unlock()
	return c.issueLocked(ctx, c.db, pubkey, handle, label, caps)
}

func (c *Coordinator) issueLocked(ctx context.Context, db execer, pubkey ed25519.PublicKey, handle, label string, caps []string) ([]byte, error) {
	if len(pubkey) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("issue cert: public key is %d bytes, want %d", len(pubkey), ed25519.PublicKeySize)
	}
	if err := checkHandle(handle); err != nil {
		return nil, fmt.Errorf("issue cert: %w", err)
	}
	if err := checkCaps(caps); err != nil {
		return nil, fmt.Errorf("issue cert: %w", err)
	}
	if len(label) > 200 {
		return nil, errors.New("issue cert: label longer than 200 bytes")
	}
	now := c.now().Truncate(time.Second)
	exp := now.Add(devicecert.TTL)
	wire, err := devicecert.Sign(c.key, devicecert.Cert{
		Handle: handle, DevicePub: pubkey, NetworkID: c.networkID,
		IssuedAt: now, ExpiresAt: exp, Capabilities: caps,
	})
	if err != nil {
		return nil, fmt.Errorf("issue cert: %w", err)
	}
	id := hex.EncodeToString(pubkey)
	if err := upsertDevice(ctx, db, id, handle, label, caps, now, exp); err != nil {
		return nil, fmt.Errorf("issue cert: %w", err)
	}
	c.mu.Lock()
	c.active[id] = struct{}{}
	c.mu.Unlock()
	return wire, nil
}

// check runs the verifier's checks on a cert of this network.
func (c *Coordinator) check(wire []byte) (*devicecert.Cert, error) {
	cert, err := devicecert.Verify(wire, c.pub)
	if err != nil {
		return nil, err
	}
	if cert.NetworkID != c.networkID {
		return nil, fmt.Errorf("certificate is for network %s, not %s", cert.NetworkID, c.networkID)
	}
	if err := cert.ValidAt(c.now()); err != nil {
		return nil, err
	}
	if !c.Active(cert.ClientID()) {
		return nil, ErrRevoked
	}
	return cert, nil
}

// dueAt is when a cert may be renewed: half way through its life.
func dueAt(cert *devicecert.Cert) time.Time {
	return cert.IssuedAt.Add(cert.ExpiresAt.Sub(cert.IssuedAt) / 2)
}

// Renew returns a fresh certificate for a valid, unrevoked one that is past
// half of its life. Handle and capabilities come from the device's row, so
// a renewal cannot widen what the device may do.
func (c *Coordinator) Renew(ctx context.Context, certWire []byte) ([]byte, error) {
	cert, err := c.check(certWire)
	if err != nil {
		return nil, fmt.Errorf("renew: %w", err)
	}
	if due := dueAt(cert); c.now().Before(due) {
		return nil, fmt.Errorf("renew: %w until %s", ErrNotDue, due.UTC().Format(time.RFC3339))
	}
	c.issueMu.Lock()
	defer c.issueMu.Unlock()
	d, err := c.device(ctx, cert.ClientID())
	if err != nil {
		return nil, fmt.Errorf("renew: %w", err)
	}
	if d.Status != "active" {
		return nil, fmt.Errorf("renew: %w", ErrRevoked)
	}
	return c.issueLocked(ctx, c.db, cert.DevicePub, d.Handle, d.Label, d.Capabilities)
}

// RenewOwner re-issues keys/owner.identity's certificate when it is past
// half its life (or no longer valid), so the local CLI never locks itself out.
func (c *Coordinator) RenewOwner(ctx context.Context) error {
	p := filepath.Join(c.dir, OwnerIdentityFile)
	id, err := devicecert.LoadIdentity(p)
	if err != nil {
		return err
	}
	cert, err := id.Parsed()
	if err == nil && c.now().Before(dueAt(cert)) {
		return nil
	}
	if !c.Active(id.ClientID()) {
		return fmt.Errorf("owner identity %s: %w", id.ClientID(), ErrRevoked)
	}
	caps, handle := []string{auth.CapAdmin}, OwnerHandle
	if cert != nil {
		caps, handle = cert.Capabilities, cert.Handle
	}
	if id.Cert, err = c.Issue(ctx, id.Public(), handle, "local owner", caps); err != nil {
		return err
	}
	return id.Save(p)
}

const deviceCols = `pubkey, handle, label, capabilities, status, created_at, last_seen_at, cert_expires_at, revoked_at`

func scanDevice(sc interface{ Scan(...any) error }) (Device, error) {
	var (
		d              Device
		caps           string
		created, exp   int64
		seen, revokedT sql.NullInt64
	)
	if err := sc.Scan(&d.ClientID, &d.Handle, &d.Label, &caps, &d.Status, &created, &seen, &exp, &revokedT); err != nil {
		return d, err
	}
	if err := json.Unmarshal([]byte(caps), &d.Capabilities); err != nil {
		return d, fmt.Errorf("device %s capabilities: %w", d.ClientID, err)
	}
	d.CreatedAt = time.Unix(created, 0).UTC()
	d.CertExpiresAt = time.Unix(exp, 0).UTC()
	if seen.Valid {
		t := time.Unix(seen.Int64, 0).UTC()
		d.LastSeenAt = &t
	}
	if revokedT.Valid {
		t := time.Unix(revokedT.Int64, 0).UTC()
		d.RevokedAt = &t
	}
	return d, nil
}

func (c *Coordinator) device(ctx context.Context, id string) (Device, error) {
	d, err := scanDevice(c.db.QueryRowContext(ctx, `SELECT `+deviceCols+` FROM network_devices WHERE pubkey = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return d, fmt.Errorf("device %s: %w", id, ErrNoMatch)
	}
	return d, err
}

// Devices lists every device, active and revoked, oldest first. Streams
// seen since the last flush are reflected already.
func (c *Coordinator) Devices(ctx context.Context) ([]Device, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT `+deviceCols+` FROM network_devices ORDER BY created_at, rowid`)
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	defer rows.Close()
	out := []Device{}
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, fmt.Errorf("list devices: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	c.mu.RLock()
	for i := range out {
		if t, ok := c.seen[out[i].ClientID]; ok && (out[i].LastSeenAt == nil || t.After(*out[i].LastSeenAt)) {
			t := t.UTC().Truncate(time.Second)
			out[i].LastSeenAt = &t
		}
	}
	c.mu.RUnlock()
	return out, nil
}

// Revoke revokes the active devices matched by arg: a client_id prefix, a
// handle prefix, or an exact handle (which revokes all of that handle's
// devices). More than one match otherwise is refused as ambiguous. The
// in-memory set drops the devices before Revoke returns and the revoke
// hooks run, so their open streams close.
func (c *Coordinator) Revoke(ctx context.Context, arg string) ([]Device, error) {
	matched, hooks, err := c.revoke(ctx, arg)
	if err != nil {
		return nil, err
	}
	// Hooks run outside every lock: they close connections and may call
	// back into the coordinator.
	for _, d := range matched {
		for _, h := range hooks {
			h(d.ClientID)
		}
		c.log.Info("device revoked", "client_id", d.ClientID, "handle", d.Handle)
	}
	return matched, nil
}

func (c *Coordinator) revoke(ctx context.Context, arg string) ([]Device, []func(string), error) {
	arg = strings.TrimSpace(arg)
	if arg == "" {
		return nil, nil, fmt.Errorf("revoke: %w: which device? give a client id prefix or a handle", ErrInvalid)
	}
	c.issueMu.Lock()
	defer c.issueMu.Unlock()
	all, err := c.Devices(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("revoke: %w", err)
	}
	var matched []Device
	exactHandle := true
	for _, d := range all {
		if d.Status != "active" {
			continue
		}
		if strings.HasPrefix(d.ClientID, strings.ToLower(arg)) || strings.HasPrefix(d.Handle, arg) {
			matched = append(matched, d)
			exactHandle = exactHandle && d.Handle == arg
		}
	}
	switch {
	case len(matched) == 0:
		return nil, nil, fmt.Errorf("revoke: %w %q among active devices", ErrNoMatch, arg)
	case len(matched) > 1 && !exactHandle:
		var names []string
		for _, d := range matched {
			names = append(names, d.ClientID[:12]+" ("+d.Handle+")")
		}
		return nil, nil, fmt.Errorf("revoke: %w: %q matches %d devices: %s; give a longer prefix", ErrAmbiguous, arg, len(matched), strings.Join(names, ", "))
	}
	for _, d := range matched {
		if d.ClientID == c.ownerID {
			return nil, nil, fmt.Errorf("revoke %s: %w (it is how the local CLI administers this agent)", d.ClientID[:12], ErrOwner)
		}
	}
	now := c.now().Unix()
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("revoke: %w", err)
	}
	defer tx.Rollback()
	for i := range matched {
		if _, err := tx.ExecContext(ctx, `UPDATE network_devices SET status = 'revoked', revoked_at = ? WHERE pubkey = ?`, now, matched[i].ClientID); err != nil {
			return nil, nil, fmt.Errorf("revoke: %w", err)
		}
		t := time.Unix(now, 0).UTC()
		matched[i].Status, matched[i].RevokedAt = "revoked", &t
	}
	if err := tx.Commit(); err != nil {
		return nil, nil, fmt.Errorf("revoke: %w", err)
	}
	c.mu.Lock()
	for _, d := range matched {
		delete(c.active, d.ClientID)
	}
	hooks := slices.Clone(c.hooks)
	c.mu.Unlock()
	return matched, hooks, nil
}
