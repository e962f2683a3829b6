// Package coordinator is the certificate authority of an agent's own network
// (DESIGN.md §3): it creates the network at init, issues, renews and revokes
// device certificates, keeps the active-device set in memory for the auth
// layer, and runs one-time invitations.
package coordinator

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/agentd/agentd/devicecert"
	"github.com/agentd/agentd/internal/store"
)

// Meta keys the coordinator owns in the meta table.
const (
	MetaNetworkID = "network_id"
	MetaAgentName = "agent_name"
)

// OwnerHandle is the handle of the local CLI's identity.
const OwnerHandle = "owner"

// Files in the agent directory's keys/ folder, all mode 0600.
const (
	CoordinatorKeyFile = "keys/coordinator.key" // 32-byte Ed25519 seed
	NodeKeyFile        = "keys/node.key"        // 32-byte Ed25519 seed: the iroh NodeId
	OwnerIdentityFile  = "keys/owner.identity"  // devicecert.Identity JSON
)

// ErrNotInitialised is returned by Open for a directory without a network.
var ErrNotInitialised = errors.New("agent network not initialised (run agentd init)")

// Coordinator issues and revokes the certificates of one network.
type Coordinator struct {
	dir       string
	db        *sql.DB
	key       ed25519.PrivateKey
	pub       ed25519.PublicKey
	networkID string
	agentName string
	ownerID   string // client_id of keys/owner.identity
	log       *slog.Logger
	now       func() time.Time

	// mu guards active, seen and hooks.
	mu     sync.RWMutex
	active map[string]struct{}  // client_ids whose status is 'active'
	seen   map[string]time.Time // last_seen_at not yet flushed
	hooks  []func(clientID string)

	// issueMu serialises certificate issuing so the active set and the
	// table change together.
	issueMu sync.Mutex
}

