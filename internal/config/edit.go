package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// Rewrite returns src changed so that it decodes (without ${ENV} expansion)
// to target, a tree of JSON values (map[string]any, []any, float64, string,
// bool, nil). Only what differs is touched, as edits of the source text at
// the positions the YAML parser reports: comments, key order, formatting and
// ${ENV} references elsewhere all survive. An unchanged value keeps its
// exact text. Where an in-place edit is not possible (a flow mapping, the
// first key of a list item) the smallest enclosing value is rewritten.
//
// goccy/go-yaml can print a modified AST, but not byte-faithfully (it
// re-indents and moves comments), so the edits are made on the text.
func Rewrite(src []byte, target any) ([]byte, error) {
	target = normalize(target)
	for range 10000 {
		f, cur, err := parseRaw(src)
		if err != nil {
			return nil, err
		}
		if reflect.DeepEqual(cur, target) {
			return src, nil
		}
		e := &editor{src: src}
		if err := e.step(f, cur, target); err != nil {
			return nil, err
		}
		if bytes.Equal(e.out, src) {
			return nil, errors.New("edit made no progress")
		}
		src = e.out
	}
	return nil, errors.New("too many edits")
}

// Raw decodes src without ${ENV} expansion into JSON values: what the file
// says, as written.
func Raw(src []byte) (any, error) {
	_, v, err := parseRaw(src)
	return v, err
}

func parseRaw(src []byte) (*ast.File, any, error) {
	f, err := parser.ParseBytes(src, parser.ParseComments)
	if err != nil {
		return nil, nil, yamlError(FileName, err)
	}
	if len(f.Docs) > 1 {
		return nil, nil, errors.New("want one YAML document, found several")
	}
	var v any
	if len(f.Docs) == 1 && f.Docs[0].Body != nil {
		if err := yaml.NodeToValue(f.Docs[0].Body, &v); err != nil {
			return nil, nil, yamlError(FileName, err)
		}
	}
	v, err = jsonValue(v)
	return f, v, err
}

// jsonValue converts decoded YAML into JSON values by a JSON round trip.
func jsonValue(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("config as JSON: %w", err)
	}
	var out any
	err = json.Unmarshal(b, &out)
	return out, err
}

// normalize makes v comparable with a decoded tree (numbers as float64).
func normalize(v any) any {
	out, err := jsonValue(v)
	if err != nil {
		return v
	}
	return out
}

// errFallback asks the caller to rewrite the enclosing value instead.
var errFallback = errors.New("rewrite the enclosing value")

type editor struct {
	src []byte
	out []byte
}

func (e *editor) step(f *ast.File, cur, target any) error {
	tm, ok := target.(map[string]any)
	if !ok {
		return errors.New("the config must be a mapping")
	}
	cm, _ := cur.(map[string]any)
	var root *ast.MappingNode
	if cur != nil {
		if root, ok = mappingOf(f.Docs[0].Body); !ok {
			return errors.New("top level is not a mapping")
		}
	}
	if root == nil || len(root.Values) == 0 || root.IsFlowStyle {
		// Empty (or flow) file: keep its comments, write the tree as a block.
		keep := strings.TrimRight(string(commentsOnly(e.src)), "\n")
		if keep != "" {
			keep += "\n"
		}
		e.out = append([]byte(keep), renderBlock(tm, 0)...)
		return nil
	}
	if err := e.mapping(root, cm, tm); err != nil {
		if errors.Is(err, errFallback) {
			return errors.New("cannot edit the top level of the file in place")
		}
		return err
	}
	return nil
}

// commentsOnly keeps src when it holds nothing but comments and blank lines.
func commentsOnly(src []byte) []byte {
	for _, l := range strings.Split(string(src), "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") && t != "{}" && t != "---" {
			return nil
		}
	}
	var keep []string
	for _, l := range strings.Split(string(src), "\n") {
		if t := strings.TrimSpace(l); t != "{}" {
			keep = append(keep, l)
		}
	}
	return []byte(strings.Join(keep, "\n"))
}

