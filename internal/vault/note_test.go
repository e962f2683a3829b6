package vault

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func readFixture(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "vault", filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wl(target, heading, alias string) Link {
	return Link{Target: target, Heading: heading, Alias: alias}
}

func embed(target string) Link { return Link{Target: target, Embed: true} }

func TestParseFixtures(t *testing.T) {
	tests := []struct {
		path    string
		title   string
		typ     string
		tags    []string
		links   []Link
		fm      map[string]any // nil: no frontmatter expected
		fmError bool
		body    string // "" = not checked
	}{
		{
			path: "Home.md", title: "Home page", typ: "index",
			tags: []string{"hub", "start", "home", "inbox/today"},
			fm:   map[string]any{"title": "Home page", "tags": []any{"hub", "#Start"}, "aliases": []any{"Start"}, "type": "index"},
			links: []Link{
				wl("Projects/Alpha", "", ""), wl("alpha", "", "the alpha"), wl("Beta", "Plan", ""), wl("Beta", "^block1", ""),
				wl("", "Local heading", ""), embed("diagram.png"), embed("Alpha"), wl("Missing note", "", ""),
				wl("Projects/Beta.md", "", "see beta"), wl("Gamma", "", ""), wl("Delta", "", ""), wl("über CAFÉ", "", ""),
				wl("Gamma", "", "g"), wl("Alpha", "", ""),
			},
		},
		{path: "Projects/Alpha.md", title: "Alpha", tags: []string{"project"}, links: []Link{wl("Home", "", "")}},
		{
			path: "Projects/Beta.md", title: "Beta", tags: []string{"project", "beta"},
			fm:    map[string]any{"tags": "project, beta", "description": "a block value\n---\nthat holds a dashes line\n"},
			links: []Link{wl("Projects/Alpha", "", ""), wl("../Home", "", ""), wl("./Alpha", "", "")},
			body:  "## Plan\nShip it. ^block1\n\nSee [[Projects/Alpha]] and [[../Home]] and [[./Alpha]].\n",
		},
		{path: "Notizen/Über Café.md", title: "Über Café", tags: []string{"café", "日本語"}, fm: map[string]any{"title": "Über Café"}, links: []Link{wl("日本語メモ", "", "")}},
		{path: "日本語メモ.md", title: "日本語メモ", tags: []string{}, links: []Link{wl("Notizen/über café", "", "")}},
		{
			path: "Windows.md", title: "Windows note", tags: []string{"crlf", "dos"},
			fm: map[string]any{"title": "Windows note", "tags": []any{"crlf"}}, links: []Link{wl("Home", "", "")},
			body: "Line one [[Home]]\r\n#dos tag\r\n```\r\n[[NotALinkCRLF]]\r\n```\r\n",
		},
		{path: "Edge/No close.md", title: "No close", tags: []string{}, links: []Link{wl("Home", "", "")}, body: "---\ntitle: never closed\n\nbody [[Home]]\n"},
		{path: "Edge/Empty block.md", title: "Empty block", tags: []string{"empty"}, fm: map[string]any{}, body: "Empty block. #empty\n"},
		{path: "Edge/Not first.md", title: "Not first", tags: []string{}, body: "Text first\n---\ntitle: not frontmatter\n---\n"},
		{path: "Edge/Bad yaml.md", title: "Bad yaml", tags: []string{}, fmError: true, links: []Link{wl("Home", "", "")}},
		{
			path: "Edge/Properties.md", title: "Properties", tags: []string{"solo"},
			fm:    map[string]any{"tag": "#solo", "related": "[[Gamma]]", "links": []any{"[[Delta]]"}},
			links: []Link{wl("Delta", "", ""), wl("Gamma", "", "")},
		},
		{path: "Edge/Tag string.md", title: "Tag string", tags: []string{"a", "b"}, fm: map[string]any{"tags": "#a b"}, body: ""},
		{path: "Edge/Spaced fence.md", title: "spaced fence", tags: []string{}, fm: map[string]any{"title": "spaced fence"}, body: "ok\n"},
		{path: "Daily/2026-12-01.md", title: "2026-12-01", tags: []string{"daily"}, links: []Link{wl("Home", "", "")}},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			p := Parse(tc.path, readFixture(t, tc.path))
			if p.Title != tc.title || p.Type != tc.typ {
				t.Errorf("title, type = %q, %q; want %q, %q", p.Title, p.Type, tc.title, tc.typ)
			}
			if !reflect.DeepEqual(p.Tags, tc.tags) {
				t.Errorf("tags = %q, want %q", p.Tags, tc.tags)
			}
			if len(p.Links) != len(tc.links) || (len(tc.links) > 0 && !reflect.DeepEqual(p.Links, tc.links)) {
				t.Errorf("links:\n got %+v\nwant %+v", p.Links, tc.links)
			}
			if (p.FrontmatterError != "") != tc.fmError {
				t.Errorf("frontmatter error = %q, want error: %v", p.FrontmatterError, tc.fmError)
			}
			if tc.fm == nil && p.Frontmatter != nil || tc.fm != nil && !reflect.DeepEqual(p.Frontmatter, tc.fm) {
				t.Errorf("frontmatter = %#v, want %#v", p.Frontmatter, tc.fm)
			}
			if tc.body != "" && p.Body != tc.body {
				t.Errorf("body = %q, want %q", p.Body, tc.body)
			}
		})
	}
}

