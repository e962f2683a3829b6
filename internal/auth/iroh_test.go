package auth_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentd/agentd/devicecert"
	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/coordinator"
	"github.com/agentd/agentd/internal/iroh"
)

// chanListener hands streams demultiplexed by ALPN to a net.Listener user.
type chanListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	addr net.Addr
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l *chanListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *chanListener) Addr() net.Addr { return l.addr }

// TestRealIroh authenticates gateway streams through real iroh sidecars
// (@number0/iroh): a device enrolled with an invitation gets in; a peer
// whose NodeId differs from the cert's key is refused with a 401.
func TestRealIroh(t *testing.T) {
	if err := iroh.CheckDir(iroh.DefaultDir()); err != nil {
		t.Skipf("iroh sidecar not installed: %v", err)
	}
	e := newEnv(t, auth.ModeNonce) // coordinator + authenticator; the unix side is unused here
	ctx, cancel := context.WithCancel(context.Background())
	dir, err := os.MkdirTemp("", "authiroh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	e.coord.SetLogger(quiet)

	iln, err := iroh.Listen(ctx, filepath.Join(dir, "accept.sock"), quiet)
	if err != nil {
		t.Fatal(err)
	}
	gw := &chanListener{ch: make(chan net.Conn), done: make(chan struct{}), addr: iln.Addr()}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := iln.AcceptConn()
			if err != nil {
				return
			}
			switch c.ALPN() {
			case iroh.ALPNGateway:
				select {
				case gw.ch <- c:
				case <-ctx.Done():
					c.Close()
				}
			default:
				c.Close()
			}
		}
	}()
	ln := auth.NewListener(gw, auth.ModeIroh, e.a, quiet)
	mux := http.NewServeMux()
	mux.Handle("GET /whoami", auth.Require(auth.CapChat, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := auth.FromContext(r.Context())
		io.WriteString(w, id.Transport+" "+id.ClientID)
	})))
	srv := &http.Server{Handler: mux, ConnContext: auth.ConnContext}
	go srv.Serve(ln)

	nodeKey, err := coordinator.LoadNodeKey(e.dir)
	if err != nil {
		t.Fatal(err)
	}
	serve, err := iroh.New(iroh.Config{Mode: iroh.ModeServe, SecretKey: nodeKey, Relay: iroh.RelayDisabled, Preset: iroh.PresetMinimal,
		ALPNs: []string{iroh.ALPNGateway}, AcceptSocket: iln.Path(), BindHost: "127.0.0.1", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	dev, _ := devicecert.NewIdentity()
	other, _ := devicecert.NewIdentity()
	dialer := func(name string, key *devicecert.Identity) *iroh.Sidecar {
		s, err := iroh.New(iroh.Config{Mode: iroh.ModeDial, SecretKey: key.Key, Relay: iroh.RelayDisabled, Preset: iroh.PresetMinimal,
			DialSocket: filepath.Join(dir, name+".sock"), BindHost: "127.0.0.1", Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	devSide, otherSide := dialer("dev", dev), dialer("other", other)
	for _, s := range []*iroh.Sidecar{serve, devSide, otherSide} {
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		srv.Shutdown(sctx)
		scancel()
		ln.Close()
		cancel()
		iln.Close()
		for _, s := range []*iroh.Sidecar{serve, devSide, otherSide} {
			<-s.Done()
		}
		wg.Wait()
	})

	ticket, err := e.coord.CreateInvite(ctx, "chat", 1, time.Hour, "", coordinator.NodeAddr{Addrs: serve.Info().Addrs})
	if err != nil {
		t.Fatal(err)
	}
	tk, err := devicecert.ParseTicket(ticket)
	if err != nil {
		t.Fatal(err)
	}
	if tk.NodeID != serve.NodeID() {
		t.Fatalf("ticket node id %s, sidecar %s", tk.NodeID, serve.NodeID())
	}
	addr := iroh.NodeAddr{NodeID: tk.NodeID, Addrs: tk.Addrs}
	dial := func(s *iroh.Sidecar, alpn string) net.Conn {
		dctx, dcancel := context.WithTimeout(ctx, 15*time.Second)
		defer dcancel()
		c, err := s.Dialer().Dial(dctx, addr, alpn)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(15 * time.Second))
		return c
	}

	// Enrollment itself runs over the coordinator ALPN in internal/enroll;
	// here the code is redeemed in process.
	dev.Cert, err = e.coord.Redeem(ctx, tk.Code, dev.Public(), "phone")
	if err != nil {
		t.Fatal(err)
	}

	c := dial(devSide, iroh.ALPNGateway)
	if err := devicecert.IrohPreamble(c, dev); err != nil {
		t.Fatal(err)
	}
	resp, body := get(t, c, "GET", "/whoami")
	c.Close()
	if resp.StatusCode != 200 || body != "iroh "+dev.ClientID() {
		t.Fatalf("iroh stream: %d %q", resp.StatusCode, body)
	}

	// The other peer presents dev's cert: its NodeId gives it away.
	before := e.dbState(t)
	c = dial(otherSide, iroh.ALPNGateway)
	devicecert.IrohPreamble(c, dev)
	resp, body = get(t, c, "GET", "/whoami")
	c.Close()
	if resp.StatusCode != 401 || !strings.Contains(body, "did not prove") {
		t.Fatalf("stolen cert over iroh: %d %s", resp.StatusCode, body)
	}
	if after := e.dbState(t); after != before {
		t.Fatal("refused iroh stream wrote to the database")
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		t.Fatal("context ended early")
	}
}
