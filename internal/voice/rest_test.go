package voice

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/config"
)

func restServer(t *testing.T, s *Service) *httptest.Server {
	mux := http.NewServeMux()
	for _, r := range Routes(s) {
		mux.Handle(r.Pattern, r.Guarded())
	}
	chat := &auth.Identity{ClientID: "c", Capabilities: []string{auth.CapChat}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(w, r.WithContext(auth.WithIdentity(r.Context(), chat)))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func multipartBody(t *testing.T, field string, data []byte) (io.Reader, string) {
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	fw, err := mw.CreateFormFile(field, "clip.ogg")
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(data)
	mw.Close()
	return &b, mw.FormDataContentType()
}

func TestREST(t *testing.T) {
	needLocal(t)
	s := testService(t, func(v *config.Voice) { v.MaxBytes = 200 << 10 })
	srv := restServer(t, s)
	post := func(path, ctype string, body io.Reader) (*http.Response, []byte) {
		res, err := http.Post(srv.URL+path, ctype, body)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, b
	}
	res, audio := post("/api/tts/synthesize", "application/json", strings.NewReader(`{"text":"hello there","format":"mp3"}`))
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "audio/mpeg" {
		t.Fatalf("tts: %d %s %.100s", res.StatusCode, res.Header.Get("Content-Type"), audio)
	}
	if codec, _ := probe(t, audio); codec != "mp3" {
		t.Fatalf("codec %s", codec)
	}
	for body, want := range map[string]int{`{"text":""}`: 400, `{"text":"x","format":"flac"}`: 400, `{"txt":"x"}`: 400} {
		if res, b := post("/api/tts/synthesize", "application/json", strings.NewReader(body)); res.StatusCode != want {
			t.Errorf("tts %s: %d %s", body, res.StatusCode, b)
		}
	}
	ogg, err := s.Synthesize(context.Background(), "the lazy dog", "", "ogg")
	if err != nil {
		t.Fatal(err)
	}
	// Named otherwise than "file": the first file part is taken.
	body, ctype := multipartBody(t, "audio", ogg.Data)
	res, b := post("/api/stt/transcribe?lang=en", ctype, body)
	var tr Transcript
	if res.StatusCode != 200 || json.Unmarshal(b, &tr) != nil || tr.Duration <= 0 || tr.Language != "en" {
		t.Fatalf("stt: %d %s", res.StatusCode, b)
	}
	body, ctype = multipartBody(t, "file", []byte("plain text, not audio"))
	if res, b := post("/api/stt/transcribe", ctype, body); res.StatusCode != 400 || !strings.Contains(string(b), "not_audio") {
		t.Errorf("not audio: %d %s", res.StatusCode, b)
	}
	body, ctype = multipartBody(t, "file", make([]byte, 300<<10))
	if res, b := post("/api/stt/transcribe", ctype, body); res.StatusCode != 413 {
		t.Errorf("too large: %d %s", res.StatusCode, b)
	}
	if res, b := post("/api/stt/transcribe?lang=english", ctype, strings.NewReader("")); res.StatusCode != 400 {
		t.Errorf("bad lang: %d %s", res.StatusCode, b)
	}
	off := restServer(t, testService(t, func(v *config.Voice) { v.Enabled = false }))
	res, err = http.Post(off.URL+"/api/tts/synthesize", "application/json", strings.NewReader(`{"text":"hi"}`))
	if err != nil || res.StatusCode != 503 {
		t.Errorf("voice off: %v %v", err, res.StatusCode)
	}
}
