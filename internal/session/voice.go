package session

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/agentd/agentd/internal/agent"
	"github.com/agentd/agentd/wire"
)

// Voice is the speech engine of voice turns (package voice, wired by the
// daemon). A turn is a voice turn when it has no text and carries a voice
// attachment: an audio_chunk_in stream, or a bridge's voice note.
type Voice interface {
	// Hear transcribes the audio file at path.
	Hear(ctx context.Context, path string) (string, error)
	// Speak synthesizes text as an Ogg/Opus file under the uploads
	// directory and returns its path.
	Speak(ctx context.Context, text string) (string, error)
}

// audioChunk is the raw size of one audio_chunk frame's data.
const audioChunk = 32 << 10

// voiceModes remembers the sessions switched to voice mode with the voice
// command: their text turns are answered with speech too.
type voiceModes struct {
	// mu guards on.
	mu sync.Mutex
	on map[string]bool
}

func (v *voiceModes) set(sid string, on bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.on == nil {
		v.on = map[string]bool{}
	}
	if on {
		v.on[sid] = true
	} else {
		delete(v.on, sid)
	}
}

func (v *voiceModes) get(sid string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.on[sid]
}

// voiceInput returns the voice attachment of a turn that has no text.
func voiceInput(t *turn) (wire.Attachment, bool) {
	if strings.TrimSpace(t.Text) != "" {
		return wire.Attachment{}, false
	}
	for _, a := range t.Attachments {
		if a.Kind == "voice" {
			return a, true
		}
	}
	return wire.Attachment{}, false
}

// hear turns a voice turn into text: the transcript, announced to the
// client as status "heard: …", and the turn's other attachments. A failure
// is said in user words: the user should type instead.
func (m *Manager) hear(ctx context.Context, r *run, in wire.Attachment) (string, []wire.Attachment, error) {
	t := r.turn
	if m.voice == nil || !m.cfg.Current().Voice.Enabled {
		return "", nil, fmt.Errorf("voice messages are not understood on this agent (voice is off); please type instead")
	}
	text, err := m.voice.Hear(ctx, in.Path)
	if err == nil && strings.TrimSpace(text) == "" {
		err = fmt.Errorf("nothing was heard")
	}
	if err != nil {
		m.log.Warn("voice message not transcribed", "session", t.SessionID, "err", err)
		return "", nil, fmt.Errorf("I could not understand the voice message (%v); please type instead", err)
	}
	r.sink(ctx, m, t)(agent.Status{Text: "heard: " + text})
	var rest []wire.Attachment
	for _, a := range t.Attachments {
		if a != in {
			rest = append(rest, a)
		}
	}
	return text, rest, nil
}

// speak is the spoken form of a reply: a voice attachment for every
// client (bridges send it as a voice bubble) and, for clients that are not
// bridges, the audio as audio_start/audio_chunk/audio_end frames. A failed
// synthesis is told as a status; the text reply goes out regardless.
func (m *Manager) speak(ctx context.Context, t *turn, text string) (*wire.Attachment, []wire.Message) {
	path, err := m.voice.Speak(ctx, text)
	if err != nil {
		m.log.Warn("voice reply not synthesized", "session", t.SessionID, "err", err)
		m.deliver(t.ClientID, wire.Status{Text: "voice reply unavailable: " + err.Error(), SessionID: t.SessionID})
		return nil, nil
	}
	att := &wire.Attachment{Kind: "voice", Path: path, Filename: filepath.Base(path)}
	if m.isBridgeSession(ctx, t.SessionID) {
		return att, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return att, nil
	}
	frames := []wire.Message{liveOnly{wire.AudioStart{SessionID: t.SessionID, Format: "ogg", SampleRate: 48000}}}
	for seq := 0; len(data) > 0; seq++ {
		n := min(audioChunk, len(data))
		frames = append(frames, liveOnly{wire.AudioChunk{SessionID: t.SessionID, Data: base64.StdEncoding.EncodeToString(data[:n]), Seq: seq}})
		data = data[n:]
	}
	return att, append(frames, liveOnly{wire.AudioEnd{SessionID: t.SessionID}})
}

// wantsVoice reports whether the reply of t is to be spoken.
func (m *Manager) wantsVoice(t *turn, voiceTurn bool) bool {
	if m.voice == nil {
		return false
	}
	v := m.cfg.Current().Voice
	return v.Enabled && v.ReplyWithVoice && (voiceTurn || m.voiceModes.get(t.SessionID))
}

func (m *Manager) isBridgeSession(ctx context.Context, sid string) bool {
	p, _, ok := strings.Cut(sid, ":")
	if !ok || m.bridges == nil {
		return false
	}
	_, found, err := m.bridges(ctx, p)
	return err == nil && found
}

// liveOnly marks a frame that goes to a connected client only: never kept
// in the outbox (audio is also in the reply's voice attachment).
type liveOnly struct{ wire.Message }

// voiceCommand switches a session's voice mode: "voice on", "voice off",
// or "voice" to ask.
func (m *Manager) voiceCommand(sid, args string) (string, error) {
	switch strings.ToLower(strings.TrimSpace(args)) {
	case "on":
		if m.voice == nil || !m.cfg.Current().Voice.Enabled {
			return "", fmt.Errorf("%w: voice is off on this agent (voice.enabled in openagent.yaml)", ErrInvalid)
		}
		m.voiceModes.set(sid, true)
		return "Voice on: replies in this session are spoken too.", nil
	case "off":
		m.voiceModes.set(sid, false)
		return "Voice off: replies are text only (voice messages are still answered with speech).", nil
	case "":
		if m.voiceModes.get(sid) {
			return "Voice is on in this session.", nil
		}
		return "Voice is off in this session (voice messages are answered with speech).", nil
	}
	return "", fmt.Errorf("%w: voice takes on or off", ErrInvalid)
}
