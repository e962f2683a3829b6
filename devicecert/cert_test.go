package devicecert

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
)

type vector struct {
	CoordinatorSeed    string   `json:"coordinator_seed"`
	CoordinatorPub     string   `json:"coordinator_pub"`
	DeviceSeed         string   `json:"device_seed"`
	DevicePub          string   `json:"device_pub"`
	Handle             string   `json:"handle"`
	NetworkID          string   `json:"network_id"`
	IssuedAt           int64    `json:"issued_at"`
	ExpiresAt          int64    `json:"expires_at"`
	Capabilities       []string `json:"capabilities"`
	Payload            string   `json:"payload"`
	Cert               string   `json:"cert"`
	Nonce              string   `json:"nonce"`
	ChallengeMessage   string   `json:"challenge_message"`
	ChallengeSignature string   `json:"challenge_signature"`
	TicketCode         string   `json:"ticket_code"`
	TicketName         string   `json:"ticket_name"`
	TicketRole         string   `json:"ticket_role"`
	TicketExpires      int64    `json:"ticket_expires"`
	Ticket             string   `json:"ticket"`
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func loadVector(t testing.TB) vector {
	t.Helper()
	b, err := os.ReadFile("testdata/vector.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vector
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVector(t *testing.T) {
	v := loadVector(t)
	ck := ed25519.NewKeyFromSeed(unhex(t, v.CoordinatorSeed))
	dk := ed25519.NewKeyFromSeed(unhex(t, v.DeviceSeed))
	if got := hex.EncodeToString(ck.Public().(ed25519.PublicKey)); got != v.CoordinatorPub {
		t.Fatalf("coordinator pub %s, vector %s", got, v.CoordinatorPub)
	}
	if got := hex.EncodeToString(dk.Public().(ed25519.PublicKey)); got != v.DevicePub {
		t.Fatalf("device pub %s, vector %s", got, v.DevicePub)
	}
	wire, err := Sign(ck, Cert{
		Handle: v.Handle, DevicePub: dk.Public().(ed25519.PublicKey), NetworkID: v.NetworkID,
		IssuedAt: time.Unix(v.IssuedAt, 0), ExpiresAt: time.Unix(v.ExpiresAt, 0), Capabilities: v.Capabilities,
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(wire); got != v.Cert {
		t.Fatalf("cert bytes differ from the published vector:\n got %s\nwant %s", got, v.Cert)
	}
	if got := hex.EncodeToString(wire[4 : len(wire)-64]); got != v.Payload {
		t.Fatalf("payload %s, vector %s", got, v.Payload)
	}
	c, err := Verify(wire, ck.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if c.Handle != v.Handle || c.ClientID() != v.DevicePub || c.NetworkID != v.NetworkID ||
		c.IssuedAt.Unix() != v.IssuedAt || c.ExpiresAt.Unix() != v.ExpiresAt || strings.Join(c.Capabilities, ",") != strings.Join(v.Capabilities, ",") {
		t.Fatalf("parsed cert %+v does not match the vector", c)
	}
	nonce := unhex(t, v.Nonce)
	if got := hex.EncodeToString(ChallengeMessage(nonce, wire)); got != v.ChallengeMessage {
		t.Fatalf("challenge message %s, vector %s", got, v.ChallengeMessage)
	}
	if got := hex.EncodeToString(SignChallenge(dk, nonce, wire)); got != v.ChallengeSignature {
		t.Fatalf("challenge signature %s, vector %s", got, v.ChallengeSignature)
	}
	tk, err := EncodeTicket(Ticket{Code: v.TicketCode, NodeID: v.CoordinatorPub, Name: v.TicketName, NetworkID: v.NetworkID, Role: v.TicketRole, Expires: v.TicketExpires})
	if err != nil {
		t.Fatal(err)
	}
	if tk != v.Ticket {
		t.Fatalf("ticket %s, vector %s", tk, v.Ticket)
	}
}

// testKeys returns a coordinator key, a device key and a valid cert.
func testKeys(t testing.TB) (ed25519.PrivateKey, ed25519.PrivateKey, Cert) {
	t.Helper()
	v := loadVector(t)
	ck := ed25519.NewKeyFromSeed(unhex(t, v.CoordinatorSeed))
	dk := ed25519.NewKeyFromSeed(unhex(t, v.DeviceSeed))
	return ck, dk, Cert{
		Handle: "alice", DevicePub: dk.Public().(ed25519.PublicKey), NetworkID: "net1",
		IssuedAt: time.Unix(1700000000, 0), ExpiresAt: time.Unix(1700000000, 0).Add(TTL), Capabilities: []string{"chat"},
	}
}

// signRaw wraps an arbitrary payload into a correctly signed wire form, so
// tests reach the payload checks behind the signature.
func signRaw(ck ed25519.PrivateKey, p []byte) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(len(p)))
	out = append(out, p...)
	return append(out, ed25519.Sign(ck, p)...)
}

func TestVerifyRefuses(t *testing.T) {
	ck, _, c := testKeys(t)
	pub := ck.Public().(ed25519.PublicKey)
	good, err := Sign(ck, c)
	if err != nil {
		t.Fatal(err)
	}
	_, other, _ := ed25519.GenerateKey(nil)
	otherWire, _ := Sign(other, c)
	forged := bytes.Clone(good)
	forged[len(forged)-1] ^= 1
	tampered := bytes.Clone(good)
	tampered[10] ^= 1
	rawMap := func(m map[string]any) []byte {
		b, err := cbor.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	base := func() map[string]any {
		return map[string]any{"v": 1, "handle": "alice", "device_pubkey": []byte(c.DevicePub), "network_id": "net1",
			"issued_at": 1700000000, "expires_at": 1702592000, "capabilities": []string{"chat"}}
	}
	with := func(k string, val any) []byte {
		m := base()
		if val == nil {
			delete(m, k)
		} else {
			m[k] = val
		}
		return rawMap(m)
	}
	// A payload with keys in insertion (not canonical) order.
	p := good[4 : len(good)-64]
	nonCanonInt := bytes.Replace(bytes.Clone(p), []byte{0x61, 0x76, 0x01}, []byte{0x61, 0x76, 0x18, 0x01}, 1)
	reordered := append([]byte{0xa7}, p[1+3:]...) // move "v":1 to the end
	reordered = append(reordered, 0x61, 0x76, 0x01)
	indef := append([]byte{0xbf}, p[1:]...)
	indef = append(indef, 0xff)

	cases := []struct {
		name string
		wire []byte
		want error
	}{
		{"forged signature", forged, ErrSignature},
		{"tampered payload", tampered, ErrSignature},
		{"other coordinator", otherWire, ErrSignature},
		{"truncated", good[:len(good)-1], ErrMalformed},
		{"truncated header", good[:3], ErrMalformed},
		{"empty", nil, ErrMalformed},
		{"trailing garbage", append(bytes.Clone(good), 0), ErrMalformed},
		{"oversize", make([]byte, MaxCertSize+1), ErrTooLarge},
		{"length says more", append(binary.BigEndian.AppendUint32(nil, 0xffffffff), good[4:]...), ErrMalformed},
		{"version 2", signRaw(ck, with("v", 2)), ErrVersion},
		{"version missing", signRaw(ck, with("v", nil)), ErrVersion},
		{"version as text", signRaw(ck, with("v", "1")), ErrVersion},
		{"handle as bytes", signRaw(ck, with("handle", []byte("alice"))), ErrMalformed},
		{"pubkey as text", signRaw(ck, with("device_pubkey", "abc")), ErrMalformed},
		{"pubkey short", signRaw(ck, with("device_pubkey", make([]byte, 31))), ErrMalformed},
		{"time negative", signRaw(ck, with("issued_at", -5)), ErrMalformed},
		{"time float", signRaw(ck, with("expires_at", 1702592000.0)), ErrMalformed},
		{"capabilities text", signRaw(ck, with("capabilities", "chat")), ErrMalformed},
		{"capabilities missing", signRaw(ck, with("capabilities", nil)), ErrNonCanonical},
		{"network missing", signRaw(ck, with("network_id", nil)), ErrMalformed},
		{"unknown field", signRaw(ck, with("extra", 1)), ErrMalformed},
		{"non-canonical int", signRaw(ck, nonCanonInt), ErrNonCanonical},
		{"non-canonical key order", signRaw(ck, reordered), ErrNonCanonical},
		{"indefinite map", signRaw(ck, indef), ErrMalformed},
		{"not a map", signRaw(ck, []byte{0x01}), ErrMalformed},
		{"expires before issued", signRaw(ck, with("expires_at", 1600000000)), ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Verify(tc.wire, pub)
			if err == nil {
				t.Fatalf("accepted: %+v", got)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := Verify(good, pub); err != nil {
		t.Fatalf("good cert refused: %v", err)
	}
	if _, err := Parse(reordered); err == nil {
		t.Fatal("Parse accepted a bare payload")
	}
}

func TestSignRefuses(t *testing.T) {
	ck, _, c := testKeys(t)
	mod := func(f func(*Cert)) Cert { x := c; f(&x); return x }
	cases := map[string]Cert{
		"short pubkey":  mod(func(x *Cert) { x.DevicePub = x.DevicePub[:31] }),
		"no handle":     mod(func(x *Cert) { x.Handle = "" }),
		"no network":    mod(func(x *Cert) { x.NetworkID = "" }),
		"expires first": mod(func(x *Cert) { x.ExpiresAt = x.IssuedAt }),
		"empty cap":     mod(func(x *Cert) { x.Capabilities = []string{""} }),
		"oversize cert": mod(func(x *Cert) { x.Handle = strings.Repeat("h", MaxCertSize) }),
		"before 1970":   mod(func(x *Cert) { x.IssuedAt = time.Unix(-1, 0) }),
	}
	for name, cc := range cases {
		if _, err := Sign(ck, cc); err == nil {
			t.Errorf("%s: signed", name)
		}
	}
	if _, err := Sign(ck[:10], c); err == nil {
		t.Error("short coordinator key: signed")
	}
	// nil capabilities encode as an empty array, the one canonical form.
	w, err := Sign(ck, mod(func(x *Cert) { x.Capabilities = nil }))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Verify(w, ck.Public().(ed25519.PublicKey))
	if err != nil || got.Capabilities == nil || len(got.Capabilities) != 0 {
		t.Fatalf("nil capabilities: %+v, %v", got, err)
	}
}

func TestValidAt(t *testing.T) {
	_, _, c := testKeys(t)
	for _, tc := range []struct {
		at time.Time
		ok bool
	}{
		{c.IssuedAt.Add(-time.Second), false},
		{c.IssuedAt, true},
		{c.ExpiresAt.Add(-time.Second), true},
		{c.ExpiresAt, false},
	} {
		if err := c.ValidAt(tc.at); (err == nil) != tc.ok {
			t.Errorf("ValidAt(%v) = %v, want ok=%v", tc.at, err, tc.ok)
		}
	}
}

// TestVectorIndependent runs testdata/check_vector.mjs, a second
// implementation (hand-written CBOR, Node's Ed25519) that shares no code
// with this package, against the published vector.
func TestVectorIndependent(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed; the independent vector check needs it")
	}
	out, err := exec.Command(node, "testdata/check_vector.mjs", "testdata/vector.json").CombinedOutput()
	if err != nil {
		t.Fatalf("independent check failed: %v\n%s", err, out)
	}
}
