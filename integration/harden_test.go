package integration

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentd/agentd/client"
	"github.com/agentd/agentd/devicecert"
)

// unixStatus dials the unix socket, presents id (its cert, signed with its
// key) and sends one GET; it returns the status and body.
func unixStatus(tb testing.TB, sock string, id *devicecert.Identity, path string) (int, string) {
	tb.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := devicecert.ClientHandshake(c, id); err != nil {
		tb.Fatal(err)
	}
	io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: agentd\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		tb.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestDeviceHardening: invitations cannot bind the owner's handle, a blank
// revoke target is a 400, and a stream that does not prove its key learns
// nothing about revocation: the same 401 whether the cert is active or not.
func TestDeviceHardening(t *testing.T) {
	a := startIrohAgent(t) // invitations need the iroh address
	dir := a.dir
	for _, h := range []string{"owner", "__bridge_telegram"} {
		r := agentd(t, nil, "invite", dir, "--no-qr", "--handle", h)
		if r.code == 0 || !strings.Contains(r.stderr, "reserved") {
			t.Errorf("invite --handle %s: exit %d, stdout %q, stderr %q", h, r.code, r.stdout, r.stderr)
		}
	}
	sock := filepath.Join(dir, "agentd.sock")
	owner := loadOwner(t, dir)
	d := client.Unix(sock, owner)
	defer d.CloseIdle()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, id := range []string{"%20", "%09"} {
		err := d.PostJSON(ctx, "/api/devices/"+id+"/revoke", nil, nil)
		if !client.IsStatus(err, 400) {
			t.Errorf("POST /api/devices/%s/revoke: %v, want 400", id, err)
		}
	}

	// A cert signed by this coordinator for a key that is not registered
	// (revoked and unregistered devices are both inactive).
	seed, err := os.ReadFile(filepath.Join(dir, "keys", "coordinator.key"))
	if err != nil {
		t.Fatal(err)
	}
	ownerCert, err := owner.Parsed()
	if err != nil {
		t.Fatal(err)
	}
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Now().Truncate(time.Second)
	inactive, err := devicecert.Sign(ed25519.NewKeyFromSeed(seed), devicecert.Cert{Handle: "gone", DevicePub: pub,
		NetworkID: ownerCert.NetworkID, IssuedAt: now.Add(-time.Hour), ExpiresAt: now.Add(time.Hour), Capabilities: []string{"chat"}})
	if err != nil {
		t.Fatal(err)
	}
	_, thief, _ := ed25519.GenerateKey(rand.Reader)
	copyOfActive := &devicecert.Identity{Key: thief, Cert: owner.Cert}
	copyOfInactive := &devicecert.Identity{Key: thief, Cert: inactive}
	codeA, bodyA := unixStatus(t, sock, copyOfActive, "/api/agent-info")
	codeI, bodyI := unixStatus(t, sock, copyOfInactive, "/api/agent-info")
	if codeA != 401 || codeI != 401 || bodyA != bodyI {
		t.Errorf("a stolen copy of an active cert and of an inactive one are told apart:\n active:   %d %s\n inactive: %d %s", codeA, bodyA, codeI, bodyI)
	}
	// The holder of the inactive cert's key is refused too.
	if code, body := unixStatus(t, sock, &devicecert.Identity{Key: key, Cert: inactive}, "/api/agent-info"); code != 401 || !strings.Contains(body, "revoked") {
		t.Errorf("inactive cert with its key: %d %s", code, body)
	}
	var msg struct {
		Error struct{ Message string } `json:"error"`
	}
	json.Unmarshal([]byte(bodyA), &msg)
	t.Logf("401 for a stream without proof of key: %q", msg.Error.Message)
}

// TestProxyExactOrigin: the real loopback proxy forwards requests from its
// own origin only; another loopback origin on the same port (a page served
// from 127.0.0.2) is refused before anything reaches the agent.
func TestProxyExactOrigin(t *testing.T) {
	a := startIrohAgent(t)
	dev := enrollDevice(t, a.invite(t))
	base := startProxy(t, dev)
	port := base[strings.LastIndex(base, ":")+1:]
	for _, tc := range []struct {
		origin string
		want   int
	}{
		{base, 200},
		{"http://127.0.0.2:" + port, 403},
		{"http://localhost:" + port, 403},
		{"http://127.0.0.1:1", 403},
	} {
		code, body := curl(t, "-H", "Origin: "+tc.origin, base+"/api/agent-info")
		if code != tc.want {
			t.Errorf("Origin %s: %d, want %d: %s", tc.origin, code, tc.want, body)
		}
	}
}

// modes returns the permission bits of each path that exists.
func modes(tb testing.TB, paths ...string) map[string]os.FileMode {
	tb.Helper()
	out := map[string]os.FileMode{}
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil {
			out[filepath.Base(p)] = fi.Mode().Perm()
		}
	}
	return out
}

// TestPrivateFiles: the agent directory is 0700 from init, the database and
// its -wal and -shm are 0600 while serving, and an agent made with looser
// modes is tightened at start, said once in agentd.log.
func TestPrivateFiles(t *testing.T) {
	dir := newAgent(t, false)
	db := filepath.Join(dir, "openagent.db")
	if m := modes(t, dir)["agent"]; m != 0o700 {
		t.Errorf("agent directory after init: %v, want 0700", m)
	}
	d := startServe(t, dir)
	// A turn writes to the database, so the WAL and shm files exist.
	if r := agentd(t, nil, "chat", dir, "-m", "hello"); r.code != 0 {
		t.Fatalf("chat: %d %s", r.code, r.stderr)
	}
	got := modes(t, db, db+"-wal", db+"-shm")
	if len(got) != 3 {
		t.Fatalf("database files while serving: %v (want the db, -wal and -shm)", got)
	}
	for name, m := range got {
		if m != 0o600 {
			t.Errorf("%s: %v, want 0600", name, m)
		}
	}
	if _, err := d.stop(); err != nil {
		t.Fatal(err)
	}

	// An agent directory as older versions left it.
	loose := map[string]os.FileMode{dir: 0o755, db: 0o644, filepath.Join(dir, "openagent.yaml"): 0o644}
	for p, m := range loose {
		if err := os.Chmod(p, m); err != nil {
			t.Fatal(err)
		}
	}
	startServe(t, dir)
	for p := range loose {
		want := os.FileMode(0o600)
		if p == dir {
			want = 0o700
		}
		if m := modes(t, p)[filepath.Base(p)]; m != want {
			t.Errorf("%s after serve: %v, want %v", filepath.Base(p), m, want)
		}
	}
	logText, _ := os.ReadFile(filepath.Join(dir, "logs", "agentd.log"))
	if n := strings.Count(string(logText), "took group and other permissions away"); n != 1 {
		t.Errorf("agentd.log reports the tightening %d times, want once", n)
	}
}
