package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// Direction says which side sends a frame type.
type Direction int

const (
	ClientToServer Direction = iota
	ServerToClient
)

type spec struct {
	dir      Direction
	new      func() Message
	required []string // payload fields that must be present
}

// registry lists every frame type of the protocol.
var registry = map[string]spec{
	"auth":           {ClientToServer, func() Message { return &Auth{} }, nil},
	"session_open":   {ClientToServer, func() Message { return &SessionOpen{} }, []string{"session_id"}},
	"text_final":     {ClientToServer, func() Message { return &TextFinal{} }, []string{"text", "session_id"}},
	"audio_chunk_in": {ClientToServer, func() Message { return &AudioChunkIn{} }, []string{"session_id", "data", "seq"}},
	"attachment":     {ClientToServer, func() Message { return &AttachmentIn{} }, []string{"session_id", "path"}},
	"interrupt":      {ClientToServer, func() Message { return &Interrupt{} }, []string{"session_id"}},
	"command":        {ClientToServer, func() Message { return &Command{} }, []string{"name"}},
	"ping":           {ClientToServer, func() Message { return &Ping{} }, nil},
	"ack":            {ClientToServer, func() Message { return &Ack{} }, []string{"session_id"}},

	"auth_ok":         {ServerToClient, func() Message { return &AuthOK{} }, []string{"agent_name", "version"}},
	"auth_error":      {ServerToClient, func() Message { return &AuthError{} }, []string{"reason"}},
	"delta":           {ServerToClient, func() Message { return &Delta{} }, []string{"text", "session_id"}},
	"status":          {ServerToClient, func() Message { return &Status{} }, []string{"text"}},
	"response":        {ServerToClient, func() Message { return &Response{} }, []string{"text", "session_id"}},
	"turn_complete":   {ServerToClient, func() Message { return &TurnComplete{} }, []string{"session_id"}},
	"queued":          {ServerToClient, func() Message { return &Queued{} }, []string{"position"}},
	"pong":            {ServerToClient, func() Message { return &Pong{} }, nil},
	"audio_start":     {ServerToClient, func() Message { return &AudioStart{} }, []string{"session_id"}},
	"audio_chunk":     {ServerToClient, func() Message { return &AudioChunk{} }, []string{"session_id", "data"}},
	"audio_end":       {ServerToClient, func() Message { return &AudioEnd{} }, []string{"session_id"}},
	"resource_event":  {ServerToClient, func() Message { return &ResourceEvent{} }, []string{"resource", "action"}},
	"system_snapshot": {ServerToClient, func() Message { return &SystemSnapshot{} }, nil},
	"error":           {ServerToClient, func() Message { return &Error{} }, []string{"text"}},
	"command_result":  {ServerToClient, func() Message { return &CommandResult{} }, []string{"text"}},
}

// Types returns every frame type sent in direction d, sorted.
func Types(d Direction) []string {
	var out []string
	for t, s := range registry {
		if s.dir == d {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out
}

// New returns a zero message of frame type t, or nil if t is unknown.
func New(t string) Message {
	s, ok := registry[t]
	if !ok {
		return nil
	}
	return s.new()
}

// Required returns the payload fields that a frame of type t must carry.
func Required(t string) []string { return registry[t].required }

// Encode renders m as one frame.
func Encode(m Message) ([]byte, error) {
	payload, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", m.Type(), err)
	}
	buf := make([]byte, 0, len(payload)+len(m.Type())+12)
	buf = append(buf, `{"type":"`...)
	buf = append(buf, m.Type()...)
	buf = append(buf, '"')
	if len(payload) > 2 { // not "{}"
		buf = append(buf, ',')
		buf = append(buf, payload[1:]...)
	} else {
		buf = append(buf, '}')
	}
	return buf, nil
}

// ErrUnknownType is wrapped by Decode for frames whose type is not part of
// the protocol.
var ErrUnknownType = errors.New("unknown message type")

// Decode parses one frame sent in direction d. Its errors are meant to be
// shown to the peer: they say what was wrong without echoing the frame.
//
// Every frame in and out of the gateway is decoded, so a well-formed one
// takes a fast path: the frame's type and which fields are present come
// from one scan of the top-level keys (topKeys), and encoding/json parses
// it once, into the frame's struct. Anything the fast path does not accept
// is decoded again by decodeSlow, whose result (and error text) is the
// reference: FuzzDecodeFast checks that both agree on every input.
func Decode(data []byte, d Direction) (Message, error) {
	var keys topKeys
	if !keys.scan(data) {
		return decodeSlow(data, d)
	}
	raw, ok := keys.get("type")
	if !ok || len(raw) < 2 || raw[0] != '"' || bytes.IndexByte(raw, '\\') >= 0 {
		return decodeSlow(data, d)
	}
	s, ok := registry[string(raw[1:len(raw)-1])]
	if !ok || s.dir != d {
		return decodeSlow(data, d)
	}
	for _, f := range s.required {
		if v, ok := keys.get(f); !ok || string(v) == "null" {
			return decodeSlow(data, d)
		}
	}
	m := s.new()
	if err := json.Unmarshal(data, m); err != nil {
		return decodeSlow(data, d)
	}
	return deref(m), nil
}

// decodeSlow is Decode the plain way: the frame's fields into a map, its
// type from the map, then the whole frame into the type's struct.
func decodeSlow(data []byte, d Direction) (Message, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		// A json.Decoder would tell a second value apart, at the cost of
		// its buffers on every frame; bad frames are rare, good ones not.
		var se *json.SyntaxError
		if errors.As(err, &se) && strings.Contains(se.Error(), "after top-level value") {
			return nil, errors.New("invalid JSON: more than one value in frame")
		}
		return nil, fmt.Errorf("invalid JSON: %s", describeJSONError(err))
	}
	if fields == nil {
		return nil, errors.New("invalid frame: want a JSON object")
	}
	rawType, ok := fields["type"]
	if !ok {
		return nil, errors.New(`invalid frame: missing field "type"`)
	}
	var t string
	if err := json.Unmarshal(rawType, &t); err != nil {
		return nil, errors.New(`invalid frame: field "type" must be a string`)
	}
	s, ok := registry[t]
	if !ok || s.dir != d {
		return nil, fmt.Errorf("%w %q", ErrUnknownType, truncate(t, 40))
	}
	for _, f := range s.required {
		v, ok := fields[f]
		if !ok || string(v) == "null" {
			return nil, fmt.Errorf("%s: missing field %q", t, f)
		}
	}
	m := s.new()
	if err := json.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("%s: %s", t, describeJSONError(err))
	}
	return deref(m), nil
}

// deref turns the pointer that Decode filled into the value type, so callers
// switch on value types (wire.TextFinal, not *wire.TextFinal). Every frame
// type has value-receiver methods, so the value is a Message too; reflection
// keeps this from being a second list of types to keep in step with registry.
func deref(m Message) Message {
	return reflect.ValueOf(m).Elem().Interface().(Message)
}

func describeJSONError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field != "" {
			return fmt.Sprintf("field %q: want %s, got %s", te.Field, te.Type.Kind(), te.Value)
		}
		return fmt.Sprintf("want %s, got %s", te.Type.Kind(), te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s at byte %d", se.Error(), se.Offset)
	}
	return err.Error()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
