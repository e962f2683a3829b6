package voice

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The local engine's defaults. pocketsphinx's acoustic model recognises
// espeak-ng's klatt voice at 150 wpm far better than the default voice
// (measured here: "the quick brown fox jumps over the lazy dog" came back
// with 6 of its words, against none with the default voice).
const (
	defaultVoice = "en-us+klatt"
	defaultSpeed = 150
	// modelDir is where Debian's pocketsphinx-en-us puts the model that
	// pocketsphinx_continuous loads by default.
	modelDir = "/usr/share/pocketsphinx/model/en-us"
)

// local runs espeak-ng (TTS), pocketsphinx (STT) and ffmpeg (every
// conversion) as subprocesses bounded by timeout.
type local struct {
	tools       Tools
	timeout     time.Duration
	maxDuration time.Duration
	voice       string
	speed       int
	lang        string
}

// bin resolves a tool: the configured path, else PATH.
func (l *local) bin(name, override, pkg string) (string, error) {
	p := override
	if p == "" {
		p = name
	}
	found, err := exec.LookPath(p)
	if err != nil {
		return "", &MissingError{Binary: name, Package: pkg}
	}
	return found, nil
}

func (l *local) ffmpeg() (string, error) { return l.bin("ffmpeg", l.tools.FFmpeg, "ffmpeg") }
func (l *local) espeak() (string, error) { return l.bin("espeak-ng", l.tools.Espeak, "espeak-ng") }
func (l *local) sphinx() (string, error) {
	return l.bin("pocketsphinx_continuous", l.tools.Pocketsphinx, "pocketsphinx")
}

// run executes bin with args, stdin in, and returns stdout; an error
// carries the last line of stderr.
func (l *local) run(ctx context.Context, in io.Reader, bin string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = in
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return nil, fmt.Errorf("%s: timed out after %s", filepath.Base(bin), l.timeout)
		}
		return nil, fmt.Errorf("%s: %w: %s", filepath.Base(bin), err, lastLine(errb.String()))
	}
	return out.Bytes(), nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// localSTT and localTTS are the two directions of the local engine.
type (
	localSTT struct{ local }
	localTTS struct{ local }
)

// Transcribe converts audio to 16 kHz mono WAV with ffmpeg and runs
// pocketsphinx on it.
func (l *localSTT) Transcribe(ctx context.Context, audio io.Reader, lang string) (Transcript, error) {
	if lang != "" && lang != "en" {
		return Transcript{}, fmt.Errorf("%w: the local speech recogniser (pocketsphinx-en-us) understands English only, not %q: set voice.stt.engine: openai for other languages", ErrLanguage, lang)
	}
	ff, err := l.ffmpeg()
	if err != nil {
		return Transcript{}, err
	}
	ps, err := l.sphinx()
	if err != nil {
		return Transcript{}, err
	}
	dir, err := os.MkdirTemp("", "agentd-stt-")
	if err != nil {
		return Transcript{}, err
	}
	defer os.RemoveAll(dir)
	in, wav := filepath.Join(dir, "in"), filepath.Join(dir, "in.wav")
	if err := writeFile(in, audio); err != nil {
		return Transcript{}, err
	}
	// One second past the cap is enough to tell "too long" from "at the cap".
	limit := fmt.Sprintf("%.3f", (l.maxDuration + time.Second).Seconds())
	if _, err := l.run(ctx, nil, ff, "-nostdin", "-loglevel", "error", "-i", in, "-t", limit, "-vn", "-ar", "16000", "-ac", "1", "-f", "wav", wav); err != nil {
		return Transcript{}, fmt.Errorf("%w: %v", ErrNotAudio, err)
	}
	st, err := os.Stat(wav)
	if err != nil {
		return Transcript{}, err
	}
	// 16-bit mono at 16 kHz after a 44-byte header (ffmpeg's canonical WAV).
	dur := float64(max(st.Size()-44, 0)) / 32000
	if dur > l.maxDuration.Seconds() {
		return Transcript{}, fmt.Errorf("%w: longer than %s", ErrTooLarge, l.maxDuration)
	}
	out, err := l.run(ctx, nil, ps, "-infile", wav, "-logfn", os.DevNull)
	if err != nil {
		return Transcript{}, err
	}
	text := strings.Join(strings.Fields(string(out)), " ")
	return Transcript{Text: text, Language: "en", Duration: dur}, nil
}

func writeFile(path string, r io.Reader) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Synthesize speaks text with espeak-ng (WAV) and converts it with ffmpeg:
// Ogg/Opus at 48 kHz mono (what Telegram and WhatsApp play as voice
// notes) or MP3.
func (l *localTTS) Synthesize(ctx context.Context, text, voice, format string) (Audio, error) {
	if strings.TrimSpace(text) == "" {
		return Audio{}, fmt.Errorf("%w: nothing to say", ErrEmpty)
	}
	es, err := l.espeak()
	if err != nil {
		return Audio{}, err
	}
	v := firstNonEmpty(voice, l.voice, defaultVoiceFor(l.lang))
	speed := l.speed
	if speed == 0 {
		speed = defaultSpeed
	}
	// Text on stdin, never as an argument: it could start with "-".
	wav, err := l.run(ctx, strings.NewReader(text), es, "-v", v, "-s", fmt.Sprint(speed), "--stdin", "--stdout")
	if err != nil {
		return Audio{}, err
	}
	if format == "" || format == "wav" {
		return Audio{Data: wav, Format: "wav", SampleRate: 22050}, nil
	}
	ff, err := l.ffmpeg()
	if err != nil {
		return Audio{}, err
	}
	var args []string
	switch format {
	case "ogg":
		args = []string{"-c:a", "libopus", "-b:a", "32k", "-ar", "48000", "-ac", "1", "-f", "ogg"}
	case "mp3":
		args = []string{"-c:a", "libmp3lame", "-q:a", "5", "-ar", "44100", "-ac", "1", "-f", "mp3"}
	default:
		return Audio{}, fmt.Errorf("unknown audio format %q (want ogg, mp3 or wav)", format)
	}
	base := []string{"-nostdin", "-loglevel", "error", "-f", "wav", "-i", "pipe:0"}
	out, err := l.run(ctx, bytes.NewReader(wav), ff, append(append(base, args...), "pipe:1")...)
	if err != nil {
		return Audio{}, err
	}
	rate := 48000
	if format == "mp3" {
		rate = 44100
	}
	return Audio{Data: out, Format: format, SampleRate: rate}, nil
}

// defaultVoiceFor is espeak-ng's voice for a language hint: the klatt
// variant of English by default, the language's own voice otherwise.
func defaultVoiceFor(lang string) string {
	if lang == "" || lang == "en" {
		return defaultVoice
	}
	return lang
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// Health checks that ffmpeg, pocketsphinx and its model are installed.
func (l *localSTT) Health(context.Context) error {
	errs := l.missing(l.ffmpeg, l.sphinx)
	if _, err := os.Stat(modelDir); err != nil {
		errs = append(errs, &MissingError{Binary: "the pocketsphinx English model", Package: "pocketsphinx-en-us"})
	}
	return errors.Join(errs...)
}

// Health checks that espeak-ng and ffmpeg are installed.
func (l *localTTS) Health(context.Context) error {
	return errors.Join(l.missing(l.espeak, l.ffmpeg)...)
}

func (l *local) missing(tools ...func() (string, error)) []error {
	var errs []error
	for _, f := range tools {
		if _, err := f(); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}
