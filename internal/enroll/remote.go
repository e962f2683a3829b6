package enroll

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/agentd/agentd/client"
	"github.com/agentd/agentd/devicecert"
	"github.com/agentd/agentd/internal/identity"
	"github.com/agentd/agentd/internal/iroh"
)

// renewCheckInterval is how often a long-running Remote checks whether its
// certificate is due for renewal.
const renewCheckInterval = time.Hour

// Remote is an enrolled device's way to the agent: a dial-mode sidecar with
// the device key, the agent's address and the current certificate, renewed
// through the coordinator RPC after half of its life.
type Remote struct {
	path  string
	agent *identity.Agent
	addr  iroh.NodeAddr
	ds    *dialSidecar
	opts  DeviceOptions

	// mu guards id (replaced whole on renewal, never mutated).
	mu sync.Mutex
	id *devicecert.Identity

	// renewMu serialises renewals.
	renewMu sync.Mutex

	cancel context.CancelFunc
	done   chan struct{}
}

// OpenRemote loads the identity at path (identity.DefaultPath when empty),
// starts its dial sidecar and renews the certificate if it is past half of
// its life. target picks the agent: "" for the enrolled one, a ticket of
// the same network, or a NodeId. Close releases everything.
func OpenRemote(ctx context.Context, path, target string, o DeviceOptions) (*Remote, error) {
	o.defaults()
	path, err := identity.Resolve(path)
	if err != nil {
		return nil, err
	}
	id, agent, err := identity.Load(path)
	if err != nil {
		return nil, err
	}
	addr, err := resolveTarget(target, agent)
	if err != nil {
		return nil, err
	}
	cert, err := id.Parsed()
	if err != nil {
		return nil, fmt.Errorf("identity %s: %w", path, err)
	}
	if !o.Now().Before(cert.ExpiresAt) {
		return nil, fmt.Errorf("%w at %s: enroll this machine again with a new invitation (agentd enroll TICKET)",
			ErrCertExpired, cert.ExpiresAt.Format(time.RFC3339))
	}
	ds, err := startDialSidecar(id.Key, addr.Relay, &o)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	r := &Remote{path: path, agent: agent, addr: addr, ds: ds, opts: o, id: id, cancel: cancel, done: make(chan struct{})}
	if err := r.RenewIfDue(ctx); err != nil {
		// The current certificate still works; try again later.
		o.Logger.Warn("certificate renewal failed; the current certificate stays valid until it expires",
			"err", err, "expires_at", cert.ExpiresAt)
	}
	go r.renewLoop(rctx)
	return r, nil
}

// resolveTarget turns the --remote/--agent argument into an address.
func resolveTarget(target string, agent *identity.Agent) (iroh.NodeAddr, error) {
	target = strings.TrimSpace(target)
	switch {
	case target == "":
		return agent.NodeAddr(), nil
	case strings.HasPrefix(target, devicecert.TicketPrefix):
		t, err := devicecert.ParseTicket(target)
		if err != nil {
			return iroh.NodeAddr{}, err
		}
		if t.NetworkID != agent.NetworkID {
			return iroh.NodeAddr{}, fmt.Errorf("%w: the ticket is for network %s, this identity belongs to %s (%q); enroll with it first: agentd enroll TICKET --identity FILE",
				ErrWrongNetwork, t.NetworkID, agent.NetworkID, agent.Name)
		}
		nid, err := identity.ParseNodeID(t.NodeID)
		if err != nil {
			return iroh.NodeAddr{}, fmt.Errorf("parse ticket: %w", err)
		}
		return iroh.NodeAddr{NodeID: nid, Addrs: t.Addrs, Relay: t.Relay}, nil
	default:
		nid, err := identity.ParseNodeID(target)
		if err != nil {
			return iroh.NodeAddr{}, fmt.Errorf("agent %q is neither a ticket (oa1…) nor a NodeId: %w", target, err)
		}
		if nid == agent.NodeID {
			return agent.NodeAddr(), nil
		}
		// Another node: no known direct addresses; the relay (if any) and
		// discovery must find it.
		return iroh.NodeAddr{NodeID: nid, Relay: agent.Relay}, nil
	}
}

