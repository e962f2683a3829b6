package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Attachment is a file that travels with a message: {type, path, filename}
// as in the gateway protocol. Type is one of image, file, voice, video.
type Attachment struct {
	Type     string `json:"type"`
	Path     string `json:"path"`
	Filename string `json:"filename"`
}

// Attachment types.
const (
	AttachImage = "image"
	AttachFile  = "file"
	AttachVoice = "voice"
	AttachVideo = "video"
)

// markerRe matches [IMAGE:/p] [FILE:/p] [VOICE:/p] [VIDEO:/p] (one line,
// non-empty path).
var markerRe = regexp.MustCompile(`\[(IMAGE|FILE|VOICE|VIDEO):([^\]\n]+)\]`)

var markerPrefixes = []string{"[IMAGE:", "[FILE:", "[VOICE:", "[VIDEO:"}

// maxMarkerLen bounds how much streamed text is held back while it might
// still turn out to be a marker.
const maxMarkerLen = 4096

// ExtractAttachments strips every attachment marker from text. Markers whose
// path lies inside one of roots become Attachments (in order of appearance,
// duplicates dropped); the others are dropped and described in refused
// (human-readable notes, for status events and logs). The returned text has
// the whitespace left by removed markers tidied.
func ExtractAttachments(text string, roots []string) (clean string, atts []Attachment, refused []string) {
	if !strings.Contains(text, "[") {
		return text, nil, nil
	}
	resolvedRoots := make([]string, 0, len(roots))
	for _, r := range roots {
		if r == "" || !filepath.IsAbs(r) {
			continue // a relative root would depend on the cwd: ignore it
		}
		resolvedRoots = append(resolvedRoots, resolveExisting(filepath.Clean(r)))
	}
	seen := map[string]bool{}
	matched := false
	clean = markerRe.ReplaceAllStringFunc(text, func(m string) string {
		matched = true
		sub := markerRe.FindStringSubmatch(m)
		typ, raw := strings.ToLower(sub[1]), strings.TrimSpace(sub[2])
		path, err := allowedPath(raw, resolvedRoots)
		if err != nil {
			refused = append(refused, fmt.Sprintf("attachment %s dropped: %v", raw, err))
			return ""
		}
		if !seen[path] {
			seen[path] = true
			atts = append(atts, Attachment{Type: typ, Path: path, Filename: filepath.Base(filepath.Clean(raw))})
		}
		return ""
	})
	if !matched {
		return text, nil, nil
	}
	return tidy(clean), atts, refused
}

// Bounds of a path an attachment may name: resolving one costs a system
// call per component and prefix, so a megabyte of "a/a/a/…" in a frame or a
// reply would keep a CPU busy for minutes (found by FuzzAttachmentPaths).
const (
	maxPathBytes = 4096 // PATH_MAX
	maxPathDepth = 64
)

// checkShape refuses paths beyond maxPathBytes or maxPathDepth.
func checkShape(p string) error {
	if len(p) > maxPathBytes || strings.Count(p, "/") > maxPathDepth {
		return fmt.Errorf("%w (at most %d bytes and %d levels)", ErrAttachTooLong, maxPathBytes, maxPathDepth)
	}
	return nil
}

// allowedPath validates a marker path and returns its resolved form.
func allowedPath(raw string, roots []string) (string, error) {
	if !filepath.IsAbs(raw) {
		return "", errors.New("not an absolute path")
	}
	if err := checkShape(raw); err != nil {
		return "", err
	}
	if slices.Contains(strings.FieldsFunc(filepath.ToSlash(raw), func(r rune) bool { return r == '/' }), "..") {
		return "", errors.New("path traversal (..) refused")
	}
	p := resolveExisting(filepath.Clean(raw))
	if fi, err := os.Stat(p); err == nil && fi.IsDir() {
		return "", errors.New("is a directory")
	}
	for _, root := range roots {
		if within(p, root) {
			return p, nil
		}
	}
	return "", errors.New("outside the allowed folders")
}

// within reports whether p is strictly inside dir (both clean, absolute).
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	if err != nil || rel == "." {
		return false
	}
	return rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// resolveExisting resolves symlinks in the longest existing prefix of p (p
