package devicecert

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"
)

func hexSeed(k ed25519.PrivateKey) string { return hex.EncodeToString(k.Seed()) }
func hexOf(b []byte) string               { return hex.EncodeToString(b) }

func TestReadPreamble(t *testing.T) {
	ck, _, c := testKeys(t)
	wire, _ := Sign(ck, c)
	var buf bytes.Buffer
	if err := WritePreamble(&buf, wire); err != nil {
		t.Fatal(err)
	}
	buf.WriteString("GET / HTTP/1.1\r\n")
	got, err := ReadPreamble(&buf)
	if err != nil || !bytes.Equal(got, wire) {
		t.Fatalf("ReadPreamble = %x, %v", got, err)
	}
	if rest := buf.String(); rest != "GET / HTTP/1.1\r\n" {
		t.Fatalf("ReadPreamble consumed past the preamble, left %q", rest)
	}

	cases := []struct {
		name string
		in   []byte
		want []byte
		err  bool
	}{
		{"anonymous", []byte{0, 0, 0, 0}, []byte{}, false},
		{"short header", []byte{0, 0}, nil, true},
		{"oversize length", binary.BigEndian.AppendUint32(nil, MaxCertSize+1), nil, true},
		{"huge length", []byte{0xff, 0xff, 0xff, 0xff}, nil, true},
		{"truncated body", append(binary.BigEndian.AppendUint32(nil, 10), 1, 2, 3), nil, true},
		{"max size", append(binary.BigEndian.AppendUint32(nil, MaxCertSize), make([]byte, MaxCertSize)...), make([]byte, MaxCertSize), false},
	}
	for _, tc := range cases {
		got, err := ReadPreamble(bytes.NewReader(tc.in))
		if (err != nil) != tc.err || (!tc.err && !bytes.Equal(got, tc.want)) {
			t.Errorf("%s: got %d bytes, err %v", tc.name, len(got), err)
		}
	}
	if err := WritePreamble(io.Discard, make([]byte, MaxCertSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("WritePreamble oversize: %v", err)
	}
}

// TestClientHandshakeUnix runs the client side against a server on a real
// unix socket that checks the signature the way internal/auth does.
func TestClientHandshakeUnix(t *testing.T) {
	ck, dk, c := testKeys(t)
	wire, _ := Sign(ck, c)
	id := &Identity{Key: dk, Cert: wire}
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		cert []byte
		ok   bool
		rest string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			res <- result{err: err}
			return
		}
		defer conn.Close()
		nonce := make([]byte, NonceSize)
		rand.Read(nonce)
		conn.Write(nonce)
		cert, err := ReadPreamble(conn)
		if err != nil {
			res <- result{err: err}
			return
		}
		sig := make([]byte, ed25519.SignatureSize)
		if _, err := io.ReadFull(conn, sig); err != nil {
			res <- result{err: err}
			return
		}
		pc, err := Parse(cert)
		if err != nil {
			res <- result{err: err}
			return
		}
		rest := make([]byte, 4)
		io.ReadFull(conn, rest)
		res <- result{cert: cert, ok: VerifyChallenge(pc.DevicePub, nonce, cert, sig), rest: string(rest)}
	}()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := ClientHandshake(conn, id); err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("GET "))
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !r.ok || !bytes.Equal(r.cert, wire) || r.rest != "GET " {
		t.Fatalf("server saw ok=%v cert-match=%v rest=%q", r.ok, bytes.Equal(r.cert, wire), r.rest)
	}
}

func TestChallengeBinding(t *testing.T) {
	ck, dk, c := testKeys(t)
	wire, _ := Sign(ck, c)
	n1 := bytes.Repeat([]byte{1}, NonceSize)
	n2 := bytes.Repeat([]byte{2}, NonceSize)
	sig := SignChallenge(dk, n1, wire)
	pub := dk.Public().(ed25519.PublicKey)
	if !VerifyChallenge(pub, n1, wire, sig) {
		t.Fatal("own signature refused")
	}
	if VerifyChallenge(pub, n2, wire, sig) {
		t.Fatal("signature replayed on another nonce accepted")
	}
	other, _ := Sign(ck, Cert{Handle: "x", DevicePub: pub, NetworkID: "n", IssuedAt: c.IssuedAt, ExpiresAt: c.ExpiresAt})
	if VerifyChallenge(pub, n1, other, sig) {
		t.Fatal("signature accepted for another cert")
	}
	if VerifyChallenge(pub, n1, wire, sig[:63]) || VerifyChallenge(pub[:31], n1, wire, sig) {
		t.Fatal("bad lengths accepted")
	}
}

func TestIrohPreambleAndAnonymous(t *testing.T) {
	ck, dk, c := testKeys(t)
	wire, _ := Sign(ck, c)
	var buf bytes.Buffer
	if err := IrohPreamble(&buf, &Identity{Key: dk, Cert: wire}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), append(binary.BigEndian.AppendUint32(nil, uint32(len(wire))), wire...)) {
		t.Fatal("iroh preamble bytes wrong")
	}
	buf.Reset()
	IrohPreamble(&buf, nil)
	if !bytes.Equal(buf.Bytes(), []byte{0, 0, 0, 0}) {
		t.Fatalf("anonymous iroh preamble %x", buf.Bytes())
	}
	// Anonymous unix handshake: nonce in, four zero bytes out, no signature.
	rw := &struct {
		io.Reader
		bytes.Buffer
	}{Reader: bytes.NewReader(make([]byte, NonceSize))}
	if err := ClientHandshake(rwPair{rw.Reader, &rw.Buffer}, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rw.Buffer.Bytes(), []byte{0, 0, 0, 0}) {
		t.Fatalf("anonymous handshake wrote %x", rw.Buffer.Bytes())
	}
	if err := ClientHandshake(rwPair{bytes.NewReader(make([]byte, 5)), io.Discard}, nil); err == nil {
		t.Fatal("short nonce accepted")
	}
}

type rwPair struct {
	io.Reader
	io.Writer
}
