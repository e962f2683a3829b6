package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"

	"github.com/agentd/agentd/devicecert"
	"github.com/agentd/agentd/internal/auth"
)

// bridgeHandlePrefix marks the handles of bridge devices.
const bridgeHandlePrefix = "__bridge_"

var bridgeNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// BridgeIdentityPath is where a bridge's identity lives.
func BridgeIdentityPath(agentDir, name string) string {
	return filepath.Join(agentDir, "keys", "bridge-"+name+".identity")
}

// IssueBridge returns the identity the bridge supervisor hands to bridge
// name: handle "__bridge_<name>", capabilities bridge and
// session_prefix:<prefix>. An existing identity is kept while its cert is
// valid, unrevoked, for the same prefix and before half-life; otherwise it
// is re-issued (a revoked key is replaced by a new one).
func (c *Coordinator) IssueBridge(ctx context.Context, name, prefix string) (*devicecert.Identity, error) {
	if !bridgeNameRE.MatchString(name) {
		return nil, fmt.Errorf("issue bridge identity: name %q must match %s", name, bridgeNameRE)
	}
	if !prefixRE.MatchString(prefix) {
		return nil, fmt.Errorf("issue bridge identity: session prefix %q must match %s", prefix, prefixRE)
	}
	handle := bridgeHandlePrefix + name
	caps := []string{auth.CapBridge, auth.SessionPrefixCap + prefix}
	p := BridgeIdentityPath(c.dir, name)

	id, err := devicecert.LoadIdentity(p)
	switch {
	case errors.Is(err, os.ErrNotExist):
		id = nil
	case err != nil:
		// Unreadable or corrupt: replace it rather than leave the bridge
		// unable to connect; say so.
		c.log.Warn("bridge identity unusable, issuing a new one", "bridge", name, "err", err)
		id = nil
	}
	if id != nil && len(id.Cert) > 0 {
		cert, err := c.check(id.Cert)
		if err == nil && cert.Handle == handle && slices.Equal(cert.Capabilities, caps) && c.now().Before(dueAt(cert)) {
			return id, nil
		}
	}
	if id == nil || !c.Active(id.ClientID()) && c.known(ctx, id.ClientID()) {
		if id, err = devicecert.NewIdentity(); err != nil {
			return nil, fmt.Errorf("issue bridge identity: %w", err)
		}
	}
	if id.Cert, err = c.Issue(ctx, id.Public(), handle, "bridge "+name, caps); err != nil {
		return nil, fmt.Errorf("issue bridge identity %s: %w", name, err)
	}
	if err := id.Save(p); err != nil {
		return nil, fmt.Errorf("issue bridge identity %s: %w", name, err)
	}
	return id, nil
}

// known reports whether client_id has a row (active or revoked).
func (c *Coordinator) known(ctx context.Context, id string) bool {
	var n int
	c.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM network_devices WHERE pubkey = ?`, id).Scan(&n)
	return n > 0
}

// BridgeClient returns the client id of the active bridge device whose
// certificate carries session_prefix:<prefix> (the newest, should a
// re-issue have left two), or ok false when no active bridge holds it. The
// session manager asks it where a message pushed into a "<prefix>:…"
// session goes.
func (c *Coordinator) BridgeClient(ctx context.Context, prefix string) (clientID string, ok bool, err error) {
	rows, err := c.db.QueryContext(ctx, `SELECT pubkey, capabilities FROM network_devices
		WHERE status = 'active' AND substr(handle, 1, length(?)) = ? ORDER BY created_at DESC, rowid DESC`,
		bridgeHandlePrefix, bridgeHandlePrefix)
	if err != nil {
		return "", false, fmt.Errorf("find bridge of prefix %q: %w", prefix, err)
	}
	defer rows.Close()
	want := auth.SessionPrefixCap + prefix
	for rows.Next() {
		var id, caps string
		if err := rows.Scan(&id, &caps); err != nil {
			return "", false, fmt.Errorf("find bridge of prefix %q: %w", prefix, err)
		}
		var list []string
		if err := json.Unmarshal([]byte(caps), &list); err != nil {
			return "", false, fmt.Errorf("find bridge of prefix %q: device %s: %w", prefix, id, err)
		}
		if slices.Contains(list, want) && c.Active(id) {
			return id, true, nil
		}
	}
	return "", false, rows.Err()
}
