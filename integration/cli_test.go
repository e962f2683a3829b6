package integration

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestInitServeStatusStop(t *testing.T) {
	dir := newAgent(t, false)

	for _, sub := range []struct {
		path string
		mode os.FileMode
	}{{"keys", 0o700}, {"memories", 0o755}, {"logs", 0o755}, {"uploads", 0o755}, {"bridges", 0o700}} {
		fi, err := os.Stat(filepath.Join(dir, sub.path))
		if err != nil || fi.Mode().Perm() != sub.mode {
			t.Errorf("%s: %v, mode %v, want %v", sub.path, err, fi.Mode().Perm(), sub.mode)
		}
	}
	keys, _ := os.ReadDir(filepath.Join(dir, "keys"))
	if len(keys) == 0 {
		t.Error("keys/ is empty; want the owner identity and coordinator key")
	}
	for _, k := range keys {
		fi, _ := k.Info()
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("keys/%s mode %v, want 0600", k.Name(), fi.Mode().Perm())
		}
	}
	cfgBefore, _ := os.ReadFile(filepath.Join(dir, "openagent.yaml"))

	// A second init refuses and changes nothing.
	r := agentd(t, nil, "init", dir)
	if r.code != 1 || !strings.Contains(r.stderr, "already an agent directory") {
		t.Errorf("second init: code %d, stderr %q", r.code, r.stderr)
	}
	if cfgAfter, _ := os.ReadFile(filepath.Join(dir, "openagent.yaml")); string(cfgAfter) != string(cfgBefore) {
		t.Error("second init changed openagent.yaml")
	}

	// Not running yet.
	if r := agentd(t, nil, "status", dir); r.code != 1 || !strings.Contains(r.stderr, "not running") {
		t.Errorf("status before serve: code %d, stderr %q", r.code, r.stderr)
	}

	d := startServe(t, dir)
	sock := filepath.Join(dir, "agentd.sock")
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket: %v mode %v, want 0600", err, fi.Mode().Perm())
	}
	r = agentd(t, nil, "status", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "up") || !strings.Contains(r.stdout, "agent") {
		t.Errorf("status: code %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}

	// A second serve on the same directory is refused.
	r = agentd(t, nil, "serve", dir)
	if r.code != 1 || !strings.Contains(r.stderr, "already running") {
		t.Errorf("second serve: code %d, stderr %q", r.code, r.stderr)
	}

	took, err := d.stop()
	if err != nil {
		t.Fatalf("stop: %v", err)
	}
	if took > 2*time.Second {
		t.Errorf("shutdown took %v, want ≤ 2s", took)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left behind after clean stop: %v", err)
	}
	if r := agentd(t, nil, "status", dir); r.code != 1 {
		t.Errorf("status after stop: code %d", r.code)
	}
	logb, _ := os.ReadFile(filepath.Join(dir, "logs", "agentd.log"))
	if !strings.Contains(string(logb), `"msg":`) {
		t.Errorf("logs/agentd.log has no JSON records: %q", logb)
	}
}

func TestServeReplacesStaleSocket(t *testing.T) {
	dir := newAgent(t, false)
	d := startServe(t, dir)
	d.cmd.Process.Kill() // SIGKILL leaves the socket file behind
	<-d.done
	d.done <- nil
	if _, err := os.Stat(filepath.Join(dir, "agentd.sock")); err != nil {
		t.Fatalf("socket not left behind by SIGKILL: %v", err)
	}
	d2 := startServe(t, dir)
	if _, err := d2.stop(); err != nil {
		t.Fatal(err)
	}
}

func TestHelpEverywhere(t *testing.T) {
	r := agentd(t, nil, "help")
	if r.code != 0 || !strings.Contains(r.stdout, "usage: agentd") {
		t.Fatalf("help: %d %q", r.code, r.stdout)
	}
	for _, line := range strings.Split(r.stdout, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasPrefix(line, "  ") || f[0] == "help" || f[0] == "version" {
			continue
		}
		r := agentd(t, nil, f[0], "--help")
		if r.code != 0 || !strings.Contains(r.stderr+r.stdout, "usage: agentd "+f[0]) {
			t.Errorf("%s --help: code %d, output %q", f[0], r.code, r.stderr+r.stdout)
		}
	}
	if r := agentd(t, nil, "version"); r.code != 0 || !strings.HasPrefix(r.stdout, "agentd ") {
		t.Errorf("version: %d %q", r.code, r.stdout)
	}
	if r := agentd(t, nil, "bogus"); r.code != 2 {
		t.Errorf("unknown command: code %d", r.code)
	}
}

// TestServeTCPPortTaken: a listener that cannot start stops the daemon with a
// clear error, after an ordered shutdown of what had started (the unix socket
// is removed again).
func TestServeTCPPortTaken(t *testing.T) {
	dir := newAgent(t, false)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	p := filepath.Join(dir, "openagent.yaml")
	b, _ := os.ReadFile(p)
	s := strings.Replace(string(b), "  tcp:\n    enabled: false\n    address: 127.0.0.1:8765",
		"  tcp:\n    enabled: true\n    address: "+taken.Addr().String(), 1)
	if s == string(b) {
		t.Fatal("tcp section not found in the config template")
	}
	os.WriteFile(p, []byte(s), 0o600)
	r := agentd(t, nil, "serve", dir)
	if r.code != 1 || !strings.Contains(r.stderr, "listen tcp "+taken.Addr().String()) {
		t.Fatalf("serve with the tcp port taken: code %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "agentd.sock")); !os.IsNotExist(err) {
		t.Errorf("unix socket left behind: %v", err)
	}
}
