package voice

import (
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/route"
)

// maxTTSText bounds the text one synthesis request may speak.
const maxTTSText = 8 << 10

// Routes are the voice REST endpoints (chat: they run the engines on the
// device's own behalf and change nothing).
func Routes(s *Service) []route.Route {
	return []route.Route{
		{Pattern: "POST /api/tts/synthesize", Cap: auth.CapChat, Handler: http.HandlerFunc(s.handleSynthesize)},
		{Pattern: "POST /api/stt/transcribe", Cap: auth.CapChat, Handler: http.HandlerFunc(s.handleTranscribe)},
	}
}

func (s *Service) handleSynthesize(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Text   string `json:"text"`
		Voice  string `json:"voice"`
		Format string `json:"format"`
	}
	if !route.Decode(w, r, &req) {
		return
	}
	switch {
	case req.Text == "":
		route.Error(w, http.StatusBadRequest, "bad_request", `"text" must not be empty`)
		return
	case len(req.Text) > maxTTSText:
		route.Error(w, http.StatusRequestEntityTooLarge, "too_large", "text longer than "+strconv.Itoa(maxTTSText)+" bytes")
		return
	case req.Format != "" && !slices.Contains(Formats, req.Format):
		route.Error(w, http.StatusBadRequest, "bad_request", `"format" must be ogg, mp3 or wav`)
		return
	}
	if req.Format == "" {
		req.Format = "ogg"
	}
	a, err := s.Synthesize(r.Context(), req.Text, req.Voice, req.Format)
	if err != nil {
		writeErr(w, err)
		return
	}
	w.Header().Set("Content-Type", a.MIME())
	w.Header().Set("Content-Length", strconv.Itoa(len(a.Data)))
	w.WriteHeader(http.StatusOK)
	w.Write(a.Data)
}

func (s *Service) handleTranscribe(w http.ResponseWriter, r *http.Request) {
	lang := r.URL.Query().Get("lang")
	if lang != "" && !langOK(lang) {
		route.Error(w, http.StatusBadRequest, "bad_request", "lang must be an ISO-639-1 code such as en")
		return
	}
	max := s.Config().MaxBytes
	r.Body = http.MaxBytesReader(w, r.Body, max+64<<10) // room for the multipart framing
	file, err := FilePart(r)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			route.Error(w, http.StatusRequestEntityTooLarge, "too_large", "audio larger than "+strconv.FormatInt(max, 10)+" bytes")
			return
		}
		route.Error(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	tr, err := s.Transcribe(r.Context(), file, lang)
	if err != nil {
		writeErr(w, err)
		return
	}
	route.JSON(w, http.StatusOK, tr)
}

// FilePart returns the multipart field "file", or the first file part when
// it is named otherwise.
func FilePart(r *http.Request) (io.Reader, error) {
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, errors.New("want a multipart/form-data body with a file part: " + err.Error())
	}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return nil, errors.New(`no file part in the form (send the audio as field "file")`)
		}
		if err != nil {
			return nil, err
		}
		if p.FormName() == "file" || p.FileName() != "" {
			return p, nil
		}
	}
}

func langOK(s string) bool {
	return len(s) == 2 && s[0] >= 'a' && s[0] <= 'z' && s[1] >= 'a' && s[1] <= 'z'
}

// writeErr maps engine errors to statuses: bad input 400, too large 413,
// voice off or an engine that cannot run 503, a failing server 502.
func writeErr(w http.ResponseWriter, err error) {
	var me *MissingError
	switch {
	case errors.Is(err, ErrNotAudio):
		route.Error(w, http.StatusBadRequest, "not_audio", err.Error())
	case errors.Is(err, ErrEmpty), errors.Is(err, ErrLanguage):
		route.Error(w, http.StatusBadRequest, "bad_request", err.Error())
	case errors.Is(err, ErrTooLarge):
		route.Error(w, http.StatusRequestEntityTooLarge, "too_large", err.Error())
	case errors.Is(err, ErrDisabled), errors.As(err, &me):
		route.Error(w, http.StatusServiceUnavailable, "unavailable", err.Error())
	default:
		route.Error(w, http.StatusBadGateway, "engine_failed", err.Error())
	}
}
