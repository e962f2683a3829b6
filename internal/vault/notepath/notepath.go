// Package notepath is the one check every vault path passes: a client's
// path made canonical and confined to the vault folder. It is its own
// package, with nothing but the standard library, so its fuzz target builds
// fast (the vault's own tests pull in SQLite).
package notepath

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrInvalidPath is returned for a path that is not a note inside the
// vault; REST answers 400 invalid_path and nothing is touched.
var ErrInvalidPath = errors.New("invalid path")

// Limits of a path (Linux NAME_MAX and a generous whole).
const (
	maxSegment = 255
	maxPath    = 1024
)

// Clean checks a client's vault path and returns it in canonical form:
// relative to memories/, slash-separated, ".md" appended when missing.
// Refused (ErrInvalidPath): empty, absolute, "..", NUL and other control
// characters, backslashes, invalid UTF-8, dot-files and dot-folders (they
// are Obsidian's own, .obsidian/ and .trash/, and never indexed), and
// over-long names. Symlinks are checked where the file is opened (os.Root
// refuses any that leave the vault).
func Clean(p string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w %q: %s", ErrInvalidPath, p, why)
	}
	switch {
	case p == "":
		return bad("empty")
	case !utf8.ValidString(p):
		return bad("not UTF-8")
	case strings.HasPrefix(p, "/"):
		return bad("absolute paths are not allowed; paths are relative to memories/")
	case strings.ContainsRune(p, '\\'):
		return bad("backslashes are not allowed; use /")
	case len(p) > maxPath:
		return bad("too long")
	}
	for _, r := range p {
		if unicode.IsControl(r) {
			return bad("control characters are not allowed")
		}
	}
	segs := strings.Split(p, "/")
	out := segs[:0]
	for _, s := range segs {
		switch {
		case s == "" || s == ".":
			continue // "a//b", "./a"
		case s == "..":
			return bad(`".." is not allowed`)
		case strings.HasPrefix(s, "."):
			return bad("dot-files and dot-folders are not notes")
		case len(s) > maxSegment:
			return bad("a name is longer than 255 bytes")
		case strings.TrimSpace(s) == "":
			return bad("a name is only spaces")
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return bad("no file name")
	}
	clean := strings.Join(out, "/")
	if !strings.HasSuffix(clean, ".md") {
		clean += ".md"
		if len(out[len(out)-1])+3 > maxSegment {
			return bad("a name is longer than 255 bytes")
		}
	}
	if path.Clean(clean) != clean {
		return bad("not a clean path")
	}
	return clean, nil
}

// IsNote reports whether a path found on disk (relative, slash form)
// is a note the vault indexes: a .md file outside dot-folders.
func IsNote(rel string) bool {
	if !strings.HasSuffix(rel, ".md") {
		return false
	}
	return !Hidden(rel)
}

// Hidden reports whether any element of rel starts with a dot (.obsidian,
// .trash, .git, editors' and syncers' temp files, our own temp files).
func Hidden(rel string) bool {
	for _, s := range strings.Split(rel, "/") {
		if strings.HasPrefix(s, ".") {
			return true
		}
	}
	return false
}

// Escapes reports whether err is os.Root refusing a path that leaves the
// root (through a symlink); the os package does not export that error.
func Escapes(err error) bool {
	return err != nil && strings.Contains(err.Error(), "path escapes from parent")
}
