package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// samples holds one fully populated value of every frame type.
var samples = map[string]Message{
	"auth":           Auth{Token: "t", ClientID: "c1", Acks: true},
	"session_open":   SessionOpen{SessionID: "s1"},
	"text_final":     TextFinal{Text: "hi", SessionID: "s1", Attachments: []Attachment{{Kind: "image", Path: "/a/b.png", Filename: "b.png"}}},
	"audio_chunk_in": AudioChunkIn{SessionID: "s1", Data: "AAEC", Seq: 3, IsEnd: true},
	"attachment":     AttachmentIn{SessionID: "s1", Path: "/u/x.pdf", Filename: "x.pdf", Kind: "file"},
	"interrupt":      Interrupt{SessionID: "s1"},
	"command":        Command{Name: "model", SessionID: "s1", Args: "gpt"},
	"ping":           Ping{},
	"ack":            Ack{SessionID: "s1", TurnID: "t1"},

	"auth_ok":         AuthOK{AgentName: "a", Version: "1.0"},
	"auth_error":      AuthError{Reason: "no"},
	"delta":           Delta{Text: "He", SessionID: "s1"},
	"status":          Status{Text: "using tool x", SessionID: "s1"},
	"response":        Response{Text: "done", SessionID: "s1", Model: "m", Attachments: []Attachment{{Kind: "file", Path: "/p", Filename: "p"}}, Interrupted: true, TurnID: "t1"},
	"turn_complete":   TurnComplete{SessionID: "s1", Usage: Usage{PromptTokens: 1, CompletionTokens: 2, TotalTokens: 3, CostUSD: 0.5}, TurnID: "t1"},
	"queued":          Queued{Position: 2, SessionID: "s1"},
	"pong":            Pong{},
	"audio_start":     AudioStart{SessionID: "s1", Format: "pcm16", SampleRate: 24000},
	"audio_chunk":     AudioChunk{SessionID: "s1", Data: "AAEC", Seq: 1},
	"audio_end":       AudioEnd{SessionID: "s1"},
	"resource_event":  ResourceEvent{Resource: "mcp", Action: "updated", ID: "fs"},
	"system_snapshot": SystemSnapshot{CPUPercent: 1.5, RAMPercent: 20, DiskPercent: 70.25},
	"error":           Error{Text: "bad", SessionID: "s1", TurnID: "t1"},
	"command_result":  CommandResult{Text: "ok", SessionID: "s1", NewSessionID: "s2"},
}

func TestRoundTripEveryType(t *testing.T) {
	for _, d := range []Direction{ClientToServer, ServerToClient} {
		for _, typ := range Types(d) {
			t.Run(typ, func(t *testing.T) {
				m, ok := samples[typ]
				if !ok {
					t.Fatalf("no sample for frame type %q", typ)
				}
				if m.Type() != typ {
					t.Fatalf("sample Type() = %q", m.Type())
				}
				data, err := Encode(m)
				if err != nil {
					t.Fatal(err)
				}
				got, err := Decode(data, d)
				if err != nil {
					t.Fatalf("decode %s: %v", data, err)
				}
				if !reflect.DeepEqual(got, m) {
					t.Fatalf("round trip:\n got %#v\nwant %#v\nframe %s", got, m, data)
				}
				if New(typ) == nil {
					t.Fatalf("New(%q) = nil", typ)
				}
				// A frame is only valid in its own direction.
				other := ServerToClient
				if d == ServerToClient {
					other = ClientToServer
				}
				if _, err := Decode(data, other); !errors.Is(err, ErrUnknownType) {
					t.Fatalf("decode in the other direction: err = %v, want ErrUnknownType", err)
				}
			})
		}
	}
	if n := len(Types(ClientToServer)) + len(Types(ServerToClient)); n != len(samples) {
		t.Fatalf("%d registered types, %d samples", n, len(samples))
	}
}

func TestEncodeEmptyPayload(t *testing.T) {
	data, err := Encode(Ping{})
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != `{"type":"ping"}` {
		t.Fatalf("got %s", data)
	}
}

