package enroll_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentd/agentd/client"
	"github.com/agentd/agentd/devicecert"
	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/enroll"
	"github.com/agentd/agentd/internal/enroll/enrolltest"
	"github.com/agentd/agentd/internal/identity"
	"github.com/agentd/agentd/internal/iroh"
)

func opts() enroll.DeviceOptions {
	return enroll.DeviceOptions{Preset: iroh.PresetMinimal, DialTimeout: 3 * time.Second}
}

func whoami(t *testing.T, d *client.Dialer) (map[string]any, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out map[string]any
	err := d.GetJSON(ctx, "/whoami", &out)
	return out, err
}

func TestEnrollThenRemote(t *testing.T) {
	a := enrolltest.Start(t, nil)
	cfg := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", cfg)
	ctx := context.Background()

	id, agent, err := enroll.Enroll(ctx, a.Ticket(t, auth.CapChat, time.Hour), "laptop", "", opts())
	if err != nil {
		t.Fatalf("enroll: %v", err)
	}
	path := filepath.Join(cfg, "agentd", "identity.json")
	for p, mode := range map[string]os.FileMode{path: 0o600, identity.AgentPath(path): 0o600, filepath.Dir(path): 0o700 | os.ModeDir} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), mode)
		}
	}
	if agent.NodeID != a.Serve.NodeID() || agent.NetworkID != a.Coord.NetworkID() || agent.Name != "test-agent" || len(agent.Addrs) == 0 {
		t.Fatalf("agent record %+v", agent)
	}
	devs, _ := a.Coord.Devices(ctx)
	if len(devs) != 2 || devs[1].Label != "laptop" || devs[1].ClientID != id.ClientID() {
		t.Fatalf("devices %+v", devs)
	}

	// A second enroll onto the same identity file is refused.
	if _, _, err := enroll.Enroll(ctx, a.Ticket(t, auth.CapChat, time.Hour), "", "", opts()); err == nil {
		t.Fatal("enroll overwrote an identity")
	}

	r, err := enroll.OpenRemote(ctx, "", "", opts())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := whoami(t, r.ClientDialer())
	if err != nil {
		t.Fatal(err)
	}
	if got["client_id"] != id.ClientID() || got["transport"] != "iroh" {
		t.Fatalf("whoami %v", got)
	}

	// Targets: the NodeId and a ticket of the same network work too.
	for _, target := range []string{a.Serve.NodeID(), a.Ticket(t, auth.CapChat, time.Hour)} {
		r2, err := enroll.OpenRemote(ctx, "", target, opts())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := whoami(t, r2.ClientDialer()); err != nil {
			t.Errorf("target %.20s: %v", target, err)
		}
		r2.Close()
	}

	// Revoked: the gateway answers 401, which the client surfaces.
	if _, err := a.Coord.Revoke(ctx, id.ClientID()); err != nil {
		t.Fatal(err)
	}
	_, err = whoami(t, r.ClientDialer())
	if !client.IsStatus(err, http.StatusUnauthorized) {
		t.Fatalf("revoked device: %v", err)
	}
}

func TestEnrollRefusals(t *testing.T) {
	a := enrolltest.Start(t, nil)
	ctx := context.Background()
	dir := t.TempDir()
	n := 0
	path := func() string { n++; return filepath.Join(dir, "id"+string(rune('a'+n))+".json") }

	used := a.Ticket(t, auth.CapChat, time.Hour)
	if _, _, err := enroll.Enroll(ctx, used, "", path(), opts()); err != nil {
		t.Fatal(err)
	}
	good, err := devicecert.ParseTicket(a.Ticket(t, auth.CapChat, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	reencode := func(f func(*devicecert.Ticket)) string {
		tk := *good
		f(&tk)
		s, err := devicecert.EncodeTicket(tk)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	_, deadKey, _ := ed25519.GenerateKey(rand.Reader)
	later := opts()
	later.Now = func() time.Time { return time.Now().Add(2 * time.Hour) }

	for _, tc := range []struct {
		name   string
		ticket string
		o      enroll.DeviceOptions
		want   error
	}{
		{"used", used, opts(), enroll.ErrUsed},
		{"expired (checked locally)", a.Ticket(t, auth.CapChat, time.Hour), later, enroll.ErrTicketExpired},
		{"wrong network", reencode(func(tk *devicecert.Ticket) { tk.NetworkID = "00112233445566778899aabbccddeeff" }), opts(), enroll.ErrWrongNetwork},
		{"unknown code", reencode(func(tk *devicecert.Ticket) { tk.Code = "nosuchcode" }), opts(), enroll.ErrInvalidCode},
		{"agent unreachable", reencode(func(tk *devicecert.Ticket) {
			tk.NodeID = hex.EncodeToString(deadKey.Public().(ed25519.PublicKey))
			tk.Addrs = []string{"127.0.0.1:9"}
		}), opts(), enroll.ErrUnreachable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := path()
			start := time.Now()
			_, _, err := enroll.Enroll(ctx, tc.ticket, "", p, tc.o)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v", d)
			}
			if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a refused enroll left %s behind", p)
			}
			t.Logf("%v", err)
		})
	}
	if _, _, err := enroll.Enroll(ctx, "oa1nonsense", "", path(), opts()); err == nil {
		t.Fatal("garbage ticket accepted")
	}
}

