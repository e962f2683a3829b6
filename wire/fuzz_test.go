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
	addSeeds(f, []string{
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
	})
	f.Fuzz(func(t *testing.T, data []byte, serverToClient bool) {
		d := direction(serverToClient)
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

// FuzzDecodeFast checks Decode's fast path against decodeSlow, the plain
// decoding it stands in for: on every input both give the same message or
// the same error text.
func FuzzDecodeFast(f *testing.F) {
	addSeeds(f, []string{
		`{"type":"text_final","text":"hi","session_id":"s1","attachments":[{"type":"file","path":"/a","filename":"a"}]}`,
		`{"TYPE":"ping"}`,
		`{"type":"ping","type":"pong"}`,
		`{"type":"ping" , "x":[1,{"a":"]}"}],"y":null}`,
		`{"t\u0079pe":"ping"}`,
		`{"type":"p\u0069ng"}`,
		`{"type":"delta","text":"a\"b","session_id":"s","session_id":null}`,
		`{"type":"response","text":"x","session_id":"s","usage":{"total_tokens":1}} `,
		` {"type":"ping"}{"type":"ping"}`,
		`{"type":"ping",}`,
		`{"type":"ping"`,
		`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"type":"ping"}`,
		`{"type":"queued","position":1e400}`,
		"{\"type\":\"ping\xff\"}",
		`{}`,
		`null`,
		`"type"`,
	})
	f.Fuzz(func(t *testing.T, data []byte, serverToClient bool) {
		d := direction(serverToClient)
		m1, err1 := Decode(data, d)
		m2, err2 := decodeSlow(data, d)
		if (err1 == nil) != (err2 == nil) || err1 != nil && err1.Error() != err2.Error() {
			t.Fatalf("%q: Decode says %v, decodeSlow %v", data, err1, err2)
		}
		if !reflect.DeepEqual(m1, m2) {
			t.Fatalf("%q: Decode gives %#v, decodeSlow %#v", data, m1, m2)
		}
	})
}

// addSeeds adds each seed frame in both directions.
func addSeeds(f *testing.F, seeds []string) {
	for _, s := range seeds {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
}

func direction(serverToClient bool) Direction {
	if serverToClient {
		return ServerToClient
	}
	return ClientToServer
}
