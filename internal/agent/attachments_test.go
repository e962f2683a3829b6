package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExtractAttachments(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "allowed")
	outside := filepath.Join(base, "secret")
	for _, d := range []string{root, outside, filepath.Join(root, "sub")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p string) {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(root, "a.png"))
	write(filepath.Join(root, "sub", "doc.pdf"))
	write(filepath.Join(outside, "key.pem"))
	// A link inside the root pointing outside it, and a linked directory.
	if err := os.Symlink(filepath.Join(outside, "key.pem"), filepath.Join(root, "innocent.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "linkdir")); err != nil {
		t.Fatal(err)
	}
	rroot, _ := filepath.EvalSymlinks(root)
	sibling := root + "-evil" // shares the root's string prefix
	if err := os.MkdirAll(sibling, 0o755); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(sibling, "x.png"))

	cases := []struct {
		name      string
		text      string
		wantText  string
		wantAtts  []Attachment
		wantNotes []string // substrings, in order
	}{
		{
			name:     "allowed image",
			text:     "Look [IMAGE:" + root + "/a.png] here",
			wantText: "Look here",
			wantAtts: []Attachment{{"image", rroot + "/a.png", "a.png"}},
		},
		{
			name:     "all four types, nested dir, not-yet-existing file",
			text:     "[FILE:" + root + "/sub/doc.pdf]\n[VOICE:" + root + "/v.ogg]\n[VIDEO: " + root + "/m.mp4 ]\ntext",
			wantText: "text",
			wantAtts: []Attachment{{"file", rroot + "/sub/doc.pdf", "doc.pdf"}, {"voice", rroot + "/v.ogg", "v.ogg"}, {"video", rroot + "/m.mp4", "m.mp4"}},
		},
		{
			name:      "dot-dot traversal out of the root",
			text:      "[FILE:" + root + "/../secret/key.pem]",
			wantNotes: []string{"path traversal"},
		},
		{
			name:      "dot-dot that stays inside is refused too",
			text:      "[FILE:" + root + "/sub/../a.png]",
			wantNotes: []string{"path traversal"},
		},
		{
			name:      "relative path",
			text:      "[IMAGE:allowed/a.png]",
			wantNotes: []string{"not an absolute path"},
		},
		{
			name:      "absolute path outside",
			text:      "a [FILE:/etc/passwd] b",
			wantText:  "a b",
			wantNotes: []string{"/etc/passwd dropped: outside the allowed folders"},
		},
		{
			name:      "symlinked file escaping the root",
			text:      "[FILE:" + root + "/innocent.txt]",
			wantNotes: []string{"outside the allowed folders"},
		},
		{
			name:      "new file under a symlinked dir escaping the root",
			text:      "[FILE:" + root + "/linkdir/new.txt]",
			wantNotes: []string{"outside the allowed folders"},
		},
		{
			name:      "sibling dir sharing the prefix",
			text:      "[IMAGE:" + sibling + "/x.png]",
			wantNotes: []string{"outside the allowed folders"},
		},
		{
			name:      "the root itself is a directory",
			text:      "[FILE:" + root + "]",
			wantNotes: []string{"is a directory"},
		},
		{
			name:     "duplicates collapse, non-markers stay",
			text:     "[IMAGE:" + root + "/a.png] arr[0] [IMAGE:" + root + "/a.png] [LINK:x] [IMAGE:]",
			wantText: "arr[0] [LINK:x] [IMAGE:]",
			wantAtts: []Attachment{{"image", rroot + "/a.png", "a.png"}},
		},
		{
			name:     "no markers: text untouched",
			text:     "  keep   spacing  ",
			wantText: "  keep   spacing  ",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			text, atts, notes := ExtractAttachments(c.text, []string{root, "relative/ignored"})
			if text != c.wantText {
				t.Errorf("text = %q, want %q", text, c.wantText)
			}
			if len(atts) != len(c.wantAtts) {
				t.Fatalf("atts = %+v, want %+v", atts, c.wantAtts)
			}
			for i := range atts {
				if atts[i] != c.wantAtts[i] {
					t.Errorf("att %d = %+v, want %+v", i, atts[i], c.wantAtts[i])
				}
			}
			if len(notes) != len(c.wantNotes) {
				t.Fatalf("notes = %q, want %q", notes, c.wantNotes)
			}
			for i := range notes {
				if !strings.Contains(notes[i], c.wantNotes[i]) {
					t.Errorf("note %q lacks %q", notes[i], c.wantNotes[i])
				}
			}
		})
	}
	if _, atts, _ := ExtractAttachments("[IMAGE:"+root+"/a.png]", nil); len(atts) != 0 {
		t.Error("no roots must allow nothing")
	}
}

