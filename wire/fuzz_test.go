package wire

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzDecode feeds arbitrary frames to Decode in both directions: it must
// never panic, and a frame it accepts must encode back to a frame that
// decodes to the same message (so what the server acts on is what it
// would send on; testdata/fuzz holds an "attachments":[] case).
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"type":"text_final","text":"hi","session_id":"s1","attachments":[{"type":"file","path":"/a","filename":"a"}]}`,
		`{"type":"session_open","session_id":"tg:1"}`,
		`{"type":"auth","token":"x","acks":true}`,
		`{"type":"ping"}`,
		`{"type":"delta","text":"x","session_id":"s"}`,
		`{"type":"text_final","text":null,"session_id":"s"}`,
		`{"type":"command","name":"model","args":"gpt"}`,
		`{"type":1}`,
		`[]`,
		`{"type":"ack","session_id":"s"}{}`,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, serverToClient bool) {
		d := ClientToServer
		if serverToClient {
			d = ServerToClient
		}
		m, err := Decode(data, d)
		if err != nil {
			if m != nil {
				t.Fatalf("Decode returned a message with error %v", err)
			}
			return
		}
		if New(m.Type()) == nil {
			t.Fatalf("decoded an unregistered type %q", m.Type())
		}
		b, err := Encode(m)
		if err != nil {
			t.Fatalf("Encode(%#v): %v", m, err)
		}
		if !json.Valid(b) {
			t.Fatalf("Encode produced invalid JSON %q", b)
		}
		m2, err := Decode(b, d)
		if err != nil {
			t.Fatalf("re-decode of %q: %v", b, err)
		}
		// Compared as encoded: an empty list and an absent one are the same
		// frame (omitempty), anything else must survive.
		b2, err := Encode(m2)
		if err != nil || !bytes.Equal(b, b2) || reflect.TypeOf(m) != reflect.TypeOf(m2) {
			t.Fatalf("round trip changed the message:\n%#v → %s\n%#v → %s (%v)", m, b, m2, b2, err)
		}
	})
}
