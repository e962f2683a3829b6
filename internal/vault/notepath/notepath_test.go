package notepath

import (
	"errors"
	"path"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCleanPath(t *testing.T) {
	ok := []struct{ in, want string }{
		{"Note", "Note.md"},
		{"Note.md", "Note.md"},
		{"folder/sub/Note", "folder/sub/Note.md"},
		{"./a//b/", "a/b.md"},
		{"Über Café", "Über Café.md"},
		{"v1.2 notes", "v1.2 notes.md"},
		{"x.MD", "x.MD.md"},
	}
	for _, tc := range ok {
		got, err := Clean(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("Clean(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	bad := []string{
		"", "/etc/passwd", "../x", "a/../../x", "a/..", "..", `a\b`, `..\x`, "a\x00b", "a\nb",
		".obsidian/app", ".trash/x", "a/.hidden", "/", ".", "./", string([]byte{0xff, 0xfe}),
		strings.Repeat("a", 256), strings.Repeat("a/", 600) + "x", " /x",
	}
	for _, in := range bad {
		if got, err := Clean(in); !errors.Is(err, ErrInvalidPath) {
			t.Errorf("Clean(%q) = %q, %v; want ErrInvalidPath", in, got, err)
		}
	}
}

// FuzzCleanPath checks the confinement invariant on any input: an accepted
// path is relative, clean, a .md note outside dot-folders, never climbs
// out, and is a fixed point.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"Note", "a/b/c.md", "../x", "%2e%2e%2f", "a/./b", "a\\b", "/abs", ".obsidian/x", "a\x00", "Über/Café", "..a/b..", "a/ /b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := Clean(in)
		if err != nil {
			if !errors.Is(err, ErrInvalidPath) {
				t.Fatalf("Clean(%q): error %v is not ErrInvalidPath", in, err)
			}
			return
		}
		switch {
		case !utf8.ValidString(got), strings.ContainsAny(got, "\\\x00"), strings.HasPrefix(got, "/"):
			t.Fatalf("Clean(%q) = %q: unsafe characters", in, got)
		case path.Clean(got) != got, !strings.HasSuffix(got, ".md"), Hidden(got):
			t.Fatalf("Clean(%q) = %q: not a clean visible note path", in, got)
		case path.IsAbs(path.Join("/root", got)) && !strings.HasPrefix(path.Join("/root", got), "/root/"):
			t.Fatalf("Clean(%q) = %q escapes the root", in, got)
		}
		for _, seg := range strings.Split(got, "/") {
			if seg == ".." || seg == "." || seg == "" || len(seg) > maxSegment {
				t.Fatalf("Clean(%q) = %q: bad segment %q", in, got, seg)
			}
		}
		if again, err := Clean(got); err != nil || again != got {
			t.Fatalf("CleanPath not idempotent: %q → %q → %q, %v", in, got, again, err)
		}
		if !IsNote(got) {
			t.Fatalf("Clean(%q) = %q, which the index would not take as a note", in, got)
		}
	})
}
