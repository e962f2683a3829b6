// Package clienttest is an in-process stand-in for an agentd gateway, for
// tests of clients and bridges. It is not a mock of Go interfaces: it
// listens on a real unix socket, runs the real nonce handshake of
// DESIGN.md §3 (certificates signed by its own coordinator key), serves
// HTTP/1.1 on each authenticated stream and speaks the wire protocol on /ws
// the way the gateway does: auth → auth_ok, one active run per client with
// a FIFO queue (queued{position}), status and delta frames, response,
// turn_complete, commands, interrupts, bridge session-prefix confinement.
package clienttest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/agentd/agentd/internal/handoff"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/agentd/agentd/client"
	"github.com/agentd/agentd/devicecert"
	"github.com/agentd/agentd/wire"
)

// Turn is one user turn the gateway received.
type Turn struct {
	ClientID    string
	SessionID   string
	Text        string
	Attachments []wire.Attachment
}

// Reply is how the fake agent answers a turn: Status frames, then Deltas
// (with DeltaDelay between them), then the response with Text (default: the
// deltas joined) and Attachments, then turn_complete.
type Reply struct {
	Status      []string
	Deltas      []string
	DeltaDelay  time.Duration
	Text        string
	Attachments []wire.Attachment
}

// AgentFunc answers a turn. It may block (e.g. on a channel, to keep a run
// active so later turns queue); ctx ends on interrupt, stop or shutdown.
type AgentFunc func(ctx context.Context, t Turn) Reply

// Echo is the default agent: it streams "echo: <text>" in three pieces.
func Echo(_ context.Context, t Turn) Reply {
	s := "echo: " + t.Text
	a, b := len(s)/3, 2*len(s)/3
	return Reply{Deltas: []string{s[:a], s[a:b], s[b:]}}
}

// Received is one frame a client sent.
type Received struct {
	ClientID string
	Msg      wire.Message
}

// Gateway is the fake gateway.
type Gateway struct {
	t         testing.TB
	path      string
	coordKey  ed25519.PrivateKey
	networkID string

	// mu guards everything below.
	mu       sync.Mutex
	agent    AgentFunc
	ln       net.Listener
	srv      *http.Server
	conns    map[net.Conn]struct{}
	clients  map[string]*runQueue // by client id
	received []Received
	notify   chan struct{} // closed and replaced on every new Received
	revoked  map[string]bool
	serveWG  sync.WaitGroup
	stopped  bool
}

// AgentName and Version are what auth_ok reports.
const (
	AgentName = "test-agent"
	Version   = "0.0.0-test"
)

// New starts a fake gateway on a unix socket in t.TempDir(). It stops with
// the test.
func New(t testing.TB) *Gateway {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "gw") // short: unix socket paths are limited to ~100 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	g := &Gateway{
		t:         t,
		path:      filepath.Join(dir, "agentd.sock"),
		coordKey:  key,
		networkID: "net-test",
		agent:     Echo,
		clients:   map[string]*runQueue{},
		notify:    make(chan struct{}),
		revoked:   map[string]bool{},
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Stop)
	return g
}

// SocketPath is the unix socket the gateway listens on.
func (g *Gateway) SocketPath() string { return g.path }

// SetAgent replaces the fake agent.
func (g *Gateway) SetAgent(f AgentFunc) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.agent = f
}

// Revoke makes the gateway refuse the device from now on.
func (g *Gateway) Revoke(clientID string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.revoked[clientID] = true
}

// Identity issues a device identity with a certificate from this gateway's
// coordinator, valid for a day.
func (g *Gateway) Identity(handle string, caps ...string) *devicecert.Identity {
	g.t.Helper()
	return g.IdentityValid(handle, time.Now().Add(-time.Minute), time.Now().Add(24*time.Hour), caps...)
}

// IdentityValid is Identity with an explicit validity window.
func (g *Gateway) IdentityValid(handle string, from, until time.Time, caps ...string) *devicecert.Identity {
	g.t.Helper()
	id, err := devicecert.NewIdentity()
	if err != nil {
		g.t.Fatal(err)
	}
	id.Cert, err = devicecert.Sign(g.coordKey, devicecert.Cert{
		Handle: handle, DevicePub: id.Public(), NetworkID: g.networkID,
		IssuedAt: from, ExpiresAt: until, Capabilities: caps,
	})
	if err != nil {
		g.t.Fatal(err)
	}
	return id
}

// BridgeIdentity issues a bridge identity confined to session prefix p.
func (g *Gateway) BridgeIdentity(p string) *devicecert.Identity {
	return g.Identity("bridge-"+p, "bridge", "session_prefix:"+p)
}

// Dialer returns a client.Dialer for this gateway with identity id.
func (g *Gateway) Dialer(id *devicecert.Identity) *client.Dialer {
	return client.Unix(g.path, id)
}

