package gateway

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/voice"
	"github.com/agentd/agentd/wire"
)

func voiceService(t *testing.T, e func(*config.Voice)) *voice.Service {
	t.Helper()
	for _, b := range []string{"espeak-ng", "pocketsphinx_continuous", "ffmpeg"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s missing: make setup installs the voice packages", b)
		}
	}
	cfg := config.Default()
	if e != nil {
		e(&cfg.Voice)
	}
	return voice.New(func() *config.Config { return cfg })
}

// chunks splits b into n base64 audio_chunk_in frames, the last is_end.
func chunks(sid string, b []byte, n int) []wire.AudioChunkIn {
	var out []wire.AudioChunkIn
	size := (len(b) + n - 1) / n
	for i := 0; i < n; i++ {
		part := b[min(i*size, len(b)):min((i+1)*size, len(b))]
		out = append(out, wire.AudioChunkIn{SessionID: sid, Data: base64.StdEncoding.EncodeToString(part), Seq: i, IsEnd: i == n-1})
	}
	return out
}

// maxVolume is ffmpeg volumedetect's max_volume of audio, in dB.
func maxVolume(t *testing.T, audio []byte) float64 {
	t.Helper()
	cmd := exec.Command("ffmpeg", "-nostdin", "-i", "pipe:0", "-af", "volumedetect", "-f", "null", "-")
	cmd.Stdin = bytes.NewReader(audio)
	out, _ := cmd.CombinedOutput()
	m := regexp.MustCompile(`max_volume: (-?[0-9.]+) dB`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no volume in ffmpeg output: %s", out)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// Voice in over the WebSocket: 7 chunks out of order (and a duplicate)
// become one turn whose text is the transcript; the reply is spoken back
// as audio_start/audio_chunk/audio_end frames that decode to non-silent
// Ogg/Opus, and carried as a voice attachment.
func TestAudioChunksBecomeAVoiceTurn(t *testing.T) {
	vs := voiceService(t, nil)
	e := newEnv(t, envOpts{voice: vs})
	said, err := vs.Synthesize(context.Background(), "the quick brown fox jumps over the lazy dog", "", "ogg")
	if err != nil {
		t.Fatal(err)
	}
	c := e.dial("alice")
	c.send(wire.SessionOpen{SessionID: "v1"})
	cs := chunks("v1", said.Data, 7)
	for _, i := range []int{3, 0, 6, 1, 1, 5, 2, 4} {
		c.send(cs[i])
	}
	tf := c.readTurn()
	if tf.errFrame != nil {
		t.Fatalf("error frame: %+v", tf.errFrame)
	}
	if len(tf.status) == 0 || !strings.HasPrefix(tf.status[0].Text, "heard: ") {
		t.Fatalf("no heard status first: %+v", tf.status)
	}
	heard := strings.TrimPrefix(tf.status[0].Text, "heard: ")
	if !strings.Contains(tf.response.Text, heard) {
		t.Fatalf("the model did not get the transcript %q: reply %q", heard, tf.response.Text)
	}
	var voiceAtt *wire.Attachment
	for _, a := range tf.response.Attachments {
		if a.Kind == "voice" {
			voiceAtt = &a
		}
	}
	if voiceAtt == nil || !strings.HasPrefix(voiceAtt.Path, e.dir) {
		t.Fatalf("no voice attachment in %+v", tf.response.Attachments)
	}
	if len(tf.audio) < 3 {
		t.Fatalf("audio frames %d", len(tf.audio))
	}
	start, ok := tf.audio[0].(wire.AudioStart)
	if !ok || start.Format != "ogg" || start.SampleRate != 48000 {
		t.Fatalf("first audio frame %#v", tf.audio[0])
	}
	if _, ok := tf.audio[len(tf.audio)-1].(wire.AudioEnd); !ok {
		t.Fatalf("last audio frame %#v", tf.audio[len(tf.audio)-1])
	}
	var spoken []byte
	for i, f := range tf.audio[1 : len(tf.audio)-1] {
		ch := f.(wire.AudioChunk)
		if ch.Seq != i {
			t.Fatalf("chunk %d has seq %d", i, ch.Seq)
		}
		b, err := base64.StdEncoding.DecodeString(ch.Data)
		if err != nil {
			t.Fatal(err)
		}
		spoken = append(spoken, b...)
	}
	onDisk, err := os.ReadFile(voiceAtt.Path)
	if err != nil || !bytes.Equal(onDisk, spoken) {
		t.Fatalf("streamed audio differs from the attachment (%v)", err)
	}
	if v := maxVolume(t, spoken); v < -40 {
		t.Fatalf("reply audio is silent: max volume %.1f dB", v)
	}
}

func TestAudioChunkRefusals(t *testing.T) {
	vs := voiceService(t, nil)
	e := newEnv(t, envOpts{voice: vs, yaml: "voice:\n  max_bytes: 2048\n"})
	c := e.dial("alice")
	for _, tc := range []struct {
		frame wire.AudioChunkIn
		want  string
	}{
		{wire.AudioChunkIn{SessionID: "a", Data: "not base64!", Seq: 0}, "not base64"},
		{wire.AudioChunkIn{SessionID: "a", Data: "", Seq: -1}, "out of range"},
		{wire.AudioChunkIn{SessionID: "b", Data: base64.StdEncoding.EncodeToString(make([]byte, 3000)), Seq: 0}, "too large"},
		{wire.AudioChunkIn{SessionID: "c", Data: "", Seq: 0, IsEnd: true}, "no audio"},
	} {
		c.send(tc.frame)
		ef, _ := until[wire.Error](c)
		if !strings.Contains(ef.Text, tc.want) || ef.SessionID != tc.frame.SessionID {
			t.Errorf("%+v: error %+v, want %q", tc.frame, ef, tc.want)
		}
	}
	// Garbage audio becomes a turn that says "please type".
	c.send(wire.SessionOpen{SessionID: "d"})
	c.send(wire.AudioChunkIn{SessionID: "d", Data: base64.StdEncoding.EncodeToString([]byte("no audio here")), Seq: 0, IsEnd: true})
	tf := c.readTurn()
	if tf.errFrame == nil || !strings.Contains(tf.errFrame.Text, "please type") {
		t.Fatalf("garbage audio: %+v", tf)
	}
	off := newEnv(t, envOpts{})
	c = off.dial("alice")
	c.send(wire.SessionOpen{SessionID: "x"})
	c.send(wire.AudioChunkIn{SessionID: "x", Data: "AA==", Seq: 0, IsEnd: true})
	tf = c.readTurn()
	if tf.errFrame == nil || !strings.Contains(tf.errFrame.Text, "please type") {
		t.Fatalf("no voice engine: %+v", tf)
	}
}

// A missing espeak-ng: the reply still arrives as text, with a clear status.
func TestVoiceReplyWithoutTTS(t *testing.T) {
	vs := voiceService(t, nil)
	e := newEnv(t, envOpts{voice: vs.WithTools(voice.Tools{Espeak: "/nonexistent/espeak-ng"})})
	said, err := vs.Synthesize(context.Background(), "hello world", "", "ogg")
	if err != nil {
		t.Fatal(err)
	}
	c := e.dial("alice")
	c.send(wire.SessionOpen{SessionID: "v"})
	for _, ch := range chunks("v", said.Data, 2) {
		c.send(ch)
	}
	tf := c.readTurn()
	if tf.errFrame != nil || tf.response.Text == "" || len(tf.audio) != 0 {
		t.Fatalf("turn %+v", tf)
	}
	found := false
	for _, s := range tf.status {
		found = found || strings.Contains(s.Text, "voice reply unavailable: espeak-ng is not installed")
	}
	if !found {
		t.Fatalf("no status naming espeak-ng: %+v", tf.status)
	}
}

// "voice on" makes text turns spoken too; "voice off" stops it.
func TestVoiceModeCommand(t *testing.T) {
	e := newEnv(t, envOpts{voice: voiceService(t, nil)})
	c := e.dial("alice")
	c.send(wire.SessionOpen{SessionID: "m"})
	c.send(wire.Command{Name: "voice", Args: "on", SessionID: "m"})
	if r, _ := until[wire.CommandResult](c); !strings.Contains(r.Text, "Voice on") {
		t.Fatalf("voice on: %+v", r)
	}
	c.send(wire.TextFinal{SessionID: "m", Text: "read this aloud"})
	if tf := c.readTurn(); len(tf.audio) < 3 {
		t.Fatalf("voice mode: no audio frames: %+v", tf)
	}
	c.send(wire.Command{Name: "voice", Args: "off", SessionID: "m"})
	until[wire.CommandResult](c)
	c.send(wire.TextFinal{SessionID: "m", Text: "quiet now"})
	if tf := c.readTurn(); len(tf.audio) != 0 {
		t.Fatalf("voice off: audio frames %d", len(tf.audio))
	}
	c.send(wire.Command{Name: "voice", Args: "loud", SessionID: "m"})
	if ef, _ := until[wire.Error](c); !strings.Contains(ef.Text, "on or off") {
		t.Fatalf("bad arg: %+v", ef)
	}
}
