package coordinator

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentd/agentd/devicecert"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/store/storetest"
)

type fixture struct {
	dir string
	st  *store.Store
	c   *Coordinator
	now time.Time
	// mu guards now.
	mu sync.Mutex
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st := storetest.Open(t, dir)
	if err := Bootstrap(ctx, dir, st, "test-agent"); err != nil {
		t.Fatal(err)
	}
	c, err := Open(ctx, dir, st)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{dir: dir, st: st, c: c, now: time.Now().Truncate(time.Second)}
	c.now = func() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now }
	return f
}

func count(t *testing.T, db *sql.DB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestBootstrap(t *testing.T) {
	f := newFixture(t)
	for _, p := range []string{CoordinatorKeyFile, NodeKeyFile, OwnerIdentityFile} {
		fi, err := os.Stat(filepath.Join(f.dir, p))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %#o, want 0600", p, fi.Mode().Perm())
		}
	}
	if len(f.c.NetworkID()) != 32 {
		t.Errorf("network id %q", f.c.NetworkID())
	}
	owner, err := devicecert.LoadIdentity(filepath.Join(f.dir, OwnerIdentityFile))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := devicecert.Verify(owner.Cert, f.c.CoordinatorPub())
	if err != nil {
		t.Fatal(err)
	}
	if cert.Handle != OwnerHandle || !cert.Has("admin") || cert.NetworkID != f.c.NetworkID() || cert.ExpiresAt.Sub(cert.IssuedAt) != devicecert.TTL {
		t.Fatalf("owner cert %+v", cert)
	}
	if !f.c.Active(owner.ClientID()) {
		t.Fatal("owner not active")
	}
	nk, err := LoadNodeKey(f.dir)
	if err != nil || len(nk) != ed25519.PrivateKeySize {
		t.Fatalf("node key: %v", err)
	}
	seed, _ := os.ReadFile(filepath.Join(f.dir, CoordinatorKeyFile))
	if len(seed) != 32 {
		t.Fatalf("coordinator key file %d bytes", len(seed))
	}

	// A second bootstrap refuses and touches nothing.
	before, _ := os.ReadFile(filepath.Join(f.dir, OwnerIdentityFile))
	if err := Bootstrap(context.Background(), f.dir, f.st, "again"); err == nil {
		t.Fatal("second bootstrap succeeded")
	}
	after, _ := os.ReadFile(filepath.Join(f.dir, OwnerIdentityFile))
	if string(before) != string(after) || count(t, f.st.DB(), `SELECT COUNT(*) FROM network_devices`) != 1 {
		t.Fatal("second bootstrap changed state")
	}

	// Keys present but database fresh (a half-initialised dir): refused.
	st2, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	if err := Bootstrap(context.Background(), f.dir, st2, "x"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("bootstrap over existing keys: %v", err)
	}
	if _, err := Open(context.Background(), f.dir, st2); !errors.Is(err, ErrNotInitialised) {
		t.Fatalf("open uninitialised: %v", err)
	}
	// A key file others can read is refused.
	os.Chmod(filepath.Join(f.dir, CoordinatorKeyFile), 0o644)
	if _, err := Open(context.Background(), f.dir, f.st); err == nil {
		t.Fatal("opened with a world-readable coordinator key")
	}
}

