package supervisor

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/agentd/agentd/devicecert"
)

// WriteEnabled writes bridges.<name>.enabled to the config file,
// changing nothing else: the value is edited in place in the source text at
// the position the YAML parser reports, so comments, ${ENV} references,
// key order and formatting all survive. The result is re-parsed and checked
// before it atomically replaces the file. Enable and Disable use it; the
// CLI can use it directly when no daemon is running.
func WriteEnabled(path, name string, on bool) error {
	src, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("update config: %w", err)
	}
	out, err := editBridgeEnabled(src, name, on)
	if err != nil {
		return fmt.Errorf("update %s: %w", path, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("update config: %w", err)
	}
	if err := devicecert.WriteFileAtomic(path, out, fi.Mode().Perm()); err != nil {
		return fmt.Errorf("update config: %w", err)
	}
	return nil
}

func editBridgeEnabled(src []byte, name string, on bool) ([]byte, error) {
	val := strconv.FormatBool(on)
	f, err := parser.ParseBytes(src, parser.ParseComments)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if len(f.Docs) != 1 {
		return nil, errors.New("want exactly one YAML document")
	}
	root, ok := mappingOf(f.Docs[0].Body)
	if !ok {
		return nil, errors.New("top level is not a mapping")
	}
	bridges, ok := mappingOf(lookup(root, "bridges"))
	if !ok || bridges.IsFlowStyle {
		return nil, errors.New("no block mapping at bridges")
	}
	bn := lookup(bridges, name)
	if bn == nil {
		return nil, fmt.Errorf("no bridges.%s section", name)
	}
	bm, ok := mappingOf(bn)
	if !ok || bm.IsFlowStyle || len(bm.Values) == 0 {
		return nil, fmt.Errorf("bridges.%s is not a block mapping; set enabled in it by hand", name)
	}
	var out []byte
	if v := lookup(bm, "enabled"); v != nil {
		tk := v.GetToken()
		if v.Type() == ast.MappingType || v.Type() == ast.SequenceType || tk == nil {
			return nil, fmt.Errorf("bridges.%s.enabled is not a scalar", name)
		}
		off, err := offsetOf(src, tk.Position.Line, tk.Position.Column)
		if err != nil {
			return nil, err
		}
		if !strings.HasPrefix(string(src[off:]), tk.Value) || tk.Value == "" {
			return nil, fmt.Errorf("bridges.%s.enabled: value not found at line %d", name, tk.Position.Line)
		}
		out = append(append(append([]byte{}, src[:off]...), val...), src[off+len(tk.Value):]...)
	} else {
		// Insert "enabled: X" as the section's first key, at its indentation.
		first := bm.Values[0].Key.GetToken()
		lineStart, err := offsetOf(src, first.Position.Line, 1)
		if err != nil {
			return nil, err
		}
		indent := strings.Repeat(" ", first.Position.Column-1)
		ins := indent + "enabled: " + val + "\n"
		out = append(append(append([]byte{}, src[:lineStart]...), ins...), src[lineStart:]...)
	}
	if err := checkEnabled(out, name, val); err != nil {
		return nil, fmt.Errorf("edit check failed (file left unchanged): %w", err)
	}
	return out, nil
}

// checkEnabled re-parses out and checks that bridges.<name>.enabled is val.
func checkEnabled(out []byte, name, val string) error {
	f, err := parser.ParseBytes(out, 0)
	if err != nil {
		return err
	}
	root, _ := mappingOf(f.Docs[0].Body)
	br, _ := mappingOf(lookup(root, "bridges"))
	bm, _ := mappingOf(lookup(br, name))
	v := lookup(bm, "enabled")
	if v == nil || v.GetToken() == nil || v.GetToken().Value != val {
		return fmt.Errorf("bridges.%s.enabled does not read %s", name, val)
	}
	return nil
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

func lookup(m *ast.MappingNode, key string) ast.Node {
	if m == nil {
		return nil
	}
	for _, v := range m.Values {
		if k, ok := v.Key.(ast.ScalarNode); ok && fmt.Sprint(k.GetValue()) == key {
			return v.Value
		}
	}
	return nil
}

// offsetOf converts the parser's 1-based line and column (in characters)
// into a byte offset in src.
func offsetOf(src []byte, line, col int) (int, error) {
	off := 0
	for l := 1; l < line; l++ {
		i := strings.IndexByte(string(src[off:]), '\n')
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
