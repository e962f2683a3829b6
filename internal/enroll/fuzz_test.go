package enroll

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
)

// FuzzFrame feeds arbitrary bytes to the coordinator RPC framing and
// decoding as the server reads a stream: readFrame never returns more than
// MaxMessage bytes, a decodable request survives writeFrame/readFrame
// unchanged, and the params of every method decode or fail without panic.
func FuzzFrame(f *testing.F) {
	frame := func(v any) []byte {
		var b bytes.Buffer
		if err := writeFrame(&b, v); err != nil {
			f.Fatal(err)
		}
		return b.Bytes()
	}
	params := func(v any) []byte {
		b, err := encMode.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	f.Add(frame(request{ID: 1, Method: MethodNetworkInfo}))
	f.Add(frame(request{ID: 2, Method: MethodRedeem, Params: params(RedeemParams{Code: "abc", DevicePubkey: make([]byte, 32), Label: "l"})}))
	f.Add(frame(request{ID: 3, Method: MethodRenew, Params: params(RenewParams{Cert: []byte{1, 2, 3}})}))
	f.Add(append(frame(request{ID: 4, Method: "x"}), frame(request{ID: 5})...))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 1, 0xa1})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for i := 0; i < MaxRequestsPerStream; i++ {
			b, err := readFrame(r)
			if err != nil {
				if len(data) >= 4 && i == 0 && binary.BigEndian.Uint32(data) > MaxMessage && !errors.Is(err, errTooLarge) {
					t.Fatalf("oversize length not refused as too large: %v", err)
				}
				return
			}
			if len(b) > MaxMessage {
				t.Fatalf("readFrame returned %d bytes, limit %d", len(b), MaxMessage)
			}
			var req request
			if err := decMode.Unmarshal(b, &req); err != nil {
				return
			}
			var out bytes.Buffer
			if err := writeFrame(&out, req); err != nil {
				t.Fatalf("writeFrame of a decoded request: %v", err)
			}
			b2, err := readFrame(&out)
			if err != nil {
				t.Fatalf("readFrame of our own frame: %v", err)
			}
			var req2 request
			if err := decMode.Unmarshal(b2, &req2); err != nil {
				t.Fatalf("decode of our own frame: %v", err)
			}
			if req.ID != req2.ID || req.Method != req2.Method || !reflect.DeepEqual(normal(req.Params), normal(req2.Params)) {
				t.Fatalf("round trip changed the request: %#v → %#v", req, req2)
			}
			var rp RedeemParams
			var np RenewParams
			_ = decodeParams(req.Params, &rp)
			_ = decodeParams(req.Params, &np)
		}
	})
}

// normal treats absent and empty params alike (omitempty).
func normal(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}
