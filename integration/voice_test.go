package integration

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-telegram/bot/models"

	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/voice"
	"github.com/agentd/agentd/plugins/bridge/telegram/telegramtest"
)

// A Telegram voice note through the real bridge: agentd transcribes it
// (the agent answers the transcript, the user sees "🎤 heard: …" because
// show_transcript is on) and the reply comes back as text plus a voice
// bubble (sendVoice with an Ogg/Opus file).
func TestTelegramVoiceNoteRoundTrip(t *testing.T) {
	for _, b := range []string{"espeak-ng", "pocketsphinx_continuous", "ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s missing: make setup installs the voice packages", b)
		}
	}
	cfg := config.Default()
	note, err := voice.New(func() *config.Config { return cfg }).Synthesize(context.Background(), "the quick brown fox jumps over the lazy dog", "", "ogg")
	if err != nil {
		t.Fatal(err)
	}
	e := newBridgeEnvEditing(t, "*", "", func(dir string) {
		replaceInConfig(t, dir, `      poll_timeout: "2"`, "      poll_timeout: \"2\"\n      show_transcript: \"true\"")
	})
	fid := e.tg.AddFile("voice.ogg", note.Data)
	e.tg.Push(models.Message{Chat: aliceChat, From: &alice, Voice: &models.Voice{FileID: fid, Duration: 3, FileSize: int64(len(note.Data))}})

	var heard, reply string
	var bubble telegramtest.Msg
	e.tg.Wait(60*time.Second, "the transcript, the text reply and a voice bubble", func() bool {
		for _, m := range e.tg.Messages(aliceID) {
			switch {
			case strings.HasPrefix(m.Text, "🎤 heard: "):
				heard = strings.TrimPrefix(m.Text, "🎤 heard: ")
			case m.Kind == "voice":
				bubble = m
			case strings.HasPrefix(m.Text, "echo"):
				reply = m.Text
			}
		}
		return heard != "" && reply != "" && bubble.Kind == "voice"
	})
	if !strings.Contains(reply, heard) {
		t.Fatalf("the agent did not answer the transcript %q: %q", heard, reply)
	}
	if strings.Contains(reply, "/") && strings.Contains(reply, e.dir) {
		t.Fatalf("the reply shows a server path: %q", reply)
	}
	cmd := exec.Command("ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "default=nw=1:nk=1", "pipe:0")
	cmd.Stdin = bytes.NewReader(bubble.FileData)
	out, err := cmd.Output()
	if err != nil || strings.TrimSpace(string(out)) != "opus" {
		t.Fatalf("voice bubble is not Ogg/Opus: %q %v (%d bytes)", out, err, len(bubble.FileData))
	}
	if n := len(e.tg.Calls("sendVoice")); n != 1 {
		t.Fatalf("%d sendVoice calls, want 1", n)
	}
}
