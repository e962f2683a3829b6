package integration

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/agentd/agentd/client"
	"github.com/agentd/agentd/devicecert"
)

// irohAgent is an `agentd serve` with iroh on, relays off and a fixed UDP
// port (so a restarted sidecar is found at the address the ticket gave).
type irohAgent struct {
	dir    string
	d      *daemon
	owner  *client.Dialer
	nodeID string
	addrs  []string
}

func freeUDPPort(t testing.TB) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

func startIrohAgent(t testing.TB) *irohAgent {
	t.Helper()
	return startIrohAgentEditing(t, nil)
}

// startIrohAgentEditing is startIrohAgent with edit applied to the agent
// directory before agentd starts (nil: none).
func startIrohAgentEditing(t testing.TB, edit func(dir string)) *irohAgent {
	t.Helper()
	dir := newAgent(t, true)
	if edit != nil {
		edit(dir)
	}
	irohTestConfig(t, dir)
	return irohAgentOf(t, dir, startServe(t, dir))
}

// irohTestConfig turns iroh on in dir's openagent.yaml (newAgent may
// have turned it off) with relays off and a fixed UDP port.
func irohTestConfig(t testing.TB, dir string) {
	t.Helper()
	p := filepath.Join(dir, "openagent.yaml")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "  iroh:\n    enabled: false", "  iroh:\n    enabled: true", 1)
	s = strings.Replace(s, "    relay: default", "    relay: disabled", 1)
	s = strings.Replace(s, "    bind_port: 0", fmt.Sprintf("    bind_port: %d", freeUDPPort(t)), 1)
	if s == string(b) {
		t.Fatal("could not set the iroh relay and port in openagent.yaml")
	}
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// irohAgentOf waits for the iroh endpoint of d, an agentd serving dir
// with irohTestConfig.
func irohAgentOf(t testing.TB, dir string, d *daemon) *irohAgent {
	t.Helper()
	a := &irohAgent{dir: dir, d: d}
	owner, err := devicecert.LoadIdentity(filepath.Join(dir, "keys", "owner.identity"))
	if err != nil {
		t.Fatal(err)
	}
	a.owner = client.Unix(filepath.Join(dir, "agentd.sock"), owner)
	t.Cleanup(a.owner.CloseIdle)
	st := a.waitIroh(t, func(st irohStatus) bool { return st.State == "running" && st.NodeID != "" })
	a.nodeID, a.addrs = st.NodeID, st.Addrs
	return a
}

type irohStatus struct {
	State    string   `json:"state"`
	NodeID   string   `json:"node_id"`
	Addrs    []string `json:"addrs"`
	Relay    string   `json:"relay"`
	Restarts int      `json:"restarts"`
}

