package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDeviceCLI lists and revokes devices through the running daemon: a
// revoked device is refused at once, the owner cannot lock itself out.
func TestDeviceCLI(t *testing.T) {
	a := startIrohAgent(t)
	dev := enrollDevice(t, a.invite(t))
	r := agentd(t, nil, "device", "list", a.dir)
	if r.code != 0 || !strings.Contains(r.stdout, "owner") || !strings.Contains(r.stdout, dev.id.ClientID()[:16]) {
		t.Fatalf("device list: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := agentd(t, nil, "device", "revoke", a.dir, "owner"); r.code == 0 {
		t.Errorf("revoking the owner succeeded:\n%s", r.stdout)
	}
	r = agentd(t, nil, "device", "revoke", a.dir, dev.id.ClientID()[:12])
	if r.code != 0 || !strings.Contains(r.stdout, "revoked "+dev.id.ClientID()) {
		t.Fatalf("device revoke: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = agentd(t, nil, "device", "list", a.dir)
	if !strings.Contains(r.stdout, "revoked") {
		t.Errorf("list after revoke:\n%s", r.stdout)
	}
	if r := agentd(t, nil, "device", "revoke", a.dir, "nobody-by-that-name"); r.code != 1 {
		t.Errorf("revoke unknown: code %d, %s", r.code, r.stderr)
	}
}

// TestIrohMissingNodeKeepsServing: without Node (or the sidecar package)
// agentd says exactly what is missing and keeps the unix listener.
func TestIrohMissingNodeKeepsServing(t *testing.T) {
	dir := newAgent(t, true)
	p := filepath.Join(dir, "openagent.yaml")
	b, _ := os.ReadFile(p)
	s := strings.Replace(string(b), `    node: ""`, `    node: "/nonexistent/node"`, 1)
	os.WriteFile(p, []byte(s), 0o600)
	d := startServe(t, dir)
	r := agentd(t, nil, "status", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "listener iroh  unavailable") {
		t.Errorf("status:\n%s", r.stdout)
	}
	if r := agentd(t, nil, "chat", dir, "-m", "still here"); r.code != 0 || !strings.Contains(r.stdout, "echo: still here") {
		t.Errorf("chat with iroh down: %d %s %s", r.code, r.stdout, r.stderr)
	}
	logs := d.stderr.String()
	if !strings.Contains(logs, "iroh listener unavailable") || !strings.Contains(logs, "/nonexistent/node") {
		t.Errorf("log does not say what is missing:\n%s", logs)
	}
}
