package iroh

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestEchoAndHeader(t *testing.T) {
	type seen struct{ remote, alpn string }
	got := make(chan seen, 4)
	p := startPair(t, func(c *Conn) {
		got <- seen{c.RemoteNodeID(), c.ALPN()}
		if c.RemoteAddr().Network() != "iroh" || c.RemoteAddr().String() != c.RemoteNodeID() {
			t.Errorf("RemoteAddr = %v", c.RemoteAddr())
		}
		echoHandler(c)
	})

	info := p.serve.Info()
	if info.NodeID != NodeIDFromKey(p.serverKey) || len(info.NodeID) != 64 {
		t.Fatalf("serve node id %q, want %q", info.NodeID, NodeIDFromKey(p.serverKey))
	}
	if len(info.Addrs) == 0 || info.Relay != "" {
		t.Fatalf("serve info %+v: want direct addrs and no relay", info)
	}
	if st := p.serve.Status(); st.State != StateRunning || st.PID == 0 {
		t.Fatalf("status %+v", st)
	}

	for _, alpn := range []string{ALPNGateway, ALPNCoordinator} {
		c := dialT(t, p, alpn)
		if c.RemoteNodeID() != info.NodeID || c.ALPN() != alpn {
			t.Fatalf("dialed conn: remote %q alpn %q", c.RemoteNodeID(), c.ALPN())
		}
		msg := []byte("hello over " + alpn)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, msg) {
			t.Fatalf("echo %q, want %q", buf, msg)
		}
		s := <-got
		if s.remote != NodeIDFromKey(p.clientKey) {
			t.Fatalf("header remote_node_id %q, want the dialer's public key %q", s.remote, NodeIDFromKey(p.clientKey))
		}
		if s.alpn != alpn {
			t.Fatalf("header alpn %q, want %q", s.alpn, alpn)
		}
		_ = c.Close()
	}
}

func TestLargeTransferChecksum(t *testing.T) {
	p := startPair(t, echoHandler)
	const size = 4 << 20
	data := make([]byte, size)
	_, _ = rand.Read(data)
	want := sha256.Sum256(data)

	c := dialT(t, p, ALPNGateway)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	h := sha256.New()
	start := time.Now()
	n, err := io.Copy(h, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if n != size {
		t.Fatalf("echoed %d bytes, want %d", n, size)
	}
	if !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("checksum mismatch")
	}
	el := time.Since(start)
	t.Logf("%d MiB echoed in %s (%.1f MB/s each way)", size>>20, el.Round(time.Millisecond), float64(size)/el.Seconds()/1e6)
}

func TestHalfClose(t *testing.T) {
	p := startPair(t, func(c *Conn) {
		defer c.Close()
		req, err := io.ReadAll(c) // returns at the client's CloseWrite
		if err != nil {
			t.Errorf("server read: %v", err)
			return
		}
		// The read side is done; the write side still works.
		if _, err := c.Write(append([]byte("reply:"), req...)); err != nil {
			t.Errorf("server write after EOF: %v", err)
		}
		_ = c.CloseWrite()
	})
	c := dialT(t, p, ALPNGateway)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := c.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "reply:request" {
		t.Fatalf("got %q", got)
	}
}

func TestDialErrors(t *testing.T) {
	p := startPair(t, echoHandler)

	t.Run("dead node times out on our timeout", func(t *testing.T) {
		d := *p.dialer
		d.Timeout = 2 * time.Second
		start := time.Now()
		// A fresh node id at a loopback port where nothing answers.
		_, err := d.Dial(context.Background(), NodeAddr{NodeID: NodeIDFromKey(newKey(t)), Addrs: []string{"127.0.0.1:9"}}, ALPNGateway)
		el := time.Since(start)
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("err = %v, want ErrTimeout", err)
		}
		if el > 5*time.Second {
			t.Fatalf("took %s; our timeout is 2s", el)
		}
		t.Logf("dead node: %v (after %s)", err, el.Round(time.Millisecond))
	})

	t.Run("context deadline wins", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		_, err := p.dialer.Dial(ctx, NodeAddr{NodeID: NodeIDFromKey(newKey(t)), Addrs: []string{"127.0.0.1:9"}}, ALPNGateway)
		if !errors.Is(err, ErrTimeout) || time.Since(start) > 4*time.Second {
			t.Fatalf("err = %v after %s", err, time.Since(start))
		}
	})

	t.Run("no address", func(t *testing.T) {
		_, err := p.dialer.Dial(context.Background(), NodeAddr{NodeID: NodeIDFromKey(newKey(t))}, ALPNGateway)
		if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "no address") {
			t.Fatalf("err = %v, want ErrUnreachable about a missing address", err)
		}
	})

	t.Run("alpn refused", func(t *testing.T) {
		start := time.Now()
		_, err := p.dialer.Dial(context.Background(), p.addr(), "openagent/nope/1")
		if !errors.Is(err, ErrALPNRefused) || !strings.Contains(err.Error(), "alpn refused") {
			t.Fatalf("err = %v, want ErrALPNRefused", err)
		}
		t.Logf("alpn refused: %v (after %s)", err, time.Since(start).Round(time.Millisecond))
	})

	t.Run("bad node id", func(t *testing.T) {
		_, err := p.dialer.Dial(context.Background(), NodeAddr{NodeID: "not-a-node"}, ALPNGateway)
		if !errors.Is(err, ErrBadRequest) {
			t.Fatalf("err = %v, want ErrBadRequest", err)
		}
	})

	t.Run("still works afterwards", func(t *testing.T) {
		c := dialT(t, p, ALPNGateway)
		defer c.Close()
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatal(err)
		}
	})
}

