package voice

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/config"
)

// audioAPI is an in-test fake of the OpenAI audio endpoints: multipart
// transcriptions, JSON speech, API errors and slow answers.
type audioAPI struct {
	mu       sync.Mutex
	fields   map[string]string // last transcription's form fields
	file     []byte
	speech   map[string]any // last speech request
	status   int            // non-zero: answer this error
	delay    time.Duration
	authSeen string
}

func (a *audioAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	status, delay := a.status, a.delay
	a.authSeen = r.Header.Get("Authorization")
	a.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if status != 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, `{"error":{"message":"quota exceeded for this key","type":"insufficient_quota","code":"insufficient_quota"}}`)
		return
	}
	switch r.URL.Path {
	case "/v1/audio/transcriptions":
		if err := r.ParseMultipartForm(1 << 20); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		f, _, err := r.FormFile("file")
		if err != nil {
			http.Error(w, "file: "+err.Error(), 400)
			return
		}
		data, _ := io.ReadAll(f)
		a.mu.Lock()
		a.fields = map[string]string{}
		for k, v := range r.MultipartForm.Value {
			a.fields[k] = v[0]
		}
		a.file = data
		a.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"task":"transcribe","language":"italian","duration":2.5,"text":" ciao mondo "}`)
	case "/v1/audio/speech":
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		a.mu.Lock()
		a.speech = body
		a.mu.Unlock()
		w.Header().Set("Content-Type", "audio/ogg")
		io.WriteString(w, "OggS-fake-opus-bytes")
	default:
		http.NotFound(w, r)
	}
}

func openAIService(t *testing.T, api *audioAPI, timeout time.Duration) *Service {
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return testService(t, func(v *config.Voice) {
		v.Provider = "openai"
		v.Language = "it"
		v.Timeout = config.Duration(timeout)
		v.STT = config.VoiceSTT{BaseURL: srv.URL + "/v1", APIKey: "sk-test", Model: "whisper-large-v3"}
		v.TTS = config.VoiceTTS{BaseURL: srv.URL + "/v1", Voice: "nova"}
	})
}

func TestOpenAITranscribe(t *testing.T) {
	api := &audioAPI{}
	s := openAIService(t, api, 5*time.Second)
	tr, err := s.Transcribe(context.Background(), strings.NewReader("RIFF-some-audio"), "")
	if err != nil {
		t.Fatal(err)
	}
	if tr.Text != "ciao mondo" || tr.Duration != 2.5 || tr.Language != "italian" {
		t.Fatalf("transcript %+v", tr)
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if api.fields["model"] != "whisper-large-v3" || api.fields["language"] != "it" || string(api.file) != "RIFF-some-audio" {
		t.Fatalf("form %v file %q", api.fields, api.file)
	}
	if api.authSeen != "Bearer sk-test" {
		t.Fatalf("auth %q", api.authSeen)
	}
}

func TestOpenAISynthesize(t *testing.T) {
	api := &audioAPI{}
	s := openAIService(t, api, 5*time.Second)
	a, err := s.Synthesize(context.Background(), "ciao", "", "ogg")
	if err != nil {
		t.Fatal(err)
	}
	if string(a.Data) != "OggS-fake-opus-bytes" || a.MIME() != "audio/ogg" {
		t.Fatalf("audio %q %s", a.Data, a.MIME())
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if api.speech["input"] != "ciao" || api.speech["voice"] != "nova" || api.speech["model"] != "tts-1" || api.speech["response_format"] != "opus" {
		t.Fatalf("speech request %v", api.speech)
	}
}

func TestOpenAIFailures(t *testing.T) {
	api := &audioAPI{status: http.StatusTooManyRequests}
	s := openAIService(t, api, time.Second)
	_, err := s.Transcribe(context.Background(), strings.NewReader("x"), "")
	if err == nil || !strings.Contains(err.Error(), "429") || !strings.Contains(err.Error(), "quota exceeded") {
		t.Fatalf("429: %v", err)
	}
	api.mu.Lock()
	api.status, api.delay = 0, 3*time.Second
	api.mu.Unlock()
	// The fake answers after 3 s, so only voice.timeout (1 s) can fail it.
	if _, err := s.Synthesize(context.Background(), "slow", "", "mp3"); err == nil || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("a server slower than voice.timeout: %v", err)
	}
}