// mapping makes one edit inside the block mapping m (decoded as cur) toward
// tgt.
func (e *editor) mapping(m *ast.MappingNode, cur, tgt map[string]any) error {
	for _, k := range sortedKeys(cur) {
		if _, ok := tgt[k]; !ok {
			return e.deleteKey(m, k)
		}
	}
	for _, k := range sortedKeys(tgt) {
		cv, ok := cur[k]
		if !ok {
			return e.insertKey(m, k, tgt[k])
		}
		if reflect.DeepEqual(cv, tgt[k]) {
			continue
		}
		mv := entry(m, k)
		if mv == nil {
			return fmt.Errorf("key %q not found in the file", k)
		}
		if err := e.inner(mv.Value, cv, tgt[k]); !errors.Is(err, errFallback) {
			return err
		}
		return e.setValue(mv, tgt[k])
	}
	return errors.New("no difference found")
}

// inner edits inside a value that is itself a block mapping or a list of the
// same length; anything else falls back to rewriting the value.
func (e *editor) inner(n ast.Node, cur, tgt any) error {
	switch c := cur.(type) {
	case map[string]any:
		t, ok := tgt.(map[string]any)
		m, isMap := mappingOf(n)
		if !ok || !isMap || m.IsFlowStyle || len(c) == 0 || len(t) == 0 {
			return errFallback
		}
		return e.mapping(m, c, t)
	case []any:
		t, ok := tgt.([]any)
		s, isSeq := n.(*ast.SequenceNode)
		if !ok || !isSeq || s.IsFlowStyle || len(c) != len(t) || len(s.Values) != len(c) {
			return errFallback
		}
		for i := range c {
			if reflect.DeepEqual(c[i], t[i]) {
				continue
			}
			return e.inner(s.Values[i], c[i], t[i])
		}
	}
	return errFallback
}

// setValue replaces the value of mv with v, keeping a comment at the end of
// a one-line value.
func (e *editor) setValue(mv *ast.MappingValueNode, v any) error {
	kt := mv.Key.GetToken()
	colon, err := offsetOf(e.src, mv.Start.Position.Line, mv.Start.Position.Column)
	if err != nil {
		return err
	}
	from := colon + 1
	lastLine := extentEnd(e.src, kt.Position.Line, kt.Position.Column, mv.Value)
	to, err := lineEnd(e.src, lastLine)
	if err != nil {
		return err
	}
	if lastLine == kt.Position.Line {
		to = from + valueEnd(string(e.src[from:to]))
	}
	e.out = splice(e.src, from, to, renderValue(v, kt.Position.Column-1+2))
	return nil
}

// deleteKey removes key k and its value, lines and all.
func (e *editor) deleteKey(m *ast.MappingNode, k string) error {
	mv := entry(m, k)
	if mv == nil {
		return fmt.Errorf("key %q not found in the file", k)
	}
	if len(m.Values) == 1 {
		return errFallback
	}
	kt := mv.Key.GetToken()
	from, err := offsetOf(e.src, kt.Position.Line, 1)
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(e.src[from:from+kt.Position.Column-1])) != "" {
		return errFallback // the first key of a list item shares the dash's line
	}
	to, err := lineEnd(e.src, extentEnd(e.src, kt.Position.Line, kt.Position.Column, mv.Value))
	if err != nil {
		return err
	}
	if to < len(e.src) {
		to++ // the newline
	}
	e.out = splice(e.src, from, to, "")
	return nil
}

// insertKey adds k: v after the last entry of m, at its indentation.
func (e *editor) insertKey(m *ast.MappingNode, k string, v any) error {
	if m.IsFlowStyle || len(m.Values) == 0 {
		return errFallback
	}
	last := m.Values[len(m.Values)-1]
	col := m.Values[0].Key.GetToken().Position.Column
	lt := last.Key.GetToken()
	at, err := lineEnd(e.src, extentEnd(e.src, lt.Position.Line, lt.Position.Column, last.Value))
	if err != nil {
		return err
	}
	prefix := ""
	if at < len(e.src) {
		at++
	} else {
		prefix = "\n"
	}
	indent := strings.Repeat(" ", col-1)
	e.out = splice(e.src, at, at, prefix+indent+renderKey(k)+":"+renderValue(v, col-1+2)+"\n")
	return nil
}

// extentEnd is the last line of the value of the key at (line, col): the
// lines after it that are indented deeper than the key (or, for a list
// under the key, start with "-" at its column), without trailing blank or
// comment lines, which belong to what follows.
func extentEnd(src []byte, line, col int, val ast.Node) int {
	lines := strings.Split(string(src), "\n")
	_, seq := val.(*ast.SequenceNode)
	last := line
	for i := line; i < len(lines); i++ { // lines[i] is line i+1
		l := lines[i]
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		ind := len(l) - len(strings.TrimLeft(l, " "))
		if ind >= col || (seq && ind == col-1 && strings.HasPrefix(t, "-")) {
			last = i + 1
			continue
		}
		break
	}
	return last
}

