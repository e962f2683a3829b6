package vault

import (
	"net/url"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/text"
)

// Link is one link as written in a note.
type Link struct {
	// Target is the linked note as written, without heading, block or
	// alias ("folder/Note", "Note.md"); "" for a link into the same note
	// ([[#Heading]]).
	Target string `json:"target"`
	// Heading is the part after '#': a heading ("Intro", "A#B") or a block
	// reference ("^abc123").
	Heading string `json:"heading,omitempty"`
	// Alias is the text after '|' (or a markdown link's text).
	Alias string `json:"alias,omitempty"`
	// Embed marks ![[…]] and ![…](…).
	Embed bool `json:"embed,omitempty"`
}

// markdown parses bodies only to learn where code is: goldmark knows
// CommonMark's fenced and indented code blocks and code spans (inside
// lists and quotes too) far better than a line scanner would. Wikilinks
// themselves are not CommonMark and goldmark-wikilink is not available, so
// scanBody below reads them from the text outside those ranges.
var markdown = goldmark.New()

type span struct{ from, to int }

// codeRanges returns the byte ranges of body that are code, sorted.
func codeRanges(body []byte) []span {
	doc := markdown.Parser().Parse(text.NewReader(body))
	var out []span
	ast.Walk(doc, func(n ast.Node, entering bool) (ast.WalkStatus, error) {
		if !entering {
			return ast.WalkContinue, nil
		}
		switch t := n.(type) {
		case *ast.FencedCodeBlock:
			if t.Info != nil {
				out = append(out, span{t.Info.Segment.Start, t.Info.Segment.Stop})
			}
			out = appendLines(out, t.Lines())
			return ast.WalkSkipChildren, nil
		case *ast.CodeBlock:
			out = appendLines(out, t.Lines())
			return ast.WalkSkipChildren, nil
		case *ast.CodeSpan:
			// The span's own backticks: from before the first child to
			// after the last, widened to the delimiters on both sides.
			from, to := -1, -1
			for c := t.FirstChild(); c != nil; c = c.NextSibling() {
				if tx, ok := c.(*ast.Text); ok {
					if from < 0 {
						from = tx.Segment.Start
					}
					to = tx.Segment.Stop
				}
			}
			if from >= 0 {
				for from > 0 && body[from-1] == '`' {
					from--
				}
				for to < len(body) && body[to] == '`' {
					to++
				}
				out = append(out, span{from, to})
			}
			return ast.WalkSkipChildren, nil
		}
		return ast.WalkContinue, nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].from < out[j].from })
	return out
}

func appendLines(out []span, lines *text.Segments) []span {
	for i := 0; i < lines.Len(); i++ {
		s := lines.At(i)
		out = append(out, span{s.Start, s.Stop})
	}
	return out
}

// scanBody returns the links and inline tags of a note body, skipping code
// and %%comments%% the way Obsidian does.
func scanBody(body []byte) ([]Link, []string) {
	code := codeRanges(body)
	var links []Link
	var tags []string
	s := string(body)
	ci := 0
	for i := 0; i < len(s); {
		for ci < len(code) && code[ci].to <= i {
			ci++
		}
		if ci < len(code) && code[ci].from <= i {
			i = code[ci].to
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "%%"):
			end := strings.Index(s[i+2:], "%%")
			if end < 0 {
				return links, tags
			}
			i += 2 + end + 2
			continue
		case strings.HasPrefix(s[i:], "![["), strings.HasPrefix(s[i:], "[["):
			embed := s[i] == '!'
			start := i + 2
			if embed {
				start++
			}
			if l, n, ok := wikilink(s[start:], code, start); ok {
				l.Embed = embed
				links = append(links, l)
				i = start + n
				continue
			}
		case s[i] == '[' || (s[i] == '!' && strings.HasPrefix(s[i:], "![")):
			if l, n, ok := mdLink(s[i:]); ok {
				links = append(links, l)
				i += n
				continue
			}
		case s[i] == '#' && (i == 0 || isSpaceBefore(s, i)):
			if tag, n := inlineTag(s[i+1:]); n > 0 {
				tags = append(tags, tag)
				i += 1 + n
				continue
			}
		}
		i++
	}
	return links, tags
}

