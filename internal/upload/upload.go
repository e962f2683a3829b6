// Package upload owns POST /api/upload: files streamed to
// uploads/<yyyy-mm>/<random>-<name> (mode 0600) under a size cap enforced
// while reading, so a file is never held whole in memory and an oversized
// one leaves nothing behind. The path answered is usable as a text_final
// attachment.
package upload

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/route"
)

// MaxNameBytes caps a stored file name (without the random prefix).
const MaxNameBytes = 100

// Uploads stores uploaded files under Dir.
type Uploads struct {
	// Dir is the agent directory's uploads/.
	Dir string
	// Limit returns the current size cap (limits.upload_max_bytes).
	Limit func() int64
	Log   *slog.Logger
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
	// Transcribe, when set, serves ?transcribe=1: the stored audio file's
	// transcript (package voice). It returns an error wrapping NotAudio
	// for a file that is not audio.
	Transcribe func(ctx context.Context, path string) (string, error)
	// NotAudio is the error Transcribe wraps for a file that is not audio.
	NotAudio error
}

// Result is the answer of POST /api/upload.
type Result struct {
	Path     string `json:"path"`
	Filename string `json:"filename"`
	Size     int64  `json:"size"`
	MIME     string `json:"mime"`
	// Transcription is the text of an audio upload with ?transcribe=1.
	Transcription *string `json:"transcription,omitempty"`
	// TranscriptionError says why an audio file kept was not transcribed.
	TranscriptionError string `json:"transcription_error,omitempty"`
}

// Routes is POST /api/upload, for chat devices (rest.md "Upload").
func Routes(u *Uploads) []route.Route {
	return []route.Route{{Pattern: "POST /api/upload", Cap: auth.CapChat, Handler: http.HandlerFunc(u.handle)}}
}

// errTooLarge is a file over the cap.
var errTooLarge = errors.New("too large")

func (u *Uploads) handle(w http.ResponseWriter, r *http.Request) {
	limit := u.Limit()
	mr, err := r.MultipartReader()
	if err != nil {
		route.Error(w, http.StatusBadRequest, "bad_request", "want a multipart/form-data body with a file part: "+err.Error())
		return
	}
	// The field named file, else the first part that is a file.
	var part *multipart.Part
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			route.Error(w, http.StatusBadRequest, "bad_request", `no file in the form (send it as the field "file")`)
			return
		}
		if err != nil {
			route.Error(w, http.StatusBadRequest, "bad_request", "read the form: "+err.Error())
			return
		}
		if p.FormName() == "file" || p.FileName() != "" {
			part = p
			break
		}
		p.Close()
	}
	res, err := u.store(part, limit)
	switch {
	case errors.Is(err, errTooLarge):
		// Stop reading: the client may still be sending; closing the
		// connection after the answer is net/http's business.
		w.Header().Set("Connection", "close")
		route.Error(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the file is larger than limits.upload_max_bytes (%d bytes)", limit))
	case err != nil:
		route.Error(w, http.StatusBadRequest, "bad_request", "upload: "+err.Error())
	default:
		if r.URL.Query().Get("transcribe") == "1" && !u.transcribe(w, r, &res) {
			return
		}
		u.Log.Info("upload stored", "path", res.Path, "size", res.Size, "mime", res.MIME)
		route.JSON(w, http.StatusCreated, res)
	}
}

// transcribe adds the transcript of an audio upload. A file that is not
// audio is removed and refused (400); an engine that fails keeps the file
// and says why in transcription_error.
func (u *Uploads) transcribe(w http.ResponseWriter, r *http.Request, res *Result) bool {
	if u.Transcribe == nil {
		os.Remove(res.Path)
		route.Error(w, http.StatusServiceUnavailable, "unavailable", "transcription is not available on this agent (voice)")
		return false
	}
	text, err := u.Transcribe(r.Context(), res.Path)
	switch {
	case err == nil:
		res.Transcription = &text
	case u.NotAudio != nil && errors.Is(err, u.NotAudio):
		os.Remove(res.Path)
		route.Error(w, http.StatusBadRequest, "not_audio", "transcribe=1: the file is not audio: "+err.Error())
		return false
	default:
		res.TranscriptionError = err.Error()
	}
	return true
}

// store streams part into a new file; on any failure the file is removed.
func (u *Uploads) store(part *multipart.Part, limit int64) (res Result, err error) {
	now := time.Now
	if u.Now != nil {
		now = u.Now
	}
	dir := filepath.Join(u.Dir, now().UTC().Format("2006-01"))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return res, fmt.Errorf("create %s: %w", dir, err)
	}
	name := Sanitize(part.FileName())
	var rnd [8]byte
	rand.Read(rnd[:])
	path := filepath.Join(dir, hex.EncodeToString(rnd[:])+"-"+name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return res, fmt.Errorf("create file: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("write file: %w", cerr)
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	var head [512]byte
	n, err := io.ReadFull(part, head[:])
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return res, fmt.Errorf("read the file: %w", err)
	}
	if int64(n) > limit {
		return res, errTooLarge
	}
	if _, err := f.Write(head[:n]); err != nil {
		return res, fmt.Errorf("write file: %w", err)
	}
	// One byte past the cap tells an oversized file from one that fits.
	m, err := io.Copy(f, io.LimitReader(part, limit-int64(n)+1))
	if err != nil {
		return res, fmt.Errorf("read the file: %w", err)
	}
	size := int64(n) + m
	if size > limit {
		return res, errTooLarge
	}
	return Result{Path: path, Filename: name, Size: size, MIME: http.DetectContentType(head[:n])}, nil
}

// Sanitize makes a client's file name safe to store: no directory parts
// (either slash), no control characters, no leading dots (no hidden files,
// no "..") and at most MaxNameBytes bytes, keeping the extension.
func Sanitize(name string) string {
	name = strings.ReplaceAll(name, "\\", "/")
	name = name[strings.LastIndexByte(name, '/')+1:]
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return -1
		}
		return r
	}, name)
	name = strings.TrimLeft(strings.TrimSpace(name), ".")
	if len(name) > MaxNameBytes {
		ext := filepath.Ext(name)
		if len(ext) > 16 {
			ext = ""
		}
		base := name[:len(name)-len(ext)]
		cut := MaxNameBytes - len(ext)
		for cut > 0 && !utf8.RuneStart(base[cut]) {
			cut--
		}
		name = base[:cut] + ext
	}
	if name == "" {
		return "file"
	}
	return name
}
