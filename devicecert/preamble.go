package devicecert

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// NonceSize is the length of the server's per-stream challenge on unix/tcp.
const NonceSize = 32

// AuthContext prefixes every challenge signature so it cannot be confused
// with a signature made for another purpose.
const AuthContext = "openagent-auth-v1"

// ChallengeMessage is what a client signs on unix/tcp:
// "openagent-auth-v1" || nonce || sha256(certWire).
func ChallengeMessage(nonce, certWire []byte) []byte {
	h := sha256.Sum256(certWire)
	m := make([]byte, 0, len(AuthContext)+len(nonce)+len(h))
	m = append(m, AuthContext...)
	m = append(m, nonce...)
	return append(m, h[:]...)
}

// SignChallenge signs the challenge for nonce with the device key.
func SignChallenge(key ed25519.PrivateKey, nonce, certWire []byte) []byte {
	return ed25519.Sign(key, ChallengeMessage(nonce, certWire))
}

// VerifyChallenge reports whether sig is devicePub's signature of the
// challenge for nonce and certWire.
func VerifyChallenge(devicePub ed25519.PublicKey, nonce, certWire, sig []byte) bool {
	return len(devicePub) == ed25519.PublicKeySize && len(sig) == ed25519.SignatureSize &&
		ed25519.Verify(devicePub, ChallengeMessage(nonce, certWire), sig)
}

// WritePreamble writes the 4-byte big-endian length and certWire. An empty
// certWire makes an anonymous stream.
func WritePreamble(w io.Writer, certWire []byte) error {
	if len(certWire) > MaxCertSize {
		return fmt.Errorf("write preamble: %w: %d bytes", ErrTooLarge, len(certWire))
	}
	b := make([]byte, 4+len(certWire))
	binary.BigEndian.PutUint32(b, uint32(len(certWire)))
	copy(b[4:], certWire)
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write preamble: %w", err)
	}
	return nil
}

// ReadPreamble reads a preamble and returns the certificate wire bytes,
// empty for an anonymous stream. It never reads past the preamble and never
// allocates more than MaxCertSize.
func ReadPreamble(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("read preamble length: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxCertSize {
		return nil, fmt.Errorf("read preamble: %w: %d bytes, limit %d", ErrTooLarge, n, MaxCertSize)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("read preamble: %w", err)
	}
	return b, nil
}

// ClientHandshake authenticates a unix or tcp stream: it reads the server's
// nonce, then writes the preamble and the challenge signature in one write.
// A nil id (or one without a cert) opens an anonymous stream, which the
// gateway serves only where no capability is needed.
func ClientHandshake(conn io.ReadWriter, id *Identity) error {
	nonce := make([]byte, NonceSize)
	if _, err := io.ReadFull(conn, nonce); err != nil {
		return fmt.Errorf("read server nonce: %w", err)
	}
	if id == nil || len(id.Cert) == 0 {
		return WritePreamble(conn, nil)
	}
	if len(id.Key) != ed25519.PrivateKeySize {
		return errors.New("client handshake: identity has no private key")
	}
	if len(id.Cert) > MaxCertSize {
		return fmt.Errorf("client handshake: %w", ErrTooLarge)
	}
	b := make([]byte, 4, 4+len(id.Cert)+ed25519.SignatureSize)
	binary.BigEndian.PutUint32(b, uint32(len(id.Cert)))
	b = append(b, id.Cert...)
	b = append(b, SignChallenge(id.Key, nonce, id.Cert)...)
	if _, err := conn.Write(b); err != nil {
		return fmt.Errorf("client handshake: %w", err)
	}
	return nil
}

// IrohPreamble writes the preamble of an iroh stream. The iroh connection
// already proves that the peer holds the device key, so no signature
// follows. A nil id (or one without a cert) opens an anonymous stream.
func IrohPreamble(w io.Writer, id *Identity) error {
	if id == nil {
		return WritePreamble(w, nil)
	}
	return WritePreamble(w, id.Cert)
}
