// Package client is how any Go program talks to an agentd gateway: bridges,
// `agentd chat`, `agentd status`, the loopback proxy. Every stream it opens
// starts with the device-certificate handshake (DESIGN.md §3); after that the
// stream is plain HTTP/1.1, either REST or a WebSocket upgrade on /ws.
package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/agentd/agentd/devicecert"
)

// Handshake says how a stream is authenticated.
type Handshake int

const (
	// HandshakeNonce is the unix/tcp handshake: the server sends a nonce,
	// the client answers with its certificate and a signature over it.
	HandshakeNonce Handshake = iota
	// HandshakeIroh writes the certificate preamble only; iroh's TLS has
	// already proved the key.
	HandshakeIroh
)

func (h Handshake) String() string {
	switch h {
	case HandshakeNonce:
		return "nonce"
	case HandshakeIroh:
		return "iroh"
	}
	return fmt.Sprintf("handshake(%d)", int(h))
}

const (
	// DefaultHandshakeTimeout bounds the dial plus handshake of one stream
	// when the context has no sooner deadline; a gateway that accepts but
	// never sends its nonce must not hang the caller.
	DefaultHandshakeTimeout = 10 * time.Second
	// BaseURL is the URL prefix for REST requests through HTTPClient. The
	// host part is never resolved: every connection goes through the Dialer.
	BaseURL = "http://agentd"
	// idleConnTimeout is how long an idle authenticated stream is kept
	// for reuse by later REST requests.
	idleConnTimeout = 60 * time.Second
)

// ErrNoIdentity is returned when a handshake that needs an identity has none.
var ErrNoIdentity = errors.New("client: no device identity (Dialer.Identity is nil and Anonymous is not set)")

// Dialer opens authenticated streams to a gateway. Set Network+Address for
// unix and tcp, or DialStream for any other transport (iroh).
//
// A Dialer must not be copied after first use.
type Dialer struct {
	// Network is "unix" or "tcp"; ignored when DialStream is set.
	Network string
	// Address is the socket path or host:port.
	Address string
	// DialStream, if set, opens the raw stream instead of Network/Address.
	DialStream func(ctx context.Context) (net.Conn, error)
	// Handshake selects the authentication of each stream.
	Handshake Handshake
	// Identity is the device key and certificate. Without one, streams are
	// anonymous (only /api/health answers), and only if Anonymous is set:
	// a forgotten identity must not silently degrade to anonymous.
	Identity *devicecert.Identity
	// Anonymous allows a nil Identity.
	Anonymous bool
	// HandshakeTimeout bounds dial+handshake; default DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration

	// once guards the lazy creation of transport.
	once      sync.Once
	transport *http.Transport
}

// Unix returns a Dialer for the gateway's unix socket.
func Unix(path string, id *devicecert.Identity) *Dialer {
	return &Dialer{Network: "unix", Address: path, Identity: id}
}

// TCP returns a Dialer for a gateway tcp listener.
func TCP(addr string, id *devicecert.Identity) *Dialer {
	return &Dialer{Network: "tcp", Address: addr, Identity: id}
}

// String describes where the Dialer goes, for logs.
func (d *Dialer) String() string {
	if d.DialStream != nil {
		return "custom stream (" + d.Handshake.String() + ")"
	}
	return d.Network + ":" + d.Address
}

// DialAuth opens one stream and authenticates it. The returned connection
// is ready for HTTP/1.1.
func (d *Dialer) DialAuth(ctx context.Context) (net.Conn, error) {
	timeout := d.HandshakeTimeout
	if timeout <= 0 {
		timeout = DefaultHandshakeTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	if !d.Anonymous {
		if d.Identity == nil {
			return nil, ErrNoIdentity
		}
		if len(d.Identity.Cert) == 0 {
			return nil, fmt.Errorf("client: identity %s has no certificate (not enrolled)", d.Identity.ClientID())
		}
	}
	conn, err := d.dialRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("dial gateway %s: %w", d, err)
	}
	// The handshake functions are plain blocking I/O; the deadline and the
	// watcher make them honour ctx.
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	err = d.handshake(conn)
	if !stop() && err == nil {
		// ctx ended just as the handshake finished: the conn's deadline is
		// already poisoned, so it is unusable.
		err = ctx.Err()
	}
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return nil, fmt.Errorf("gateway handshake %s: %w", d, err)
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}

func (d *Dialer) dialRaw(ctx context.Context) (net.Conn, error) {
	if d.DialStream != nil {
		return d.DialStream(ctx)
	}
	switch d.Network {
	case "unix", "tcp":
	case "":
		return nil, errors.New("no Network set (want unix or tcp) and no DialStream")
	default:
		return nil, fmt.Errorf("unsupported network %q (want unix or tcp, or set DialStream)", d.Network)
	}
	if d.Address == "" {
		return nil, errors.New("no Address set")
	}
	var nd net.Dialer
	return nd.DialContext(ctx, d.Network, d.Address)
}

func (d *Dialer) handshake(conn net.Conn) error {
	switch d.Handshake {
	case HandshakeNonce:
		return devicecert.ClientHandshake(conn, d.Identity)
	case HandshakeIroh:
		return devicecert.IrohPreamble(conn, d.Identity)
	}
	return fmt.Errorf("unknown handshake mode %v", d.Handshake)
}

// Transport returns the http.RoundTripper that dials authenticated streams.
// It is shared by every HTTPClient of this Dialer so streams are reused.
func (d *Dialer) Transport() *http.Transport {
	d.once.Do(func() {
		d.transport = &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				c, err := d.DialAuth(ctx)
				if err != nil {
					return nil, err
				}
				return newGatedConn(c), nil
			},
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     idleConnTimeout,
			// The gateway speaks HTTP/1.1 on each stream; never try h2.
			ForceAttemptHTTP2: false,
		}
	})
	return d.transport
}

// HTTPClient returns an *http.Client whose requests to BaseURL (any host,
// in fact) travel over authenticated streams.
func (d *Dialer) HTTPClient() *http.Client {
	return &http.Client{Transport: d.Transport()}
}

// CloseIdle closes idle REST streams.
func (d *Dialer) CloseIdle() {
	d.Transport().CloseIdleConnections()
}

// gatedConn holds back reads until the first write. A gateway that refuses
// the handshake answers with a 401 at once, before any request; an
// http.Transport that saw those bytes on a connection with no request in
// flight would drop them as an unsolicited response and report a useless
// error. Gated, the 401 is read as the answer to the first request.
type gatedConn struct {
	net.Conn
	wrote     chan struct{}
	wroteOnce sync.Once
	closed    chan struct{}
	closeOnce sync.Once
}

func newGatedConn(c net.Conn) *gatedConn {
	return &gatedConn{Conn: c, wrote: make(chan struct{}), closed: make(chan struct{})}
}

func (c *gatedConn) Read(p []byte) (int, error) {
	select {
	case <-c.wrote:
	case <-c.closed:
		return 0, net.ErrClosed
	}
	return c.Conn.Read(p)
}

func (c *gatedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.wroteOnce.Do(func() { close(c.wrote) })
	return n, err
}

func (c *gatedConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}