// Bootstrap creates the network of a new agent: a random network id, the
// coordinator key, the iroh node key and the owner's identity with an admin
// certificate, registered as a device. It refuses a directory that already
// has a network and leaves nothing behind when it fails.
func Bootstrap(ctx context.Context, agentDir string, st *store.Store, agentName string) error {
	db := st.DB()
	var existing string
	switch err := db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, MetaNetworkID).Scan(&existing); {
	case err == nil:
		return fmt.Errorf("bootstrap: network %s already exists in this database", existing)
	case !errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("bootstrap: %w", err)
	}
	paths := []string{CoordinatorKeyFile, NodeKeyFile, OwnerIdentityFile}
	for _, p := range paths {
		if _, err := os.Lstat(filepath.Join(agentDir, p)); err == nil {
			return fmt.Errorf("bootstrap: %s already exists; refusing to overwrite a key", p)
		}
	}
	if err := os.MkdirAll(filepath.Join(agentDir, "keys"), 0o700); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	nid := make([]byte, 16)
	if _, err := rand.Read(nid); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	networkID := hex.EncodeToString(nid)
	_, coordKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	_, nodeKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	owner, err := devicecert.NewIdentity()
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	now := time.Now().Truncate(time.Second)
	caps := []string{"admin"}
	owner.Cert, err = devicecert.Sign(coordKey, devicecert.Cert{
		Handle: OwnerHandle, DevicePub: owner.Public(), NetworkID: networkID,
		IssuedAt: now, ExpiresAt: now.Add(devicecert.TTL), Capabilities: caps,
	})
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}

	written := []string{}
	cleanup := func() {
		for _, p := range written {
			os.Remove(p)
		}
	}
	write := func(rel string, data []byte) error {
		p := filepath.Join(agentDir, rel)
		if err := devicecert.WriteFileAtomic(p, data, 0o600); err != nil {
			return err
		}
		written = append(written, p)
		return nil
	}
	if err := write(CoordinatorKeyFile, coordKey.Seed()); err != nil {
		cleanup()
		return fmt.Errorf("bootstrap: %w", err)
	}
	if err := write(NodeKeyFile, nodeKey.Seed()); err != nil {
		cleanup()
		return fmt.Errorf("bootstrap: %w", err)
	}
	if err := owner.Save(filepath.Join(agentDir, OwnerIdentityFile)); err != nil {
		cleanup()
		return fmt.Errorf("bootstrap: %w", err)
	}
	written = append(written, filepath.Join(agentDir, OwnerIdentityFile))

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		cleanup()
		return fmt.Errorf("bootstrap: %w", err)
	}
	defer tx.Rollback()
	for k, v := range map[string]string{MetaNetworkID: networkID, MetaAgentName: agentName} {
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta(key, value) VALUES (?, ?)`, k, v); err != nil {
			cleanup()
			return fmt.Errorf("bootstrap: %w", err)
		}
	}
	if err := upsertDevice(ctx, tx, owner.ClientID(), OwnerHandle, "local owner", caps, now, now.Add(devicecert.TTL)); err != nil {
		cleanup()
		return fmt.Errorf("bootstrap: %w", err)
	}
	if err := tx.Commit(); err != nil {
		cleanup()
		return fmt.Errorf("bootstrap: %w", err)
	}
	return nil
}

// Open loads the network of an initialised agent directory.
func Open(ctx context.Context, agentDir string, st *store.Store) (*Coordinator, error) {
	db := st.DB()
	c := &Coordinator{dir: agentDir, db: db, log: slog.Default(), now: time.Now,
		active: map[string]struct{}{}, seen: map[string]time.Time{}}
	switch err := db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, MetaNetworkID).Scan(&c.networkID); {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("open coordinator: %w", ErrNotInitialised)
	case err != nil:
		return nil, fmt.Errorf("open coordinator: %w", err)
	}
	// The name is cosmetic (shown in tickets); a missing row is not fatal.
	db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, MetaAgentName).Scan(&c.agentName)
	key, err := readSeed(filepath.Join(agentDir, CoordinatorKeyFile))
	if err != nil {
		return nil, fmt.Errorf("open coordinator: %w", err)
	}
	c.key, c.pub = key, key.Public().(ed25519.PublicKey)
	if owner, err := devicecert.LoadIdentity(filepath.Join(agentDir, OwnerIdentityFile)); err == nil {
		c.ownerID = owner.ClientID()
	} else {
		c.log.Warn("owner identity unreadable", "err", err)
	}
	rows, err := db.QueryContext(ctx, `SELECT pubkey FROM network_devices WHERE status = 'active'`)
	if err != nil {
		return nil, fmt.Errorf("open coordinator: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("open coordinator: %w", err)
		}
		c.active[id] = struct{}{}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("open coordinator: %w", err)
	}
	return c, nil
}

// SetLogger sets the logger for background work (default slog.Default()).
func (c *Coordinator) SetLogger(l *slog.Logger) { c.log = l }

// readSeed reads a 32-byte Ed25519 seed file, refusing one that group or
// others may read.
func readSeed(path string) (ed25519.PrivateKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s: mode %#o lets others read the key; chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) != ed25519.SeedSize {
		return nil, fmt.Errorf("%s: %d bytes, want a %d-byte Ed25519 seed", path, len(b), ed25519.SeedSize)
	}
	return ed25519.NewKeyFromSeed(b), nil
}

// LoadNodeKey reads the agent's iroh node key (keys/node.key).
func LoadNodeKey(agentDir string) (ed25519.PrivateKey, error) {
	k, err := readSeed(filepath.Join(agentDir, NodeKeyFile))
	if err != nil {
		return nil, fmt.Errorf("load node key: %w", err)
	}
	return k, nil
}

// NetworkID is the id every certificate of this network carries.
func (c *Coordinator) NetworkID() string { return c.networkID }

// CoordinatorPub is the key every certificate must be signed with.
func (c *Coordinator) CoordinatorPub() ed25519.PublicKey { return c.pub }

// AgentName is the name recorded at init, shown in invitation tickets.
func (c *Coordinator) AgentName() string { return c.agentName }

// Active reports whether client_id is a registered, unrevoked device. It
// reads memory only: it runs on every stream.
func (c *Coordinator) Active(clientID string) bool {
	c.mu.RLock()
	_, ok := c.active[clientID]
	c.mu.RUnlock()
	return ok
}

// OnRevoke registers f to be called with the client_id of every revoked
// device, right after the in-memory set has dropped it.
func (c *Coordinator) OnRevoke(f func(clientID string)) {
	c.mu.Lock()
	c.hooks = append(c.hooks, f)
	c.mu.Unlock()
}

// MarkSeen records that client_id opened a stream at t. It only touches
// memory; Run writes the batch to the database.
func (c *Coordinator) MarkSeen(clientID string, t time.Time) {
	c.mu.Lock()
	if t.After(c.seen[clientID]) {
		c.seen[clientID] = t
	}
	c.mu.Unlock()
}

// SeenFlushInterval is how often Run writes last_seen_at.
const SeenFlushInterval = 5 * time.Second

// Run writes last_seen_at batches and renews the owner's local certificate
// when it is past half its life, until ctx ends; then it flushes once more.
func (c *Coordinator) Run(ctx context.Context) error {
	t := time.NewTicker(SeenFlushInterval)
	defer t.Stop()
	lastOwnerCheck := time.Time{}
	for {
		select {
		case <-ctx.Done():
			// The daemon's context is gone; a short fresh one lets the
			// final batch land.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			return c.FlushSeen(fctx)
		case <-t.C:
			if err := c.FlushSeen(ctx); err != nil {
				c.log.Warn("record last_seen_at", "err", err)
			}
			if time.Since(lastOwnerCheck) > time.Hour {
				lastOwnerCheck = time.Now()
				if err := c.RenewOwner(ctx); err != nil {
					c.log.Warn("renew owner certificate", "err", err)
				}
			}
		}
	}
}

// FlushSeen writes the pending last_seen_at values in one transaction.
func (c *Coordinator) FlushSeen(ctx context.Context) error {
	c.mu.Lock()
	batch := c.seen
	c.seen = map[string]time.Time{}
	c.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	err := func() error {
		tx, err := c.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		for id, t := range batch {
			if _, err := tx.ExecContext(ctx, `UPDATE network_devices SET last_seen_at = MAX(COALESCE(last_seen_at, 0), ?) WHERE pubkey = ?`, t.Unix(), id); err != nil {
				return err
			}
		}
		return tx.Commit()
	}()
	if err != nil {
		// Put the batch back so the next flush retries it.
		for id, t := range batch {
			c.MarkSeen(id, t)
		}
		return fmt.Errorf("flush last_seen_at: %w", err)
	}
	return nil
}