func TestIssueRenewRevoke(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	dev, _ := devicecert.NewIdentity()
	var revoked []string
	f.c.OnRevoke(func(id string) { revoked = append(revoked, id) })

	wire, err := f.c.Issue(ctx, dev.Public(), "alice", "laptop", []string{"chat"})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := devicecert.Verify(wire, f.c.CoordinatorPub())
	if err != nil || cert.Handle != "alice" || cert.ClientID() != dev.ClientID() {
		t.Fatalf("issued %+v, %v", cert, err)
	}
	if !f.c.Active(dev.ClientID()) {
		t.Fatal("issued device not active")
	}

	// Renewal before half-life is refused; after it, a fresh cert.
	f.advance(devicecert.TTL/2 - time.Hour)
	if _, err := f.c.Renew(ctx, wire); !errors.Is(err, ErrNotDue) {
		t.Fatalf("early renew: %v", err)
	}
	f.advance(time.Hour)
	wire2, err := f.c.Renew(ctx, wire)
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := devicecert.Verify(wire2, f.c.CoordinatorPub())
	if !c2.ExpiresAt.After(cert.ExpiresAt) || c2.Handle != "alice" || strings.Join(c2.Capabilities, ",") != "chat" {
		t.Fatalf("renewed cert %+v", c2)
	}
	// An expired cert cannot be renewed.
	f.advance(devicecert.TTL)
	if _, err := f.c.Renew(ctx, wire); err == nil {
		t.Fatal("renewed an expired cert")
	}
	// A cert of another coordinator cannot be renewed.
	_, other, _ := ed25519.GenerateKey(nil)
	foreign, _ := devicecert.Sign(other, *c2)
	if _, err := f.c.Renew(ctx, foreign); err == nil {
		t.Fatal("renewed a foreign cert")
	}

	ds, err := f.c.Revoke(ctx, dev.ClientID()[:10])
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 || ds[0].ClientID != dev.ClientID() || ds[0].Status != "revoked" {
		t.Fatalf("revoked %+v", ds)
	}
	if f.c.Active(dev.ClientID()) || len(revoked) != 1 || revoked[0] != dev.ClientID() {
		t.Fatalf("after revoke: active=%v hooks=%v", f.c.Active(dev.ClientID()), revoked)
	}
	if _, err := f.c.Renew(ctx, wire2); err == nil {
		t.Fatal("renewed a revoked device")
	}
	if _, err := f.c.Issue(ctx, dev.Public(), "alice", "", []string{"chat"}); !errors.Is(err, ErrRevoked) {
		t.Fatalf("re-issue to revoked key: %v", err)
	}
	// Revocation survives a restart.
	c3, err := Open(ctx, f.dir, f.st)
	if err != nil {
		t.Fatal(err)
	}
	if c3.Active(dev.ClientID()) {
		t.Fatal("revoked device active after reopen")
	}
}

func TestIssueRefuses(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	dev, _ := devicecert.NewIdentity()
	cases := []struct {
		name   string
		pub    ed25519.PublicKey
		handle string
		caps   []string
	}{
		{"short key", dev.Public()[:31], "a", []string{"chat"}},
		{"no handle", dev.Public(), "", []string{"chat"}},
		{"space in handle", dev.Public(), "a b", []string{"chat"}},
		{"no caps", dev.Public(), "a", nil},
		{"unknown cap", dev.Public(), "a", []string{"root"}},
		{"bridge without prefix", dev.Public(), "a", []string{"bridge"}},
		{"prefix without bridge", dev.Public(), "a", []string{"chat", "session_prefix:tg"}},
		{"two prefixes", dev.Public(), "a", []string{"bridge", "session_prefix:tg", "session_prefix:dc"}},
		{"bad prefix", dev.Public(), "a", []string{"bridge", "session_prefix:T G"}},
	}
	for _, tc := range cases {
		if _, err := f.c.Issue(ctx, tc.pub, tc.handle, "", tc.caps); err == nil {
			t.Errorf("%s: issued", tc.name)
		}
	}
	if n := count(t, f.st.DB(), `SELECT COUNT(*) FROM network_devices`); n != 1 || f.c.Active(dev.ClientID()) {
		t.Fatalf("refused issues changed state: %d rows", n)
	}
}

