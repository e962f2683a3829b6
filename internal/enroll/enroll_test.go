package enroll

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentd/agentd/devicecert"
	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/coordinator"
	"github.com/agentd/agentd/internal/iroh"
	"github.com/agentd/agentd/internal/store"
)

// env is a real coordinator (SQLite in a temp dir) served on a real iroh
// serve sidecar, plus a dial sidecar holding the device key.
type env struct {
	dir      string
	st       *store.Store
	coord    *coordinator.Coordinator
	coordKey ed25519.PrivateKey
	serve    *iroh.Sidecar
	devKey   ed25519.PrivateKey
	dialer   *iroh.Dialer
}

func (e *env) addr() iroh.NodeAddr {
	i := e.serve.Info()
	return iroh.NodeAddr{NodeID: i.NodeID, Addrs: i.Addrs}
}

func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "enroll")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e := &env{dir: t.TempDir(), devKey: newKey(t)}
	var err error
	e.st, err = store.Open(ctx, filepath.Join(e.dir, store.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if err := coordinator.Bootstrap(ctx, e.dir, e.st, "rpc-agent"); err != nil {
		t.Fatal(err)
	}
	if e.coord, err = coordinator.Open(ctx, e.dir, e.st); err != nil {
		t.Fatal(err)
	}
	seed, err := os.ReadFile(filepath.Join(e.dir, coordinator.CoordinatorKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	e.coordKey = ed25519.NewKeyFromSeed(seed)
	nodeKey, err := coordinator.LoadNodeKey(e.dir)
	if err != nil {
		t.Fatal(err)
	}

	sock := shortTempDir(t)
	ln, err := iroh.Listen(ctx, filepath.Join(sock, "accept.sock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(e.coord, iroh.NodeIDFromKey(nodeKey), nil)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()

	e.serve, err = iroh.New(iroh.Config{
		Mode: iroh.ModeServe, SecretKey: nodeKey, Relay: iroh.RelayDisabled, Preset: iroh.PresetMinimal,
		ALPNs: []string{iroh.ALPNGateway, iroh.ALPNCoordinator}, AcceptSocket: ln.Path(), BindHost: "127.0.0.1",
	})
	if err != nil {
		t.Fatal(err)
	}
	dial, err := iroh.New(iroh.Config{
		Mode: iroh.ModeDial, SecretKey: e.devKey, Relay: iroh.RelayDisabled, Preset: iroh.PresetMinimal,
		DialSocket: filepath.Join(sock, "dial.sock"), BindHost: "127.0.0.1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.serve.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := dial.Start(ctx); err != nil {
		t.Fatal(err)
	}
	e.dialer = dial.Dialer()
	t.Cleanup(func() {
		cancel()
		<-e.serve.Done()
		<-dial.Done()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		e.st.Close()
	})
	return e
}

func (e *env) client(t *testing.T) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := Dial(ctx, e.dialer, e.addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (e *env) invite(t *testing.T, role string, uses int) string {
	t.Helper()
	tk, err := e.coord.CreateInvite(context.Background(), role, uses, time.Hour, "", coordinator.NodeAddr{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := devicecert.ParseTicket(tk)
	if err != nil {
		t.Fatal(err)
	}
	return p.Code
}

func TestRedeem(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	pub := e.devKey.Public().(ed25519.PublicKey)
	otherPub := newKey(t).Public().(ed25519.PublicKey)

	spare := e.invite(t, auth.CapChat, 2)
	expired := e.invite(t, auth.CapChat, 1)
	h := sha256.Sum256([]byte(expired))
	if _, err := e.st.DB().Exec(`UPDATE invitations SET expires_at = ? WHERE code_hash = ?`, time.Now().Add(-time.Minute).Unix(), hex.EncodeToString(h[:])); err != nil {
		t.Fatal(err)
	}
	good := e.invite(t, auth.CapAdmin, 1)

	c := e.client(t)
	// Refusals first: none may consume the invitation or register the device.
	refusals := []struct {
		name  string
		code  string
		pub   ed25519.PublicKey
		label string
		want  error
	}{
		{"unknown code", "nosuchcode", pub, "x", ErrInvalidCode},
		{"expired", expired, pub, "x", ErrExpired},
		{"pubkey is not the stream's node id", good, otherPub, "x", ErrForbidden},
		{"short pubkey", good, pub[:16], "x", ErrBadRequest},
		{"empty code", "", pub, "x", ErrBadRequest},
		{"label too long", good, pub, strings.Repeat("l", MaxLabel+1), ErrBadRequest},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Redeem(ctx, tc.code, tc.pub, tc.label)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	devs, err := e.coord.Devices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 1 { // the owner only
		t.Fatalf("refused redeems registered devices: %+v", devs)
	}

	wire, err := c.Redeem(ctx, good, pub, "laptop")
	if err != nil {
		t.Fatalf("redeem: %v", err)
	}
	cert, err := devicecert.Verify(wire, e.coord.CoordinatorPub())
	if err != nil {
		t.Fatal(err)
	}
	if !cert.DevicePub.Equal(pub) || !cert.Has(auth.CapAdmin) || cert.NetworkID != e.coord.NetworkID() {
		t.Fatalf("cert %+v", cert)
	}
	if !e.coord.Active(cert.ClientID()) {
		t.Fatal("device not active after redeem")
	}

	// An enrolled key cannot redeem again, even with a code that has uses left.
	if _, err := c.Redeem(ctx, spare, pub, "again"); !errors.Is(err, &Error{Code: CodeRefused}) || !strings.Contains(err.Error(), "already enrolled") {
		t.Fatalf("enrolled key with a fresh code: %v", err)
	}
}

func TestRedeemUsedCode(t *testing.T) {
	e := newEnv(t)
	code := e.invite(t, auth.CapChat, 1)
	// Another device spends the code first.
	if _, err := e.coord.Redeem(context.Background(), code, newKey(t).Public().(ed25519.PublicKey), "first"); err != nil {
		t.Fatal(err)
	}
	_, err := e.client(t).Redeem(context.Background(), code, e.devKey.Public().(ed25519.PublicKey), "second")
	if !errors.Is(err, ErrUsed) {
		t.Fatalf("got %v, want used", err)
	}
}

func TestRenewAndInfo(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	pub := e.devKey.Public().(ed25519.PublicKey)
	fresh, err := e.coord.Issue(ctx, pub, "dev", "laptop", []string{auth.CapChat})
	if err != nil {
		t.Fatal(err)
	}
	// A cert past half of its life, signed by the real coordinator key.
	now := time.Now().Truncate(time.Second)
	aged, err := devicecert.Sign(e.coordKey, devicecert.Cert{Handle: "dev", DevicePub: pub, NetworkID: e.coord.NetworkID(),
		IssuedAt: now.Add(-20 * 24 * time.Hour), ExpiresAt: now.Add(10 * 24 * time.Hour), Capabilities: []string{auth.CapChat}})
	if err != nil {
		t.Fatal(err)
	}
	expired, err := devicecert.Sign(e.coordKey, devicecert.Cert{Handle: "dev", DevicePub: pub, NetworkID: e.coord.NetworkID(),
		IssuedAt: now.Add(-40 * 24 * time.Hour), ExpiresAt: now.Add(-10 * 24 * time.Hour), Capabilities: []string{auth.CapChat}})
	if err != nil {
		t.Fatal(err)
	}
	otherPub := newKey(t).Public().(ed25519.PublicKey)
	other, err := e.coord.Issue(ctx, otherPub, "other", "", []string{auth.CapChat})
	if err != nil {
		t.Fatal(err)
	}
	forged, err := devicecert.Sign(newKey(t), devicecert.Cert{Handle: "dev", DevicePub: pub, NetworkID: e.coord.NetworkID(),
		IssuedAt: now.Add(-20 * 24 * time.Hour), ExpiresAt: now.Add(10 * 24 * time.Hour), Capabilities: []string{auth.CapAdmin}})
	if err != nil {
		t.Fatal(err)
	}

	c := e.client(t)
	for _, tc := range []struct {
		name string
		cert []byte
		want error
	}{
		{"not due", fresh, ErrNotDue},
		{"expired", expired, ErrExpired},
		{"another device's cert", other, ErrForbidden},
		{"forged signature", forged, ErrBadRequest},
		{"garbage", []byte("nope"), ErrBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.Renew(ctx, tc.cert); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	renewed, err := c.Renew(ctx, aged)
	if err != nil {
		t.Fatalf("renew: %v", err)
	}
	rc, err := devicecert.Verify(renewed, e.coord.CoordinatorPub())
	if err != nil {
		t.Fatal(err)
	}
	if !rc.DevicePub.Equal(pub) || rc.ExpiresAt.Sub(rc.IssuedAt) != devicecert.TTL || rc.Handle != "dev" {
		t.Fatalf("renewed cert %+v", rc)
	}

	info, err := c.NetworkInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "rpc-agent" || info.NetworkID != e.coord.NetworkID() || info.NodeID != e.serve.NodeID() {
		t.Fatalf("network info %+v", info)
	}

	if _, err := e.coord.Revoke(ctx, hex.EncodeToString(pub)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Renew(ctx, aged); !errors.Is(err, ErrRevoked) {
		t.Fatalf("renew after revoke: %v", err)
	}
}

func TestProtocolErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c := e.client(t)
	if err := c.Call(ctx, "frobnicate", struct{}{}, nil); !errors.Is(err, &Error{Code: CodeUnknown}) {
		t.Fatalf("unknown method: %v", err)
	}
	if err := c.Call(ctx, MethodRedeem, "not a map", nil); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("bad params: %v", err)
	}

	// An oversized frame is answered with bad_request, then the stream ends.
	conn, err := e.dialer.Dial(ctx, e.addr(), iroh.ALPNCoordinator)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], MaxMessage+1)
	if _, err := conn.Write(hdr[:]); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := readFrame(conn)
	if err != nil {
		t.Fatal(err)
	}
	var resp response
	if err := decMode.Unmarshal(b, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Error == nil || resp.Error.Code != CodeBadRequest {
		t.Fatalf("oversized frame: %+v", resp)
	}
	if _, err := readFrame(conn); err == nil {
		t.Fatal("stream still open after an oversized frame")
	}
}

func TestInviteRoute(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, store.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := coordinator.Bootstrap(ctx, dir, st, "route-agent"); err != nil {
		t.Fatal(err)
	}
	coord, err := coordinator.Open(ctx, dir, st)
	if err != nil {
		t.Fatal(err)
	}
	running := func() iroh.Info {
		return iroh.Info{NodeID: strings.Repeat("ab", 32), Addrs: []string{"127.0.0.1:4242"}, Relay: "https://relay.example/"}
	}
	admin := &auth.Identity{ClientID: "x", Capabilities: []string{auth.CapAdmin}}
	chat := &auth.Identity{ClientID: "y", Capabilities: []string{auth.CapChat}}
	for _, tc := range []struct {
		name   string
		id     *auth.Identity
		info   func() iroh.Info
		body   string
		status int
	}{
		{"admin", admin, running, `{"role":"chat","uses":2,"ttl_seconds":3600}`, http.StatusCreated},
		{"empty body means defaults", admin, running, ``, http.StatusCreated},
		{"chat device may not invite", chat, running, `{}`, http.StatusForbidden},
		{"anonymous", nil, running, `{}`, http.StatusUnauthorized},
		{"iroh off", admin, func() iroh.Info { return iroh.Info{} }, `{}`, http.StatusServiceUnavailable},
		{"bad role", admin, running, `{"role":"root"}`, http.StatusBadRequest},
		{"unknown field", admin, running, `{"rolle":"chat"}`, http.StatusBadRequest},
		{"ttl too long", admin, running, `{"ttl_seconds":99999999}`, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := Routes(coord, tc.info)
			if len(rs) != 1 || rs[0].Pattern != "POST /api/invites" {
				t.Fatalf("routes %+v", rs)
			}
			h := rs[0].Guarded()
			req := httptest.NewRequest("POST", "/api/invites", bytes.NewBufferString(tc.body))
			if tc.id != nil {
				req = req.WithContext(auth.WithIdentity(req.Context(), tc.id))
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if tc.status != http.StatusCreated {
				return
			}
			var resp InviteResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
				t.Fatal(err)
			}
			tk, err := devicecert.ParseTicket(resp.Ticket)
			if err != nil {
				t.Fatal(err)
			}
			if tk.NodeID != running().NodeID || len(tk.Addrs) != 1 || tk.Relay != running().Relay || tk.Name != "route-agent" || tk.Role != auth.CapChat {
				t.Fatalf("ticket %+v", tk)
			}
		})
	}
}
