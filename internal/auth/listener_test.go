package auth_test

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/gorilla/websocket"

	"github.com/agentd/agentd/devicecert"
	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/coordinator"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/store/storetest"
)

// env is a real agent network: SQLite file, coordinator, authenticator,
// and an http.Server behind the auth listener on a unix socket.
type env struct {
	dir     string
	st      *store.Store
	coord   *coordinator.Coordinator
	a       *auth.Authenticator
	key     ed25519.PrivateKey // the coordinator's, for forging test certs
	owner   *devicecert.Identity
	sock    string // address to dial
	network string
}

func newEnv(t *testing.T, mode auth.Mode) *env { return newEnvNet(t, mode, "unix") }

func newEnvNet(t *testing.T, mode auth.Mode, network string) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st := storetest.Open(t, dir)
	if err := coordinator.Bootstrap(ctx, dir, st, "t"); err != nil {
		t.Fatal(err)
	}
	c, err := coordinator.Open(ctx, dir, st)
	if err != nil {
		t.Fatal(err)
	}
	seed, err := os.ReadFile(filepath.Join(dir, coordinator.CoordinatorKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	owner, err := devicecert.LoadIdentity(filepath.Join(dir, coordinator.OwnerIdentityFile))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{dir: dir, st: st, coord: c, a: auth.NewAuthenticator(c), key: ed25519.NewKeyFromSeed(seed), owner: owner,
		sock: filepath.Join(dir, "agentd.sock")}
	addr := e.sock
	if network == "tcp" {
		addr = "127.0.0.1:0"
	}
	inner, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	e.network, e.sock = network, inner.Addr().String()
	if mode == auth.ModeIroh {
		inner = &fakeIrohListener{inner}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ln := auth.NewListener(inner, mode, e.a, log)
	mux := http.NewServeMux()
	for _, r := range coordinator.Routes(c) {
		mux.Handle(r.Pattern, r.Guarded())
	}
	mux.HandleFunc("GET /api/health", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.Handle("GET /whoami", auth.Require(auth.CapChat, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := auth.FromContext(r.Context())
		json.NewEncoder(w).Encode(id)
	})))
	up := websocket.Upgrader{}
	mux.Handle("GET /ws", auth.Require(auth.CapChat, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		for {
			mt, b, err := ws.ReadMessage()
			if err != nil {
				return
			}
			ws.WriteMessage(mt, b)
		}
	})))
	srv := &http.Server{Handler: mux, ConnContext: auth.ConnContext, ErrorLog: nil}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		ln.Close()
	})
	return e
}

// fakeIrohListener stands in for the iroh sidecar's listener: each stream
// starts with the peer's NodeId line, which the real sidecar gets from
// iroh's TLS. The auth layer sees only the RemoteNodeID interface.
type fakeIrohListener struct{ net.Listener }

type irohConn struct {
	net.Conn
	r    *bufio.Reader
	node string
}

func (c *irohConn) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *irohConn) RemoteNodeID() string       { return c.node }
func (c *irohConn) CloseWrite() error          { return c.Conn.(*net.UnixConn).CloseWrite() }

func (l *fakeIrohListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		c.Close()
		return l.Accept()
	}
	return &irohConn{Conn: c, r: r, node: strings.TrimSpace(line)}, nil
}

