package workflow

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"text/template"
)

// Values in a block's config may reference {{inputs.x}}, {{vars.x}},
// {{nodes.<id>.output.path}}, {{loop.item}}, {{loop.index}}, {{now}} and
// {{run_id}}. They are Go text/template actions; the names are rewritten to
// fields of the run's data ("inputs.x" → ".inputs.x") so that the spec's
// short form works and the full template language (pipelines, if, range)
// stays available. The function set is small and pure: nothing reads the
// environment, files or the network.
var funcs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
	"upper":     strings.ToUpper,
	"lower":     strings.ToLower,
	"trim":      strings.TrimSpace,
	"contains":  func(s, sub string) bool { return strings.Contains(s, sub) },
	"hasPrefix": func(s, p string) bool { return strings.HasPrefix(s, p) },
	"replace":   func(s, old, new string) string { return strings.ReplaceAll(s, old, new) },
	"split":     func(s, sep string) []string { return strings.Split(s, sep) },
	"join": func(list any, sep string) string {
		var parts []string
		switch l := list.(type) {
		case []string:
			parts = l
		case []any:
			for _, x := range l {
				parts = append(parts, fmt.Sprint(x))
			}
		default:
			return fmt.Sprint(list)
		}
		return strings.Join(parts, sep)
	},
	"default": func(def, v any) any {
		if v == nil || v == "" {
			return def
		}
		return v
	},
}

// names are the roots a template may name without the leading dot.
var rootRe = regexp.MustCompile(`(^|[^\w.$])(inputs|vars|nodes|loop|run_id|now)\b`)

var actionRe = regexp.MustCompile(`(?s)\{\{(.*?)\}\}`)

// rewrite prefixes the root names in every action with a dot, leaving
// string literals alone.
func rewrite(src string) string {
	return actionRe.ReplaceAllStringFunc(src, func(a string) string {
		inner := a[2 : len(a)-2]
		var b strings.Builder
		quote := rune(0)
		start := 0
		flush := func(end int) {
			b.WriteString(rootRe.ReplaceAllString(inner[start:end], "$1.$2"))
		}
		for i, r := range inner {
			switch {
			case quote == 0 && (r == '"' || r == '`'):
				flush(i)
				quote, start = r, i
			case quote != 0 && r == quote && (quote == '`' || i == 0 || inner[i-1] != '\\'):
				b.WriteString(inner[start : i+1])
				quote, start = 0, i+1
			}
		}
		if quote != 0 {
			b.WriteString(inner[start:])
		} else {
			flush(len(inner))
		}
		return "{{" + b.String() + "}}"
	})
}

func parseTemplate(name, src string) (*template.Template, error) {
	return template.New(name).Funcs(funcs).Option("missingkey=error").Parse(rewrite(src))
}

// render expands the template src with data.
func render(src string, data map[string]any) (string, error) {
	if !strings.Contains(src, "{{") {
		return src, nil
	}
	t, err := parseTemplate("value", src)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		return "", cleanExecError(err)
	}
	return b.String(), nil
}

// cleanExecError drops text/template's location prefix, which names the
// rewritten template, not what the user wrote.
func cleanExecError(err error) error {
	msg := err.Error()
	if i := strings.Index(msg, ": executing "); i >= 0 {
		if j := strings.Index(msg[i+12:], ": "); j >= 0 {
			msg = msg[i+12+j+2:]
		}
	}
	return fmt.Errorf("template: %s", msg)
}

// eval is render, except that a value that is one action only ("{{x}}")
// keeps the type of what it yields (a list for loop.items, a number, a
// map), so data flows between blocks without turning into text.
func eval(v any, data map[string]any) (any, error) {
	switch x := v.(type) {
	case string:
		s := strings.TrimSpace(x)
		if m := actionRe.FindStringSubmatchIndex(s); m != nil && m[0] == 0 && m[1] == len(s) && !strings.ContainsAny(s[m[2]:m[3]], "{}") {
			inner := strings.TrimSpace(s[m[2]:m[3]])
			if !strings.HasPrefix(inner, "if ") && !strings.HasPrefix(inner, "range ") && !strings.HasPrefix(inner, "/*") {
				out, err := render("{{json ("+inner+")}}", data)
				if err != nil {
					return nil, err
				}
				var val any
				if err := json.Unmarshal([]byte(out), &val); err != nil {
					return nil, fmt.Errorf("template: %w", err)
				}
				return val, nil
			}
		}
		return render(x, data)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			r, err := eval(e, data)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			out[k] = r
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			r, err := eval(e, data)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			out[i] = r
		}
		return out, nil
	}
	return v, nil
}

// truthy is how if reads its expression's value.
func truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case float64:
		return x != 0
	case string:
		s := strings.ToLower(strings.TrimSpace(x))
		return s != "" && s != "false" && s != "0" && s != "no"
	case []any:
		return len(x) > 0
	case map[string]any:
		return len(x) > 0
	}
	return true
}