// Agent is the enrolled agent's record.
func (r *Remote) Agent() identity.Agent { return *r.agent }

// Path is the identity file.
func (r *Remote) Path() string { return r.path }

// Addr is where the Remote dials.
func (r *Remote) Addr() iroh.NodeAddr { return r.addr }

// Identity is the current identity (after any renewal).
func (r *Remote) Identity() *devicecert.Identity {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.id
}

// DialStream opens a raw gateway-ALPN stream to the agent (no preamble yet).
func (r *Remote) DialStream(ctx context.Context) (net.Conn, error) {
	c, err := r.ds.dialer.Dial(ctx, r.addr, iroh.ALPNGateway)
	if err != nil {
		return nil, explainDial(err, r.addr, "gateway")
	}
	return c, nil
}

// DialAuth opens a gateway stream and writes the certificate preamble with
// the current certificate: the stream is ready for HTTP/1.1.
func (r *Remote) DialAuth(ctx context.Context) (net.Conn, error) {
	c, err := r.DialStream(ctx)
	if err != nil {
		return nil, err
	}
	if err := devicecert.IrohPreamble(c, r.Identity()); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// ClientDialer returns a client.Dialer over iroh with the current identity.
// Build a new one after a renewal (the Dialer keeps the identity it got).
func (r *Remote) ClientDialer() *client.Dialer {
	return &client.Dialer{DialStream: r.DialStream, Handshake: client.HandshakeIroh, Identity: r.Identity(),
		HandshakeTimeout: r.opts.DialTimeout + 5*time.Second}
}

// RenewIfDue renews the certificate through the coordinator RPC when it is
// past half of its life, and saves it.
func (r *Remote) RenewIfDue(ctx context.Context) error {
	r.renewMu.Lock()
	defer r.renewMu.Unlock()
	id := r.Identity()
	cert, err := id.Parsed()
	if err != nil {
		return err
	}
	half := cert.IssuedAt.Add(cert.ExpiresAt.Sub(cert.IssuedAt) / 2)
	if r.opts.Now().Before(half) {
		return nil
	}
	c, err := Dial(ctx, r.ds.dialer, r.addr)
	if err != nil {
		return fmt.Errorf("renew certificate: %w", explainDial(err, r.addr, "coordinator"))
	}
	defer c.Close()
	wire, err := c.Renew(ctx, id.Cert)
	if err != nil {
		return err
	}
	nc, err := devicecert.Parse(wire)
	if err != nil {
		return fmt.Errorf("renew certificate: unreadable answer: %w", err)
	}
	if !nc.DevicePub.Equal(id.Public()) || nc.NetworkID != cert.NetworkID || !nc.ExpiresAt.After(cert.ExpiresAt) {
		return errors.New("renew certificate: the coordinator answered with a certificate that does not replace ours")
	}
	nid := &devicecert.Identity{Key: id.Key, Cert: wire}
	if err := nid.Save(r.path); err != nil {
		return fmt.Errorf("renew certificate: %w", err)
	}
	r.mu.Lock()
	r.id = nid
	r.mu.Unlock()
	r.opts.Logger.Info("device certificate renewed", "expires_at", nc.ExpiresAt)
	return nil
}

func (r *Remote) renewLoop(ctx context.Context) {
	defer close(r.done)
	t := time.NewTicker(renewCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			cctx, cancel := context.WithTimeout(ctx, time.Minute)
			if err := r.RenewIfDue(cctx); err != nil {
				r.opts.Logger.Warn("certificate renewal failed", "err", err)
			}
			cancel()
		}
	}
}

// Close stops the renewal loop and the sidecar.
func (r *Remote) Close() {
	r.cancel()
	<-r.done
	r.ds.close()
}
