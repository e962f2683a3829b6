package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

const echoNotice = "this is the echo provider"

func TestChatOneTurn(t *testing.T) {
	dir := newAgent(t, false)
	startServe(t, dir)
	r := agentd(t, nil, "chat", dir, "-m", "hello there")
	if r.code != 0 {
		t.Fatalf("chat -m: code %d\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "echo: hello there") || !strings.Contains(r.stdout, echoNotice) {
		t.Errorf("reply = %q", r.stdout)
	}
	// Sessions are isolated: a second session starts with no history, and
	// the first one has its turn.
	if r := agentd(t, nil, "chat", dir, "--session", "other", "-m", "second"); r.code != 0 {
		t.Fatalf("chat other session: %d %s", r.code, r.stderr)
	}
	if r := agentd(t, nil, "status", dir); !regexp.MustCompile(`(?m)^sessions\s+2$`).MatchString(r.stdout) {
		t.Errorf("status after two sessions:\n%s", r.stdout)
	}
}

func TestChatInteractive(t *testing.T) {
	dir := newAgent(t, false)
	startServe(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, agentdBin(), "chat", dir, "--session", "tty")
	cmd.Stdin = strings.NewReader("first line\n/help\nsecond line\n")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("interactive chat: %v\nstdout: %s\nstderr: %s", err, out.String(), errb.String())
	}
	got := out.String()
	i1, i2 := strings.Index(got, "echo: first line"), strings.Index(got, "echo: second line")
	if i1 < 0 || i2 < 0 || i2 < i1 {
		t.Errorf("replies missing or out of order:\n%s", got)
	}
	if !strings.Contains(errb.String(), "connected to") || !strings.Contains(strings.ToLower(errb.String()), "stop") {
		t.Errorf("stderr lacks the banner or /help's command list:\n%s", errb.String())
	}
}

func TestChatNotRunning(t *testing.T) {
	dir := newAgent(t, false)
	r := agentd(t, nil, "chat", dir, "-m", "hi")
	if r.code != 1 || !strings.Contains(r.stderr, "not running") {
		t.Errorf("chat without daemon: code %d, stderr %q", r.code, r.stderr)
	}
}

// TestNodeWSClientUnix is an outside client: Node with the npm ws package,
// doing the nonce handshake itself on the unix socket.
func TestNodeWSClientUnix(t *testing.T) {
	node := needNodePeers(t)
	dir := newAgent(t, false)
	startServe(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(repoRoot(), "testpeers", "ws-unix-client.mjs"),
		filepath.Join(dir, "agentd.sock"), filepath.Join(dir, "keys", "owner.identity"), "node-1", "hi from node")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node client: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "echo: hi from node") {
		t.Errorf("node client output: %s", out)
	}
}

var (
	peersOnce sync.Once
	peersErr  error
)

// needNodePeers returns the node binary; testpeers' packages are installed
// by `make setup` (and installed here if missing, as CI starts clean).
func needNodePeers(t testing.TB) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found: install Node.js 20 (make setup): %v", err)
	}
	peersOnce.Do(func() {
		peers := filepath.Join(repoRoot(), "testpeers")
		if _, err := os.Stat(filepath.Join(peers, "node_modules", ".bin", "mcp-server-filesystem")); err == nil {
			return
		}
		cmd := exec.Command("npm", "install", "--no-audit", "--no-fund")
		cmd.Dir = peers
		if out, err := cmd.CombinedOutput(); err != nil {
			peersErr = fmt.Errorf("npm install in testpeers: %v\n%s", err, out)
		}
	})
	if peersErr != nil {
		t.Fatal(peersErr)
	}
	return node
}
