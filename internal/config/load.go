package config

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// Error is a config error located in the file: "openagent.yaml:12:5: providers[0].api_key: …".
type Error struct {
	File  string
	Line  int // 0 when unknown
	Col   int
	Field string // empty when unknown
	Msg   string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Col)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads, expands and validates the config file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data, os.LookupEnv)
}

var envRe = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// Parse decodes data (named file in errors) over the defaults. ${NAME} in
// any string value is replaced by the environment variable NAME; a variable
// that is not set is an error, so a missing secret never becomes "".
func Parse(file string, data []byte, lookup func(string) (string, bool)) (*Config, error) {
	cfg := Default()
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, yamlError(file, err)
	}
	if len(f.Docs) > 1 {
		return nil, &Error{File: file, Msg: "want one YAML document, found several"}
	}
	if len(f.Docs) == 0 || f.Docs[0].Body == nil || isComment(f.Docs[0].Body) {
		// An editor that truncates before it writes leaves this for a
		// moment; applying it as "all defaults" would drop every setting.
		return nil, &Error{File: file, Msg: "the file is empty (write at least the agent section)"}
	}
	body := f.Docs[0].Body
	if err := expandEnv(file, body, lookup); err != nil {
		return nil, err
	}
	if err := yaml.NodeToValue(body, cfg, yaml.Strict(), yaml.DisallowUnknownField()); err != nil {
		e := yamlError(file, err)
		locate(e, body, err)
		return nil, e
	}
	if err := cfg.Validate(); err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			e := &Error{File: file, Field: fe.Path, Msg: fe.Msg}
			if p, perr := yaml.PathString("$." + fe.Path); perr == nil {
				if n, nerr := p.FilterNode(body); nerr == nil && n != nil {
					tk := n.GetToken()
					e.Line, e.Col = tk.Position.Line, tk.Position.Column
				}
			}
			return nil, e
		}
		return nil, &Error{File: file, Msg: err.Error()}
	}
	return cfg, nil
}

func isComment(n ast.Node) bool {
	_, ok := n.(*ast.CommentGroupNode)
	return ok
}

// envVisitor replaces ${NAME} in string scalars.
type envVisitor struct {
	file   string
	lookup func(string) (string, bool)
	err    error
}

func (v *envVisitor) Visit(n ast.Node) ast.Visitor {
	if v.err != nil {
		return nil
	}
	s, ok := n.(*ast.StringNode)
	if !ok || !strings.Contains(s.Value, "${") {
		return v
	}
	s.Value = envRe.ReplaceAllStringFunc(s.Value, func(m string) string {
		name := envRe.FindStringSubmatch(m)[1]
		val, ok := v.lookup(name)
		if !ok && v.err == nil {
			tk := s.GetToken()
			v.err = &Error{File: v.file, Line: tk.Position.Line, Col: tk.Position.Column,
				Field: fieldPath(s.GetPath()), Msg: fmt.Sprintf("environment variable %s is not set", name)}
		}
		return val
	})
	return v
}

func expandEnv(file string, body ast.Node, lookup func(string) (string, bool)) error {
	v := &envVisitor{file: file, lookup: lookup}
	ast.Walk(v, body)
	return v.err
}

// fieldPath turns a YAMLPath "$.providers[0].api_key" into "providers[0].api_key".
func fieldPath(p string) string { return strings.TrimPrefix(strings.TrimPrefix(p, "$"), ".") }

func yamlError(file string, err error) error {
	var ne *nodeError
	if errors.As(err, &ne) {
		tk := ne.node.GetToken()
		return &Error{File: file, Line: tk.Position.Line, Col: tk.Position.Column,
			Field: fieldPath(ne.node.GetPath()), Msg: ne.msg}
	}
	var ye yaml.Error
	if errors.As(err, &ye) {
		e := &Error{File: file, Msg: cleanMsg(ye.GetMessage())}
		if tk := ye.GetToken(); tk != nil {
			e.Line, e.Col = tk.Position.Line, tk.Position.Column
		}
		return e
	}
	return &Error{File: file, Msg: err.Error()}
}

func cleanMsg(s string) string {
	// goccy prefixes some messages with a bracketed position we already print.
	if i := strings.Index(s, "] "); strings.HasPrefix(s, "[") && i > 0 {
		s = s[i+2:]
	}
	return s
}

// locate fills in the field path of a type error by finding the node at the
// error's position, since goccy names the Go struct, not the YAML field.
func locate(e error, body ast.Node, err error) {
	var ce *Error
	var te *yaml.TypeError
	if !errors.As(e, &ce) || !errors.As(err, &te) || te.Token == nil {
		return
	}
	ast.Walk(visitorFunc(func(n ast.Node) bool {
		if tk := n.GetToken(); tk != nil && tk.Position.Line == ce.Line && tk.Position.Column == ce.Col {
			if _, isMap := n.(*ast.MappingValueNode); !isMap {
				ce.Field = fieldPath(n.GetPath())
				ce.Msg = fmt.Sprintf("want %s, got %s", kindName(te.DstType.Kind().String()), n.Type())
				return false
			}
		}
		return true
	}), body)
}

func kindName(k string) string {
	switch k {
	case "int", "int64", "int32":
		return "an integer"
	case "float64":
		return "a number"
	case "bool":
		return "true or false"
	case "slice":
		return "a list"
	case "map", "struct":
		return "a mapping"
	}
	return k
}

type visitorFunc func(ast.Node) bool

func (f visitorFunc) Visit(n ast.Node) ast.Visitor {
	if f(n) {
		return f
	}
	return nil
}