func TestDecodeBadInput(t *testing.T) {
	tests := []struct {
		name  string
		frame string
		want  string // substring of the error
	}{
		{"not json", `{"type":`, "invalid JSON"},
		{"garbage", `hello`, "invalid JSON"},
		{"two values", `{"type":"ping"} {"type":"ping"}`, "more than one value"},
		{"array", `[1,2]`, "invalid JSON: want map, got array"},
		{"null", `null`, "want a JSON object"},
		{"no type", `{"text":"x"}`, `missing field "type"`},
		{"type not string", `{"type":5}`, `field "type" must be a string`},
		{"unknown type", `{"type":"fly"}`, `unknown message type "fly"`},
		{"server type from client", `{"type":"delta","text":"x","session_id":"s"}`, `unknown message type "delta"`},
		{"missing field", `{"type":"text_final","text":"x"}`, `text_final: missing field "session_id"`},
		{"null field", `{"type":"text_final","text":null,"session_id":"s"}`, `text_final: missing field "text"`},
		{"wrong field type", `{"type":"text_final","text":5,"session_id":"s"}`, `text_final: field "text": want string, got number`},
		{"wrong nested type", `{"type":"text_final","text":"x","session_id":"s","attachments":"no"}`, `field "attachments": want slice, got string`},
		{"wrong bool", `{"type":"audio_chunk_in","session_id":"s","data":"x","seq":"1"}`, `field "seq": want int, got string`},
		{"long unknown type is truncated", `{"type":"` + strings.Repeat("x", 100) + `"}`, "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Decode([]byte(tt.frame), ClientToServer)
			if err == nil {
				t.Fatalf("decoded %#v, want error", m)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestDecodeReturnsValueTypes(t *testing.T) {
	m, err := Decode([]byte(`{"type":"text_final","text":"","session_id":"s"}`), ClientToServer)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.(TextFinal); !ok {
		t.Fatalf("got %T, want wire.TextFinal", m)
	}
}

// A payload field called "type" would collide with the frame's type.
func TestNoPayloadFieldNamedType(t *testing.T) {
	for typ, m := range samples {
		data, err := Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		if keys := topLevelKeys(t, data); keys["type"] != 1 {
			t.Errorf("%s: frame %s has %d top-level \"type\" keys", typ, data, keys["type"])
		}
	}
}

// topLevelKeys counts the keys of a JSON object, duplicates included.
func topLevelKeys(t *testing.T, data []byte) map[string]int {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("frame %s is not an object", data)
	}
	keys := map[string]int{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys[tok.(string)]++
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

// TestDecodeFastPath: a well-formed frame takes Decode's fast path, which
// allocates less than decodeSlow (no map of fields, no copy of each).
func TestDecodeFastPath(t *testing.T) {
	for _, frame := range [][]byte{
		[]byte(`{"type":"text_final","text":"client 1 turn 2","session_id":"s1"}`),
		[]byte(`{"type":"response","text":"echo: hi","session_id":"s1","model":"echo","attachments":[],"turn_id":"t1"}`),
	} {
		d := ClientToServer
		if bytes.Contains(frame, []byte(`"response"`)) {
			d = ServerToClient
		}
		fast := testing.AllocsPerRun(100, func() { Decode(frame, d) })
		slow := testing.AllocsPerRun(100, func() { decodeSlow(frame, d) })
		if fast >= slow {
			t.Errorf("%s: Decode allocates %.0f times, decodeSlow %.0f: the fast path was not taken", frame, fast, slow)
		}
	}
}

// BenchmarkDecode: a turn's frames, by Decode and by decodeSlow.
func BenchmarkDecode(b *testing.B) {
	frame := []byte(`{"type":"response","text":"echo: client 1 turn 2 (this is the echo provider; configure a real model to get real answers)","session_id":"s1","model":"echo","attachments":[],"turn_id":"t1"}`)
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			Decode(frame, ServerToClient)
		}
	})
	b.Run("slow", func(b *testing.B) {
		for b.Loop() {
			decodeSlow(frame, ServerToClient)
		}
	})
}