// waitIroh polls /api/agent-info until ok(iroh status) holds.
func (a *irohAgent) waitIroh(t testing.TB, ok func(irohStatus) bool) irohStatus {
	t.Helper()
	var last irohStatus
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var info struct {
			Iroh irohStatus `json:"iroh"`
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := a.owner.GetJSON(ctx, "/api/agent-info", &info)
		cancel()
		if err == nil {
			last = info.Iroh
			if ok(last) {
				return last
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if last.State == "" {
		t.Fatalf("GET /api/agent-info has no \"iroh\" object {state, node_id, addrs, relay, restarts}; the tests read the agent's iroh address there\n%s", a.d.stderr.String())
	}
	t.Fatalf("iroh never reached the wanted state; last %+v\n%s", last, a.d.stderr.String())
	return last
}

func (a *irohAgent) invite(t testing.TB, args ...string) string {
	t.Helper()
	r := agentd(t, nil, append([]string{"invite", a.dir, "--no-qr"}, args...)...)
	if r.code != 0 {
		t.Fatalf("invite: %d %s", r.code, r.stderr)
	}
	ticket := strings.TrimSpace(r.stdout)
	if !strings.HasPrefix(ticket, "oa1") || strings.Contains(ticket, "\n") {
		t.Fatalf("invite printed %q", r.stdout)
	}
	return ticket
}

// device is an enrolled identity in its own XDG config dir.
type device struct {
	env  []string
	path string
	id   *devicecert.Identity
}

func enrollDevice(t testing.TB, ticket string) *device {
	t.Helper()
	cfg := t.TempDir()
	dev := &device{env: []string{"XDG_CONFIG_HOME=" + cfg, "AGENTD_IDENTITY="}, path: filepath.Join(cfg, "agentd", "identity.json")}
	r := agentd(t, dev.env, "enroll", ticket, "--label", "it-device")
	if r.code != 0 {
		t.Fatalf("enroll: %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	fi, err := os.Stat(dev.path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("identity file: %v %v", err, fi)
	}
	if dev.id, err = devicecert.LoadIdentity(dev.path); err != nil {
		t.Fatal(err)
	}
	return dev
}

func TestIrohEnrollAndRemoteChat(t *testing.T) {
	a := startIrohAgent(t)
	ticket := a.invite(t, "--role", "chat")
	tk, err := devicecert.ParseTicket(ticket)
	if err != nil {
		t.Fatal(err)
	}
	if tk.NodeID != a.nodeID || len(tk.Addrs) == 0 {
		t.Fatalf("ticket %+v lacks the agent's node id or addresses (%s %v)", tk, a.nodeID, a.addrs)
	}
	dev := enrollDevice(t, ticket)

	// The same one-time ticket does not enroll a second machine.
	r := agentd(t, []string{"XDG_CONFIG_HOME=" + t.TempDir()}, "enroll", ticket)
	if r.code != 1 || !strings.Contains(r.stderr, "used") {
		t.Errorf("reused ticket: code %d, stderr %q", r.code, r.stderr)
	}

	r = agentd(t, dev.env, "chat", "--remote", a.nodeID, "-m", "hello over iroh")
	if r.code != 0 || !strings.Contains(r.stdout, "echo: hello over iroh") {
		t.Fatalf("chat --remote: code %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
	}

	// The device is listed with its label; the agent saw it over iroh.
	var devs struct {
		Devices []struct {
			ClientID string `json:"client_id"`
			Label    string `json:"label"`
		} `json:"devices"`
	}
	if err := a.owner.GetJSON(context.Background(), "/api/devices", &devs); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, d := range devs.Devices {
		found = found || (d.ClientID == dev.id.ClientID() && d.Label == "it-device")
	}
	if !found {
		t.Errorf("enrolled device missing from %+v", devs)
	}
}

// startProxy runs `agentd proxy` for dev and returns its base URL.
func startProxy(t testing.TB, dev *device, extra ...string) string {
	t.Helper()
	cmd := exec.Command(agentdBin(), append([]string{"proxy", "--listen", "127.0.0.1:0"}, extra...)...)
	cmd.Env = append(os.Environ(), dev.env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errb := &syncBuffer{}
	cmd.Stderr = errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			t.Errorf("proxy did not stop on SIGTERM within 5s")
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case l, ok := <-lines:
		if !ok || !strings.HasPrefix(l, "http://127.0.0.1:") {
			t.Fatalf("proxy printed %q\n%s", l, errb.String())
		}
		return l
	case <-time.After(30 * time.Second):
		t.Fatalf("proxy did not come up\n%s", errb.String())
	}
	return ""
}

func curl(t *testing.T, args ...string) (int, string) {
	t.Helper()
	out, err := exec.Command("curl", append([]string{"-sS", "-m", "20", "-w", "\n%{http_code}"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl %v: %v\n%s", args, err, out)
	}
	s := strings.TrimSpace(string(out))
	i := strings.LastIndex(s, "\n")
	code, _ := strconv.Atoi(s[i+1:])
	return code, s[:max(i, 0)]
}

func TestIrohProxyRESTAndWebSocket(t *testing.T) {
	node := needNodePeers(t)
	a := startIrohAgent(t)
	dev := enrollDevice(t, a.invite(t))

	// Only loopback addresses are accepted.
	if r := agentd(t, dev.env, "proxy", "--listen", "0.0.0.0:0"); r.code != 2 || !strings.Contains(r.stderr, "loopback") {
		t.Errorf("non-loopback listen: code %d, stderr %q", r.code, r.stderr)
	}

	// An unknown NodeId stops the proxy at start with a clear message.
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	if r := agentd(t, dev.env, "proxy", "--listen", "127.0.0.1:0", "--agent", hex.EncodeToString(pub)); r.code != 1 || !strings.Contains(r.stderr, "unreachable") {
		t.Errorf("proxy to an unknown NodeId: code %d, stderr %q", r.code, r.stderr)
	}

	base := startProxy(t, dev)
	code, body := curl(t, base+"/api/agent-info")
	if code != 200 || !strings.Contains(body, `"name"`) {
		t.Fatalf("curl agent-info: %d %s", code, body)
	}
	code, body = curl(t, base+"/api/sessions")
	if code != 200 {
		t.Fatalf("curl sessions: %d %s", code, body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, filepath.Join(repoRoot(), "testpeers", "ws-client.mjs"),
		"ws"+strings.TrimPrefix(base, "http")+"/ws", "--message", "hi from ws through the proxy").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "echo: hi from ws through the proxy") {
		t.Fatalf("ws client through the proxy: %v\n%s", err, out)
	}

	// A WebSocket held open through the proxy closes when the device is
	// revoked; afterwards the proxy passes the gateway's 401 on.
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, first, err := ws.ReadMessage(); err != nil || !strings.Contains(string(first), "auth_ok") {
		t.Fatalf("first frame %s %v", first, err)
	}
	if err := a.owner.PostJSON(context.Background(), "/api/devices/"+dev.id.ClientID()+"/revoke", nil, nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("websocket still open 15s after the revoke")
			}
			break
		}
	}
	t.Logf("open websocket closed %v after the revoke", time.Since(start).Round(time.Millisecond))
	code, body = curl(t, base+"/api/agent-info")
	if code != 401 || !strings.Contains(body, "revoked") {
		t.Errorf("after revoke: %d %s", code, body)
	}
	// A new proxy refuses to start for a revoked device, saying why.
	if r := agentd(t, dev.env, "proxy", "--listen", "127.0.0.1:0"); r.code != 1 || !strings.Contains(r.stderr, "refused this device") {
		t.Errorf("proxy for a revoked device: code %d, stderr %q", r.code, r.stderr)
	}
}

// irohClient runs the third-party Node client (no project code).
func irohClient(t testing.TB, node string, a *irohAgent, identityFile string, extra ...string) (int, string) {
	t.Helper()
	args := []string{filepath.Join(repoRoot(), "testpeers", "iroh-client.mjs"), "--identity", identityFile, "--node", a.nodeID, "--timeout-ms", "30000"}
	for _, ad := range a.addrs {
		args = append(args, "--addr", ad)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append(args, extra...)...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, string(out)
}

func TestIrohThirdPartyClientAndRefusals(t *testing.T) {
	node := needNodePeers(t)
	a := startIrohAgent(t)
	dev := enrollDevice(t, a.invite(t))

	code, out := irohClient(t, node, a, dev.path, "--message", "hi from node over iroh")
	if code != 0 || !strings.Contains(out, "echo: hi from node over iroh") {
		t.Fatalf("third-party iroh client: exit %d\n%s", code, out)
	}

	// The certificate's key is not the iroh NodeId that dials.
	other := make([]byte, 32)
	rand.Read(other)
	if code, out := irohClient(t, node, a, dev.path, "--seed", hex.EncodeToString(other)); code != 3 || !strings.Contains(out, "401") {
		t.Errorf("cert pubkey != NodeId: exit %d\n%s", code, out)
	}
	// An ALPN the agent does not serve.
	if code, out := irohClient(t, node, a, dev.path, "--alpn", "openagent/nonexistent/1"); code != 4 {
		t.Errorf("wrong ALPN: exit %d\n%s", code, out)
	}
	// An expired certificate, properly signed by the agent's coordinator.
	seed, err := os.ReadFile(filepath.Join(a.dir, "keys", "coordinator.key"))
	if err != nil {
		t.Fatal(err)
	}
	tk, _ := devicecert.ParseTicket(a.invite(t))
	_, devKey, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Now().Truncate(time.Second)
	wire, err := devicecert.Sign(ed25519.NewKeyFromSeed(seed), devicecert.Cert{Handle: "old", DevicePub: devKey.Public().(ed25519.PublicKey),
		NetworkID: tk.NetworkID, IssuedAt: now.Add(-40 * 24 * time.Hour), ExpiresAt: now.Add(-time.Hour), Capabilities: []string{"chat"}})
	if err != nil {
		t.Fatal(err)
	}
	expired := filepath.Join(t.TempDir(), "expired.json")
	if err := (&devicecert.Identity{Key: devKey, Cert: wire}).Save(expired); err != nil {
		t.Fatal(err)
	}
	if code, out := irohClient(t, node, a, expired); code != 3 || !strings.Contains(out, "expired") {
		t.Errorf("expired cert: exit %d\n%s", code, out)
	}
}

// sidecarPID finds the agent's iroh sidecar among the daemon's children.
func sidecarPID(t *testing.T, pid int) int {
	t.Helper()
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, c := range strings.Fields(string(b)) {
			cmdline, _ := os.ReadFile("/proc/" + c + "/cmdline")
			if strings.Contains(string(cmdline), "sidecar.mjs") {
				n, _ := strconv.Atoi(c)
				return n
			}
		}
	}
	t.Fatalf("no iroh sidecar among the children of %d", pid)
	return 0
}

func TestIrohSidecarKilledClientReconnects(t *testing.T) {
	a := startIrohAgent(t)
	dev := enrollDevice(t, a.invite(t))
	base := startProxy(t, dev)
	if code, body := curl(t, base+"/api/agent-info"); code != 200 {
		t.Fatalf("before the kill: %d %s", code, body)
	}

	pid := sidecarPID(t, a.d.cmd.Process.Pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	st := a.waitIroh(t, func(st irohStatus) bool { return st.Restarts >= 1 && st.State == "running" })
	t.Logf("sidecar restarted %v after SIGKILL", time.Since(killed).Round(time.Millisecond))
	if st.NodeID != a.nodeID {
		t.Fatalf("NodeId changed across the restart: %s -> %s", a.nodeID, st.NodeID)
	}
	if sidecarPID(t, a.d.cmd.Process.Pid) == pid {
		t.Fatal("same sidecar pid after SIGKILL")
	}

	// The proxy's next requests reach the restarted agent.
	deadline := time.Now().Add(30 * time.Second)
	var code int
	var body string
	for time.Now().Before(deadline) {
		if code, body = curl(t, base+"/api/agent-info"); code == 200 {
			t.Logf("client reconnected %v after the kill", time.Since(killed).Round(time.Millisecond))
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("client did not reconnect: %d %s", code, body)
}