func TestRevokeMatching(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	issue := func(handle string) *devicecert.Identity {
		id, _ := devicecert.NewIdentity()
		if _, err := f.c.Issue(ctx, id.Public(), handle, "", []string{"chat"}); err != nil {
			t.Fatal(err)
		}
		return id
	}
	b1, b2 := issue("bob"), issue("bob")
	issue("bobby")
	if _, err := f.c.Revoke(ctx, "bo"); !errors.Is(err, ErrAmbiguous) {
		t.Fatalf("ambiguous prefix: %v", err)
	}
	if _, err := f.c.Revoke(ctx, "nobody"); !errors.Is(err, ErrNoMatch) {
		t.Fatalf("no match: %v", err)
	}
	if _, err := f.c.Revoke(ctx, "  "); err == nil {
		t.Fatal("empty arg accepted")
	}
	if _, err := f.c.Revoke(ctx, OwnerHandle); !errors.Is(err, ErrOwner) {
		t.Fatalf("revoke owner: %v", err)
	}
	if n := count(t, f.st.DB(), `SELECT COUNT(*) FROM network_devices WHERE status = 'revoked'`); n != 0 {
		t.Fatalf("refused revokes revoked %d devices", n)
	}
	// "bob" prefix also matches "bobby": ambiguous.
	if _, err := f.c.Revoke(ctx, "bob"); !errors.Is(err, ErrAmbiguous) {
		t.Fatalf("bob vs bobby: %v", err)
	}
	ds, err := f.c.Revoke(ctx, "bobby")
	if err != nil || len(ds) != 1 {
		t.Fatalf("revoke bobby: %v %+v", err, ds)
	}
	// Now "bob" is an exact handle of two devices: both go.
	ds, err = f.c.Revoke(ctx, "bob")
	if err != nil || len(ds) != 2 || f.c.Active(b1.ClientID()) || f.c.Active(b2.ClientID()) {
		t.Fatalf("revoke bob: %v %+v", err, ds)
	}
	all, err := f.c.Devices(ctx)
	if err != nil || len(all) != 4 {
		t.Fatalf("devices: %v %d", err, len(all))
	}
	for _, d := range all {
		if d.Handle == OwnerHandle {
			continue
		}
		if d.Status != "revoked" || d.RevokedAt == nil {
			t.Errorf("device %s: %+v", d.Handle, d)
		}
	}
}

