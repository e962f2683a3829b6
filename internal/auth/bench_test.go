package auth

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentd/agentd/devicecert"
)

// staticRegistry is a fixed network for benchmarks (the tests in
// listener_test.go use the real coordinator; this package cannot import it).
type staticRegistry struct {
	pub    ed25519.PublicKey
	active map[string]bool
}

func (r *staticRegistry) NetworkID() string                 { return "bench" }
func (r *staticRegistry) CoordinatorPub() ed25519.PublicKey { return r.pub }
func (r *staticRegistry) Active(id string) bool             { return r.active[id] }
func (r *staticRegistry) MarkSeen(string, time.Time)        {}
func (r *staticRegistry) OnRevoke(func(string))             {}

func benchSetup(b *testing.B) (*Authenticator, *devicecert.Identity) {
	_, ck, _ := ed25519.GenerateKey(nil)
	dev, _ := devicecert.NewIdentity()
	now := time.Now().Truncate(time.Second)
	w, err := devicecert.Sign(ck, devicecert.Cert{Handle: "b", DevicePub: dev.Public(), NetworkID: "bench",
		IssuedAt: now, ExpiresAt: now.Add(devicecert.TTL), Capabilities: []string{"chat"}})
	if err != nil {
		b.Fatal(err)
	}
	dev.Cert = w
	reg := &staticRegistry{pub: ck.Public().(ed25519.PublicKey), active: map[string]bool{dev.ClientID(): true}}
	return NewAuthenticator(reg), dev
}

type memConn struct {
	net.Conn
	r    *bytes.Reader
	node string
}

func (c *memConn) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *memConn) RemoteNodeID() string       { return c.node }

// BenchmarkAuthenticateStream is the server's work for one iroh stream:
// read the preamble, verify the cert and run every check.
func BenchmarkAuthenticateStream(b *testing.B) {
	a, dev := benchSetup(b)
	var pre bytes.Buffer
	devicecert.IrohPreamble(&pre, dev)
	l := &listener{mode: ModeIroh, a: a, transport: "iroh", ctx: context.Background()}
	c := &memConn{r: bytes.NewReader(nil), node: dev.ClientID()}
	b.ReportAllocs()
	for b.Loop() {
		c.r.Reset(pre.Bytes())
		if id, _, err := l.handshake(c, nil, time.Now().Add(time.Minute)); err != nil || id == nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEd25519Verify is the floor: one bare signature check.
func BenchmarkEd25519Verify(b *testing.B) {
	pub, k, _ := ed25519.GenerateKey(nil)
	msg := make([]byte, 166)
	sig := ed25519.Sign(k, msg)
	b.ReportAllocs()
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("verify")
		}
	}
}

// BenchmarkUnixStreamHandshake is a whole unix stream: dial, nonce, client
// signature, server checks (two Ed25519 verifies), Accept.
func BenchmarkUnixStreamHandshake(b *testing.B) {
	a, dev := benchSetup(b)
	sock := filepath.Join(b.TempDir(), "s")
	inner, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	ln := NewListener(inner, ModeNonce, a, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer ln.Close()
	b.ReportAllocs()
	for b.Loop() {
		c, err := net.Dial("unix", sock)
		if err != nil {
			b.Fatal(err)
		}
		if err := devicecert.ClientHandshake(c, dev); err != nil {
			b.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		if s.(*Conn).Identity().ClientID != hex.EncodeToString(dev.Public()) {
			b.Fatal("identity")
		}
		s.Close()
		c.Close()
	}
}
