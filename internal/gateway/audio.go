package gateway

import (
	"context"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/agentd/agentd/internal/voice"
	"github.com/agentd/agentd/wire"
)

// Voice input over the WebSocket: audio_chunk_in frames are collected per
// session, in seq order (starting at 0), until the is_end chunk and every
// chunk before it are there; the audio is then saved under uploads/ and
// handed to the session as a voice turn (a text_final with no text and a
// voice attachment), which transcribes it before the model sees it.
const (
	// audioAbandon drops a stream that got no chunk for this long.
	audioAbandon = 30 * time.Second
	// maxAudioChunks bounds the chunks of one stream (and so the map).
	maxAudioChunks = 4096
)

// audioIn holds a connection's voice streams, one per session.
type audioIn struct {
	// mu guards streams.
	mu      sync.Mutex
	streams map[string]*audioStream
}

type audioStream struct {
	chunks map[int][]byte
	size   int64
	end    int // seq of the is_end chunk, -1 until it came
	timer  *time.Timer
}

// audioChunkIn handles one audio_chunk_in frame.
func (g *Gateway) audioChunkIn(ctx context.Context, c *conn, m wire.AudioChunkIn) {
	fail := func(text string) { c.Send(wire.Error{Text: text, SessionID: m.SessionID}) }
	cfg := g.opts.Config.Current().Voice
	if !cfg.Enabled || g.opts.Sessions == nil {
		fail("voice input is off on this agent (voice.enabled in openagent.yaml)")
		return
	}
	if m.Seq < 0 || m.Seq >= maxAudioChunks {
		fail(fmt.Sprintf("audio_chunk_in: seq %d out of range (0–%d)", m.Seq, maxAudioChunks-1))
		return
	}
	data, err := base64.StdEncoding.DecodeString(m.Data)
	if err != nil {
		fail("audio_chunk_in: data is not base64: " + err.Error())
		return
	}
	audio, done, errText := c.audioStreams().add(m, data, cfg.MaxBytes, func() {
		fail(fmt.Sprintf("voice message dropped: no audio for %s before it was complete", audioAbandon))
	})
	if errText != "" {
		fail(errText)
		return
	}
	if !done {
		return
	}
	path, err := g.saveAudio(audio)
	if err != nil {
		c.logger().Error("voice message not saved", "err", err)
		fail("voice message not saved: " + err.Error())
		return
	}
	g.opts.Sessions.Handle(ctx, c.client, wire.TextFinal{
		SessionID:   m.SessionID,
		Attachments: []wire.Attachment{{Kind: "voice", Path: path, Filename: filepath.Base(path)}},
	})
}

func (c *conn) audioStreams() *audioIn {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.audio == nil {
		c.audio = &audioIn{streams: map[string]*audioStream{}}
	}
	return c.audio
}

// add files a chunk; it returns the whole audio once complete, or the text
// of an error that ended the stream. Duplicates are ignored.
func (a *audioIn) add(m wire.AudioChunkIn, data []byte, max int64, abandoned func()) (audio []byte, done bool, errText string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.streams[m.SessionID]
	if s == nil {
		s = &audioStream{chunks: map[int][]byte{}, end: -1}
		a.streams[m.SessionID] = s
		sid := m.SessionID
		s.timer = time.AfterFunc(audioAbandon, func() {
			a.mu.Lock()
			cur := a.streams[sid]
			if cur == s {
				delete(a.streams, sid)
			}
			a.mu.Unlock()
			if cur == s {
				abandoned()
			}
		})
	}
	s.timer.Reset(audioAbandon)
	if _, dup := s.chunks[m.Seq]; dup {
		return nil, false, ""
	}
	drop := func(text string) ([]byte, bool, string) {
		s.timer.Stop()
		delete(a.streams, m.SessionID)
		return nil, false, text
	}
	if m.IsEnd {
		if s.end >= 0 && s.end != m.Seq {
			return drop(fmt.Sprintf("voice message dropped: two ends (seq %d and %d)", s.end, m.Seq))
		}
		s.end = m.Seq
	}
	if s.end >= 0 && m.Seq > s.end {
		return drop(fmt.Sprintf("voice message dropped: chunk %d after the end (seq %d)", m.Seq, s.end))
	}
	s.size += int64(len(data))
	if s.size > max {
		return drop(fmt.Sprintf("voice message too large: over %d bytes (voice.max_bytes)", max))
	}
	s.chunks[m.Seq] = data
	if s.end < 0 || len(s.chunks) != s.end+1 {
		return nil, false, ""
	}
	seqs := make([]int, 0, len(s.chunks))
	for q := range s.chunks {
		seqs = append(seqs, q)
	}
	sort.Ints(seqs)
	out := make([]byte, 0, s.size)
	for _, q := range seqs {
		out = append(out, s.chunks[q]...)
	}
	s.timer.Stop()
	delete(a.streams, m.SessionID)
	if len(out) == 0 {
		return nil, false, "voice message dropped: no audio in it"
	}
	return out, true, ""
}

// stop ends every stream's timer (connection closed).
func (a *audioIn) stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for sid, s := range a.streams {
		s.timer.Stop()
		delete(a.streams, sid)
	}
}

// saveAudio writes a voice message as uploads/voice/<yyyy-mm>/<random>-in.audio
// (voice.Files.Save: the one place voice files are named and written).
func (g *Gateway) saveAudio(data []byte) (string, error) {
	f := voice.Files{Dir: filepath.Join(g.opts.AgentDir, "uploads")}
	return f.Save(voice.Audio{Data: data, Format: "audio"}, "in")
}
