package integration

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"github.com/agentd/agentd/wire"
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

// dialWS opens a WebSocket as id on the unix socket.
func dialWS(tb testing.TB, sock string, id *devicecert.Identity) *client.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Unix(sock, id).DialWS(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// nextError sends m and returns the text of the error frame it provokes,
// or "" if it provokes none. A help command behind m is the fence: session
// frames of one connection are handled in order (a ping is not: the
// gateway answers it at once).
func nextError(tb testing.TB, c *client.Conn, m wire.Message) string {
	tb.Helper()
	if err := c.Send(m); err != nil {
		tb.Fatal(err)
	}
	if err := c.Send(wire.Command{Name: "help"}); err != nil {
		tb.Fatal(err)
	}
	text := ""
	recvUntil(tb.(*testing.T), c, 10*time.Second, func(f wire.Message) bool {
		if e, ok := f.(wire.Error); ok && text == "" {
			text = e.Text
		}
		_, done := f.(wire.CommandResult)
		return done
	})
	return text
}

// TestBridgePrefixesReserved: session ids under a bridge's prefix — tg:,
// dc:, wa: and the prefix of a bridge that ran — are refused to chat and
// admin devices on the WebSocket (an error frame), while the bridge itself
// uses its own, and the admin reads them over REST.
func TestBridgePrefixesReserved(t *testing.T) {
	zz := testPluginBinary(t, "zz", "")
	a := startIrohAgentEditing(t, func(dir string) { setBridges(t, dir, testPluginYAML("zz", zz, "run")) })
	e := &bridgeEnv{tb: t, dir: a.dir, d: a.d, owner: a.owner}
	e.waitBridge("zz", 20*time.Second, "running and connected", func(b bridgeState) bool {
		return b.State == "running" && b.GatewayConnected
	})
	dev := enrollDevice(t, a.invite(t, "--role", "chat"))
	sock := filepath.Join(a.dir, "agentd.sock")
	for _, who := range []struct {
		name string
		id   *devicecert.Identity
	}{{"chat device", dev.id}, {"owner (admin)", loadOwner(t, a.dir)}} {
		c := dialWS(t, sock, who.id)
		for _, sid := range []string{"tg:424242", "dc:1", "wa:1", "zz:1"} {
			if e := nextError(t, c, wire.SessionOpen{SessionID: sid}); !strings.Contains(e, "reserved") {
				t.Errorf("%s opening %s: error %q, want a reserved-prefix refusal", who.name, sid, e)
			}
			if e := nextError(t, c, wire.TextFinal{SessionID: sid, Text: "mine now"}); !strings.Contains(e, "reserved") {
				t.Errorf("%s writing to %s: error %q", who.name, sid, e)
			}
		}
		// Ids that only look alike stay free.
		free := "tgx:" + strings.Fields(who.name)[0]
		if e := nextError(t, c, wire.SessionOpen{SessionID: free}); e != "" {
			t.Errorf("%s opening %s: %q", who.name, free, e)
		}
	}
	// The bridge's own device opens its prefix (the test plugin's identity).
	bridgeID, err := devicecert.LoadIdentity(filepath.Join(a.dir, "keys", "bridge-zz.identity"))
	if err != nil {
		t.Fatal(err)
	}
	bc := dialWS(t, sock, bridgeID)
	if e := nextError(t, bc, wire.SessionOpen{SessionID: "zz:1"}); e != "" {
		t.Errorf("bridge zz opening zz:1: %q", e)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var sessions struct {
		Sessions []struct{ ID string } `json:"sessions"`
	}
	if err := a.owner.GetJSON(ctx, "/api/sessions", &sessions); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range sessions.Sessions {
		found = found || s.ID == "zz:1"
	}
	if !found {
		t.Errorf("the admin does not see the bridge's session zz:1 over REST: %+v", sessions)
	}
}

// TestInboundAttachmentRoots: a turn may attach files from uploads/ and
// memories/ only — never keys/, the database, the config, or a symlink out
// of uploads/ into keys/.
func TestInboundAttachmentRoots(t *testing.T) {
	dir := newAgent(t, false)
	startServe(t, dir)
	up := filepath.Join(dir, "uploads", "photo.txt")
	if err := os.WriteFile(up, []byte("a photo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "keys", "coordinator.key"), filepath.Join(dir, "uploads", "innocent.png")); err != nil {
		t.Fatal(err)
	}
	c := dialWS(t, filepath.Join(dir, "agentd.sock"), loadOwner(t, dir))
	for _, p := range []string{
		filepath.Join(dir, "keys", "coordinator.key"),
		filepath.Join(dir, "keys", "owner.identity"),
		filepath.Join(dir, "openagent.db"),
		filepath.Join(dir, "openagent.yaml"),
		filepath.Join(dir, "uploads", "innocent.png"),
		filepath.Join(dir, "uploads", "..", "keys", "node.key"),
	} {
		e := nextError(t, c, wire.TextFinal{SessionID: "att", Text: "look", Attachments: []wire.Attachment{{Kind: "file", Path: p}}})
		if !strings.Contains(e, "outside") {
			t.Errorf("attachment %s: error %q, want a refusal", p, e)
		}
		if e := nextError(t, c, wire.AttachmentIn{SessionID: "att", Path: p}); !strings.Contains(e, "outside") {
			t.Errorf("attachment frame %s: error %q, want a refusal", p, e)
		}
	}
	// A file in uploads/ goes with the turn.
	if err := c.Send(wire.TextFinal{SessionID: "att", Text: "look", Attachments: []wire.Attachment{{Kind: "file", Path: up, Filename: "photo.txt"}}}); err != nil {
		t.Fatal(err)
	}
	recvUntil(t, c, 10*time.Second, func(f wire.Message) bool {
		if e, ok := f.(wire.Error); ok {
			t.Fatalf("attachment from uploads/: %s", e.Text)
		}
		_, done := f.(wire.TurnComplete)
		return done
	})
}
