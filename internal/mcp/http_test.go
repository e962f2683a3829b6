package mcp

import (
	"context"
	"testing"
	"time"
)

// TestHTTPServerGoneAndBack: a Streamable HTTP server that goes away is
// noticed (keep-alive ping), its tools leave the registry, and it is
// reconnected once it is back.
func TestHTTPServerGoneAndBack(t *testing.T) {
	url, port, stop := startHTTPEverything(t, 0)
	f := newFixture(t, nil)
	f.pool.Start(context.Background())
	if _, err := f.pool.Create(context.Background(), Input{Name: "remote", URL: url}); err != nil {
		t.Fatal(err)
	}
	f.waitState("remote", StateRunning)
	stop()
	t0 := time.Now()
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if v, _ := f.pool.Get("remote"); v.Status != StateRunning {
			t.Logf("noticed after %v: %s", time.Since(t0), v.LastError)
			break
		}
	}
	if hasTool(f.reg, "remote__echo") {
		t.Fatal("tools of a gone server still registered")
	}
	startHTTPEverything(t, port)
	f.waitState("remote", StateRunning)
	t.Logf("back after %v", time.Since(t0))
	out, err := f.call(context.Background(), "remote__echo", map[string]any{"message": "again"})
	if err != nil || !contains(out, "again") {
		t.Errorf("echo after the server came back: %q, %v", out, err)
	}
}