// dial opens a unix stream, runs handshake, and returns the conn.
func (e *env) dial(t *testing.T, id *devicecert.Identity) net.Conn {
	t.Helper()
	c, err := net.Dial(e.network, e.sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := devicecert.ClientHandshake(c, id); err != nil {
		t.Fatal(err)
	}
	return c
}

// get sends one request on an authenticated stream and reads the answer.
func get(t *testing.T, c net.Conn, method, path string) (*http.Response, string) {
	t.Helper()
	fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: agentd\r\nContent-Length: 0\r\n\r\n", method, path)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func (e *env) issue(t *testing.T, handle string, caps ...string) *devicecert.Identity {
	t.Helper()
	id, _ := devicecert.NewIdentity()
	w, err := e.coord.Issue(context.Background(), id.Public(), handle, "", caps)
	if err != nil {
		t.Fatal(err)
	}
	id.Cert = w
	return id
}

// dbState is what "nothing written" compares: every device column that a
// stream could touch, after flushing pending last_seen_at.
func (e *env) dbState(t *testing.T) string {
	t.Helper()
	if err := e.coord.FlushSeen(context.Background()); err != nil {
		t.Fatal(err)
	}
	rows, err := e.st.DB().Query(`SELECT pubkey, status, COALESCE(last_seen_at, -1), cert_expires_at FROM network_devices ORDER BY pubkey`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var sb strings.Builder
	for rows.Next() {
		var a, b string
		var c, d int64
		rows.Scan(&a, &b, &c, &d)
		fmt.Fprintf(&sb, "%s %s %d %d\n", a, b, c, d)
	}
	return sb.String()
}

func TestAuthenticatedStream(t *testing.T) {
	e := newEnv(t, auth.ModeNonce)
	c := e.dial(t, e.owner)
	resp, body := get(t, c, "GET", "/whoami")
	if resp.StatusCode != 200 {
		t.Fatalf("whoami %d %s", resp.StatusCode, body)
	}
	var id auth.Identity
	json.Unmarshal([]byte(body), &id)
	if id.ClientID != e.owner.ClientID() || id.Handle != "owner" || id.Transport != "unix" || string(id.CertWire) != string(e.owner.Cert) {
		t.Fatalf("identity %+v", id)
	}
	// Keep-alive: a second request on the same stream.
	resp, body = get(t, c, "GET", "/api/devices")
	if resp.StatusCode != 200 || !strings.Contains(body, e.owner.ClientID()) {
		t.Fatalf("devices %d %s", resp.StatusCode, body)
	}
	// last_seen_at is recorded, but only when the batch is flushed.
	var seen any
	e.st.DB().QueryRow(`SELECT last_seen_at FROM network_devices WHERE pubkey = ?`, e.owner.ClientID()).Scan(&seen)
	if seen != nil {
		t.Fatal("last_seen_at written synchronously")
	}
	e.coord.FlushSeen(context.Background())
	e.st.DB().QueryRow(`SELECT last_seen_at FROM network_devices WHERE pubkey = ?`, e.owner.ClientID()).Scan(&seen)
	if seen == nil {
		t.Fatal("last_seen_at not recorded")
	}
}

// payloadOrdered encodes like a cert payload but keeps struct order, which
// is not the canonical key order.
type payloadOrdered struct {
	V            int      `cbor:"v"`
	Handle       string   `cbor:"handle"`
	DevicePubkey []byte   `cbor:"device_pubkey"`
	NetworkID    string   `cbor:"network_id"`
	IssuedAt     int64    `cbor:"issued_at"`
	ExpiresAt    int64    `cbor:"expires_at"`
	Capabilities []string `cbor:"capabilities"`
}

func signRaw(k ed25519.PrivateKey, p []byte) []byte {
	w := binary.BigEndian.AppendUint32(nil, uint32(len(p)))
	w = append(w, p...)
	return append(w, ed25519.Sign(k, p)...)
}

func TestRefusedStreams(t *testing.T) {
	e := newEnv(t, auth.ModeNonce)
	dev := e.issue(t, "eve", "chat")
	now := time.Now().Truncate(time.Second)
	mk := func(k ed25519.PrivateKey, mod func(*devicecert.Cert)) []byte {
		c := devicecert.Cert{Handle: "eve", DevicePub: dev.Public(), NetworkID: e.coord.NetworkID(),
			IssuedAt: now.Add(-time.Hour), ExpiresAt: now.Add(time.Hour), Capabilities: []string{"chat"}}
		if mod != nil {
			mod(&c)
		}
		w, err := devicecert.Sign(k, c)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	_, otherKey, _ := ed25519.GenerateKey(nil)
	forged := append([]byte(nil), dev.Cert...)
	forged[len(forged)-5] ^= 0x40
	nonCanon, _ := cbor.Marshal(payloadOrdered{1, "eve", dev.Public(), e.coord.NetworkID(), now.Add(-time.Hour).Unix(), now.Add(time.Hour).Unix(), []string{"chat"}})
	revokedDev := e.issue(t, "mallory", "chat")
	if _, err := e.coord.Revoke(context.Background(), revokedDev.ClientID()); err != nil {
		t.Fatal(err)
	}
	// A signature captured from an earlier stream, replayed on a new one.
	var captured []byte
	{
		c, err := net.Dial("unix", e.sock)
		if err != nil {
			t.Fatal(err)
		}
		nonce := make([]byte, 32)
		io.ReadFull(c, nonce)
		captured = devicecert.SignChallenge(dev.Key, nonce, dev.Cert)
		c.Close()
	}

	type client func(nonce []byte) []byte
	preamble := func(cert []byte, key ed25519.PrivateKey) client {
		return func(nonce []byte) []byte {
			b := binary.BigEndian.AppendUint32(nil, uint32(len(cert)))
			b = append(b, cert...)
			return append(b, devicecert.SignChallenge(key, nonce, cert)...)
		}
	}
	raw := func(b []byte) client { return func([]byte) []byte { return b } }
	withSig := func(cert, sig []byte) client {
		return raw(append(append(binary.BigEndian.AppendUint32(nil, uint32(len(cert))), cert...), sig...))
	}
	cases := []struct {
		name string
		send client
		want string
	}{
		{"forged signature", preamble(forged, dev.Key), "signature does not verify"},
		{"other coordinator", preamble(mk(otherKey, nil), dev.Key), "signature does not verify"},
		{"other network", preamble(mk(e.key, func(c *devicecert.Cert) { c.NetworkID = "0123" }), dev.Key), "another network"},
		{"expired", preamble(mk(e.key, func(c *devicecert.Cert) { c.IssuedAt, c.ExpiresAt = now.Add(-48*time.Hour), now.Add(-time.Second) }), dev.Key), "expired"},
		{"not yet valid", preamble(mk(e.key, func(c *devicecert.Cert) { c.IssuedAt, c.ExpiresAt = now.Add(time.Hour), now.Add(48*time.Hour) }), dev.Key), "not yet valid"},
		{"revoked", preamble(revokedDev.Cert, revokedDev.Key), "revoked"},
		{"truncated cert", preamble(dev.Cert[:len(dev.Cert)-1], dev.Key), "malformed"},
		{"trailing garbage", preamble(append(append([]byte(nil), dev.Cert...), 0), dev.Key), "malformed"},
		{"oversize preamble", raw(binary.BigEndian.AppendUint32(nil, devicecert.MaxCertSize+1)), "too large"},
		{"non-canonical cbor", preamble(signRaw(e.key, nonCanon), dev.Key), "not canonical"},
		{"replayed nonce signature", withSig(dev.Cert, captured), "did not prove"},
		{"wrong device key", preamble(dev.Cert, otherKey), "did not prove"},
		{"short signature", raw(append(append(binary.BigEndian.AppendUint32(nil, uint32(len(dev.Cert))), dev.Cert...), 1, 2, 3)), ""},
	}
	before := e.dbState(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("unix", e.sock)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			nonce := make([]byte, devicecert.NonceSize)
			if _, err := io.ReadFull(c, nonce); err != nil {
				t.Fatal(err)
			}
			c.Write(tc.send(nonce))
			if tc.name == "short signature" {
				// The server waits for the rest; half-closing ends it.
				c.(*net.UnixConn).CloseWrite()
			} else {
				fmt.Fprintf(c, "GET /whoami HTTP/1.1\r\nHost: agentd\r\n\r\n")
			}
			all, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(all))), nil)
			if err != nil {
				t.Fatalf("reading 401: %v (%q)", err, all)
			}
			if !strings.HasPrefix(string(all), "HTTP/1.1 401 Unauthorized\r\n") || resp.StatusCode != 401 {
				t.Fatalf("got %q", all)
			}
			var body struct {
				Error struct{ Code, Message string }
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Error.Code != "unauthorized" {
				t.Fatalf("body %q: %v", all, err)
			}
			if !strings.Contains(body.Error.Message, tc.want) {
				t.Fatalf("message %q, want it to mention %q", body.Error.Message, tc.want)
			}
		})
	}
	if after := e.dbState(t); after != before {
		t.Fatalf("refused streams wrote to the database:\nbefore %s\nafter  %s", before, after)
	}
	if n := e.a.OpenConns(dev.ClientID()); n != 0 {
		t.Fatalf("%d tracked conns after refusals", n)
	}
}