func TestInvites(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ticket, err := f.c.CreateInvite(ctx, "chat", 0, 0, "", NodeAddr{Addrs: []string{"192.0.2.7:1234"}})
	if err != nil {
		t.Fatal(err)
	}
	tk, err := devicecert.ParseTicket(ticket)
	if err != nil {
		t.Fatal(err)
	}
	nk, _ := LoadNodeKey(f.dir)
	if tk.NetworkID != f.c.NetworkID() || tk.Role != "chat" || tk.Name != "test-agent" || tk.NodeID != hexPub(nk) ||
		time.Unix(tk.Expires, 0).Sub(f.now) != DefaultInviteTTL || tk.Addrs[0] != "192.0.2.7:1234" {
		t.Fatalf("ticket %+v", tk)
	}
	if n := count(t, f.st.DB(), `SELECT COUNT(*) FROM invitations WHERE code_hash = ? OR code_hash = ?`, tk.Code, hashCode(tk.Code)); n != 1 {
		t.Fatal("code not stored as its hash")
	}
	if n := count(t, f.st.DB(), `SELECT COUNT(*) FROM invitations WHERE code_hash = ?`, tk.Code); n != 0 {
		t.Fatal("plain code stored")
	}
	d1, _ := devicecert.NewIdentity()
	wire, err := f.c.Redeem(ctx, tk.Code, d1.Public(), "phone")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := devicecert.Verify(wire, f.c.CoordinatorPub())
	if err != nil || !cert.Has("chat") || cert.Has("admin") || !strings.HasPrefix(cert.Handle, "device-") {
		t.Fatalf("redeemed cert %+v %v", cert, err)
	}
	// Single use.
	d2, _ := devicecert.NewIdentity()
	if _, err := f.c.Redeem(ctx, tk.Code, d2.Public(), ""); !errors.Is(err, ErrInviteUsed) {
		t.Fatalf("second redeem: %v", err)
	}
	if f.c.Active(d2.ClientID()) {
		t.Fatal("second redeemer enrolled")
	}
	if _, err := f.c.Redeem(ctx, "nope", d2.Public(), ""); !errors.Is(err, ErrInviteUnknown) {
		t.Fatalf("unknown code: %v", err)
	}

	// Expiry; bound handle and admin role; multi-use.
	t2, err := f.c.CreateInvite(ctx, "admin", 2, time.Hour, "carol", NodeAddr{NodeID: "ab"})
	if err != nil {
		t.Fatal(err)
	}
	tk2, _ := devicecert.ParseTicket(t2)
	w2, err := f.c.Redeem(ctx, tk2.Code, d2.Public(), "")
	if err != nil {
		t.Fatal(err)
	}
	if c2, _ := devicecert.Parse(w2); c2.Handle != "carol" || !c2.Has("admin") {
		t.Fatalf("bound invite cert %+v", c2)
	}
	// The same device cannot enroll twice.
	if _, err := f.c.Redeem(ctx, tk2.Code, d2.Public(), ""); err == nil {
		t.Fatal("same device redeemed twice")
	}
	f.advance(time.Hour)
	d3, _ := devicecert.NewIdentity()
	if _, err := f.c.Redeem(ctx, tk2.Code, d3.Public(), ""); !errors.Is(err, ErrInviteExpired) {
		t.Fatalf("expired invite: %v", err)
	}
	if n := count(t, f.st.DB(), `SELECT uses_left FROM invitations WHERE code_hash = ?`, hashCode(tk2.Code)); n != 1 {
		t.Fatalf("uses_left %d after one use and one expired attempt, want 1", n)
	}

	for name, call := range map[string]func() error{
		"bad role":      func() error { _, err := f.c.CreateInvite(ctx, "bridge", 1, 0, "", NodeAddr{}); return err },
		"too long":      func() error { _, err := f.c.CreateInvite(ctx, "chat", 1, 31*24*time.Hour, "", NodeAddr{}); return err },
		"too many":      func() error { _, err := f.c.CreateInvite(ctx, "chat", 1000, 0, "", NodeAddr{}); return err },
		"bridge handle": func() error { _, err := f.c.CreateInvite(ctx, "chat", 1, 0, "__bridge_tg", NodeAddr{}); return err },
	} {
		if call() == nil {
			t.Errorf("%s: invite created", name)
		}
	}
	if n := count(t, f.st.DB(), `SELECT COUNT(*) FROM invitations`); n != 2 {
		t.Fatalf("%d invitations, want 2", n)
	}
}

func hexPub(k ed25519.PrivateKey) string {
	return devicecertClientID(k.Public().(ed25519.PublicKey))
}

func devicecertClientID(p ed25519.PublicKey) string {
	c := devicecert.Cert{DevicePub: p}
	return c.ClientID()
}

func TestIssueBridge(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	id, err := f.c.IssueBridge(ctx, "telegram", "tg")
	if err != nil {
		t.Fatal(err)
	}
	p := BridgeIdentityPath(f.dir, "telegram")
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("identity file: %v", err)
	}
	cert, err := devicecert.Verify(id.Cert, f.c.CoordinatorPub())
	if err != nil || cert.Handle != "__bridge_telegram" || strings.Join(cert.Capabilities, ",") != "bridge,session_prefix:tg" {
		t.Fatalf("bridge cert %+v %v", cert, err)
	}
	// Kept while fresh.
	again, err := f.c.IssueBridge(ctx, "telegram", "tg")
	if err != nil || string(again.Cert) != string(id.Cert) {
		t.Fatalf("fresh identity re-issued: %v", err)
	}
	// Past half-life: same key, new cert.
	f.advance(devicecert.TTL/2 + time.Minute)
	renewed, err := f.c.IssueBridge(ctx, "telegram", "tg")
	if err != nil || renewed.ClientID() != id.ClientID() || string(renewed.Cert) == string(id.Cert) {
		t.Fatalf("near-expiry bridge: %v", err)
	}
	// Prefix changed: new cert for the new prefix.
	moved, err := f.c.IssueBridge(ctx, "telegram", "tg2")
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := moved.Parsed(); !c.Has("session_prefix:tg2") || c.Has("session_prefix:tg") {
		t.Fatalf("prefix change: %+v", c)
	}
	// Revoked: a new key.
	if _, err := f.c.Revoke(ctx, "__bridge_telegram"); err != nil {
		t.Fatal(err)
	}
	fresh, err := f.c.IssueBridge(ctx, "telegram", "tg")
	if err != nil || fresh.ClientID() == id.ClientID() || !f.c.Active(fresh.ClientID()) {
		t.Fatalf("revoked bridge: %v", err)
	}
	loaded, err := devicecert.LoadIdentity(p)
	if err != nil || loaded.ClientID() != fresh.ClientID() {
		t.Fatalf("saved identity: %v", err)
	}
	for _, bad := range [][2]string{{"", "tg"}, {"Tele", "tg"}, {"../x", "tg"}, {"tg", ""}, {"tg", "a:b"}} {
		if _, err := f.c.IssueBridge(ctx, bad[0], bad[1]); err == nil {
			t.Errorf("IssueBridge(%q, %q) succeeded", bad[0], bad[1])
		}
	}
}

