// Package enroll is the coordinator RPC that devices use over iroh (ALPN
// openagent/coordinator/1, DESIGN.md §3): redeeming an invitation for a
// device certificate, renewing a certificate and asking which network a node
// serves. It holds both ends: Server (mounted by the daemon on the
// coordinator ALPN) and Client (used by `agentd enroll` and the remote
// dialer), plus the admin REST route that mints invitation tickets.
//
// Wire format: every message is a 4-byte big-endian length followed by that
// many bytes of CBOR (at most MaxMessage). The client speaks first (QUIC
// streams only become visible to the acceptor once the dialer writes):
//
//	request  {id: uint, method: text, params: map}
//	response {id: uint, result: map} or {id: uint, error: {code, message}}
//
// A stream may carry several requests one after another; the server answers
// each in order and closes the stream after MaxRequestsPerStream requests or
// IdleTimeout without a request.
package enroll

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// Protocol limits.
const (
	// MaxMessage bounds one framed CBOR message.
	MaxMessage = 64 << 10
	// MaxRequestsPerStream bounds the requests one stream may carry.
	MaxRequestsPerStream = 16
	// IdleTimeout closes a stream that sends no (complete) request for this long.
	IdleTimeout = 30 * time.Second
	// MaxLabel bounds a device label.
	MaxLabel = 200
)

// Methods.
const (
	MethodRedeem      = "redeem"
	MethodRenew       = "renew"
	MethodNetworkInfo = "network_info"
)

// Error codes of the RPC.
const (
	CodeInvalidCode = "invalid_code" // the invitation code is unknown
	CodeExpired     = "expired"      // the invitation (redeem) or certificate (renew) expired
	CodeUsed        = "used"         // the invitation has no uses left
	CodeRevoked     = "revoked"      // the device is revoked
	CodeNotDue      = "not_due"      // renew before half of the certificate's life
	CodeBadRequest  = "bad_request"  // malformed message, params or certificate
	CodeForbidden   = "forbidden"    // the stream's NodeId does not match the key in the request
	CodeRefused     = "refused"      // any other refusal by the coordinator (message says why)
	CodeUnknown     = "unknown_method"
)

// Error is an RPC error answer. errors.Is matches two *Error values with the
// same Code, so callers test `errors.Is(err, enroll.ErrUsed)`.
type Error struct {
	Code    string `cbor:"code"`
	Message string `cbor:"message"`
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "coordinator: " + e.Code
	}
	return "coordinator: " + e.Code + ": " + e.Message
}

// Is matches by code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Sentinels for errors.Is.
var (
	ErrInvalidCode = &Error{Code: CodeInvalidCode}
	ErrExpired     = &Error{Code: CodeExpired}
	ErrUsed        = &Error{Code: CodeUsed}
	ErrRevoked     = &Error{Code: CodeRevoked}
	ErrNotDue      = &Error{Code: CodeNotDue}
	ErrBadRequest  = &Error{Code: CodeBadRequest}
	ErrForbidden   = &Error{Code: CodeForbidden}
)

// request and response are the framed messages.
type request struct {
	ID     uint64          `cbor:"id"`
	Method string          `cbor:"method"`
	Params cbor.RawMessage `cbor:"params,omitempty"`
}

type response struct {
	ID     uint64          `cbor:"id"`
	Result cbor.RawMessage `cbor:"result,omitempty"`
	Error  *Error          `cbor:"error,omitempty"`
}

// RedeemParams asks for a certificate for DevicePubkey, which must be the
// NodeId of the stream carrying the request.
type RedeemParams struct {
	Code         string `cbor:"code"`
	DevicePubkey []byte `cbor:"device_pubkey"`
	Label        string `cbor:"label"`
}

// CertResult is the answer of redeem and renew: certificate wire bytes.
type CertResult struct {
	Cert []byte `cbor:"cert"`
}

// RenewParams carries the device's current certificate.
type RenewParams struct {
	Cert []byte `cbor:"cert"`
}

// NetworkInfo is the answer of network_info.
type NetworkInfo struct {
	Name      string `cbor:"name"`
	NetworkID string `cbor:"network_id"`
	NodeID    string `cbor:"node_id"`
}

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	if encMode, err = cbor.CoreDetEncOptions().EncMode(); err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		MaxNestedLevels:  8,
		MaxArrayElements: 1024,
		MaxMapPairs:      64,
		UTF8:             cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// errTooLarge marks a frame over MaxMessage.
var errTooLarge = errors.New("message too large")

// writeFrame writes one length-prefixed CBOR message in a single write.
func writeFrame(w io.Writer, v any) error {
	b, err := encMode.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode message: %w", err)
	}
	if len(b) > MaxMessage {
		return fmt.Errorf("encode message: %w: %d bytes, limit %d", errTooLarge, len(b), MaxMessage)
	}
	out := make([]byte, 4, 4+len(b))
	binary.BigEndian.PutUint32(out, uint32(len(b)))
	if _, err := w.Write(append(out, b...)); err != nil {
		return fmt.Errorf("write message: %w", err)
	}
	return nil
}

// readFrame reads one length-prefixed message's bytes. A clean EOF before
// the length returns io.EOF.
func readFrame(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("read message length: %w", err)
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxMessage {
		return nil, fmt.Errorf("read message: %w: %d bytes, limit %d", errTooLarge, n, MaxMessage)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("read message: %w", err)
	}
	return b, nil
}
