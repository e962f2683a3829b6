package telegram_test

import (
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/agentd/agentd/plugins/bridge/telegram"
	"github.com/agentd/agentd/plugins/bridge/telegram/telegramtest"
)

func TestMarkdownToHTML(t *testing.T) {
	tests := []struct{ name, md, html string }{
		{"plain", "Hello, world.", "Hello, world."},
		{"escapes", "a < b && c > d", "a &lt; b &amp;&amp; c &gt; d"},
		{"bold italic", "**bold** and *it* and __b2__ and _i2_", "<b>bold</b> and <i>it</i> and <b>b2</b> and <i>i2</i>"},
		{"strike", "~~gone~~", "<s>gone</s>"},
		{"code span", "run `a<b>` now", "run <code>a&lt;b&gt;</code> now"},
		{"fenced", "```go\nfmt.Println(\"<x>\")\n```", "<pre><code class=\"language-go\">fmt.Println(\"&lt;x&gt;\")</code></pre>"},
		{"fenced no lang", "```\nx := 1\n\ny := 2\n```", "<pre><code>x := 1\n\ny := 2</code></pre>"},
		{"indented code", "    a && b", "<pre>a &amp;&amp; b</pre>"},
		{"link", "see [the docs](https://example.com/a?b=1&c=2)", "see <a href=\"https://example.com/a?b=1&amp;c=2\">the docs</a>"},
		{"autolink", "<https://x.org>", "<a href=\"https://x.org\">https://x.org</a>"},
		{"unsafe link", "[click](javascript:alert(1))", "click"},
		{"heading", "# Title\n\ntext", "<b>Title</b>\n\ntext"},
		{"quote", "> quoted **line**", "<blockquote>quoted <b>line</b></blockquote>"},
		{"bullets", "- one\n- two\n  - nested", "• one\n• two\n    • nested"},
		{"numbered", "3. three\n4. four", "3. three\n4. four"},
		{"raw html shown", "<div>hi</div>", "&lt;div&gt;hi&lt;/div&gt;"},
		{"inline html shown", "a <span>b</span>", "a &lt;span&gt;b&lt;/span&gt;"},
		{"soft break", "line one\nline two", "line one\nline two"},
		{"rule", "a\n\n---\n\nb", "a\n\n———\n\nb"},
		{"literal stars", "2 * 3 * 4", "2 * 3 * 4"},
		{"unclosed fence while streaming", "```py\nprint(1)", "<pre><code class=\"language-py\">print(1)</code></pre>"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := telegram.MarkdownToHTML(tc.md)
			if got != tc.html {
				t.Errorf("MarkdownToHTML(%q)\n got %q\nwant %q", tc.md, got, tc.html)
			}
			// Telegram (the fake's parser) accepts it.
			if _, err := telegramtest.ParseHTML(got); err != nil {
				t.Errorf("Telegram would refuse %q: %v", got, err)
			}
		})
	}
}

func units(s string) int { return len(utf16.Encode([]rune(s))) }

func TestSplitMarkdown(t *testing.T) {
	para := func(c string, n int) string { return strings.Repeat(c, n) }
	code := "```python\n" + strings.Repeat("print('x')\n", 30) + "```"
	tests := []struct {
		name string
		md   string
		max  int
		want int // parts
	}{
		{"fits", "short **text**", 100, 1},
		{"between paragraphs", para("a", 60) + "\n\n" + para("b", 60), 100, 2},
		{"long code block", "intro\n\n" + code + "\n\nafter", 120, 4},
		{"one long line", strings.Repeat("word ", 100), 120, 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			parts := telegram.SplitMarkdown(tc.md, tc.max)
			if len(parts) < tc.want-1 || len(parts) > tc.want+1 {
				t.Errorf("%d parts, want about %d: %q", len(parts), tc.want, parts)
			}
			var visible strings.Builder
			for _, p := range parts {
				if units(p) > tc.max {
					t.Errorf("part of %d units > %d: %q", units(p), tc.max, p)
				}
				// Each part is whole Markdown: its HTML parses, and no
				// fence is left open.
				html := telegram.MarkdownToHTML(p)
				text, err := telegramtest.ParseHTML(html)
				if err != nil {
					t.Errorf("part renders to refused HTML %q: %v", html, err)
				}
				if units(text) > tc.max {
					t.Errorf("rendered part of %d units > %d", units(text), tc.max)
				}
				if strings.Count(p, "```")%2 != 0 {
					t.Errorf("part leaves a code fence open: %q", p)
				}
				visible.WriteString(text)
			}
			// Nothing lost: every source character of the content is shown.
			if strings.Contains(tc.md, "print") && strings.Count(visible.String(), "print('x')") != 30 {
				t.Errorf("code lines shown %d times, want 30", strings.Count(visible.String(), "print('x')"))
			}
		})
	}
	if parts := telegram.SplitMarkdown("intro\n\n"+code, 120); !strings.HasPrefix(parts[2], "```python\n") {
		t.Errorf("continued code block lost its language: %q", parts[2])
	}
}