// TestScanSkipsCode checks every place a link or tag must not be found.
func TestScanSkipsCode(t *testing.T) {
	tests := []struct {
		name, src string
		links     int
		tags      []string
	}{
		{"code span", "a `[[x]] #t` b", 0, nil},
		{"double backtick span", "a ``[[x]] ` #t`` b [[y]]", 1, nil},
		{"fenced backticks", "```\n[[x]] #t\n```\n[[y]]", 1, nil},
		{"fenced tildes with info", "~~~ [[info]]\n[[x]]\n~~~\n", 0, nil},
		{"longer closing fence", "````\n```\n[[x]]\n````\n#after", 0, []string{"after"}},
		{"unclosed fence runs to the end", "```\n[[x]]\n#t\n", 0, nil},
		{"fence in a quote", "> ```\n> [[x]]\n> ```\n", 0, nil},
		{"indented code", "para\n\n    [[x]] #t\n\n[[y]]", 1, nil},
		{"list continuation is not code", "- item\n  [[x]] #t", 1, []string{"t"}},
		{"comment", "%%[[x]] #t%% [[y]] %%open [[z]]", 1, nil},
		{"heading is not a tag", "# Title\n## Sub #real", 0, []string{"real"}},
		{"digits only", "#2024 #y2024 #-", 0, []string{"y2024", "-"}},
		{"tag case", "#Inbox #inbox #INBOX", 0, []string{"inbox"}},
		{"tag chars", "#a/b-c_d. #ü", 0, []string{"a/b-c_d", "ü"}},
		{"url fragment", "https://x.org/#frag and a#b", 0, nil},
		{"link across lines", "[[a\nb]]", 0, nil},
		{"empty link", "[[]] [[|x]]", 0, nil},
		{"markdown link with title", `[t](Note%20One.md "hover") ![i](img.png)`, 2, nil},
		{"urls are not vault links", "[a](https://x) [b](mailto:x) [c](obsidian://open)", 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := Parse("n.md", []byte(tc.src))
			if len(p.Links) != tc.links {
				t.Errorf("links = %+v, want %d", p.Links, tc.links)
			}
			want := tc.tags
			if want == nil {
				want = []string{}
			}
			if !reflect.DeepEqual(p.Tags, want) {
				t.Errorf("tags = %q, want %q", p.Tags, want)
			}
		})
	}
	p := Parse("n.md", []byte(`[t](Note%20One.md "hover")`))
	if p.Links[0].Target != "Note One.md" || p.Links[0].Alias != "t" {
		t.Errorf("markdown link = %+v", p.Links[0])
	}
}
