// Package enrolltest runs a real agent-side iroh stack for tests of the
// device side (enroll, remote dialing, the loopback proxy): a coordinator on
// SQLite in a temp dir, a serve-mode iroh sidecar on loopback with relays
// and discovery off, the coordinator RPC on ALPN openagent/coordinator/1 and
// an HTTP handler behind auth.NewListener(ModeIroh) on openagent/gateway/1.
package enrolltest

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/agentd/agentd/devicecert"
	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/coordinator"
	"github.com/agentd/agentd/internal/enroll"
	"github.com/agentd/agentd/internal/handoff"
	"github.com/agentd/agentd/internal/iroh"
	"github.com/agentd/agentd/internal/store"
)

// Agent is the running agent side.
type Agent struct {
	Dir      string
	Store    *store.Store
	Coord    *coordinator.Coordinator
	CoordKey ed25519.PrivateKey
	Serve    *iroh.Sidecar
	Auth     *auth.Authenticator
}

// Addr is the agent's iroh address.
func (a *Agent) Addr() iroh.NodeAddr {
	i := a.Serve.Info()
	return iroh.NodeAddr{NodeID: i.NodeID, Addrs: i.Addrs}
}

// Ticket mints an invitation carrying the agent's live address.
func (a *Agent) Ticket(t testing.TB, role string, ttl time.Duration) string {
	t.Helper()
	i := a.Serve.Info()
	tk, err := a.Coord.CreateInvite(context.Background(), role, 1, ttl, "", coordinator.NodeAddr{NodeID: i.NodeID, Addrs: i.Addrs})
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// shortTempDir keeps unix socket paths under the 108-byte limit.
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "enrolltest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// Options of StartWith.
type Options struct {
	// Handler serves authenticated gateway streams (nil: Handler()).
	Handler http.Handler
	// Raw serves streams of extra ALPNs directly (benchmark floors).
	Raw map[string]func(*iroh.Conn)
}

// Start runs the agent side; handler serves authenticated gateway streams
// (nil: Handler()). Everything stops at test cleanup.
func Start(t testing.TB, handler http.Handler) *Agent {
	t.Helper()
	return StartWith(t, Options{Handler: handler})
}

// StartWith is Start with all options.
func StartWith(t testing.TB, o Options) *Agent {
	t.Helper()
	handler := o.Handler
	if handler == nil {
		handler = Handler()
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Agent{Dir: t.TempDir()}
	var err error
	if a.Store, err = store.Open(ctx, filepath.Join(a.Dir, store.FileName)); err != nil {
		t.Fatal(err)
	}
	if err := coordinator.Bootstrap(ctx, a.Dir, a.Store, "test-agent"); err != nil {
		t.Fatal(err)
	}
	if a.Coord, err = coordinator.Open(ctx, a.Dir, a.Store); err != nil {
		t.Fatal(err)
	}
	seed, err := os.ReadFile(filepath.Join(a.Dir, coordinator.CoordinatorKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	a.CoordKey = ed25519.NewKeyFromSeed(seed)
	nodeKey, err := coordinator.LoadNodeKey(a.Dir)
	if err != nil {
		t.Fatal(err)
	}
	a.Auth = auth.NewAuthenticator(a.Coord)

	sock := shortTempDir(t)
	ln, err := iroh.Listen(ctx, filepath.Join(sock, "accept.sock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	rpc := enroll.NewServer(a.Coord, iroh.NodeIDFromKey(nodeKey), nil)
	gw := handoff.New(ln.Addr())
	stopGW := context.AfterFunc(ctx, func() { gw.Close() })
	defer stopGW()
	authLn := auth.NewListener(gw, auth.ModeIroh, a.Auth, nil)
	srv := &http.Server{Handler: handler, ConnContext: auth.ConnContext}

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_ = srv.Serve(authLn)
	}()
	go func() {
		defer wg.Done()
		for {
			c, err := ln.AcceptConn()
			if err != nil {
				return
			}
			switch c.ALPN() {
			case iroh.ALPNCoordinator:
				wg.Add(1)
				go func() {
					defer wg.Done()
					rpc.ServeConn(ctx, c)
				}()
			case iroh.ALPNGateway:
				gw.Put(c)
			default:
				if h, ok := o.Raw[c.ALPN()]; ok {
					wg.Add(1)
					go func() {
						defer wg.Done()
						h(c)
					}()
					continue
				}
				c.Close()
			}
		}
	}()

	alpns := []string{iroh.ALPNGateway, iroh.ALPNCoordinator}
	for alpn := range o.Raw {
		alpns = append(alpns, alpn)
	}
	a.Serve, err = iroh.New(iroh.Config{
		Mode: iroh.ModeServe, SecretKey: nodeKey, Relay: iroh.RelayDisabled, Preset: iroh.PresetMinimal,
		ALPNs: alpns, AcceptSocket: ln.Path(), BindHost: "127.0.0.1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Serve.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		<-a.Serve.Done()
		srv.Close()
		authLn.Close()
		gw.Close()
		wg.Wait()
		a.Store.Close()
	})
	return a
}

// Handler is a small gateway stand-in: GET /whoami answers the identity,
// /ws echoes WebSocket text frames, everything needs a certificate.
func Handler() http.Handler {
	up := websocket.Upgrader{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /whoami", func(w http.ResponseWriter, r *http.Request) {
		id, _ := auth.FromContext(r.Context())
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"client_id": id.ClientID, "handle": id.Handle,
			"capabilities": id.Capabilities, "transport": id.Transport, "host": r.Host})
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		// Without full duplex, net/http's HTTP/1 server may stop reading the
		// request body once the response has started, which would cut a
		// streamed echo short (and make the test flaky), not the proxy.
		if err := http.NewResponseController(w).EnableFullDuplex(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
	mux.HandleFunc("POST /sink", func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]int64{"bytes": n})
	})
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			mt, b, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(mt, b); err != nil {
				return
			}
		}
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := auth.FromContext(r.Context()); !ok {
			auth.WriteError(w, http.StatusUnauthorized, "unauthorized", "authentication required")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// AgedCert signs a certificate for pub that is past half of its life, with
// the real coordinator key, for renewal tests. The device must be registered.
func (a *Agent) AgedCert(t testing.TB, pub ed25519.PublicKey, handle string, caps []string) []byte {
	t.Helper()
	now := time.Now().Truncate(time.Second)
	w, err := devicecert.Sign(a.CoordKey, devicecert.Cert{Handle: handle, DevicePub: pub, NetworkID: a.Coord.NetworkID(),
		IssuedAt: now.Add(-20 * 24 * time.Hour), ExpiresAt: now.Add(10 * 24 * time.Hour), Capabilities: caps})
	if err != nil {
		t.Fatal(err)
	}
	return w
}
