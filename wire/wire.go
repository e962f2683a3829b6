// Package wire is the reference of the gateway's WebSocket protocol: every
// frame that travels on /ws, in both directions, as one Go type per message.
//
// A frame is one JSON object with a "type" field and the message's payload
// fields beside it, e.g. {"type":"delta","text":"Hel","session_id":"s1"}.
// Binary frames are not part of the protocol.
//
// The package is public because bridges and other clients, which live outside
// agentd's process, speak the same protocol. docs/protocol.md is checked
// against this file by a test.
package wire

// Message is implemented by every frame type.
type Message interface {
	// Type is the frame's "type" field.
	Type() string
}

// Client → server.

// Auth is the legacy handshake frame. Authentication happens in the stream
// preamble now; the server answers Auth with AuthOK.
type Auth struct {
	Token    string `json:"token,omitempty"`
	ClientID string `json:"client_id,omitempty"`
	// Acks opts the client (its client id) into at-least-once delivery of
	// final replies: the server keeps each response/turn_complete/error
	// until an Ack for its session, and sends it again on reconnect. An
	// Auth without it opts the client out again.
	Acks bool `json:"acks,omitempty"`
}

// SessionOpen opens or resumes a conversation session.
type SessionOpen struct {
	SessionID string `json:"session_id"`
}

// TextFinal sends one user turn to the agent.
type TextFinal struct {
	Text        string       `json:"text"`
	SessionID   string       `json:"session_id"`
	Attachments []Attachment `json:"attachments,omitempty"`
}

// AudioChunkIn carries voice-mode audio input.
type AudioChunkIn struct {
	SessionID string `json:"session_id"`
	Data      string `json:"data"` // base64
	Seq       int    `json:"seq"`
	IsEnd     bool   `json:"is_end"`
}

// AttachmentIn attaches a file to the session's next turn.
type AttachmentIn struct {
	SessionID string `json:"session_id"`
	Path      string `json:"path"`
	Filename  string `json:"filename"`
	// Kind is image, file, voice or video. The spec calls it "type", which
	// collides with the frame's own "type" field, so it travels as "kind".
	Kind string `json:"kind,omitempty"`
}

// Interrupt cancels the session's active run.
type Interrupt struct {
	SessionID string `json:"session_id"`
}

// Command is a slash-command: stop, clear, new, reset, model, help.
type Command struct {
	Name      string `json:"name"`
	SessionID string `json:"session_id"`
	// Args holds the command's argument, e.g. the model id of "model".
	Args string `json:"args,omitempty"`
}

// Ping is a keep-alive.
type Ping struct{}

// Ack says the client has handled a final reply (only meaningful after
// Auth{Acks: true}): with TurnID, that turn's frames; without it (the
// older form), every final reply of the session the server sent it so far.
type Ack struct {
	SessionID string `json:"session_id"`
	TurnID    string `json:"turn_id,omitempty"`
}

// Server → client.

// AuthOK accepts the connection.
type AuthOK struct {
	AgentName string `json:"agent_name"`
	Version   string `json:"version"`
}

// AuthError rejects the connection.
type AuthError struct {
	Reason string `json:"reason"`
}

// Delta is one streamed piece of the reply being generated.
type Delta struct {
	Text      string `json:"text"`
	SessionID string `json:"session_id"`
}

// Status is live progress: tool use, thinking, retries.
type Status struct {
	Text      string `json:"text"`
	SessionID string `json:"session_id"`
}

// Response is the final reply of a turn.
type Response struct {
	Text        string       `json:"text"`
	SessionID   string       `json:"session_id"`
	Model       string       `json:"model"`
	Attachments []Attachment `json:"attachments"`
	// Interrupted is set when the run was cancelled; Text is the partial reply.
	Interrupted bool `json:"interrupted,omitempty"`
	// TurnID names the turn, for Ack; the same in its TurnComplete.
	TurnID string `json:"turn_id,omitempty"`
}

