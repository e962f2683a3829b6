package client_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentd/agentd/client"
	"github.com/agentd/agentd/client/clienttest"
	"github.com/agentd/agentd/internal/proxy"
	"github.com/agentd/agentd/wire"
)

func TestREST(t *testing.T) {
	g := clienttest.New(t)
	chat := g.Identity("alice", "chat")
	other := clienttest.New(t).Identity("mallory", "chat") // signed by another coordinator
	expired := g.IdentityValid("old", time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour), "chat")

	tests := []struct {
		name       string
		dialer     *client.Dialer
		path       string
		wantStatus int // 0: success
		wantCode   string
	}{
		{"health anonymous", &client.Dialer{Network: "unix", Address: g.SocketPath(), Anonymous: true}, "/api/health", 0, ""},
		{"agent-info authenticated", g.Dialer(chat), "/api/agent-info", 0, ""},
		{"agent-info anonymous", &client.Dialer{Network: "unix", Address: g.SocketPath(), Anonymous: true}, "/api/agent-info", 401, "unauthorized"},
		{"foreign coordinator", g.Dialer(other), "/api/agent-info", 401, "unauthorized"},
		{"expired cert", g.Dialer(expired), "/api/health", 401, "unauthorized"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var out map[string]any
			err := tc.dialer.GetJSON(ctx, tc.path, &out)
			if tc.wantStatus == 0 {
				if err != nil {
					t.Fatalf("GetJSON: %v", err)
				}
				if tc.path == "/api/agent-info" && out["client_id"] != chat.ClientID() {
					t.Fatalf("client_id = %v, want %s", out["client_id"], chat.ClientID())
				}
				return
			}
			var ae *client.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v, want *APIError", err)
			}
			if ae.Status != tc.wantStatus || ae.Code != tc.wantCode || ae.Message == "" {
				t.Fatalf("APIError = %+v, want status %d code %q and a message", ae, tc.wantStatus, tc.wantCode)
			}
			if !client.IsStatus(err, tc.wantStatus) {
				t.Fatal("IsStatus false")
			}
		})
	}
}

func TestPostJSON(t *testing.T) {
	g := clienttest.New(t)
	d := g.Dialer(g.Identity("alice", "chat"))
	ctx := context.Background()
	var out struct {
		Echo map[string]string `json:"echo"`
	}
	if err := d.PostJSON(ctx, "/api/echo", map[string]string{"a": "b"}, &out); err != nil {
		t.Fatal(err)
	}
	if out.Echo["a"] != "b" {
		t.Fatalf("echo = %v", out.Echo)
	}
	// Several requests reuse or redial streams transparently.
	for i := 0; i < 5; i++ {
		if err := d.GetJSON(ctx, "/api/agent-info", nil); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	// A server error message reaches the caller.
	req, _ := http.NewRequestWithContext(ctx, "POST", client.BaseURL+"/api/echo", strings.NewReader("{nope"))
	resp, err := d.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	ae := client.ReadAPIError(resp)
	resp.Body.Close()
	if ae.Status != 400 || ae.Code != "bad_request" || !strings.Contains(ae.Message, "invalid JSON") {
		t.Fatalf("APIError = %+v", ae)
	}
	if err := d.GetJSON(ctx, "api/health", nil); err == nil || !strings.Contains(err.Error(), "must start with /") {
		t.Fatalf("relative path: err = %v", err)
	}
}

func TestDialErrors(t *testing.T) {
	dir, err := os.MkdirTemp("", "cl")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	// A listener that accepts but never sends its nonce.
	silent := filepath.Join(dir, "silent.sock")
	ln, err := net.Listen("unix", silent)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	g := clienttest.New(t)
	id := g.Identity("a", "chat")
	unenrolled := *id
	unenrolled.Cert = nil

	tests := []struct {
		name    string
		d       *client.Dialer
		wantErr string
	}{
		{"no identity", &client.Dialer{Network: "unix", Address: g.SocketPath()}, "no device identity"},
		{"no cert", g.Dialer(&unenrolled), "no certificate"},
		{"bad network", &client.Dialer{Network: "udp", Address: "x", Identity: id}, `unsupported network "udp"`},
		{"no network", &client.Dialer{Identity: id}, "no Network set"},
		{"missing socket", client.Unix(filepath.Join(dir, "none.sock"), id), "no such file"},
		{"silent server", &client.Dialer{Network: "unix", Address: silent, Identity: id, HandshakeTimeout: 200 * time.Millisecond}, "timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			c, err := tc.d.DialAuth(context.Background())
			if err == nil {
				c.Close()
				t.Fatal("DialAuth succeeded")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if time.Since(start) > 3*time.Second {
				t.Fatalf("took %v", time.Since(start))
			}
		})
	}
	t.Run("context cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		_, err := client.Unix(silent, id).DialAuth(ctx)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
}

func TestCustomDialStream(t *testing.T) {
	g := clienttest.New(t)
	calls := 0
	d := &client.Dialer{
		DialStream: func(ctx context.Context) (net.Conn, error) {
			calls++
			var nd net.Dialer
			return nd.DialContext(ctx, "unix", g.SocketPath())
		},
		Identity: g.Identity("a", "chat"),
	}
	if err := d.GetJSON(context.Background(), "/api/agent-info", nil); err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Fatalf("DialStream called %d times", calls)
	}
}

func recvUntil(t *testing.T, c *client.Conn, typ string) []wire.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got []wire.Message
	for {
		m, err := c.Recv(ctx)
		if err != nil {
			t.Fatalf("Recv waiting for %s: %v (got %v)", typ, err, got)
		}
		got = append(got, m)
		if m.Type() == typ {
			return got
		}
	}
}

