package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/gorilla/websocket"

	gwclient "github.com/agentd/agentd/client"
	"github.com/agentd/agentd/devicecert"
	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/coordinator"
)

// authUnixServer serves the gateway of a fresh agent the way agentd serve
// does on its unix socket: the network's real coordinator, one registered
// device per bench client (AGENTD_BENCH_CLIENTS) with its own chat
// certificate, and the nonce handshake on every stream. The devices'
// identity files go to a directory of their own. It returns
// "unix:<socket> ids <directory>".
func authUnixServer(t *testing.T) string {
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	if err := coordinator.Bootstrap(ctx, e.dir, e.store, "test-agent"); err != nil {
		t.Fatal(err)
	}
	co, err := coordinator.Open(ctx, e.dir, e.store)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(os.Getenv("AGENTD_BENCH_CLIENTS"))
	if err != nil {
		t.Fatalf("AGENTD_BENCH_CLIENTS: %v", err)
	}
	ids := filepath.Join(e.dir, "bench-devices")
	if err := os.Mkdir(ids, 0o700); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		id, err := devicecert.NewIdentity()
		if err != nil {
			t.Fatal(err)
		}
		if id.Cert, err = co.Issue(ctx, id.Public(), fmt.Sprintf("user%d", i), "bench", []string{auth.CapChat}); err != nil {
			t.Fatal(err)
		}
		if err := id.Save(filepath.Join(ids, strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(e.dir, "agentd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := &http.Server{Handler: auth.CloseAnonymous(e.gw), ConnContext: auth.ConnContext}
	go srv.Serve(auth.NewListener(ln, auth.ModeNonce, auth.NewAuthenticator(co), log))
	t.Cleanup(func() { srv.Close() })
	return "unix:" + sock + " ids " + ids
}

// dialDevice connects bench client j to the agentd load server as its own
// device: unix socket, nonce handshake, then the WebSocket upgrade.
func dialDevice(b *testing.B, s *loadServer, j int) *client {
	id, err := devicecert.LoadIdentity(filepath.Join(s.ids, strconv.Itoa(j)))
	if err != nil {
		b.Fatal(err)
	}
	d := gwclient.Unix(s.socket, id)
	dialer := websocket.Dialer{NetDialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialAuth(ctx) }}
	ws, _, err := dialer.Dial("ws://agentd/ws", nil)
	if err != nil {
		b.Fatalf("dial %s as device %d: %v", s.socket, j, err)
	}
	return &client{t: b, ws: ws}
}
