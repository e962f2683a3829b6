package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentd/agentd/client"
	"github.com/agentd/agentd/devicecert"
)

// editConfig rewrites openagent.yaml with each old → new replacement; a
// replacement that matches nothing fails the test (the template changed).
func editConfig(tb testing.TB, dir string, pairs ...string) {
	tb.Helper()
	p := filepath.Join(dir, "openagent.yaml")
	b, err := os.ReadFile(p)
	if err != nil {
		tb.Fatal(err)
	}
	s := string(b)
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			tb.Fatalf("openagent.yaml has no %q", pairs[i])
		}
		s = strings.Replace(s, pairs[i], pairs[i+1], 1)
	}
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		tb.Fatal(err)
	}
}

// enableTCP turns the tcp listener on at a free loopback port.
func enableTCP(tb testing.TB, dir string) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	editConfig(tb, dir, "  tcp:\n    enabled: false\n    address: 127.0.0.1:8765", "  tcp:\n    enabled: true\n    address: "+addr)
	return addr
}

// raiseNoFile lifts this process's soft fd limit to the hard one (Go does
// so at start-up already; this says so when the limit is too small).
func raiseNoFile(tb testing.TB, need int) {
	tb.Helper()
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		tb.Fatal(err)
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	if rl.Cur < uint64(need) {
		tb.Fatalf("RLIMIT_NOFILE is %d; this test needs %d (ulimit -n)", rl.Cur, need)
	}
}

// flood holds n idle connections to addr that never send a byte. They are
// all closed at cleanup.
type flood struct {
	conns []net.Conn
}

func openFlood(tb testing.TB, network, addr string, n int) *flood {
	tb.Helper()
	f := &flood{}
	tb.Cleanup(f.close)
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout(network, addr, 5*time.Second)
		if err != nil {
			tb.Fatalf("flood connection %d of %d to %s: %v", i, n, addr, err)
		}
		f.conns = append(f.conns, c)
	}
	return f
}

func (f *flood) close() {
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
}

// dropped waits up to within for the server to close every connection and
// returns how many it did (reads end with EOF or a reset, not the deadline).
func (f *flood) dropped(within time.Duration) int {
	deadline := time.Now().Add(within)
	var wg sync.WaitGroup
	var mu sync.Mutex
	n := 0
	for _, c := range f.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(deadline)
			_, err := io.Copy(io.Discard, c) // the nonce, then EOF
			var ne net.Error
			if err == nil || !(errors.As(err, &ne) && ne.Timeout()) {
				mu.Lock()
				n++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return n
}

// ownerAnswers makes one authenticated request through d and fails the
// test if it is not answered within bound (a liveness bound, not a
// performance figure: before the fix the request waited ≥ 10 s).
func ownerAnswers(tb testing.TB, d *client.Dialer, what string, bound time.Duration) {
	tb.Helper()
	defer d.CloseIdle()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	start := time.Now()
	var info map[string]any
	if err := d.GetJSON(ctx, "/api/agent-info", &info); err != nil {
		tb.Fatalf("%s: authenticated request during the flood: %v", what, err)
	}
	tb.Logf("%s: authenticated request answered in %v during the flood", what, time.Since(start).Round(time.Millisecond))
}

func loadOwner(tb testing.TB, dir string) *devicecert.Identity {
	tb.Helper()
	owner, err := devicecert.LoadIdentity(filepath.Join(dir, "keys", "owner.identity"))
	if err != nil {
		tb.Fatal(err)
	}
	return owner
}

// TestPreauthFloodUnixTCP: thousands of idle unauthenticated connections on
// the unix socket and on tcp (one source each: this uid, 127.0.0.1) neither
// block the owner's request nor stay open past the preamble deadline.
func TestPreauthFloodUnixTCP(t *testing.T) {
	const n = 2000
	raiseNoFile(t, 2*n+512)
	dir := newAgent(t, false)
	tcpAddr := enableTCP(t, dir)
	startServe(t, dir)
	owner := loadOwner(t, dir)

	unixFlood := openFlood(t, "unix", filepath.Join(dir, "agentd.sock"), n)
	tcpFlood := openFlood(t, "tcp", tcpAddr, n)
	ownerAnswers(t, client.Unix(filepath.Join(dir, "agentd.sock"), owner), "unix", 5*time.Second)
	ownerAnswers(t, client.TCP(tcpAddr, owner), "tcp", 5*time.Second)

	// Every idle connection is gone once the preamble deadline (3 s) has
	// passed; before the fix most still waited in the accept backlog.
	for _, f := range []struct {
		name string
		f    *flood
	}{{"unix", unixFlood}, {"tcp", tcpFlood}} {
		if got := f.f.dropped(8 * time.Second); got != n {
			t.Errorf("%s: the agent closed %d of %d idle unauthenticated connections within 8 s", f.name, got, n)
		}
	}
}

// anonymousHealth sends the zero-length preamble and one keep-alive
// GET /api/health on c and returns the status line.
func anonymousHealth(tb testing.TB, c net.Conn) string {
	tb.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, devicecert.NonceSize)); err != nil {
		tb.Fatalf("read nonce: %v", err)
	}
	if _, err := c.Write([]byte{0, 0, 0, 0}); err != nil {
		tb.Fatal(err)
	}
	fmt.Fprint(c, "GET /api/health HTTP/1.1\r\nHost: agentd\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		tb.Fatalf("anonymous health: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.Status
}

