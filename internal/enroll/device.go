package enroll

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/agentd/agentd/devicecert"
	"github.com/agentd/agentd/internal/identity"
	"github.com/agentd/agentd/internal/iroh"
)

// DefaultDialTimeout bounds reaching the agent over iroh (the binding alone
// waits ~30 s on a dead address).
const DefaultDialTimeout = 10 * time.Second

// DeviceOptions configure the device side (enroll, remote dialing).
type DeviceOptions struct {
	Logger *slog.Logger
	// SidecarLog receives the dial sidecar's log lines (default discarded;
	// the last line is quoted in errors anyway).
	SidecarLog io.Writer
	// DialTimeout bounds each dial to the agent; default DefaultDialTimeout.
	DialTimeout time.Duration
	// Preset of the dial sidecar: iroh.PresetN0 (default) or iroh.PresetMinimal.
	Preset string
	// NodePath and SidecarDir locate node and the sidecar (defaults as in iroh.Config).
	NodePath, SidecarDir string
	// Now is the clock (renewal decisions, ticket expiry); default time.Now.
	Now func() time.Time
}

func (o *DeviceOptions) defaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Preset == "" {
		o.Preset = os.Getenv("AGENTD_IROH_PRESET")
	}
}

// Errors of the device side, for errors.Is.
var (
	ErrTicketExpired = errors.New("invitation ticket expired")
	ErrUnreachable   = errors.New("agent unreachable over iroh")
	ErrWrongNetwork  = errors.New("the node serves another network")
	ErrCertExpired   = errors.New("device certificate expired")
)

// dialSidecar is a dial-mode sidecar in a private temp directory.
type dialSidecar struct {
	sc     *iroh.Sidecar
	dialer *iroh.Dialer
	cancel context.CancelFunc
	dir    string
}

// relayMode is the sidecar relay setting for a relay URL from a ticket: the
// URL itself, or disabled when the agent published none.
func relayMode(relay string) string {
	if relay == "" {
		return iroh.RelayDisabled
	}
	return relay
}

func startDialSidecar(key ed25519.PrivateKey, relay string, o *DeviceOptions) (*dialSidecar, error) {
	dir, err := os.MkdirTemp("", "agentd-iroh-")
	if err != nil {
		return nil, fmt.Errorf("start iroh dialer: %w", err)
	}
	stderr := o.SidecarLog
	if stderr == nil {
		stderr = io.Discard
	}
	sc, err := iroh.New(iroh.Config{
		Mode: iroh.ModeDial, SecretKey: key, Relay: relayMode(relay), Preset: o.Preset,
		DialSocket: filepath.Join(dir, "dial.sock"), NodePath: o.NodePath, Dir: o.SidecarDir,
		Stderr: stderr, Logger: o.Logger,
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// The sidecar lives until Close, not until the caller's context ends.
	ctx, cancel := context.WithCancel(context.Background())
	if err := sc.Start(ctx); err != nil {
		cancel()
		os.RemoveAll(dir)
		return nil, err
	}
	d := sc.Dialer()
	d.Timeout = o.DialTimeout
	return &dialSidecar{sc: sc, dialer: d, cancel: cancel, dir: dir}, nil
}

func (d *dialSidecar) close() {
	d.cancel()
	<-d.sc.Done()
	os.RemoveAll(d.dir)
}

// explainDial turns iroh dial errors into what a user can act on.
func explainDial(err error, addr iroh.NodeAddr, what string) error {
	short := addr.NodeID
	if len(short) > 16 {
		short = short[:16]
	}
	switch {
	case errors.Is(err, iroh.ErrALPNRefused):
		return fmt.Errorf("node %s does not serve the agentd %s (it refused the ALPN; is it an agentd with iroh enabled?): %w", short, what, err)
	case errors.Is(err, iroh.ErrTimeout), errors.Is(err, iroh.ErrUnreachable):
		return fmt.Errorf("%w: node %s (addrs %v, relay %q): %w", ErrUnreachable, short, addr.Addrs, addr.Relay, err)
	}
	return err
}

// Enroll redeems ticket for a new device identity and stores it at path
// (identity.DefaultPath when empty) with the agent's address. It refuses to
// overwrite an existing identity.
func Enroll(ctx context.Context, ticket, label, path string, o DeviceOptions) (*devicecert.Identity, *identity.Agent, error) {
	o.defaults()
	path, err := identity.Resolve(path)
	if err != nil {
		return nil, nil, err
	}
	t, err := devicecert.ParseTicket(strings.TrimSpace(ticket))
	if err != nil {
		return nil, nil, err
	}
	if exp := time.Unix(t.Expires, 0); !o.Now().Before(exp) {
		return nil, nil, fmt.Errorf("%w at %s; ask for a new one (agentd invite)", ErrTicketExpired, exp.UTC().Format(time.RFC3339))
	}
	if _, err := identity.ParseNodeID(t.NodeID); err != nil {
		return nil, nil, fmt.Errorf("parse ticket: %w", err)
	}
	if _, err := os.Stat(path); err == nil {
		return nil, nil, fmt.Errorf("an identity already exists at %s; remove it or pass --identity with another file", path)
	}
	id, err := devicecert.NewIdentity()
	if err != nil {
		return nil, nil, err
	}
	ds, err := startDialSidecar(id.Key, t.Relay, &o)
	if err != nil {
		return nil, nil, err
	}
	defer ds.close()

	addr := iroh.NodeAddr{NodeID: strings.ToLower(t.NodeID), Addrs: t.Addrs, Relay: t.Relay}
	c, err := Dial(ctx, ds.dialer, addr)
	if err != nil {
		return nil, nil, fmt.Errorf("redeem invitation: %w", explainDial(err, addr, "coordinator"))
	}
	defer c.Close()
	info, err := c.NetworkInfo(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("redeem invitation: %w", err)
	}
	if info.NetworkID != t.NetworkID {
		return nil, nil, fmt.Errorf("redeem invitation: %w: node %s serves network %s (%q), the ticket is for %s",
			ErrWrongNetwork, addr.NodeID[:16], info.NetworkID, info.Name, t.NetworkID)
	}
	wire, err := c.Redeem(ctx, t.Code, id.Public(), label)
	if err != nil {
		return nil, nil, err
	}
	cert, err := devicecert.Parse(wire)
	if err != nil {
		return nil, nil, fmt.Errorf("redeem invitation: the coordinator sent an unreadable certificate: %w", err)
	}
	if !cert.DevicePub.Equal(id.Public()) || cert.NetworkID != t.NetworkID {
		return nil, nil, errors.New("redeem invitation: the coordinator sent a certificate for another device or network")
	}
	id.Cert = wire
	name := info.Name
	if name == "" {
		name = t.Name
	}
	agent := &identity.Agent{Name: name, NetworkID: t.NetworkID, NodeID: addr.NodeID, Addrs: t.Addrs, Relay: t.Relay,
		EnrolledAt: o.Now().UTC().Truncate(time.Second)}
	if err := identity.Save(path, id, agent); err != nil {
		return nil, nil, err
	}
	o.Logger.Info("enrolled", "client_id", id.ClientID(), "agent", name, "network_id", t.NetworkID, "identity", path)
	return id, agent, nil
}