func TestCapabilities(t *testing.T) {
	e := newEnv(t, auth.ModeNonce)
	chat := e.issue(t, "frank", "chat")
	c := e.dial(t, chat)
	if resp, body := get(t, c, "GET", "/api/devices"); resp.StatusCode != 403 || !strings.Contains(body, `"forbidden"`) {
		t.Fatalf("chat on admin route: %d %s", resp.StatusCode, body)
	}
	if resp, _ := get(t, c, "GET", "/whoami"); resp.StatusCode != 200 {
		t.Fatalf("chat on chat route: %d", resp.StatusCode)
	}
	if resp, body := get(t, c, "POST", "/api/devices/renew"); resp.StatusCode != 409 || !strings.Contains(body, "not_due") {
		t.Fatalf("early renew: %d %s", resp.StatusCode, body)
	}
	// Anonymous stream: accepted, but every guarded route says 401.
	anon := e.dial(t, nil)
	if resp, _ := get(t, anon, "GET", "/api/health"); resp.StatusCode != 200 {
		t.Fatalf("anonymous health: %d", resp.StatusCode)
	}
	for _, p := range []string{"/whoami", "/api/devices"} {
		if resp, body := get(t, anon, "GET", p); resp.StatusCode != 401 || !strings.Contains(body, `"unauthorized"`) {
			t.Fatalf("anonymous %s: %d %s", p, resp.StatusCode, body)
		}
	}
	if resp, _ := get(t, anon, "POST", "/api/devices/renew"); resp.StatusCode != 401 {
		t.Fatalf("anonymous renew: %d", resp.StatusCode)
	}
	// Admin revokes over REST.
	adm := e.dial(t, e.owner)
	if resp, body := get(t, adm, "POST", "/api/devices/"+chat.ClientID()[:16]+"/revoke"); resp.StatusCode != 200 || !strings.Contains(body, chat.ClientID()) {
		t.Fatalf("revoke: %d %s", resp.StatusCode, body)
	}
	if resp, _ := get(t, adm, "POST", "/api/devices/zzzz/revoke"); resp.StatusCode != 404 {
		t.Fatalf("revoke unknown: %d", resp.StatusCode)
	}
}