func TestSeenBatched(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	dev, _ := devicecert.NewIdentity()
	if _, err := f.c.Issue(ctx, dev.Public(), "dave", "", []string{"chat"}); err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1800000000, 0)
	f.c.MarkSeen(dev.ClientID(), at)
	if n := count(t, f.st.DB(), `SELECT COUNT(*) FROM network_devices WHERE last_seen_at IS NOT NULL`); n != 0 {
		t.Fatal("MarkSeen wrote synchronously")
	}
	ds, _ := f.c.Devices(ctx)
	if ds[1].LastSeenAt == nil || !ds[1].LastSeenAt.Equal(at) {
		t.Fatalf("pending seen not shown: %+v", ds[1])
	}
	// Run flushes on stop.
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- f.c.Run(rctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := count(t, f.st.DB(), `SELECT last_seen_at FROM network_devices WHERE pubkey = ?`, dev.ClientID()); n != 1800000000 {
		t.Fatalf("last_seen_at %d", n)
	}
}

func TestRenewOwner(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	p := filepath.Join(f.dir, OwnerIdentityFile)
	before, _ := os.ReadFile(p)
	if err := f.c.RenewOwner(ctx); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(p); string(after) != string(before) {
		t.Fatal("fresh owner cert rewritten")
	}
	f.advance(devicecert.TTL / 2)
	if err := f.c.RenewOwner(ctx); err != nil {
		t.Fatal(err)
	}
	id, _ := devicecert.LoadIdentity(p)
	c, err := devicecert.Verify(id.Cert, f.c.CoordinatorPub())
	if err != nil || !c.IssuedAt.Equal(f.now) || !c.Has("admin") {
		t.Fatalf("renewed owner cert %+v %v", c, err)
	}
}

// BridgeClient finds the active bridge device of a session prefix, and
// follows a re-key after a revoke.
func TestBridgeClient(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, ok, err := f.c.BridgeClient(ctx, "tg"); ok || err != nil {
		t.Fatalf("no bridge yet: ok %v err %v", ok, err)
	}
	id, err := f.c.IssueBridge(ctx, "telegram", "tg")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.IssueBridge(ctx, "discord", "dc"); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{"tg": true, "dc": true, "t": false, "wa": false} {
		got, ok, err := f.c.BridgeClient(ctx, p)
		if ok != want || err != nil || (p == "tg" && got != id.ClientID()) {
			t.Errorf("BridgeClient(%q) = %q, %v, %v", p, got, ok, err)
		}
	}
	if _, err := f.c.Revoke(ctx, "__bridge_telegram"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := f.c.BridgeClient(ctx, "tg"); ok {
		t.Fatal("revoked bridge still found")
	}
	fresh, err := f.c.IssueBridge(ctx, "telegram", "tg")
	if err != nil {
		t.Fatal(err)
	}
	if got, ok, _ := f.c.BridgeClient(ctx, "tg"); !ok || got != fresh.ClientID() {
		t.Fatalf("after re-key: %q %v, want %q", got, ok, fresh.ClientID())
	}
}