// Start listens (again) on the socket path; used after Stop to simulate a
// gateway restart.
func (g *Gateway) Start() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln != nil {
		return errors.New("clienttest: gateway already running")
	}
	os.Remove(g.path)
	ln, err := net.Listen("unix", g.path)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	g.ln = ln
	g.stopped = false
	g.conns = map[net.Conn]struct{}{}
	authed := handoff.New(ln.Addr())
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"status": "ok", "agent_name": AgentName})
	})
	mux.HandleFunc("GET /api/agent-info", g.requireAuth(func(w http.ResponseWriter, r *http.Request, id *peer) {
		writeJSON(w, map[string]any{"name": AgentName, "version": Version, "client_id": id.clientID, "handle": id.handle})
	}))
	mux.HandleFunc("POST /api/echo", g.requireAuth(func(w http.ResponseWriter, r *http.Request, id *peer) {
		var body any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "invalid JSON body: "+err.Error())
			return
		}
		writeJSON(w, map[string]any{"echo": body})
	}))
	mux.HandleFunc("GET /ws", g.requireAuth(g.serveWS))
	g.srv = &http.Server{
		Handler: mux,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, peerKey{}, c.(*authConn).peer)
		},
	}
	srv := g.srv
	g.serveWG.Add(2)
	go func() {
		defer g.serveWG.Done()
		_ = srv.Serve(authed)
	}()
	go func() {
		defer g.serveWG.Done()
		defer authed.Close()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !g.track(c) {
				c.Close()
				return
			}
			go g.handshake(c, authed)
		}
	}()
	return nil
}

// Stop closes the listener and every connection at once, like a crashed
// gateway; runs in flight are cancelled.
func (g *Gateway) Stop() {
	g.mu.Lock()
	if g.ln == nil {
		g.mu.Unlock()
		return
	}
	g.stopped = true
	g.ln.Close()
	g.srv.Close()
	for c := range g.conns {
		c.Close()
	}
	for _, q := range g.clients {
		q.shutdown()
	}
	g.clients = map[string]*runQueue{}
	g.ln = nil
	g.mu.Unlock()
	g.serveWG.Wait()
}

func (g *Gateway) track(c net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return false
	}
	g.conns[c] = struct{}{}
	return true
}

// peer is the identity of an authenticated stream.
type peer struct {
	clientID string
	handle   string
	caps     []string
}

func (p *peer) prefix() string {
	if !slices.Contains(p.caps, "bridge") {
		return ""
	}
	for _, c := range p.caps {
		if s, ok := strings.CutPrefix(c, "session_prefix:"); ok {
			return s
		}
	}
	return ""
}

// maySession mirrors auth.Identity.MaySession.
func (p *peer) maySession(sid string) bool {
	if slices.Contains(p.caps, "bridge") {
		pre := p.prefix()
		return pre != "" && strings.HasPrefix(sid, pre+":")
	}
	return slices.Contains(p.caps, "chat") || slices.Contains(p.caps, "admin")
}

type peerKey struct{}

type authConn struct {
	net.Conn
	peer *peer // nil: anonymous
}

// handshake runs the server side of the unix/tcp handshake. Failure: a 401
// and nothing else, as the real gateway does.
func (g *Gateway) handshake(c net.Conn, authed *handoff.Listener) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	nonce := make([]byte, devicecert.NonceSize)
	if _, err := rand.Read(nonce); err != nil {
		c.Close()
		return
	}
	if _, err := c.Write(nonce); err != nil {
		c.Close()
		return
	}
	certWire, err := devicecert.ReadPreamble(c)
	if err != nil {
		c.Close()
		return
	}
	var p *peer
	if len(certWire) > 0 {
		sig := make([]byte, ed25519.SignatureSize)
		if _, err := io.ReadFull(c, sig); err != nil {
			c.Close()
			return
		}
		p, err = g.verify(certWire, nonce, sig)
		if err != nil {
			body := `{"error":{"code":"unauthorized","message":"` + strings.ReplaceAll(err.Error(), `"`, `'`) + `"}}`
			fmt.Fprintf(c, "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
			lingerClose(c)
			return
		}
	}
	_ = c.SetDeadline(time.Time{})
	authed.Put(&authConn{Conn: c, peer: p})
}

// lingerClose half-closes c and drains what the client still sends (its
// request) before closing. Closing at once with unread input makes the
// kernel reset the connection, and the client would see a broken pipe
// instead of the 401.
func lingerClose(c net.Conn) {
	if hc, ok := c.(interface{ CloseWrite() error }); ok {
		_ = hc.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 1<<20))
	c.Close()
}

func (g *Gateway) verify(certWire, nonce, sig []byte) (*peer, error) {
	cert, err := devicecert.Verify(certWire, g.coordKey.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if now.Before(cert.IssuedAt) || !now.Before(cert.ExpiresAt) {
		return nil, errors.New("device certificate expired or not yet valid")
	}
	if cert.NetworkID != g.networkID {
		return nil, errors.New("device certificate is for another network")
	}
	if !devicecert.VerifyChallenge(cert.DevicePub, nonce, certWire, sig) {
		return nil, errors.New("challenge signature invalid")
	}
	id := hex.EncodeToString(cert.DevicePub)
	g.mu.Lock()
	rev := g.revoked[id]
	g.mu.Unlock()
	if rev {
		return nil, errors.New("device revoked")
	}
	return &peer{clientID: id, handle: cert.Handle, caps: cert.Capabilities}, nil
}

func (g *Gateway) requireAuth(h func(http.ResponseWriter, *http.Request, *peer)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, _ := r.Context().Value(peerKey{}).(*peer)
		if p == nil {
			writeError(w, http.StatusUnauthorized, "unauthorized", "authentication required")
			return
		}
		h(w, r, p)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