func isSpaceBefore(s string, i int) bool {
	r, _ := utf8.DecodeLastRuneInString(s[:i])
	return unicode.IsSpace(r)
}

// wikilink parses the inside of [[…]] from s (just after the brackets) up
// to "]]" on the same line. It returns the link and the bytes consumed
// including "]]".
func wikilink(s string, code []span, base int) (Link, int, bool) {
	end := strings.Index(s, "]]")
	if end <= 0 {
		return Link{}, 0, false
	}
	inner := s[:end]
	if strings.ContainsAny(inner, "\n[") || overlaps(code, base, base+end) {
		return Link{}, 0, false
	}
	var l Link
	target := inner
	if i := strings.IndexByte(inner, '|'); i >= 0 {
		target, l.Alias = inner[:i], strings.TrimSpace(inner[i+1:])
		// In a table the pipe is escaped: [[Note\|alias]].
		target = strings.TrimSuffix(target, `\`)
	}
	if i := strings.IndexByte(target, '#'); i >= 0 {
		target, l.Heading = target[:i], strings.TrimSpace(target[i+1:])
	}
	l.Target = strings.TrimSpace(target)
	if l.Target == "" && l.Heading == "" {
		return Link{}, 0, false
	}
	return l, end + 2, true
}

func overlaps(code []span, from, to int) bool {
	for _, c := range code {
		if c.from < to && from < c.to {
			return true
		}
	}
	return false
}

// mdLink parses a markdown link [text](target) or embed ![alt](target) to
// a note or file of the vault at the start of s; links with a URL scheme
// (https:, mailto:, obsidian:) are not vault links.
func mdLink(s string) (Link, int, bool) {
	embed := strings.HasPrefix(s, "!")
	i := 1
	if embed {
		i = 2
	}
	closeText := strings.IndexAny(s[i:], "]\n")
	if closeText < 0 || s[i+closeText] != ']' {
		return Link{}, 0, false
	}
	label := s[i : i+closeText]
	rest := s[i+closeText+1:]
	if !strings.HasPrefix(rest, "(") {
		return Link{}, 0, false
	}
	closeDest := strings.IndexAny(rest, ")\n")
	if closeDest < 0 || rest[closeDest] != ')' {
		return Link{}, 0, false
	}
	dest := strings.TrimSpace(rest[1:closeDest])
	if strings.HasPrefix(dest, "<") {
		if j := strings.IndexByte(dest, '>'); j > 0 {
			dest = dest[1:j]
		}
	} else if j := strings.IndexAny(dest, " \t"); j >= 0 {
		dest = dest[:j] // drop a "title"
	}
	if dest == "" || hasScheme(dest) {
		return Link{}, 0, false
	}
	if u, err := url.PathUnescape(dest); err == nil {
		dest = u
	}
	l := Link{Alias: strings.TrimSpace(label), Embed: embed}
	l.Target = dest
	if j := strings.IndexByte(dest, '#'); j >= 0 {
		l.Target, l.Heading = dest[:j], dest[j+1:]
	}
	return l, i + closeText + 1 + closeDest + 1, true
}

func hasScheme(dest string) bool {
	i := strings.IndexByte(dest, ':')
	if i <= 0 {
		return false
	}
	for _, r := range dest[:i] {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// inlineTag reads a tag name after '#': letters, digits, '_', '-', '/',
// with at least one non-digit (#2024 is not a tag). Tags are
// case-insensitive, so the name is returned lower-cased.
func inlineTag(s string) (string, int) {
	n, digitsOnly := 0, true
	for n < len(s) {
		r, size := utf8.DecodeRuneInString(s[n:])
		if !isTagRune(r) {
			break
		}
		if !unicode.IsDigit(r) {
			digitsOnly = false
		}
		n += size
	}
	if n == 0 || digitsOnly {
		return "", 0
	}
	return strings.ToLower(s[:n]), n
}

func isTagRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r) || r == '_' || r == '-' || r == '/'
}

// normalizeTag cleans a frontmatter tag: '#' dropped, lower-cased; "" when
// nothing is left.
func normalizeTag(t string) string {
	return strings.ToLower(strings.TrimPrefix(strings.TrimSpace(t), "#"))
}