func TestRemoteRenewsAtHalfLife(t *testing.T) {
	a := enrolltest.Start(t, nil)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "me.json")
	id, _, err := enroll.Enroll(ctx, a.Ticket(t, auth.CapChat, time.Hour), "", path, opts())
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := id.Parsed()
	id.Cert = a.AgedCert(t, id.Public(), cert.Handle, cert.Capabilities)
	if err := id.Save(path); err != nil {
		t.Fatal(err)
	}
	r, err := enroll.OpenRemote(ctx, path, "", opts())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	saved, _, err := identity.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := saved.Parsed()
	if err != nil {
		t.Fatal(err)
	}
	if time.Until(nc.ExpiresAt) < devicecert.TTL-time.Minute {
		t.Fatalf("not renewed: expires %v", nc.ExpiresAt)
	}
	if got, err := whoami(t, r.ClientDialer()); err != nil || got["client_id"] != id.ClientID() {
		t.Fatalf("after renewal: %v %v", got, err)
	}

	// An expired certificate is refused locally with a clear error.
	id.Cert, _ = devicecert.Sign(a.CoordKey, devicecert.Cert{Handle: cert.Handle, DevicePub: id.Public(), NetworkID: a.Coord.NetworkID(),
		IssuedAt: time.Now().Add(-40 * 24 * time.Hour).Truncate(time.Second), ExpiresAt: time.Now().Add(-time.Hour).Truncate(time.Second),
		Capabilities: cert.Capabilities})
	if err := id.Save(path); err != nil {
		t.Fatal(err)
	}
	if _, err := enroll.OpenRemote(ctx, path, "", opts()); !errors.Is(err, enroll.ErrCertExpired) {
		t.Fatalf("expired cert: %v", err)
	}
	// Not enrolled at all.
	if _, err := enroll.OpenRemote(ctx, filepath.Join(t.TempDir(), "none.json"), "", opts()); !errors.Is(err, identity.ErrNotEnrolled) {
		t.Fatalf("no identity: %v", err)
	}
}

// TestRemoteNotAnAgent dials a live iroh node that serves some other
// protocol, not agentd's ALPNs: the error says so instead of timing out.
func TestRemoteNotAnAgent(t *testing.T) {
	a := enrolltest.Start(t, nil)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "me.json")
	if _, _, err := enroll.Enroll(ctx, a.Ticket(t, auth.CapChat, time.Hour), "", path, opts()); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "notagent")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	sctx, cancel := context.WithCancel(ctx)
	ln, err := iroh.Listen(sctx, filepath.Join(dir, "a.sock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := iroh.New(iroh.Config{Mode: iroh.ModeServe, SecretKey: key, Relay: iroh.RelayDisabled, Preset: iroh.PresetMinimal,
		ALPNs: []string{"example/other/1"}, AcceptSocket: ln.Path(), BindHost: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); <-sc.Done() }()
	if err := sc.Start(sctx); err != nil {
		t.Fatal(err)
	}
	good, _ := devicecert.ParseTicket(a.Ticket(t, auth.CapChat, time.Hour))
	good.NodeID, good.Addrs = sc.NodeID(), sc.Info().Addrs
	other, err := devicecert.EncodeTicket(*good)
	if err != nil {
		t.Fatal(err)
	}
	r, err := enroll.OpenRemote(ctx, path, other, opts())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	start := time.Now()
	_, err = r.DialAuth(ctx)
	if !errors.Is(err, iroh.ErrALPNRefused) || !strings.Contains(err.Error(), "does not serve the agentd gateway") {
		t.Fatalf("dialing a node that is no agent: %v", err)
	}
	t.Logf("%v after %v", err, time.Since(start))
}
