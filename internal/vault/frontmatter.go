package vault

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// fmSpan locates a note's frontmatter: src[start:end] is the YAML between
// the fence lines, the body starts at src[body:].
type fmSpan struct{ start, end, body int }

// splitFrontmatter finds a note's YAML frontmatter. A note has one only when
// its first line is exactly "---" and a later line is exactly "---"
// (trailing spaces and CR allowed): that is how Obsidian reads it. A "---"
// inside a value cannot cut the block early, because a YAML value never
// holds a column-0 "---" line (it would be a document marker); an indented
// one is not a fence.
func splitFrontmatter(src []byte) (fmSpan, bool) {
	off := 0
	if bytes.HasPrefix(src, bom) {
		off = len(bom)
	}
	nl := bytes.IndexByte(src[off:], '\n')
	if nl < 0 || !isFence(src[off:off+nl]) {
		return fmSpan{}, false
	}
	start := off + nl + 1
	for p := start; p < len(src); {
		lineEnd, next := len(src), len(src)
		if e := bytes.IndexByte(src[p:], '\n'); e >= 0 {
			lineEnd, next = p+e, p+e+1
		}
		if isFence(src[p:lineEnd]) {
			return fmSpan{start, p, next}, true
		}
		p = next
	}
	return fmSpan{}, false
}

var bom = []byte("\xef\xbb\xbf")

func isFence(line []byte) bool {
	return string(bytes.TrimRight(line, " \t\r")) == "---"
}

// frontmatter is a note's parsed YAML block.
type frontmatter struct {
	// Values is the block decoded for JSON (REST) and the model.
	Values map[string]any
	// Node is the parsed mapping, with comments, for edits that must keep
	// everything else as it was; nil for an empty block.
	Node *ast.MappingNode
}

var errNotMapping = errors.New("frontmatter is not a YAML mapping")

// parseFrontmatter decodes the YAML between the fences. An empty block is
// an empty mapping.
func parseFrontmatter(src []byte) (*frontmatter, error) {
	fm := &frontmatter{Values: map[string]any{}}
	if len(bytes.TrimSpace(src)) == 0 {
		return fm, nil
	}
	f, err := parser.ParseBytes(src, parser.ParseComments)
	if err != nil {
		return nil, fmt.Errorf("frontmatter: %s", yaml.FormatError(err, false, false))
	}
	if len(f.Docs) != 1 {
		return nil, errors.New("frontmatter: want one YAML document")
	}
	switch n := f.Docs[0].Body.(type) {
	case nil:
		return fm, nil
	case *ast.MappingNode:
		fm.Node = n
	case *ast.MappingValueNode:
		fm.Node = &ast.MappingNode{BaseNode: n.BaseNode, Values: []*ast.MappingValueNode{n}}
	case *ast.CommentGroupNode:
		return fm, nil
	default:
		return nil, errNotMapping
	}
	if err := yaml.NodeToValue(fm.Node, &fm.Values); err != nil {
		return nil, fmt.Errorf("frontmatter: %w", err)
	}
	return fm, nil
}

// stringsOf returns a frontmatter value as a list of strings: a YAML list
// of scalars, or one string split on commas and spaces (Obsidian accepts
// "tags: a, b" and "tags: a b").
func stringsOf(v any) []string {
	var out []string
	switch t := v.(type) {
	case string:
		for _, f := range strings.FieldsFunc(t, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
			out = append(out, f)
		}
	case []any:
		for _, e := range t {
			if e != nil {
				out = append(out, strings.TrimSpace(fmt.Sprint(e)))
			}
		}
	}
	return out
}

// setProperties returns src with the given top-level frontmatter keys set
// (a nil value deletes the key). Every other line of the block — other
// keys, their order, comments, formatting — is kept byte for byte: the
// lines of a changed key are replaced in the source text at the position
// the YAML parser reports, new keys are appended at the end of the block.
// A note without frontmatter gets one.
func setProperties(src []byte, props map[string]any, order []string) ([]byte, error) {
	sp, ok := splitFrontmatter(src)
	if !ok {
		var b bytes.Buffer
		b.WriteString("---\n")
		for _, k := range order {
			if props[k] == nil {
				continue
			}
			line, err := propertyLines(k, props[k])
			if err != nil {
				return nil, err
			}
			b.WriteString(line)
		}
		b.WriteString("---\n")
		b.Write(src)
		return b.Bytes(), nil
	}
	fmText := src[sp.start:sp.end]
	fm, err := parseFrontmatter(fmText)
	if err != nil {
		return nil, err
	}
	if fm.Node != nil && fm.Node.IsFlowStyle {
		return nil, errors.New("frontmatter is a flow mapping ({…}); edit it by hand")
	}
	lines := strings.SplitAfter(string(fmText), "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	eol := "\n"
	if sp.start >= 2 && src[sp.start-2] == '\r' {
		eol = "\r\n"
	}
	type span struct{ from, to int } // 0-based line range [from, to) of one key
	spans := map[string]span{}
	if fm.Node != nil {
		for i, mv := range fm.Node.Values {
			from := mv.Key.GetToken().Position.Line - 1
			to := len(lines)
			if i+1 < len(fm.Node.Values) {
				to = fm.Node.Values[i+1].Key.GetToken().Position.Line - 1
			}
			// Comment and blank lines before the next key belong to it.
			for to > from+1 && isCommentOrBlank(lines[to-1]) {
				to--
			}
			spans[keyString(mv.Key)] = span{from, to}
		}
	}
	replaced := make([]string, len(lines))
	copy(replaced, lines)
	drop := make([]bool, len(lines))
	var tail []string
	for _, k := range order {
		v := props[k]
		var text string
		if v != nil {
			if text, err = propertyLines(k, v); err != nil {
				return nil, err
			}
			text = strings.ReplaceAll(text, "\n", eol)
		}
		sp, exists := spans[k]
		switch {
		case exists:
			for i := sp.from; i < sp.to; i++ {
				drop[i] = true
			}
			drop[sp.from] = false
			replaced[sp.from] = text
		case v != nil:
			tail = append(tail, text)
		}
	}
	var b bytes.Buffer
	b.Write(src[:sp.start])
	for i, l := range replaced {
		if !drop[i] {
			b.WriteString(l)
		}
	}
	for _, t := range tail {
		b.WriteString(t)
	}
	b.Write(src[sp.end:])
	out := b.Bytes()
	nsp, ok := splitFrontmatter(out)
	if !ok {
		return nil, errors.New("property edit broke the frontmatter block")
	}
	if _, err := parseFrontmatter(out[nsp.start:nsp.end]); err != nil {
		return nil, fmt.Errorf("property edit gives invalid YAML: %w", err)
	}
	return out, nil
}

func isCommentOrBlank(line string) bool {
	t := strings.TrimSpace(line)
	return t == "" || strings.HasPrefix(t, "#")
}

func keyString(k ast.MapKeyNode) string {
	if s, ok := k.(ast.ScalarNode); ok {
		return fmt.Sprint(s.GetValue())
	}
	return k.String()
}

// propertyLines renders one "key: value" entry in block style.
func propertyLines(key string, v any) (string, error) {
	b, err := yaml.MarshalWithOptions(map[string]any{key: v}, yaml.IndentSequence(true))
	if err != nil {
		return "", fmt.Errorf("property %s: %w", key, err)
	}
	s := string(b)
	if !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	return s, nil
}