// TurnComplete ends a turn and reports its usage.
type TurnComplete struct {
	SessionID string `json:"session_id"`
	Usage     Usage  `json:"usage"`
	TurnID    string `json:"turn_id,omitempty"`
}

// Queued acknowledges a turn that waits behind the active run.
type Queued struct {
	Position  int    `json:"position"`
	SessionID string `json:"session_id,omitempty"`
}

// Pong answers Ping.
type Pong struct{}

// AudioStart opens a TTS audio stream.
type AudioStart struct {
	SessionID  string `json:"session_id"`
	Format     string `json:"format,omitempty"`
	SampleRate int    `json:"sample_rate,omitempty"`
}

// AudioChunk is one piece of TTS audio.
type AudioChunk struct {
	SessionID string `json:"session_id"`
	Data      string `json:"data"` // base64
	Seq       int    `json:"seq"`
}

// AudioEnd closes a TTS audio stream.
type AudioEnd struct {
	SessionID string `json:"session_id"`
}

// ResourceEvent is broadcast on every mutation of a resource (MCP, vault,
// task, config, provider, model, bridge, device, session).
type ResourceEvent struct {
	Resource string `json:"resource"`
	Action   string `json:"action"`
	ID       string `json:"id"`
}

// SystemSnapshot is the periodic system-health broadcast.
type SystemSnapshot struct {
	CPUPercent  float64 `json:"cpu_percent"`
	RAMPercent  float64 `json:"ram_percent"`
	DiskPercent float64 `json:"disk_percent"`
}

// Error reports a recoverable error.
type Error struct {
	Text      string `json:"text"`
	SessionID string `json:"session_id,omitempty"`
	// TurnID is set on the error that ends a failed turn (for Ack).
	TurnID string `json:"turn_id,omitempty"`
}

// CommandResult answers a Command.
type CommandResult struct {
	Text      string `json:"text"`
	SessionID string `json:"session_id,omitempty"`
	// NewSessionID is set by "new": the session id to use from now on.
	NewSessionID string `json:"new_session_id,omitempty"`
}

// Shared payload types.

// Attachment is a file that travels with a turn or a reply.
type Attachment struct {
	Kind     string `json:"type"` // image, file, voice, video
	Path     string `json:"path"`
	Filename string `json:"filename"`
}

// Usage is a turn's token count and cost.
type Usage struct {
	PromptTokens     int     `json:"prompt_tokens"`
	CompletionTokens int     `json:"completion_tokens"`
	TotalTokens      int     `json:"total_tokens"`
	CostUSD          float64 `json:"cost_usd"`
}

func (Auth) Type() string         { return "auth" }
func (SessionOpen) Type() string  { return "session_open" }
func (TextFinal) Type() string    { return "text_final" }
func (AudioChunkIn) Type() string { return "audio_chunk_in" }
func (AttachmentIn) Type() string { return "attachment" }
func (Interrupt) Type() string    { return "interrupt" }
func (Command) Type() string      { return "command" }
func (Ping) Type() string         { return "ping" }
func (Ack) Type() string          { return "ack" }

func (AuthOK) Type() string         { return "auth_ok" }
func (AuthError) Type() string      { return "auth_error" }
func (Delta) Type() string          { return "delta" }
func (Status) Type() string         { return "status" }
func (Response) Type() string       { return "response" }
func (TurnComplete) Type() string   { return "turn_complete" }
func (Queued) Type() string         { return "queued" }
func (Pong) Type() string           { return "pong" }
func (AudioStart) Type() string     { return "audio_start" }
func (AudioChunk) Type() string     { return "audio_chunk" }
func (AudioEnd) Type() string       { return "audio_end" }
func (ResourceEvent) Type() string  { return "resource_event" }
func (SystemSnapshot) Type() string { return "system_snapshot" }
func (Error) Type() string          { return "error" }
func (CommandResult) Type() string  { return "command_result" }