// valueEnd is where a one-line value ends in s: before a " #" comment
// outside quotes and trailing spaces.
func valueEnd(s string) int {
	var q byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case q == '"' && c == '\\':
			i++
		case q != 0 && c == q:
			q = 0
		case q == 0 && (c == '"' || c == '\'') && (i == 0 || s[i-1] == ' '):
			q = c
		case q == 0 && c == '#' && i > 0 && (s[i-1] == ' ' || s[i-1] == '\t'):
			return len(strings.TrimRight(s[:i], " \t"))
		}
	}
	return len(strings.TrimRight(s, " \t\r"))
}

func splice(src []byte, from, to int, s string) []byte {
	out := make([]byte, 0, len(src)+len(s))
	out = append(out, src[:from]...)
	out = append(out, s...)
	return append(out, src[to:]...)
}

// lineEnd is the offset of the newline ending line (1-based), or len(src).
func lineEnd(src []byte, line int) (int, error) {
	off, err := offsetOf(src, line, 1)
	if err != nil {
		return 0, err
	}
	if i := bytes.IndexByte(src[off:], '\n'); i >= 0 {
		return off + i, nil
	}
	return len(src), nil
}

// renderValue renders v as the text after "key:", for a key whose value
// would be indented by indent spaces.
func renderValue(v any, indent int) string {
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 {
			return " {}"
		}
		return "\n" + strings.TrimRight(renderBlock(x, indent), "\n")
	case []any:
		if len(x) == 0 {
			return " []"
		}
		return "\n" + strings.TrimRight(renderBlock(x, indent), "\n")
	}
	s := strings.TrimRight(marshal(v), "\n")
	if !strings.Contains(s, "\n") {
		return " " + s
	}
	// A block scalar: its header stays on the key's line; goccy indents
	// the body by 2 already.
	first, rest, _ := strings.Cut(s, "\n")
	return " " + first + "\n" + indentLines(rest, indent-2)
}

func renderBlock(v any, indent int) string {
	return indentLines(strings.TrimRight(marshal(v), "\n"), indent) + "\n"
}

func renderKey(k string) string { return strings.TrimRight(marshal(k), "\n") }

func marshal(v any) string {
	b, err := yaml.MarshalWithOptions(ints(v), yaml.Indent(2), yaml.IndentSequence(true))
	if err != nil {
		return fmt.Sprintf("%q", fmt.Sprint(v))
	}
	return string(b)
}

// ints turns whole float64s back into integers so 52428800 is not written
// as 5.24288e+07.
func ints(v any) any {
	switch x := v.(type) {
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int64(x)
		}
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = ints(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = ints(e)
		}
		return out
	}
	return v
}

func indentLines(s string, n int) string {
	pad := strings.Repeat(" ", n)
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = pad + l
		}
	}
	return strings.Join(lines, "\n")
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func mappingOf(n ast.Node) (*ast.MappingNode, bool) {
	switch m := n.(type) {
	case *ast.MappingNode:
		return m, true
	case *ast.MappingValueNode: // a one-key mapping
		return &ast.MappingNode{BaseNode: m.BaseNode, Values: []*ast.MappingValueNode{m}}, true
	}
	return nil, false
}

func entry(m *ast.MappingNode, key string) *ast.MappingValueNode {
	if m == nil {
		return nil
	}
	for _, v := range m.Values {
		if k, ok := v.Key.(ast.ScalarNode); ok && fmt.Sprint(k.GetValue()) == key {
			return v
		}
	}
	return nil
}

// offsetOf converts the parser's 1-based line and column (in characters)
// into a byte offset in src.
func offsetOf(src []byte, line, col int) (int, error) {
	off := 0
	for l := 1; l < line; l++ {
		i := bytes.IndexByte(src[off:], '\n')
		if i < 0 {
			return 0, fmt.Errorf("line %d out of range", line)
		}
		off += i + 1
	}
	for c := 1; c < col; c++ {
		if off >= len(src) || src[off] == '\n' {
			return 0, fmt.Errorf("column %d out of range on line %d", col, line)
		}
		_, size := utf8.DecodeRune(src[off:])
		off += size
	}
	return off, nil
}

func equalJSON(a, b any) bool { return reflect.DeepEqual(normalize(a), normalize(b)) }
