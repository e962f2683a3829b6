package devicecert

import (
	"encoding/base32"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

func TestTicketRoundTrip(t *testing.T) {
	cases := []Ticket{
		{Code: "abc", NodeID: "00ff", Name: "", NetworkID: "n1", Role: "chat", Expires: 1},
		{V: 1, Code: "k7qv", NodeID: strings.Repeat("ab", 32), Name: "my agent ✓", NetworkID: "net", Role: "admin", Expires: 1900000000,
			Addrs: []string{"192.0.2.1:4433", "[2001:db8::1]:4433"}, Relay: "https://relay.example/"},
	}
	for _, tk := range cases {
		s, err := EncodeTicket(tk)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(s, "oa1") || s != strings.ToLower(s) || strings.Contains(s, "=") {
			t.Fatalf("ticket %q not oa1 + lowercase unpadded base32", s)
		}
		got, err := ParseTicket(s)
		if err != nil {
			t.Fatal(err)
		}
		tk.V = 1
		if got.Code != tk.Code || got.NodeID != tk.NodeID || got.Name != tk.Name || got.NetworkID != tk.NetworkID ||
			got.Role != tk.Role || got.Expires != tk.Expires || strings.Join(got.Addrs, ",") != strings.Join(tk.Addrs, ",") || got.Relay != tk.Relay || got.V != 1 {
			t.Fatalf("round trip: %+v != %+v", got, tk)
		}
	}
}

func TestParseTicketRefuses(t *testing.T) {
	good, err := EncodeTicket(Ticket{Code: "c", NodeID: "n", NetworkID: "w", Role: "chat", Expires: 5})
	if err != nil {
		t.Fatal(err)
	}
	enc := func(m map[string]any) string {
		b, err := cbor.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return "oa1" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
	}
	base := func() map[string]any {
		return map[string]any{"v": 1, "code": "c", "node_id": "n", "name": "", "network_id": "w", "role": "chat", "expires": 5}
	}
	with := func(k string, v any) string {
		m := base()
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return enc(m)
	}
	// Flip the spare low bits of the last base32 character.
	last := good[len(good)-1]
	alt := strings.IndexByte("abcdefghijklmnopqrstuvwxyz234567", last) ^ 1
	spare := good[:len(good)-1] + string("abcdefghijklmnopqrstuvwxyz234567"[alt])

	cases := map[string]string{
		"empty":          "",
		"no prefix":      good[3:],
		"other version":  "oa2" + good[3:],
		"uppercase":      "oa1" + strings.ToUpper(good[3:]),
		"padding":        good + "=",
		"bad char":       good[:10] + "!" + good[11:],
		"truncated":      good[:len(good)-2],
		"spare bits":     spare,
		"too long":       "oa1" + strings.Repeat("a", MaxTicketLen),
		"v 2":            with("v", 2),
		"no code":        with("code", nil),
		"empty code":     with("code", ""),
		"no expiry":      with("expires", nil),
		"expires text":   with("expires", "5"),
		"unknown field":  with("foo", 1),
		"empty addrs":    with("addrs", []string{}),
		"non-canonical":  enc(map[string]any{"v": 1, "code": "c", "node_id": "n", "name": "", "network_id": "w", "role": "chat", "expires": cbor.RawMessage{0x18, 0x05}}),
		"no role":        with("role", nil),
		"trailing bytes": good + "aa",
	}
	for name, s := range cases {
		if name == "spare bits" && spare == good {
			continue
		}
		if tk, err := ParseTicket(s); err == nil {
			t.Errorf("%s: parsed %+v", name, tk)
		}
	}
	if _, err := ParseTicket(good); err != nil {
		t.Fatal(err)
	}
}