func TestWebSocketTurn(t *testing.T) {
	g := clienttest.New(t)
	ctx := context.Background()
	c, err := g.Dialer(g.Identity("alice", "chat")).DialWS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.AgentName() != clienttest.AgentName || c.Version() != clienttest.Version {
		t.Fatalf("auth_ok: %q %q", c.AgentName(), c.Version())
	}
	if err := c.Send(wire.TextFinal{Text: "hello", SessionID: "s1"}); err != nil {
		t.Fatal(err)
	}
	got := recvUntil(t, c, "turn_complete")
	var deltas strings.Builder
	var resp *wire.Response
	for _, m := range got {
		switch m := m.(type) {
		case wire.Delta:
			deltas.WriteString(m.Text)
		case wire.Response:
			resp = &m
		}
	}
	if deltas.String() != "echo: hello" || resp == nil || resp.Text != "echo: hello" || resp.SessionID != "s1" {
		t.Fatalf("frames = %#v", got)
	}
	if err := c.Send(wire.Ping{}); err != nil {
		t.Fatal(err)
	}
	if m := recvUntil(t, c, "pong"); len(m) != 1 {
		t.Fatalf("before pong: %v", m)
	}
}

func TestWebSocketQueuedAndClose(t *testing.T) {
	g := clienttest.New(t)
	release := make(chan struct{})
	g.SetAgent(func(ctx context.Context, tr clienttest.Turn) clienttest.Reply {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return clienttest.Reply{Deltas: []string{"done " + tr.Text}}
	})
	ctx := context.Background()
	c, err := g.Dialer(g.Identity("alice", "chat")).DialWS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Send(wire.TextFinal{Text: "one", SessionID: "s"})
	c.Send(wire.TextFinal{Text: "two", SessionID: "s"})
	got := recvUntil(t, c, "queued")
	if q := got[len(got)-1].(wire.Queued); q.Position != 1 {
		t.Fatalf("queued = %+v", q)
	}
	close(release)
	recvUntil(t, c, "turn_complete")
	recvUntil(t, c, "turn_complete")

	// Recv honours its context.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := c.Recv(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Recv = %v, want deadline", err)
	}
	c.Close()
	if _, err := c.Recv(ctx); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Recv after Close = %v", err)
	}
	if err := c.Send(wire.Ping{}); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Send after Close = %v", err)
	}
}

func TestWebSocketServerGone(t *testing.T) {
	g := clienttest.New(t)
	c, err := g.Dialer(g.Identity("alice", "chat")).DialWS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	g.Stop()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after the server went away")
	}
	if _, err := c.Recv(context.Background()); err == nil || errors.Is(err, client.ErrClosed) {
		t.Fatalf("Recv = %v, want a connection error", err)
	}
}

func TestWebSocketRefused(t *testing.T) {
	g := clienttest.New(t)
	id := g.Identity("alice", "chat")
	g.Revoke(id.ClientID())
	_, err := g.Dialer(id).DialWS(context.Background())
	if !client.IsStatus(err, 401) {
		t.Fatalf("err = %v, want a 401 APIError", err)
	}
	noCaps := g.Identity("bob")
	_, err = g.Dialer(noCaps).DialWS(context.Background())
	if !client.IsStatus(err, 403) {
		t.Fatalf("err = %v, want a 403 APIError", err)
	}
}

// Loopback talks to an `agentd proxy`: the real proxy package in front of
// the test gateway, presenting the device's certificate for the client.
func TestLoopbackThroughProxy(t *testing.T) {
	g := clienttest.New(t)
	d := g.Dialer(g.Identity("alice", "chat"))
	p, err := proxy.Listen(proxy.Config{Listen: "127.0.0.1:0", Dial: d.DialAuth})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- p.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-served })
	l := &client.Loopback{BaseURL: "http://" + p.Addr().String() + "/"}

	var info map[string]any
	if err := l.GetJSON(ctx, "/api/agent-info", &info); err != nil {
		t.Fatal(err)
	}
	if info["client_id"] != d.Identity.ClientID() {
		t.Fatalf("client_id = %v, want the proxy's device %s", info["client_id"], d.Identity.ClientID())
	}
	var out struct {
		Echo map[string]string `json:"echo"`
	}
	if err := l.PostJSON(ctx, "/api/echo", map[string]string{"a": "b"}, &out); err != nil || out.Echo["a"] != "b" {
		t.Fatalf("echo = %v, %v", out.Echo, err)
	}
	err = l.DoJSON(ctx, "GET", "/api/nowhere", nil, nil)
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 404 {
		t.Fatalf("unknown route: %v, want an *APIError 404", err)
	}
}
