package devicecert

import (
	"bytes"
	"crypto/ed25519"
	"testing"
)

// FuzzParse: whatever Parse accepts must re-sign to the same payload, and
// Verify must never accept what the coordinator did not sign.
func FuzzParse(f *testing.F) {
	ck, _, c := testKeys(f)
	good, _ := Sign(ck, c)
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add([]byte{0, 0, 0, 0})
	pub := ck.Public().(ed25519.PublicKey)
	f.Fuzz(func(t *testing.T, wire []byte) {
		pc, err := Parse(wire)
		if err != nil {
			return
		}
		p := wire[4 : len(wire)-SignatureSize]
		again, err := pc.encodePayload()
		if err != nil || !bytes.Equal(again, p) {
			t.Fatalf("accepted payload does not re-encode identically: %v", err)
		}
		if _, err := Verify(wire, pub); err == nil && !ed25519.Verify(pub, p, wire[len(wire)-SignatureSize:]) {
			t.Fatal("Verify accepted a bad signature")
		}
	})
}

// FuzzReadPreamble: never more than MaxCertSize, never reads past the
// declared length.
func FuzzReadPreamble(f *testing.F) {
	ck, _, c := testKeys(f)
	good, _ := Sign(ck, c)
	var buf bytes.Buffer
	WritePreamble(&buf, good)
	f.Add(buf.Bytes())
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		got, err := ReadPreamble(r)
		if err != nil {
			return
		}
		if len(got) > MaxCertSize {
			t.Fatalf("returned %d bytes", len(got))
		}
		if consumed := len(in) - r.Len(); consumed != 4+len(got) {
			t.Fatalf("consumed %d bytes for a %d-byte cert", consumed, len(got))
		}
	})
}

// FuzzParseTicket: whatever parses must encode back to the same string.
func FuzzParseTicket(f *testing.F) {
	v := loadVector(f)
	f.Add(v.Ticket)
	f.Add("oa1")
	f.Add("oa1aaaa")
	f.Fuzz(func(t *testing.T, s string) {
		tk, err := ParseTicket(s)
		if err != nil {
			return
		}
		again, err := EncodeTicket(*tk)
		if err != nil || again != s {
			t.Fatalf("accepted ticket does not re-encode identically: %q vs %q (%v)", again, s, err)
		}
	})
}
