package voice

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/config"
)

func testService(t testing.TB, edit func(*config.Voice)) *Service {
	t.Helper()
	cfg := config.Default()
	if edit != nil {
		edit(&cfg.Voice)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return New(func() *config.Config { return cfg })
}

func needLocal(t testing.TB) {
	t.Helper()
	for _, b := range []string{"espeak-ng", "pocketsphinx_continuous", "ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s missing: make setup installs espeak-ng, pocketsphinx, pocketsphinx-en-us and ffmpeg", b)
		}
	}
}

// probe returns ffprobe's codec name and duration of audio.
func probe(t testing.TB, audio []byte) (codec string, seconds string) {
	t.Helper()
	cmd := exec.Command("ffprobe", "-v", "error", "-show_entries", "stream=codec_name:format=duration", "-of", "default=nw=1:nk=1", "pipe:0")
	cmd.Stdin = bytes.NewReader(audio)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ffprobe: %v", err)
	}
	f := strings.Fields(string(out))
	if len(f) < 2 {
		t.Fatalf("ffprobe said %q", out)
	}
	return f[0], f[1]
}

// The real local engines: espeak-ng → Ogg/Opus → ffmpeg → pocketsphinx.
func TestLocalRoundTrip(t *testing.T) {
	needLocal(t)
	s := testService(t, nil)
	ctx := context.Background()
	a, err := s.Synthesize(ctx, "the quick brown fox jumps over the lazy dog", "", "ogg")
	if err != nil {
		t.Fatal(err)
	}
	if a.MIME() != "audio/ogg" || a.SampleRate != 48000 {
		t.Fatalf("audio %s %d", a.MIME(), a.SampleRate)
	}
	if codec, _ := probe(t, a.Data); codec != "opus" {
		t.Fatalf("codec %q, want opus", codec)
	}
	tr, err := s.Transcribe(ctx, bytes.NewReader(a.Data), "")
	if err != nil {
		t.Fatal(err)
	}
	heard := 0
	for _, w := range []string{"quick", "brown", "fox", "jumps", "over", "lazy", "dog"} {
		if strings.Contains(" "+tr.Text+" ", " "+w) {
			heard++
		}
	}
	// pocketsphinx is weak on synthetic voices: two words prove it listened.
	if heard < 2 || tr.Duration < 1 || tr.Language != "en" {
		t.Fatalf("transcript %+v: %d of the words", tr, heard)
	}
	t.Logf("heard %q (%.1fs)", tr.Text, tr.Duration)
}

func TestLocalFormats(t *testing.T) {
	needLocal(t)
	s := testService(t, nil)
	for format, codec := range map[string]string{"ogg": "opus", "mp3": "mp3", "wav": "pcm_s16le"} {
		a, err := s.Synthesize(context.Background(), "hello", "", format)
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		if got, _ := probe(t, a.Data); got != codec || a.Format != format {
			t.Errorf("%s: codec %q format %q", format, got, a.Format)
		}
	}
	if _, err := s.Synthesize(context.Background(), "hello", "", "flac"); err == nil || !strings.Contains(err.Error(), "want ogg, mp3 or wav") {
		t.Errorf("flac: %v", err)
	}
}

func TestLocalRefusals(t *testing.T) {
	needLocal(t)
	ctx := context.Background()
	s := testService(t, func(v *config.Voice) { v.MaxBytes = 4096; v.MaxDuration = config.Duration(time.Second) })
	if _, err := s.Synthesize(ctx, "  ", "", "ogg"); !errors.Is(err, ErrEmpty) {
		t.Errorf("empty text: %v", err)
	}
	if _, err := s.Transcribe(ctx, strings.NewReader("this is not audio at all"), ""); !errors.Is(err, ErrNotAudio) {
		t.Errorf("text as audio: %v", err)
	}
	if _, err := s.Transcribe(ctx, bytes.NewReader(make([]byte, 5000)), ""); !errors.Is(err, ErrTooLarge) {
		t.Errorf("over max_bytes: %v", err)
	}
	long, err := testService(t, nil).Synthesize(ctx, "this sentence takes longer than one second to say out loud", "", "ogg")
	if err != nil {
		t.Fatal(err)
	}
	s = testService(t, func(v *config.Voice) { v.MaxDuration = config.Duration(time.Second) })
	if _, err := s.Transcribe(ctx, bytes.NewReader(long.Data), ""); !errors.Is(err, ErrTooLarge) {
		t.Errorf("over max_duration: %v", err)
	}
	if _, err := s.Transcribe(ctx, bytes.NewReader(long.Data), "it"); err == nil || !strings.Contains(err.Error(), "English only") {
		t.Errorf("italian on the local engine: %v", err)
	}
	off := testService(t, func(v *config.Voice) { v.Enabled = false })
	if _, err := off.Synthesize(ctx, "hi", "", "ogg"); !errors.Is(err, ErrDisabled) {
		t.Errorf("disabled: %v", err)
	}
}

// A missing binary names the Debian package to install, in the error and
// in Health.
func TestLocalMissingBinary(t *testing.T) {
	s := testService(t, nil).WithTools(Tools{Espeak: "/nonexistent/espeak-ng"})
	_, err := s.Synthesize(context.Background(), "hello", "", "ogg")
	var me *MissingError
	if !errors.As(err, &me) || me.Package != "espeak-ng" || !strings.Contains(err.Error(), "apt-get install espeak-ng") {
		t.Fatalf("err %v", err)
	}
	h := s.Health(context.Background())
	if !strings.Contains(h["tts"], "espeak-ng is not installed") {
		t.Errorf("health %v", h)
	}
	if _, err := exec.LookPath("pocketsphinx_continuous"); err == nil && h["stt"] != "local: ok" {
		t.Errorf("stt health %q", h["stt"])
	}
}
