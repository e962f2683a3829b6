// Package voice turns speech into text and text into speech. Engines are
// chosen in the voice: section of openagent.yaml: "local" runs espeak-ng,
// pocketsphinx and ffmpeg as subprocesses (offline, the default) and
// "openai" speaks the OpenAI audio API that OpenAI, Groq and local servers
// (whisper.cpp, speaches, LocalAI, Kokoro-FastAPI) share.
package voice

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/agentd/agentd/internal/config"
)

// Errors callers map to statuses and user words.
var (
	// ErrDisabled: voice.enabled is false.
	ErrDisabled = errors.New("voice is disabled on this agent (voice.enabled in openagent.yaml)")
	// ErrNotAudio: the input could not be decoded as audio.
	ErrNotAudio = errors.New("not audio")
	// ErrTooLarge: the input exceeds voice.max_bytes or voice.max_duration.
	ErrTooLarge = errors.New("audio too long or too large")
	// ErrEmpty: there is nothing to say, or nothing was heard.
	ErrEmpty = errors.New("empty")
	// ErrLanguage: the engine does not handle the language asked for.
	ErrLanguage = errors.New("language not supported")
)

// MissingError is a tool the local engine needs that is not installed.
type MissingError struct {
	Binary  string // e.g. espeak-ng
	Package string // the Debian package that provides it
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("%s is not installed: install the Debian package %s (apt-get install %s; make setup does)", e.Binary, e.Package, e.Package)
}

// Transcript is what STT heard.
type Transcript struct {
	Text     string  `json:"text"`
	Language string  `json:"language"`
	Duration float64 `json:"duration_s"` // of the audio, seconds
}

// Audio is synthesized speech.
type Audio struct {
	Data       []byte
	Format     string // ogg (Opus), mp3 or wav
	SampleRate int
}

// MIME is the audio's true Content-Type.
func (a Audio) MIME() string { return mimeOf(a.Format) }

func mimeOf(format string) string {
	switch format {
	case "ogg":
		return "audio/ogg"
	case "mp3":
		return "audio/mpeg"
	default:
		return "audio/wav"
	}
}

// STT is a speech-to-text engine.
type STT interface {
	// Transcribe reads audio in any format ffmpeg or the server decodes.
	// lang is an ISO-639-1 hint or "".
	Transcribe(ctx context.Context, audio io.Reader, lang string) (Transcript, error)
	Health(ctx context.Context) error
}

// TTS is a text-to-speech engine.
type TTS interface {
	// Synthesize speaks text as format (ogg, mp3 or wav) with voice ("" is
	// the engine's default).
	Synthesize(ctx context.Context, text, voice, format string) (Audio, error)
	Health(ctx context.Context) error
}

// Formats TTS can produce.
var Formats = []string{"ogg", "mp3", "wav"}

// Service picks the engines of the current config on every call, so a
// config reload applies to the next request.
type Service struct {
	cfg   func() *config.Config
	tools Tools

	// mu guards health and healthAt: a remote engine's check is a request,
	// so status pages reuse a recent answer.
	mu       sync.Mutex
	health   map[string]string
	healthAt time.Time
}

// healthTTL is how long a health answer is reused.
const healthTTL = 30 * time.Second

// New returns the voice service of cfg (usually config.Watcher.Current).
func New(cfg func() *config.Config) *Service { return &Service{cfg: cfg} }

// Tools locates the local engine's binaries; the zero value looks them up
// on PATH. Tests point a name at a missing path.
type Tools struct {
	Espeak, Pocketsphinx, FFmpeg string
}

// WithTools returns a service like s whose local engine uses t.
func (s *Service) WithTools(t Tools) *Service { return &Service{cfg: s.cfg, tools: t} }

// Config is the current voice section.
func (s *Service) Config() config.Voice { return s.cfg().Voice }

func engineOf(specific, provider string) string {
	switch {
	case specific != "":
		return specific
	case provider != "":
		return provider
	}
	return "local"
}

// STT returns the speech-to-text engine of the current config.
func (s *Service) STT() (STT, error) {
	v := s.Config()
	if !v.Enabled {
		return nil, ErrDisabled
	}
	timeout := v.Timeout.D()
	if engineOf(v.STT.Engine, v.Provider) == "openai" {
		return newOpenAISTT(v.STT, timeout), nil
	}
	return &localSTT{local{tools: s.tools, timeout: timeout, maxDuration: v.MaxDuration.D()}}, nil
}

// TTS returns the text-to-speech engine of the current config.
func (s *Service) TTS() (TTS, error) {
	v := s.Config()
	if !v.Enabled {
		return nil, ErrDisabled
	}
	timeout := v.Timeout.D()
	if engineOf(v.TTS.Engine, v.Provider) == "openai" {
		return newOpenAITTS(v.TTS, timeout), nil
	}
	return &localTTS{local{tools: s.tools, timeout: timeout, voice: v.TTS.Voice, speed: v.TTS.Speed, lang: v.Language}}, nil
}

// Transcribe runs the configured STT with the configured language hint
// unless lang is given.
func (s *Service) Transcribe(ctx context.Context, audio io.Reader, lang string) (Transcript, error) {
	e, err := s.STT()
	if err != nil {
		return Transcript{}, err
	}
	if lang == "" {
		lang = s.Config().Language
	}
	// Read whole (≤ max_bytes): the cap must be known before an engine
	// spends minutes on it, and ffmpeg needs a seekable input anyway.
	max := s.Config().MaxBytes
	data, err := io.ReadAll(io.LimitReader(audio, max+1))
	if err != nil {
		return Transcript{}, err
	}
	if int64(len(data)) > max {
		return Transcript{}, fmt.Errorf("%w: larger than %d bytes", ErrTooLarge, max)
	}
	if len(data) == 0 {
		return Transcript{}, fmt.Errorf("%w: no audio", ErrNotAudio)
	}
	return e.Transcribe(ctx, bytes.NewReader(data), lang)
}

// Synthesize runs the configured TTS.
func (s *Service) Synthesize(ctx context.Context, text, voice, format string) (Audio, error) {
	e, err := s.TTS()
	if err != nil {
		return Audio{}, err
	}
	return e.Synthesize(ctx, text, voice, format)
}

// Health reports each direction's engine and whether it can run now:
// {"stt": "local: ok", "tts": "local: espeak-ng is not installed: …"}.
func (s *Service) Health(ctx context.Context) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.health != nil && time.Since(s.healthAt) < healthTTL {
		return s.health
	}
	s.health, s.healthAt = s.checkHealth(ctx), time.Now()
	return s.health
}

func (s *Service) checkHealth(ctx context.Context) map[string]string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v := s.Config()
	out := map[string]string{}
	if !v.Enabled {
		return map[string]string{"stt": "disabled", "tts": "disabled"}
	}
	report := func(name, engine string, err error) {
		if err != nil {
			out[name] = engine + ": " + err.Error()
		} else {
			out[name] = engine + ": ok"
		}
	}
	if e, err := s.STT(); err == nil {
		report("stt", engineOf(v.STT.Engine, v.Provider), e.Health(ctx))
	}
	if e, err := s.TTS(); err == nil {
		report("tts", engineOf(v.TTS.Engine, v.Provider), e.Health(ctx))
	}
	return out
}
