package voice

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Files adapts the service to audio files, for voice turns: Hear reads an
// audio file, Speak writes an Ogg/Opus file under Dir/voice/<yyyy-mm>/.
type Files struct {
	*Service
	Dir string // the agent's uploads directory
}

// Hear transcribes the audio file at path with the configured language.
func (f Files) Hear(ctx context.Context, path string) (string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("open voice message: %w", err)
	}
	defer fh.Close()
	tr, err := f.Transcribe(ctx, fh, "")
	if err != nil {
		return "", err
	}
	return tr.Text, nil
}

// Speak synthesizes the speakable form of text (Markdown marks and code
// dropped, at most maxTTSText bytes) and returns the file's path.
func (f Files) Speak(ctx context.Context, text string) (string, error) {
	a, err := f.Synthesize(ctx, Speakable(text), "", "ogg")
	if err != nil {
		return "", err
	}
	return f.Save(a, "reply")
}

// Save writes audio as Dir/voice/<yyyy-mm>/<random>-<name>.<format>, 0600.
func (f Files) Save(a Audio, name string) (string, error) {
	dir := filepath.Join(f.Dir, "voice", time.Now().UTC().Format("2006-01"))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	path := filepath.Join(dir, hex.EncodeToString(rnd[:])+"-"+name+"."+a.Format)
	if err := os.WriteFile(path, a.Data, 0o600); err != nil {
		return "", fmt.Errorf("save audio: %w", err)
	}
	return path, nil
}

var (
	fenceRe = regexp.MustCompile("(?s)```.*?```")
	linkRe  = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)
	markRe  = regexp.MustCompile("[*_`#>|~]+")
)

// Speakable is text as it should be read aloud: code blocks replaced by a
// mention, links by their text, Markdown marks removed, capped in length.
func Speakable(text string) string {
	s := fenceRe.ReplaceAllString(text, " (code omitted) ")
	s = linkRe.ReplaceAllString(s, "$1")
	s = markRe.ReplaceAllString(s, "")
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxTTSText {
		cut := strings.LastIndexByte(s[:maxTTSText], ' ')
		if cut < 0 {
			cut = maxTTSText
		}
		s = s[:cut] + " …"
	}
	return s
}