func TestRestartAfterKill(t *testing.T) {
	p := startPair(t, echoHandler)
	echo := func() {
		t.Helper()
		c := dialT(t, p, ALPNGateway)
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(15 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 4)
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatal(err)
		}
	}
	echo()
	before := p.serve.Status()
	if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := p.serve.Status()
		if st.State == StateRunning && st.Restarts == 1 {
			if st.PID == before.PID {
				t.Fatal("same pid after restart")
			}
			if st.Info.NodeID != before.Info.NodeID {
				t.Fatalf("node id changed: %s -> %s", before.Info.NodeID, st.Info.NodeID)
			}
			if st.LastError == nil {
				t.Fatal("LastError not recorded")
			}
			t.Logf("restarted: pid %d -> %d; last error: %v", before.PID, st.PID, st.LastError)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not restarted: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The client sidecar still caches the connection to the dead process: it
	// must notice and reconnect well before QUIC's 30 s idle timeout.
	start := time.Now()
	echo()
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("dial after restart took %s", el)
	} else {
		t.Logf("dial after restart took %s", el.Round(time.Millisecond))
	}
}

func TestStopOnCancel(t *testing.T) {
	dir := shortTempDir(t)
	ctx, cancel := context.WithCancel(context.Background())
	s, err := New(Config{Mode: ModeDial, SecretKey: newKey(t), Relay: RelayDisabled, Preset: PresetMinimal,
		DialSocket: filepath.Join(dir, "d.sock"), BindHost: "127.0.0.1", Stderr: logFile(t, dir, "d.log")})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pid := s.Status().PID
	cancel()
	select {
	case <-s.Done():
	case <-time.After(DefaultStopTimeout + 2*time.Second):
		t.Fatal("not stopped")
	}
	if st := s.Status(); st.State != StateStopped {
		t.Fatalf("state %s", st.State)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("process %d still alive", pid)
	}
	if _, err := os.Stat(filepath.Join(dir, "d.sock")); err == nil {
		t.Fatal("dial socket left behind")
	}
	if err := s.WaitReady(context.Background()); !errors.Is(err, ErrSidecarUnavailable) {
		t.Fatalf("WaitReady after stop: %v", err)
	}
}

func TestMissingPrerequisites(t *testing.T) {
	base := Config{Mode: ModeDial, SecretKey: newKey(t), DialSocket: "/tmp/x.sock"}

	t.Run("node_modules", func(t *testing.T) {
		dir := t.TempDir()
		src, err := os.ReadFile(filepath.Join(DefaultDir(), ScriptName))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, ScriptName), src, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := base
		cfg.Dir = dir
		_, err = New(cfg)
		if !errors.Is(err, ErrMissingPrerequisite) {
			t.Fatalf("err = %v", err)
		}
		for _, want := range []string{"@number0/iroh", "make setup", "npm install --omit=dev", dir} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
	})

	t.Run("node binary", func(t *testing.T) {
		cfg := base
		cfg.NodePath = filepath.Join(t.TempDir(), "no-such-node")
		_, err := New(cfg)
		if !errors.Is(err, ErrMissingPrerequisite) || !strings.Contains(err.Error(), "node") || !strings.Contains(err.Error(), "install Node.js") {
			t.Fatalf("err = %v", err)
		}
		t.Setenv("PATH", t.TempDir())
		cfg.NodePath = ""
		if _, err := New(cfg); !errors.Is(err, ErrMissingPrerequisite) {
			t.Fatalf("empty PATH: err = %v", err)
		}
	})

	t.Run("script", func(t *testing.T) {
		cfg := base
		cfg.Dir = t.TempDir()
		if _, err := New(cfg); !errors.Is(err, ErrMissingPrerequisite) || !strings.Contains(err.Error(), ScriptName) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestListenerSlowHeaderDoesNotBlockAccept(t *testing.T) {
	dir := shortTempDir(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ln, err := ListenConfig{Path: filepath.Join(dir, "a.sock"), HeaderTimeout: 300 * time.Millisecond}.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if fi, err := os.Stat(ln.Path()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v", fi.Mode(), err)
	}
	var wg sync.WaitGroup
	slow, err := dialUnix(ln.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	_, _ = slow.Write([]byte(`{"remote_node_id":`)) // never finished
	fast, err := dialUnix(ln.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	id := strings.Repeat("ab", 32)
	_, _ = fast.Write([]byte(`{"remote_node_id":"` + id + `","alpn":"x/1"}` + "\nDATA"))
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.AcceptConn()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		if c.RemoteNodeID() != id || c.ALPN() != "x/1" {
			t.Errorf("header %s %s", c.RemoteNodeID(), c.ALPN())
		}
		b := make([]byte, 4)
		if _, err := io.ReadFull(c, b); err != nil || string(b) != "DATA" {
			t.Errorf("data %q %v", b, err)
		}
	}()
	wg.Wait()
	// The slow one is dropped after the header timeout.
	_ = slow.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := slow.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("slow conn not closed by the listener: %v", err)
	}
	_ = ln.Close()
	if _, err := ln.Accept(); err == nil {
		t.Fatal("Accept after Close succeeded")
	}
	if _, err := os.Stat(ln.Path()); err == nil {
		t.Fatal("socket file left behind")
	}
}

func TestConcurrentStreams(t *testing.T) {
	p := startPair(t, echoHandler)
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			c, err := p.dialer.DialConn(ctx, p.addr(), ALPNGateway)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(15 * time.Second))
			msg := bytes.Repeat([]byte{byte(i)}, 1000+i)
			if _, err := c.Write(msg); err != nil {
				errs <- err
				return
			}
			_ = c.CloseWrite()
			got, err := io.ReadAll(c)
			if err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(got, msg) {
				errs <- errors.New("stream data mixed up")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
