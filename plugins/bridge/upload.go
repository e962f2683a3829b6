package bridge

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// SaveUpload stores an incoming file from r in <uploadsDir>/<platform>/
// under a fresh name that keeps the user's file name for humans (stripped
// of any path, so it cannot escape the directory), mode 0600, and returns
// its path. More than limit bytes is an error and leaves nothing behind.
func SaveUpload(uploadsDir, platform, name string, r io.Reader, limit int64) (string, error) {
	dir := filepath.Join(uploadsDir, platform)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	dst := filepath.Join(dir, hex.EncodeToString(rnd[:])+"-"+SanitizeFilename(name))
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	n, err := io.Copy(out, io.LimitReader(r, limit+1))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > limit {
		err = fmt.Errorf("file larger than %d MB", limit>>20)
	}
	if err != nil {
		os.Remove(dst)
		return "", err
	}
	return dst, nil
}

// SanitizeFilename keeps a user's file name without any path or control
// characters, at most 100 bytes; "file" if nothing is left.
func SanitizeFilename(name string) string {
	name = filepath.Base(strings.ReplaceAll(name, "\\", "/"))
	var b strings.Builder
	for _, r := range name {
		if r == '/' || r < 32 {
			r = '_'
		}
		b.WriteRune(r)
	}
	s := strings.TrimLeft(b.String(), ".")
	if s == "" {
		s = "file"
	}
	if len(s) > 100 {
		s = s[len(s)-100:]
	}
	return s
}
