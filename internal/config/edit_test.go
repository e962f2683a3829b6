package config

import (
	"os"
	"strings"
	"testing"
)

// set returns tree with the value at path (keys, or ints for list items)
// replaced by v; nil v with del deletes the key.
func set(t *testing.T, tree any, v any, del bool, path ...any) any {
	t.Helper()
	if len(path) == 0 {
		return v
	}
	switch p := path[0].(type) {
	case string:
		m, _ := tree.(map[string]any)
		out := map[string]any{}
		for k, e := range m {
			out[k] = e
		}
		if del && len(path) == 1 {
			delete(out, p)
			return out
		}
		out[p] = set(t, out[p], v, del, path[1:]...)
		return out
	case int:
		s := append([]any{}, tree.([]any)...)
		s[p] = set(t, s[p], v, del, path[1:]...)
		return s
	}
	t.Fatalf("bad path %v", path)
	return nil
}

// changedLines lists the lines of b that are not lines of a, and the lines
// of a missing from b.
func changedLines(a, b string) (added, removed []string) {
	count := map[string]int{}
	for _, l := range strings.Split(a, "\n") {
		count[l]++
	}
	for _, l := range strings.Split(b, "\n") {
		if count[l] > 0 {
			count[l]--
		} else {
			added = append(added, l)
		}
	}
	for l, n := range count {
		for range n {
			removed = append(removed, l)
		}
	}
	return added, removed
}

func templateFile(t *testing.T) []byte {
	t.Helper()
	src, err := Template("demo", func(k string) (string, bool) {
		if k == "OPENAI_API_KEY" {
			return "sk-x", true
		}
		return "", false
	})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func TestRewriteEditsOnlyWhatChanged(t *testing.T) {
	src := templateFile(t)
	raw, err := Raw(src)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		target  any
		added   []string
		removed []string
	}{
		{"scalar", set(t, raw, "Be brief.", false, "agent", "system_prompt"),
			[]string{"  system_prompt: Be brief."}, []string{`  system_prompt: "You are a helpful personal assistant."`}},
		{"list item field", set(t, raw, "${OTHER_KEY}", false, "providers", 0, "api_key"),
			[]string{"    api_key: ${OTHER_KEY}"}, []string{"    api_key: ${OPENAI_API_KEY}"}},
		{"new key in a section", set(t, raw, true, false, "voice", "extra"),
			[]string{"  extra: true"}, nil},
		{"deleted key", set(t, raw, nil, true, "limits", "queue_cap"),
			nil, []string{"  queue_cap: 20"}},
		{"flow mapping becomes a block", set(t, raw, map[string]any{"telegram": map[string]any{"enabled": true}}, false, "bridges"),
			[]string{"bridges:", "  telegram:", "    enabled: true"}, []string{"bridges: {}"}},
		{"new section", set(t, raw, map[string]any{"items": []any{"tg:1"}}, false, "zz_section"),
			[]string{"zz_section:", "  items:", "    - tg:1"}, nil},
		{"multi-line string", set(t, raw, "line one\nline two", false, "agent", "system_prompt"),
			[]string{"  system_prompt: |-", "    line one", "    line two"}, []string{`  system_prompt: "You are a helpful personal assistant."`}},
		{"number", set(t, raw, float64(1<<20), false, "limits", "upload_max_bytes"),
			[]string{"  upload_max_bytes: 1048576"}, []string{"  upload_max_bytes: 52428800"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Rewrite(src, tc.target)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Raw(out)
			if err != nil {
				t.Fatalf("rewritten file does not parse: %v\n%s", err, out)
			}
			if !equalJSON(got, tc.target) {
				t.Fatalf("rewritten file decodes to something else:\n%s", out)
			}
			added, removed := changedLines(string(src), string(out))
			if strings.Join(added, "\n") != strings.Join(tc.added, "\n") || strings.Join(removed, "\n") != strings.Join(tc.removed, "\n") {
				t.Errorf("added %q removed %q; want added %q removed %q\n%s", added, removed, tc.added, tc.removed, out)
			}
		})
	}
}

func TestRewriteKeepsInlineComment(t *testing.T) {
	src := []byte("# head\nagent:\n  name: a # the name\n  default_model: echo\n")
	raw, _ := Raw(src)
	out, err := Rewrite(src, set(t, raw, "b", false, "agent", "name"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "# head\nagent:\n  name: b # the name\n  default_model: echo\n"; string(out) != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
}

func TestRewriteFirstKeyOfListItem(t *testing.T) {
	src := []byte("providers:\n  - id: a\n    kind: echo\n  # keep me\n  - id: b\n    kind: echo\n")
	raw, _ := Raw(src)
	target := set(t, raw, nil, true, "providers", 1, "id")
	out, err := Rewrite(src, target)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := Raw(out)
	if !equalJSON(got, target) {
		t.Errorf("got\n%s", out)
	}
}

func TestRewriteEmptyFile(t *testing.T) {
	target := map[string]any{"agent": map[string]any{"name": "x"}}
	out, err := Rewrite([]byte("# only a comment\n"), target)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := Raw(out); !equalJSON(got, target) || !strings.HasPrefix(string(out), "# only a comment\n") {
		t.Errorf("got\n%s", out)
	}
}

func TestRewriteUnchangedIsIdentical(t *testing.T) {
	src, _ := os.ReadFile("testdata/good.yaml")
	raw, _ := Raw(src)
	out, err := Rewrite(src, raw)
	if err != nil || string(out) != string(src) {
		t.Errorf("unchanged tree rewrote the file (%v):\n%s", err, out)
	}
}