// closedWithin reports whether the server closes c within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return err == nil || !(errors.As(err, &ne) && ne.Timeout())
}

// TestStreamTimeouts: an anonymous stream gets /api/health once and is
// closed; an authenticated keep-alive stream that stays silent is closed
// after limits.idle_timeout.
func TestStreamTimeouts(t *testing.T) {
	dir := newAgent(t, false)
	editConfig(t, dir,
		"  idle_timeout: 90s", "  idle_timeout: 2s",
		"  ping_interval: 30s", "  ping_interval: 1s")
	startServe(t, dir)
	sock := filepath.Join(dir, "agentd.sock")

	for i := 0; i < 30; i++ {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		if st := anonymousHealth(t, c); st != "200 OK" {
			t.Fatalf("anonymous /api/health: %s", st)
		}
		if !closedWithin(c, 5*time.Second) {
			t.Fatalf("anonymous stream %d still open 5 s after its one /api/health answer", i)
		}
		c.Close()
	}

	// An authenticated stream kept alive without requests.
	owner := loadOwner(t, dir)
	c, err := client.Unix(sock, owner).DialAuth(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(c, "GET /api/agent-info HTTP/1.1\r\nHost: agentd\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("owner request: %v %v", resp, err)
	}
	resp.Body.Close()
	if !closedWithin(c, 10*time.Second) {
		t.Fatal("an idle authenticated keep-alive stream was not closed within 10 s (idle_timeout 2s)")
	}
}

// TestConnectionCap: the total connection cap refuses streams over it,
// says so once in agentd.log, and lets streams in again when they end.
func TestConnectionCap(t *testing.T) {
	dir := newAgent(t, false)
	editConfig(t, dir, "  max_connections: 4096", "  max_connections: 40")
	startServe(t, dir)
	sock := filepath.Join(dir, "agentd.sock")
	owner := loadOwner(t, dir)

	// The cap: 60 idle connections against max_connections 40.
	f := openFlood(t, "unix", sock, 60)
	if got := f.dropped(8 * time.Second); got != 60 {
		t.Errorf("closed %d of 60 connections", got)
	}
	f.close()
	// The slots come free as the agent sees the closes; then it serves.
	d := client.Unix(sock, owner)
	defer d.CloseIdle()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := d.GetJSON(ctx, "/api/agent-info", nil)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no request answered 5 s after the flood ended: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	logText, _ := os.ReadFile(filepath.Join(dir, "logs", "agentd.log"))
	if n := strings.Count(string(logText), "connection limit reached"); n != 1 {
		t.Errorf("agentd.log says %q %d times, want once:\n%s", "connection limit reached", n, logText)
	}
	if !strings.Contains(string(logText), "below the connection limit again") {
		t.Errorf("agentd.log does not say the cap was left again")
	}
}

// TestPreauthFloodIroh: hostile NodeIds hold hundreds of idle gateway
// streams through the real sidecar (and reopen each one the agent ends);
// a real enrolled device still gets its chat turn answered.
func TestPreauthFloodIroh(t *testing.T) {
	node := needNodePeers(t)
	raiseNoFile(t, 4096)
	a := startIrohAgent(t)
	dev := enrollDevice(t, a.invite(t))

	args := []string{filepath.Join(repoRoot(), "testpeers", "iroh-flood.mjs"), "--node", a.nodeID,
		"--nodes", "3", "--conns", "2", "--streams", "100"}
	for _, ad := range a.addrs {
		args = append(args, "--addr", ad)
	}
	cmd := exec.Command(node, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	ready := make(chan string, 1)
	var last syncBuffer // the flood's latest progress line
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "ready ") {
				ready <- sc.Text()
			}
			last.Write([]byte(sc.Text() + "\n"))
		}
	}()
	select {
	case r := <-ready:
		t.Logf("flood: %s", r)
	case <-time.After(60 * time.Second):
		t.Fatalf("the flood never got its streams open\n%s\n%s", last.String(), stderr.String())
	}
	code, out := irohClient(t, node, a, dev.path, "--message", "hi during a flood", "--timeout-ms", "10000")
	if code != 0 || !strings.Contains(out, "echo: hi during a flood") {
		t.Fatalf("chat over iroh during the flood: exit %d\n%s", code, out)
	}
	if cmd.ProcessState != nil {
		t.Fatalf("the flood script exited early\n%s", stderr.String())
	}
	out = last.String()
	if i := strings.LastIndex(strings.TrimSpace(out), "\n"); i >= 0 {
		out = out[i+1:]
	}
	t.Logf("flood at the end: %s", strings.TrimSpace(out))
}

