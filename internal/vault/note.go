package vault

import (
	"fmt"
	"path"
	"sort"
	"strings"
)

// Parsed is what the vault reads out of one note.
type Parsed struct {
	// Title is frontmatter "title", else the file name without ".md".
	Title string
	// Type is frontmatter "type" ("" when absent).
	Type string
	// Tags from frontmatter "tags"/"tag" and inline #tags, lower-cased,
	// each once, in order of appearance.
	Tags []string
	// Frontmatter is the decoded YAML block; nil when the note has none.
	Frontmatter map[string]any
	// FrontmatterError says why a block that looked like frontmatter was
	// not read (the note is then all body).
	FrontmatterError string
	// Body is the text after the frontmatter.
	Body string
	// Links of every form, in order: frontmatter values first, then body.
	Links []Link
}

// Parse reads a note. rel is its vault path ("folder/Note.md"), used for
// the default title.
func Parse(rel string, src []byte) *Parsed {
	p := &Parsed{Title: strings.TrimSuffix(path.Base(rel), path.Ext(rel))}
	body := src
	if sp, ok := splitFrontmatter(src); ok {
		fm, err := parseFrontmatter(src[sp.start:sp.end])
		if err != nil {
			p.FrontmatterError = err.Error()
		} else {
			p.Frontmatter = fm.Values
			body = src[sp.body:]
		}
	}
	p.Body = string(body)
	var tags []string
	if fm := p.Frontmatter; fm != nil {
		if t, ok := fm["title"].(string); ok && strings.TrimSpace(t) != "" {
			p.Title = strings.TrimSpace(t)
		}
		if t, ok := fm["type"]; ok && t != nil {
			p.Type = fmt.Sprint(t)
		}
		for _, key := range []string{"tags", "tag"} {
			for _, t := range stringsOf(fm[key]) {
				tags = append(tags, normalizeTag(t))
			}
		}
		keys := make([]string, 0, len(fm))
		for k := range fm {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p.Links = append(p.Links, valueLinks(fm[k])...)
		}
	}
	links, inline := scanBody(body)
	p.Links = append(p.Links, links...)
	p.Tags = uniqueTags(append(tags, inline...))
	return p
}

// valueLinks finds [[wikilinks]] in frontmatter strings (Obsidian links
// properties such as `related: "[[Other]]"`).
func valueLinks(v any) []Link {
	switch t := v.(type) {
	case string:
		var out []Link
		for i := 0; i < len(t); {
			j := strings.Index(t[i:], "[[")
			if j < 0 {
				break
			}
			start := i + j + 2
			l, n, ok := wikilink(t[start:], nil, 0)
			if !ok {
				i = start
				continue
			}
			l.Embed = i+j > 0 && t[i+j-1] == '!'
			out = append(out, l)
			i = start + n
		}
		return out
	case []any:
		var out []Link
		for _, e := range t {
			out = append(out, valueLinks(e)...)
		}
		return out
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var out []Link
		for _, k := range keys {
			out = append(out, valueLinks(t[k])...)
		}
		return out
	}
	return nil
}

func uniqueTags(tags []string) []string {
	out := []string{}
	seen := map[string]bool{}
	for _, t := range tags {
		if t == "" || seen[t] {
			continue
		}
		seen[t] = true
		out = append(out, t)
	}
	return out
}
