package devicecert

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// Version is the only certificate payload version this package knows.
const Version = 1

// MaxCertSize bounds a certificate's wire form and the preamble length.
const MaxCertSize = 16 << 10

// SignatureSize is the length of the coordinator's signature.
const SignatureSize = ed25519.SignatureSize

// TTL is how long a certificate the coordinator issues is valid; clients
// renew after half of it.
const TTL = 30 * 24 * time.Hour

// Errors Parse and Verify wrap, so callers can tell refusals apart.
var (
	ErrMalformed    = errors.New("malformed certificate")
	ErrVersion      = errors.New("unknown certificate version")
	ErrNonCanonical = errors.New("certificate payload is not canonical CBOR")
	ErrSignature    = errors.New("certificate signature does not verify")
	ErrTooLarge     = errors.New("certificate too large")
)

// Cert is a parsed device certificate. Times carry whole seconds.
type Cert struct {
	Handle       string
	DevicePub    ed25519.PublicKey // 32 bytes
	NetworkID    string
	IssuedAt     time.Time
	ExpiresAt    time.Time
	Capabilities []string
}

// ClientID is the device public key in lowercase hex: the client_id of
// every stream the device opens and, on iroh, its NodeId.
func (c *Cert) ClientID() string { return hex.EncodeToString(c.DevicePub) }

// Has reports whether the certificate lists capability cap verbatim.
func (c *Cert) Has(cap string) bool { return slices.Contains(c.Capabilities, cap) }

// ValidAt reports an error unless t lies in [IssuedAt, ExpiresAt).
func (c *Cert) ValidAt(t time.Time) error {
	if t.Before(c.IssuedAt) {
		return fmt.Errorf("certificate not valid before %s", c.IssuedAt.UTC().Format(time.RFC3339))
	}
	if !t.Before(c.ExpiresAt) {
		return fmt.Errorf("certificate expired at %s", c.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return nil
}

// payload is the CBOR map. Field order does not matter: core deterministic
// encoding sorts the keys.
type payload struct {
	V            uint64   `cbor:"v"`
	Handle       string   `cbor:"handle"`
	DevicePubkey []byte   `cbor:"device_pubkey"`
	NetworkID    string   `cbor:"network_id"`
	IssuedAt     uint64   `cbor:"issued_at"`
	ExpiresAt    uint64   `cbor:"expires_at"`
	Capabilities []string `cbor:"capabilities"`
}

var (
	encMode cbor.EncMode
	// strictDec refuses anything a canonical payload cannot contain.
	strictDec cbor.DecMode
	// versionDec only reads "v", so an unknown version is reported as such
	// rather than as an unknown field.
	versionDec cbor.DecMode
)

func init() {
	var err error
	eo := cbor.CoreDetEncOptions()
	eo.NilContainers = cbor.NilContainerAsEmpty
	if encMode, err = eo.EncMode(); err != nil {
		panic(err)
	}
	do := cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		FieldNameMatching: cbor.FieldNameMatchingCaseSensitive,
		UTF8:              cbor.UTF8RejectInvalid,
		MaxNestedLevels:   4,
		MaxArrayElements:  256,
		MaxMapPairs:       32,
	}
	if strictDec, err = do.DecMode(); err != nil {
		panic(err)
	}
	do.ExtraReturnErrors = cbor.ExtraDecErrorNone
	if versionDec, err = do.DecMode(); err != nil {
		panic(err)
	}
}

func (c *Cert) check() error {
	switch {
	case len(c.DevicePub) != ed25519.PublicKeySize:
		return fmt.Errorf("device_pubkey is %d bytes, want %d", len(c.DevicePub), ed25519.PublicKeySize)
	case c.Handle == "":
		return errors.New("handle is empty")
	case c.NetworkID == "":
		return errors.New("network_id is empty")
	case c.IssuedAt.Unix() < 0:
		return errors.New("issued_at is before 1970")
	case !c.ExpiresAt.After(c.IssuedAt):
		return errors.New("expires_at is not after issued_at")
	}
	for _, cp := range c.Capabilities {
		if cp == "" {
			return errors.New("empty capability")
		}
	}
	return nil
}

// encodePayload returns the canonical payload bytes of c.
func (c *Cert) encodePayload() ([]byte, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	return encMode.Marshal(payload{
		V:            Version,
		Handle:       c.Handle,
		DevicePubkey: c.DevicePub,
		NetworkID:    c.NetworkID,
		IssuedAt:     uint64(c.IssuedAt.Unix()),
		ExpiresAt:    uint64(c.ExpiresAt.Unix()),
		Capabilities: c.Capabilities,
	})
}

// Sign encodes c and signs it with the coordinator's key, returning the
// certificate's wire bytes.
func Sign(coordKey ed25519.PrivateKey, c Cert) ([]byte, error) {
	if len(coordKey) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("sign cert: coordinator key is %d bytes, want %d", len(coordKey), ed25519.PrivateKeySize)
	}
	p, err := c.encodePayload()
	if err != nil {
		return nil, fmt.Errorf("sign cert: %w", err)
	}
	if 4+len(p)+SignatureSize > MaxCertSize {
		return nil, fmt.Errorf("sign cert: %w: %d bytes", ErrTooLarge, 4+len(p)+SignatureSize)
	}
	out := make([]byte, 4, 4+len(p)+SignatureSize)
	binary.BigEndian.PutUint32(out, uint32(len(p)))
	out = append(out, p...)
	return append(out, ed25519.Sign(coordKey, p)...), nil
}