// TestRefusalFloodLog: thousands of refused streams of a few kinds — a
// bogus certificate, a close before the preamble, a preamble that never
// comes — over tcp (each from its own port) and unix leave a few lines in
// agentd.log, not one per stream.
func TestRefusalFloodLog(t *testing.T) {
	const n = 1500
	raiseNoFile(t, 2*n+512)
	dir := newAgent(t, false)
	tcpAddr := enableTCP(t, dir)
	startServe(t, dir)
	logPath := filepath.Join(dir, "logs", "agentd.log")
	before, _ := os.ReadFile(logPath)

	bogus := append([]byte{0, 0, 0, 100}, make([]byte, 100+devicecert.SignatureSize)...)
	var wg sync.WaitGroup
	for _, target := range []struct{ network, addr string }{{"tcp", tcpAddr}, {"unix", filepath.Join(dir, "agentd.sock")}} {
		for kind := 0; kind < 3; kind++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var idle []net.Conn
				defer func() {
					for _, c := range idle {
						c.Close()
					}
				}()
				for i := 0; i < n/3; i++ {
					c, err := net.DialTimeout(target.network, target.addr, 5*time.Second)
					if err != nil {
						t.Errorf("dial %s: %v", target.network, err)
						return
					}
					switch kind {
					case 0: // a certificate that does not parse
						c.SetDeadline(time.Now().Add(5 * time.Second))
						io.ReadFull(c, make([]byte, devicecert.NonceSize))
						c.Write(bogus)
						io.Copy(io.Discard, c)
						c.Close()
					case 1: // gone before the preamble
						c.Close()
					case 2: // never sends it: dropped at the preamble deadline
						idle = append(idle, c)
					}
				}
				if kind == 2 {
					f := &flood{conns: idle}
					f.dropped(8 * time.Second)
				}
			}()
		}
	}
	wg.Wait()
	time.Sleep(500 * time.Millisecond) // the last refusals reach the log
	after, _ := os.ReadFile(logPath)
	added := string(after[len(before):])
	lines := strings.Count(added, "\n")
	refused := strings.Count(added, "stream refused")
	t.Logf("%d refused streams wrote %d lines (%d bytes) to agentd.log, %d of them \"stream refused\"", 2*n, lines, len(added), refused)
	if refused > 60 || len(added) > 64<<10 {
		t.Errorf("a refusal flood of %d streams wrote %d \"stream refused\" lines (%d bytes) to agentd.log; want a few per reason", 2*n, refused, len(added))
	}
}
