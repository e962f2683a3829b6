package auth

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/agentd/agentd/devicecert"
)

// Registry is what the authenticator needs from the network's coordinator
// (internal/coordinator implements it). Active and MarkSeen run on every
// stream, so they must only touch memory.
type Registry interface {
	NetworkID() string
	CoordinatorPub() ed25519.PublicKey
	// Active reports whether client_id is registered and not revoked.
	Active(clientID string) bool
	// MarkSeen records a successful stream; the registry writes it later.
	MarkSeen(clientID string, at time.Time)
	// OnRevoke registers a hook called with each revoked client_id.
	OnRevoke(func(clientID string))
}

// Reasons a stream is refused. The 401 body carries the message.
var (
	ErrBadCert     = errors.New("certificate refused")
	ErrExpired     = errors.New("certificate expired")
	ErrNotYetValid = errors.New("certificate not yet valid")
	ErrNetwork     = errors.New("certificate is for another network")
	ErrRevoked     = errors.New("device revoked or not registered")
	ErrProof       = errors.New("device did not prove its key")
)

// Authenticator runs the certificate checks of every stream and tracks the
// authenticated connections so a revoke can close them.
type Authenticator struct {
	reg Registry
	// Now is the clock (tests move it); default time.Now.
	Now func() time.Time

	cap connCap // streams open on all listeners

	// mu guards conns.
	mu    sync.Mutex
	conns map[string]map[*Conn]struct{} // by client_id
}

// NewAuthenticator returns an authenticator for reg's network and hooks
// into its revocations.
func NewAuthenticator(reg Registry) *Authenticator {
	a := &Authenticator{reg: reg, Now: time.Now, conns: map[string]map[*Conn]struct{}{}}
	reg.OnRevoke(a.closeClient)
	return a
}

// Check runs the checks of DESIGN.md §3 in order on a presented
// certificate: coordinator signature (with strict parsing), validity in
// time, network id, not revoked. It returns the identity the request will
// carry. It writes nothing; MarkSeen happens when the stream is accepted.
func (a *Authenticator) Check(certWire []byte, transport string) (*Identity, *devicecert.Cert, error) {
	id, cert, err := a.verify(certWire, transport)
	if err != nil {
		return nil, nil, err
	}
	if !a.reg.Active(id.ClientID) {
		return nil, nil, ErrRevoked
	}
	return id, cert, nil
}

// verify is Check without the revocation check, which streams run only
// after the device proved its key: someone holding a mere copy of a cert
// must not learn whether it is revoked.
func (a *Authenticator) verify(certWire []byte, transport string) (*Identity, *devicecert.Cert, error) {
	cert, err := devicecert.Verify(certWire, a.reg.CoordinatorPub())
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrBadCert, err)
	}
	now := a.Now()
	if now.Before(cert.IssuedAt) {
		return nil, nil, fmt.Errorf("%w (from %s)", ErrNotYetValid, cert.IssuedAt.Format(time.RFC3339))
	}
	if !now.Before(cert.ExpiresAt) {
		return nil, nil, fmt.Errorf("%w (at %s)", ErrExpired, cert.ExpiresAt.Format(time.RFC3339))
	}
	if cert.NetworkID != a.reg.NetworkID() {
		return nil, nil, ErrNetwork
	}
	return &Identity{
		ClientID:     cert.ClientID(),
		Handle:       cert.Handle,
		Capabilities: cert.Capabilities,
		Transport:    transport,
		CertWire:     certWire,
	}, cert, nil
}

// track registers c under its client id. It reports false if the device
// was revoked meanwhile (the revoke hook may have run between Check and
// here), in which case the caller must drop the stream.
// Streams counts the authenticated streams open now, by transport (for
// metrics).
func (a *Authenticator) Streams() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]int{}
	for _, set := range a.conns {
		for c := range set {
			out[c.transport]++
		}
	}
	return out
}

func (a *Authenticator) track(c *Conn) bool {
	id := c.id.ClientID
	a.mu.Lock()
	set := a.conns[id]
	if set == nil {
		set = map[*Conn]struct{}{}
		a.conns[id] = set
	}
	set[c] = struct{}{}
	a.mu.Unlock()
	if !a.reg.Active(id) {
		a.untrack(c)
		return false
	}
	return true
}

func (a *Authenticator) untrack(c *Conn) {
	a.mu.Lock()
	defer a.mu.Unlock()
	set := a.conns[c.id.ClientID]
	delete(set, c)
	if len(set) == 0 {
		delete(a.conns, c.id.ClientID)
	}
}

// closeClient closes every open stream of clientID (revoke hook).
func (a *Authenticator) closeClient(clientID string) {
	a.mu.Lock()
	var cs []*Conn
	for c := range a.conns[clientID] {
		cs = append(cs, c)
	}
	a.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

// OpenConns returns how many authenticated streams client_id has open.
func (a *Authenticator) OpenConns(clientID string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.conns[clientID])
}