// split returns the payload and signature of wire, checking lengths only.
func split(wire []byte) (p, sig []byte, err error) {
	if len(wire) > MaxCertSize {
		return nil, nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(wire), MaxCertSize)
	}
	if len(wire) < 4 {
		return nil, nil, fmt.Errorf("%w: %d bytes, shorter than the length prefix", ErrMalformed, len(wire))
	}
	n := binary.BigEndian.Uint32(wire)
	if uint64(n)+4+SignatureSize != uint64(len(wire)) {
		return nil, nil, fmt.Errorf("%w: payload length %d does not match %d wire bytes (want 4+%d+%d)", ErrMalformed, n, len(wire), n, SignatureSize)
	}
	return wire[4 : 4+n], wire[4+n:], nil
}

// Parse decodes wire strictly without checking the signature: exact
// lengths, no trailing bytes, version 1 only, every field present with its
// type, no unknown fields, canonical encoding. Use Verify to trust it.
func Parse(wire []byte) (*Cert, error) {
	p, _, err := split(wire)
	if err != nil {
		return nil, err
	}
	return parsePayload(p)
}

func parsePayload(p []byte) (*Cert, error) {
	var ver struct {
		V any `cbor:"v"`
	}
	if err := versionDec.Unmarshal(p, &ver); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if v, ok := ver.V.(uint64); !ok || v != Version {
		return nil, fmt.Errorf("%w: v=%v", ErrVersion, ver.V)
	}
	var pl payload
	if err := strictDec.Unmarshal(p, &pl); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if pl.IssuedAt > 1<<62 || pl.ExpiresAt > 1<<62 {
		return nil, fmt.Errorf("%w: time out of range", ErrMalformed)
	}
	c := &Cert{
		Handle:       pl.Handle,
		DevicePub:    ed25519.PublicKey(pl.DevicePubkey),
		NetworkID:    pl.NetworkID,
		IssuedAt:     time.Unix(int64(pl.IssuedAt), 0).UTC(),
		ExpiresAt:    time.Unix(int64(pl.ExpiresAt), 0).UTC(),
		Capabilities: pl.Capabilities,
	}
	if c.Capabilities == nil {
		c.Capabilities = []string{}
	}
	again, err := c.encodePayload()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if !bytes.Equal(again, p) {
		return nil, ErrNonCanonical
	}
	return c, nil
}

// Verify parses wire strictly and checks the coordinator's signature over
// the payload. Validity in time, network and revocation are the verifier's
// policy (internal/auth), not this function's.
func Verify(wire []byte, coordPub ed25519.PublicKey) (*Cert, error) {
	if len(coordPub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("verify cert: coordinator key is %d bytes, want %d", len(coordPub), ed25519.PublicKeySize)
	}
	p, sig, err := split(wire)
	if err != nil {
		return nil, fmt.Errorf("verify cert: %w", err)
	}
	// Signature first: nothing an unauthenticated peer sends reaches the
	// CBOR decoder unless the coordinator signed it.
	if !ed25519.Verify(coordPub, p, sig) {
		return nil, fmt.Errorf("verify cert: %w", ErrSignature)
	}
	c, err := parsePayload(p)
	if err != nil {
		return nil, fmt.Errorf("verify cert: %w", err)
	}
	return c, nil
}
