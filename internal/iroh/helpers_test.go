package iroh

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestMain installs the npm package when node_modules is missing (CI starts
// from a clean clone) so the tests run against the real @number0/iroh.
func TestMain(m *testing.M) {
	if err := ensureNpmInstall(DefaultDir()); err != nil {
		fmt.Fprintln(os.Stderr, "iroh tests:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func ensureNpmInstall(dir string) error {
	if err := CheckDir(dir); err == nil {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, ScriptName)); err != nil {
		return fmt.Errorf("sidecar dir %s: %w", dir, err)
	}
	cmd := exec.Command("npm", "install", "--omit=dev", "--no-audit", "--no-fund")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("npm install --omit=dev in %s: %w\n%s", dir, err, out)
	}
	return CheckDir(dir)
}

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// shortTempDir keeps unix socket paths well under the 108-byte limit.
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "irohsc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// logFile collects a sidecar's stderr and prints it if the test failed.
func logFile(t testing.TB, dir, name string) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = f.Close()
		if t.Failed() {
			b, _ := os.ReadFile(f.Name())
			t.Logf("---- %s ----\n%s", name, b)
		}
	})
	return f
}

// pair is a serve sidecar with its Listener plus a dial-only client sidecar,
// both on loopback with relays and discovery off.
type pair struct {
	serverKey, clientKey ed25519.PrivateKey
	serve, dial          *Sidecar
	ln                   *Listener
	dialer               *Dialer
}

func (p *pair) addr() NodeAddr {
	i := p.serve.Info()
	return NodeAddr{NodeID: i.NodeID, Addrs: i.Addrs}
}

// startPair starts both sidecars; handler serves each accepted stream.
func startPair(t testing.TB, handler func(*Conn)) *pair {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dir := shortTempDir(t)
	p := &pair{serverKey: newKey(t), clientKey: newKey(t)}

	ln, err := Listen(ctx, filepath.Join(dir, "accept.sock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	p.ln = ln
	serveDone := make(chan struct{})
	go func() {
		defer close(serveDone)
		for {
			c, err := ln.AcceptConn()
			if err != nil {
				return
			}
			go handler(c)
		}
	}()

	p.serve, err = New(Config{
		Mode: ModeServe, SecretKey: p.serverKey, Relay: RelayDisabled, Preset: PresetMinimal,
		ALPNs: []string{ALPNGateway, ALPNCoordinator}, AcceptSocket: ln.Path(),
		BindHost: "127.0.0.1", Stderr: logFile(t, dir, "serve.log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	p.dial, err = New(Config{
		Mode: ModeDial, SecretKey: p.clientKey, Relay: RelayDisabled, Preset: PresetMinimal,
		DialSocket: filepath.Join(dir, "dial.sock"), BindHost: "127.0.0.1", Stderr: logFile(t, dir, "dial.log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.serve.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.dial.Start(ctx); err != nil {
		t.Fatal(err)
	}
	p.dialer = p.dial.Dialer()
	t.Cleanup(func() {
		cancel()
		<-p.serve.Done()
		<-p.dial.Done()
		<-serveDone
	})
	return p
}

// echoHandler copies the stream back until EOF, then half-closes.
func echoHandler(c *Conn) {
	defer c.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			_ = c.CloseWrite()
			return
		}
	}
}

func dialT(t testing.TB, p *pair, alpn string) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := p.dialer.DialConn(ctx, p.addr(), alpn)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var _ net.Conn = (*Conn)(nil)
var _ net.Listener = (*Listener)(nil)

func isErr(err, target error) bool { return errors.Is(err, target) }

func dialUnix(path string) (*net.UnixConn, error) {
	return net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
}