func TestRevokeClosesOpenWebSocket(t *testing.T) {
	e := newEnv(t, auth.ModeNonce)
	dev := e.issue(t, "gina", "chat")
	c := e.dial(t, dev)
	c.SetDeadline(time.Time{})
	ws, _, err := websocket.NewClient(c, &url.URL{Scheme: "ws", Host: "agentd", Path: "/ws"}, nil, 1024, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.WriteMessage(websocket.TextMessage, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, b, err := ws.ReadMessage(); err != nil || string(b) != "hi" {
		t.Fatalf("echo %q %v", b, err)
	}
	if n := e.a.OpenConns(dev.ClientID()); n != 1 {
		t.Fatalf("%d open conns tracked", n)
	}
	start := time.Now()
	if _, err := e.coord.Revoke(context.Background(), "gina"); err != nil {
		t.Fatal(err)
	}
	ws.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, _, err = ws.ReadMessage()
	elapsed := time.Since(start)
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("websocket still open after revoke (err %v)", err)
	}
	if elapsed > time.Second {
		t.Fatalf("closed after %v, want < 1s", elapsed)
	}
	t.Logf("revoked websocket closed after %v", elapsed)
	if n := e.a.OpenConns(dev.ClientID()); n != 0 {
		t.Fatalf("%d conns still tracked", n)
	}
	// And it cannot come back.
	r, err := net.Dial("unix", e.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	devicecert.ClientHandshake(r, dev)
	fmt.Fprintf(r, "GET /whoami HTTP/1.1\r\nHost: agentd\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(r), nil)
	if err != nil || resp.StatusCode != 401 {
		t.Fatalf("revoked device reconnect: %v %v", resp, err)
	}
}

func TestSlowClientDoesNotBlockAccept(t *testing.T) {
	e := newEnv(t, auth.ModeNonce)
	var idle []net.Conn
	for range 20 {
		c, err := net.Dial("unix", e.sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c) // never answers the nonce
	}
	start := time.Now()
	c := e.dial(t, e.owner)
	if resp, _ := get(t, c, "GET", "/whoami"); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("authenticated stream took %v behind %d idle ones", d, len(idle))
	}
}

func TestIrohMode(t *testing.T) {
	e := newEnv(t, auth.ModeIroh)
	dev := e.issue(t, "hank", "chat")
	open := func(node string, id *devicecert.Identity) (*http.Response, string) {
		c, err := net.Dial("unix", e.sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "%s\n", node)
		if err := devicecert.IrohPreamble(c, id); err != nil {
			t.Fatal(err)
		}
		return get(t, c, "GET", "/whoami")
	}
	resp, body := open(dev.ClientID(), dev)
	if resp.StatusCode != 200 || !strings.Contains(body, `"Transport":"iroh"`) {
		t.Fatalf("iroh stream: %d %s", resp.StatusCode, body)
	}
	before := e.dbState(t)
	resp, body = open(e.owner.ClientID(), dev) // node id of another device
	if resp.StatusCode != 401 || !strings.Contains(body, "did not prove") {
		t.Fatalf("node id mismatch: %d %s", resp.StatusCode, body)
	}
	if after := e.dbState(t); after != before {
		t.Fatal("refused iroh stream wrote to the database")
	}
	if resp, _ := open(dev.ClientID(), nil); resp.StatusCode != 401 {
		t.Fatalf("anonymous iroh on guarded route: %d", resp.StatusCode)
	}
}

func TestListenerClose(t *testing.T) {
	dir := t.TempDir()
	inner, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, auth.ModeNonce)
	ln := auth.NewListener(inner, auth.ModeNonce, e.a, nil)
	// A handshake in flight when Close runs is aborted, and Accept ends.
	c, err := net.Dial("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.ReadFull(c, make([]byte, 32))
	errc := make(chan error, 1)
	go func() { _, err := ln.Accept(); errc <- err }()
	done := make(chan struct{})
	go func() { ln.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Close hung")
	}
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("in-flight stream still open")
	}
}

// TestTCP: the same handshake over TCP; a refused stream's 401 arrives even
// though the client already sent its request (no reset under it).
func TestTCP(t *testing.T) {
	e := newEnvNet(t, auth.ModeNonce, "tcp")
	c := e.dial(t, e.owner)
	resp, body := get(t, c, "GET", "/whoami")
	if resp.StatusCode != 200 || !strings.Contains(body, `"Transport":"tcp"`) {
		t.Fatalf("tcp stream: %d %s", resp.StatusCode, body)
	}
	_, other, _ := ed25519.GenerateKey(nil)
	bad := &devicecert.Identity{Key: other, Cert: e.owner.Cert} // someone else's cert
	for range 20 {
		r := e.dial(t, bad)
		fmt.Fprintf(r, "GET /whoami HTTP/1.1\r\nHost: agentd\r\n\r\n%s", strings.Repeat("x", 4096))
		resp, err := http.ReadResponse(bufio.NewReader(r), nil)
		if err != nil || resp.StatusCode != 401 {
			t.Fatalf("tcp refusal: %v %v", resp, err)
		}
	}
}

// TestExpiryClosesStream: a stream lives no longer than its certificate.
func TestExpiryClosesStream(t *testing.T) {
	e := newEnv(t, auth.ModeNonce)
	dev := e.issue(t, "ivy", "chat")
	exp := time.Now().Truncate(time.Second).Add(2 * time.Second)
	var err error
	dev.Cert, err = devicecert.Sign(e.key, devicecert.Cert{Handle: "ivy", DevicePub: dev.Public(), NetworkID: e.coord.NetworkID(),
		IssuedAt: exp.Add(-time.Hour), ExpiresAt: exp, Capabilities: []string{"chat"}})
	if err != nil {
		t.Fatal(err)
	}
	c := e.dial(t, dev)
	if resp, _ := get(t, c, "GET", "/whoami"); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	c.SetDeadline(exp.Add(2 * time.Second))
	_, err = c.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("stream outlived its cert: %v", err)
	}
	if late := time.Since(exp); late < 0 || late > 500*time.Millisecond {
		t.Fatalf("closed %v after expiry", late)
	}
}