// clean and absolute), so a link inside an allowed root that points outside
// it is caught even when the final file does not exist yet.
func resolveExisting(p string) string {
	rest := ""
	cur := p
	for {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			if rest == "" {
				return r
			}
			return filepath.Join(r, rest)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return p
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return p
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}

var (
	trailingSpace = regexp.MustCompile(`[ \t]+\n`)
	manyNewlines  = regexp.MustCompile(`\n{3,}`)
	doubleSpace   = regexp.MustCompile(`([^ \n]) {2,}([^ \n])`)
)

// tidy cleans the whitespace left behind by removed markers.
func tidy(s string) string {
	s = doubleSpace.ReplaceAllString(s, "$1 $2")
	s = trailingSpace.ReplaceAllString(s, "\n")
	s = manyNewlines.ReplaceAllString(s, "\n\n")
	return strings.TrimSpace(s)
}

// markerFilter removes attachment markers from streamed text, holding back
// a possible marker until it is complete (or proven not to be one), so the
// user never sees "[IMAGE:/..." flash by in the deltas.
type markerFilter struct {
	pending string
}

// write feeds a delta and returns the text that may be shown now.
func (f *markerFilter) write(s string) string {
	buf := f.pending + s
	f.pending = ""
	var out strings.Builder
	for buf != "" {
		i := strings.IndexByte(buf, '[')
		if i < 0 {
			out.WriteString(buf)
			break
		}
		out.WriteString(buf[:i])
		buf = buf[i:]
		n, more := markerLen(buf)
		switch {
		case n > 0:
			buf = buf[n:] // a complete marker: drop it
		case more:
			f.pending = buf // could still become a marker
			buf = ""
		default:
			out.WriteByte('[')
			buf = buf[1:]
		}
	}
	return out.String()
}

// flush returns held-back text at the end of a stream.
func (f *markerFilter) flush() string {
	p := f.pending
	f.pending = ""
	return p
}

// markerLen inspects buf (starting with '['): n > 0 if it starts with a
// complete marker of length n; more if it might still become one.
func markerLen(buf string) (n int, more bool) {
	for _, pre := range markerPrefixes {
		if len(buf) < len(pre) {
			if strings.HasPrefix(pre, buf) {
				return 0, true
			}
			continue
		}
		if !strings.HasPrefix(buf, pre) {
			continue
		}
		end := strings.IndexAny(buf[len(pre):], "]\n")
		if end < 0 {
			return 0, len(buf) < maxMarkerLen
		}
		if buf[len(pre)+end] == '\n' || end == 0 {
			return 0, false
		}
		return len(pre) + end + 1, false
	}
	return 0, false
}

// Reasons InboundAttachment refuses a path.
var (
	ErrAttachRelative   = errors.New("attachment path must be absolute")
	ErrAttachMissing    = errors.New("attachment does not exist")
	ErrAttachOutside    = errors.New("attachment is outside the folders attachments may come from")
	ErrAttachNotRegular = errors.New("attachment is not a regular file")
	ErrAttachTooLong    = errors.New("attachment path too long")
)

// InboundAttachment checks a path a client attaches to a turn and returns
// it with every symlink resolved: it must be absolute, name an existing
// regular file, and lie inside one of roots but inside none of denied
// (both resolved too, so a symlinked root cannot widen them). The agent
// reads the file and may send it to a model, so this is what keeps
// keys/coordinator.key, openagent.db and openagent.yaml out of a turn.
func InboundAttachment(p string, roots, denied []string) (string, error) {
	if p == "" || !filepath.IsAbs(p) || strings.ContainsRune(p, 0) {
		return "", ErrAttachRelative
	}
	if err := checkShape(p); err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		// A missing file inside the roots is "missing"; outside, the
		// answer must not tell which files exist there.
		if insideAny(resolveExisting(filepath.Clean(p)), roots) {
			return "", ErrAttachMissing
		}
		return "", ErrAttachOutside
	}
	if !insideAny(real, roots) || insideAny(real, denied) {
		return "", ErrAttachOutside
	}
	if fi, err := os.Stat(real); err != nil || !fi.Mode().IsRegular() {
		return "", ErrAttachNotRegular
	}
	return real, nil
}

// insideAny reports whether p is strictly inside one of dirs (absolute;
// resolved here).
func insideAny(p string, dirs []string) bool {
	for _, d := range dirs {
		if d == "" || !filepath.IsAbs(d) {
			continue
		}
		if within(p, resolveExisting(filepath.Clean(d))) {
			return true
		}
	}
	return false
}
