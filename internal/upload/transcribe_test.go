package upload

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"mime/multipart"
	"net/http/httptest"
	"os/exec"
	"testing"

	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/voice"
)

// ?transcribe=1 with the real local engines: audio gets its transcript,
// a file that is not audio is refused and removed.
func TestUploadTranscribe(t *testing.T) {
	if _, err := exec.LookPath("pocketsphinx_continuous"); err != nil {
		t.Fatal("pocketsphinx missing: make setup installs the voice packages")
	}
	cfg := config.Default()
	vs := voice.New(func() *config.Config { return cfg })
	dir := t.TempDir()
	u := &Uploads{Dir: dir, Limit: func() int64 { return 1 << 20 }, Log: slog.New(slog.DiscardHandler),
		Transcribe: voice.Files{Service: vs}.Hear, NotAudio: voice.ErrNotAudio}
	clip, err := vs.Synthesize(context.Background(), "over the lazy dog", "", "ogg")
	if err != nil {
		t.Fatal(err)
	}
	send := func(data []byte) (int, map[string]any) {
		var b bytes.Buffer
		mw := multipart.NewWriter(&b)
		fw, _ := mw.CreateFormFile("file", "clip.ogg")
		fw.Write(data)
		mw.Close()
		req := httptest.NewRequest("POST", "/api/upload?transcribe=1", &b)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		rec := httptest.NewRecorder()
		Routes(u)[0].Handler.ServeHTTP(rec, req)
		var out map[string]any
		json.Unmarshal(rec.Body.Bytes(), &out)
		return rec.Code, out
	}
	code, out := send(clip.Data)
	if text, ok := out["transcription"].(string); code != 201 || !ok || text == "" {
		t.Fatalf("audio: %d %v", code, out)
	}
	code, out = send([]byte("just some text, no audio"))
	if code != 400 || out["error"].(map[string]any)["code"] != "not_audio" {
		t.Fatalf("text: %d %v", code, out)
	}
	if fs := files(t, dir); len(fs) != 1 {
		t.Fatalf("files left: %v (the refused one must be gone)", fs)
	}
}
