package upload

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSanitize(t *testing.T) {
	long := strings.Repeat("é", 80) + ".pdf"
	for _, tc := range []struct{ in, want string }{
		{"report.pdf", "report.pdf"},
		{"../../x", "x"},
		{`..\..\windows\evil.exe`, "evil.exe"},
		{"/etc/passwd", "passwd"},
		{".bashrc", "bashrc"},
		{"..", "file"},
		{"", "file"},
		{"a\x00b\nc\x7f.txt", "abc.txt"},
		{"  spaced name.txt ", "spaced name.txt"},
		{long, strings.Repeat("é", 48) + ".pdf"},
	} {
		if got := Sanitize(tc.in); got != tc.want {
			t.Errorf("Sanitize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func post(t *testing.T, u *Uploads, field, name string, body io.Reader) (int, map[string]any) {
	t.Helper()
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		mw.WriteField("note", "first a plain field")
		fw, err := mw.CreateFormFile(field, name)
		if err == nil {
			_, err = io.Copy(fw, body)
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	req := httptest.NewRequest("POST", "/api/upload", pr)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	rec := httptest.NewRecorder()
	mux := http.NewServeMux()
	for _, r := range Routes(u) {
		mux.Handle(r.Pattern, r.Handler)
	}
	mux.ServeHTTP(rec, req)
	var out map[string]any
	json.Unmarshal(rec.Body.Bytes(), &out)
	return rec.Code, out
}

func files(t *testing.T, dir string) []string {
	var out []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func TestUpload(t *testing.T) {
	dir := t.TempDir()
	u := &Uploads{Dir: dir, Limit: func() int64 { return 1 << 20 }, Log: slog.New(slog.DiscardHandler),
		Now: func() time.Time { return time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC) }}
	png := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{0}, 1000)...)
	code, out := post(t, u, "upload", "../../x.png", bytes.NewReader(png))
	if code != 201 {
		t.Fatalf("upload: %d %v", code, out)
	}
	p := out["path"].(string)
	if filepath.Dir(p) != filepath.Join(dir, "2026-12") || !strings.HasSuffix(p, "-x.png") || out["filename"] != "x.png" ||
		out["size"] != float64(len(png)) || out["mime"] != "image/png" {
		t.Errorf("answer %v", out)
	}
	if b, _ := os.ReadFile(p); !bytes.Equal(b, png) {
		t.Errorf("stored %d bytes, not the upload", len(b))
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	// Exactly the limit fits; one byte more is 413 and leaves nothing.
	if code, out := post(t, u, "file", "a.bin", bytes.NewReader(make([]byte, 1<<20))); code != 201 {
		t.Errorf("file of exactly the limit: %d %v", code, out)
	}
	code, out = post(t, u, "file", "b.bin", io.LimitReader(zeros{}, 1<<20+1))
	if code != 413 {
		t.Errorf("over the limit: %d %v", code, out)
	}
	if fs := files(t, dir); len(fs) != 2 {
		t.Errorf("files after a refused upload: %v", fs)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }
