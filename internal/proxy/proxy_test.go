package proxy_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/enroll"
	"github.com/agentd/agentd/internal/enroll/enrolltest"
	"github.com/agentd/agentd/internal/iroh"
	"github.com/agentd/agentd/internal/proxy"
)

func TestCheckLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:8080", true},
		{"127.0.0.1:0", true},
		{"localhost:9000", true},
		{"[::1]:9000", true},
		{"127.1.2.3:80", true},
		{"0.0.0.0:8080", false},
		{":8080", false},
		{"192.168.1.10:8080", false},
		{"[::]:8080", false},
		{"example.com:80", false},
		{"127.0.0.1", false},
		{"127.0.0.1:http-alt-nonsense", false},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			err := proxy.CheckLoopback(tc.addr)
			if (err == nil) != tc.ok {
				t.Fatalf("CheckLoopback(%q) = %v, want ok=%v", tc.addr, err, tc.ok)
			}
		})
	}
}

// setup enrolls a device with a real agent stack and runs a proxy for it.
func setup(t *testing.T) (*enrolltest.Agent, *enroll.Remote, string) {
	t.Helper()
	return setupB(t)
}

func setupB(t testing.TB) (*enrolltest.Agent, *enroll.Remote, string) {
	t.Helper()
	a := enrolltest.Start(t, nil)
	o := enroll.DeviceOptions{Preset: iroh.PresetMinimal, DialTimeout: 3 * time.Second}
	path := filepath.Join(t.TempDir(), "id.json")
	ctx := context.Background()
	if _, _, err := enroll.Enroll(ctx, a.Ticket(t, auth.CapChat, time.Hour), "proxy", path, o); err != nil {
		t.Fatal(err)
	}
	r, err := enroll.OpenRemote(ctx, path, "", o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return a, r, startProxy(t, r)
}

func startProxy(t testing.TB, r *enroll.Remote) string {
	t.Helper()
	p, err := proxy.Listen(proxy.Config{Listen: "127.0.0.1:0", Dial: r.DialAuth})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return p.Addr().String()
}

func get(t *testing.T, url string, hdr map[string]string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestProxyHTTPAndWebSocket(t *testing.T) {
	a, r, addr := setup(t)
	base := "http://" + addr

	code, body := get(t, base+"/whoami", nil)
	var who map[string]any
	if code != 200 || json.Unmarshal(body, &who) != nil || who["client_id"] != r.Identity().ClientID() || who["transport"] != "iroh" {
		t.Fatalf("whoami: %d %s", code, body)
	}

	// A 1 MiB upload comes back intact (request and response streamed).
	payload := make([]byte, 1<<20)
	rand.Read(payload)
	resp, err := http.Post(base+"/echo", "application/octet-stream", bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	echoed, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(echoed, payload) {
		t.Fatalf("echo: got %d bytes, want %d", len(echoed), len(payload))
	}

	// Guards: foreign Host (DNS rebinding) and foreign Origin are refused
	// before anything reaches the agent.
	for _, tc := range []struct {
		name string
		hdr  map[string]string
		want int
	}{
		{"foreign host", map[string]string{"Host": "evil.example:80"}, http.StatusMisdirectedRequest},
		{"foreign origin", map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
		{"same origin", map[string]string{"Origin": base}, http.StatusOK},
		{"other loopback origin", map[string]string{"Origin": "http://127.0.0.2:" + strings.Split(addr, ":")[1]}, http.StatusForbidden},
		{"other port", map[string]string{"Origin": "http://127.0.0.1:1"}, http.StatusForbidden},
		{"https origin", map[string]string{"Origin": "https://" + addr}, http.StatusForbidden},
		{"localhost host", map[string]string{"Host": "localhost:" + strings.Split(addr, ":")[1]}, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, body := get(t, base+"/whoami", tc.hdr); code != tc.want {
				t.Fatalf("status %d, want %d: %s", code, tc.want, body)
			}
		})
	}

	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	for i := 0; i < 3; i++ {
		msg := []byte(strings.Repeat("x", 10*i+1))
		if err := ws.WriteMessage(websocket.TextMessage, msg); err != nil {
			t.Fatal(err)
		}
		_, got, err := ws.ReadMessage()
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("ws echo %d: %q %v", i, got, err)
		}
	}

	// Revoking the device closes its open WebSocket and later requests get
	// the gateway's 401 through the proxy.
	if _, err := a.Coord.Revoke(context.Background(), r.Identity().ClientID()); err != nil {
		t.Fatal(err)
	}
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := ws.ReadMessage(); err == nil {
		t.Fatal("websocket still open after revoke")
	} else if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
		t.Fatal("websocket not closed within 10s of the revoke")
	}
	code, body = get(t, base+"/whoami", nil)
	if code != http.StatusUnauthorized || !strings.Contains(string(body), "revoked") {
		t.Fatalf("after revoke: %d %s", code, body)
	}
}

func TestProxyAgentUnreachable(t *testing.T) {
	_, r, _ := setup(t)
	// Point a second remote at a NodeId nobody serves.
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	dead := hex.EncodeToString(pub)
	o := enroll.DeviceOptions{Preset: iroh.PresetMinimal, DialTimeout: 2 * time.Second}
	r2, err := enroll.OpenRemote(context.Background(), r.Path(), dead, o)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	addr := startProxy(t, r2)
	code, body := get(t, "http://"+addr+"/whoami", nil)
	if code != http.StatusBadGateway || !strings.Contains(string(body), "agent_unreachable") {
		t.Fatalf("dead agent: %d %s", code, body)
	}
}