// The streaming filter must produce exactly the marker-stripped text however
// the stream is chunked.
func TestMarkerFilterAnyChunking(t *testing.T) {
	texts := []string{
		"plain text",
		"a [IMAGE:/x/y.png] b",
		"[FILE:/a][VOICE:/b]",
		"arr[0] and [IMAGE:] and [IMAGE:/broken\nline] and [IMAG",
		"[[IMAGE:/p]]",
		"end with [VIDEO:/v.mp4",
		"[",
	}
	for _, text := range texts {
		want := markerRe.ReplaceAllString(text, "")
		// Every way to split into two chunks, and byte-by-byte.
		splits := [][]string{{text}}
		for i := 1; i < len(text); i++ {
			splits = append(splits, []string{text[:i], text[i:]})
		}
		bytes := []string{}
		for i := range len(text) {
			bytes = append(bytes, text[i:i+1])
		}
		splits = append(splits, bytes)
		for _, chunks := range splits {
			var f markerFilter
			var got strings.Builder
			for _, c := range chunks {
				got.WriteString(f.write(c))
			}
			got.WriteString(f.flush())
			if got.String() != want {
				t.Errorf("text %q chunks %q: got %q, want %q", text, chunks, got.String(), want)
			}
		}
	}
}

func TestTruncate(t *testing.T) {
	s := strings.Repeat("é", 10) // 20 bytes
	got := truncate(s, 5)
	if !strings.HasPrefix(got, "éé\n[truncated: 4 of 20 bytes shown;") {
		t.Errorf("truncate = %q", got)
	}
	if truncate("short", 10) != "short" {
		t.Error("short string changed")
	}
}

func TestInboundAttachment(t *testing.T) {
	dir := t.TempDir()
	up, mem, keys := filepath.Join(dir, "uploads"), filepath.Join(dir, "memories"), filepath.Join(dir, "keys")
	for _, d := range []string{up, mem, keys} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p string) string {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	photo := write(filepath.Join(up, "photo.png"))
	note := write(filepath.Join(mem, "note.md"))
	key := write(filepath.Join(keys, "coordinator.key"))
	db := write(filepath.Join(dir, "openagent.db"))
	link := filepath.Join(up, "innocent.png")
	if err := os.Symlink(key, link); err != nil {
		t.Fatal(err)
	}
	roots, denied := []string{up, mem}, []string{keys}
	for _, tc := range []struct {
		name string
		path string
		want error
	}{
		{"upload", photo, nil},
		{"vault note", note, nil},
		{"relative", "uploads/photo.png", ErrAttachRelative},
		{"empty", "", ErrAttachRelative},
		{"NUL", photo + "\x00", ErrAttachRelative},
		{"signing key", key, ErrAttachOutside},
		{"database", db, ErrAttachOutside},
		{"symlink to the key", link, ErrAttachOutside},
		{"dot-dot out of uploads", filepath.Join(up, "..", "keys", "coordinator.key"), ErrAttachOutside},
		{"missing in uploads", filepath.Join(up, "nope"), ErrAttachMissing},
		{"too deep", up + strings.Repeat("/a", 70), ErrAttachTooLong},
		{"too long", up + "/" + strings.Repeat("a", 5000), ErrAttachTooLong},
		{"missing outside", filepath.Join(keys, "nope"), ErrAttachOutside},
		{"a root itself", up, ErrAttachOutside},
		{"directory", func() string { p := filepath.Join(up, "d"); os.Mkdir(p, 0o700); return p }(), ErrAttachNotRegular},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := InboundAttachment(tc.path, roots, denied)
			if !errors.Is(err, tc.want) && !(err == nil && tc.want == nil) {
				t.Fatalf("InboundAttachment(%q) = %v, want %v", tc.path, err, tc.want)
			}
		})
	}
	// A root that is a symlink to keys/ does not open keys/.
	if err := os.Symlink(keys, filepath.Join(dir, "sneaky")); err != nil {
		t.Fatal(err)
	}
	if _, err := InboundAttachment(key, []string{filepath.Join(dir, "sneaky")}, denied); !errors.Is(err, ErrAttachOutside) {
		t.Fatalf("through a symlinked root: %v", err)
	}
}
