package voice

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// Save is the one writer of voice files (the gateway's voice input and the
// spoken replies): Dir/voice/<yyyy-mm>/<16 hex>-<name>.<format>, the file
// 0600 in a 0700 folder, a new random name each time.
func TestFilesSave(t *testing.T) {
	dir := t.TempDir()
	f := Files{Dir: dir}
	cases := []struct{ name, format string }{{"in", "audio"}, {"reply", "ogg"}}
	seen := map[string]bool{}
	for _, c := range cases {
		for range 2 {
			path, err := f.Save(Audio{Data: []byte("sound"), Format: c.format}, c.name)
			if err != nil {
				t.Fatal(err)
			}
			month := filepath.Join(dir, "voice", time.Now().UTC().Format("2006-01"))
			if filepath.Dir(path) != month {
				t.Fatalf("%s saved in %s, want %s", path, filepath.Dir(path), month)
			}
			if !regexp.MustCompile(`^[0-9a-f]{16}-` + c.name + `\.` + c.format + `$`).MatchString(filepath.Base(path)) {
				t.Fatalf("file name %q", filepath.Base(path))
			}
			if seen[path] {
				t.Fatalf("%s saved twice", path)
			}
			seen[path] = true
			for p, want := range map[string]os.FileMode{path: 0o600, month: 0o700} {
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != want {
					t.Fatalf("%s mode %v, want %v", p, fi.Mode().Perm(), want)
				}
			}
			if b, _ := os.ReadFile(path); string(b) != "sound" {
				t.Fatalf("content %q", b)
			}
		}
	}
}
