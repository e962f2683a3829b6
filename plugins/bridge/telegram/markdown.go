package telegram

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf16"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"
	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/extension"
	east "github.com/yuin/goldmark/extension/ast"
	"github.com/yuin/goldmark/text"

	"github.com/agentd/agentd/plugins/bridge"
)

// Models answer in Markdown; Telegram shows HTML of its own small subset
// (b, i, s, code, pre, a, blockquote). goldmark parses the CommonMark (and
// GFM strikethrough); the walk below writes only that subset, because
// goldmark's HTML renderer writes tags Telegram refuses (p, ul, h1, …).

var mdParser = goldmark.New(goldmark.WithExtensions(extension.Strikethrough)).Parser()

// MarkdownToHTML renders Markdown as Telegram HTML: **bold** → <b>, *em* →
// <i>, ~~del~~ → <s>, `code` → <code>, fenced code → <pre><code
// class="language-x">, links → <a href> (http, https, mailto and tg only),
// headings → bold lines, quotes → <blockquote>, lists as "• " and "1. "
// lines. Everything else, raw HTML included, is shown as written.
func MarkdownToHTML(md string) string {
	src := []byte(md)
	doc := mdParser.Parse(text.NewReader(src))
	r := &htmlWriter{src: src}
	r.blocks(doc, "")
	return strings.TrimSpace(r.b.String())
}

type htmlWriter struct {
	src []byte
	b   strings.Builder
}

// blocks writes the block children of n, separated by blank lines;
// indent prefixes the lines of nested list items.
func (w *htmlWriter) blocks(n ast.Node, indent string) {
	sep := "\n\n"
	if l, ok := n.Parent().(*ast.List); ok && l.IsTight {
		sep = "\n" // the blocks of an item of a tight list
	}
	for c := n.FirstChild(); c != nil; c = c.NextSibling() {
		if c != n.FirstChild() {
			w.b.WriteString(sep)
		}
		w.block(c, indent)
	}
}

func (w *htmlWriter) block(n ast.Node, indent string) {
	switch n := n.(type) {
	case *ast.Paragraph, *ast.TextBlock:
		w.inlines(n)
	case *ast.Heading:
		w.b.WriteString("<b>")
		w.inlines(n)
		w.b.WriteString("</b>")
	case *ast.ThematicBreak:
		w.b.WriteString("———")
	case *ast.FencedCodeBlock:
		lang := string(n.Language(w.src))
		w.b.WriteString("<pre>")
		if safeLang.MatchString(lang) {
			w.b.WriteString(`<code class="language-` + lang + `">`)
		} else {
			w.b.WriteString("<code>")
		}
		w.lines(n)
		w.b.WriteString("</code></pre>")
	case *ast.CodeBlock:
		w.b.WriteString("<pre>")
		w.lines(n)
		w.b.WriteString("</pre>")
	case *ast.Blockquote:
		w.b.WriteString("<blockquote>")
		w.blocks(n, "")
		w.b.WriteString("</blockquote>")
	case *ast.List:
		i := n.Start
		for it := n.FirstChild(); it != nil; it = it.NextSibling() {
			if it != n.FirstChild() {
				w.b.WriteString("\n")
				if !n.IsTight {
					w.b.WriteString("\n")
				}
			}
			mark := "• "
			if n.IsOrdered() {
				mark = fmt.Sprintf("%d. ", i)
				i++
			}
			w.b.WriteString(indent + mark)
			w.blocks(it, indent+"    ")
		}
	case *ast.HTMLBlock:
		w.lines(n)
		if n.HasClosure() {
			w.b.WriteString(escape(string(n.ClosureLine.Value(w.src))))
		}
	default:
		w.lines(n)
	}
}

// safeLang is what may go into a code block's class attribute.
var safeLang = regexp.MustCompile(`^[A-Za-z0-9_+#.-]{1,32}$`)

// lines writes a block's raw lines, escaped, without the final newline.
func (w *htmlWriter) lines(n ast.Node) {
	var b strings.Builder
	ls := n.Lines()
	for i := 0; i < ls.Len(); i++ {
		seg := ls.At(i)
		b.Write(seg.Value(w.src))
	}
	w.b.WriteString(escape(strings.TrimRight(b.String(), "\n")))
}

func (w *htmlWriter) inlines(n ast.Node) {
	for c := n.FirstChild(); c != nil; c = c.NextSibling() {
		w.inline(c)
	}
}

func (w *htmlWriter) inline(n ast.Node) {
	switch n := n.(type) {
	case *ast.Text:
		w.b.WriteString(escape(string(n.Segment.Value(w.src))))
		switch {
		case n.HardLineBreak(), n.SoftLineBreak():
			w.b.WriteString("\n")
		}
	case *ast.String:
		w.b.WriteString(escape(string(n.Value)))
	case *ast.CodeSpan:
		w.b.WriteString("<code>")
		for c := n.FirstChild(); c != nil; c = c.NextSibling() {
			if t, ok := c.(*ast.Text); ok {
				w.b.WriteString(escape(string(t.Segment.Value(w.src))))
			} else if s, ok := c.(*ast.String); ok {
				w.b.WriteString(escape(string(s.Value)))
			}
		}
		w.b.WriteString("</code>")
	case *ast.Emphasis:
		tag := "i"
		if n.Level >= 2 {
			tag = "b"
		}
		w.b.WriteString("<" + tag + ">")
		w.inlines(n)
		w.b.WriteString("</" + tag + ">")
	case *east.Strikethrough:
		w.b.WriteString("<s>")
		w.inlines(n)
		w.b.WriteString("</s>")
	case *ast.Link:
		w.link(string(n.Destination), func() { w.inlines(n) })
	case *ast.AutoLink:
		label := string(n.Label(w.src))
		dest := string(n.URL(w.src))
		if n.AutoLinkType == ast.AutoLinkEmail && !strings.HasPrefix(dest, "mailto:") {
			dest = "mailto:" + dest
		}
		w.link(dest, func() { w.b.WriteString(escape(label)) })
	case *ast.Image:
		// Telegram cannot show an inline image in a text: link it.
		w.link(string(n.Destination), func() { w.inlines(n) })
	case *ast.RawHTML:
		for i := 0; i < n.Segments.Len(); i++ {
			seg := n.Segments.At(i)
			w.b.WriteString(escape(string(seg.Value(w.src))))
		}
	default:
		w.inlines(n)
	}
}

// link writes an <a> for the schemes Telegram opens, the label alone
// otherwise (a javascript: or relative link means nothing in a chat).
func (w *htmlWriter) link(dest string, label func()) {
	u, err := url.Parse(dest)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "mailto" && u.Scheme != "tg") {
		label()
		return
	}
	w.b.WriteString(`<a href="` + attrEscaper.Replace(dest) + `">`)
	label()
	w.b.WriteString("</a>")
}

var attrEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;")

func escape(s string) string { return htmlEscaper.Replace(s) }

// fence matches a code fence line: its marker and info string.
var fence = regexp.MustCompile("^ {0,3}(`{3,}|~{3,})(.*)$")

// SplitText implements bridge.TextSplitter: the Markdown is cut into parts
// of at most MaxMessageLen UTF-16 units of source (the rendered text is
// never longer: markup only disappears) at block boundaries — between
// paragraphs first, then between lines — so no part ends inside a tag.
// A code block that does not fit is closed at the end of a part and opened
// again, with its language, in the next; a single line longer than a part
// is cut at a space as bridge.SplitText does.
func (p *Platform) SplitText(md string) []string { return SplitMarkdown(md, MaxMessageLen) }

// SplitMarkdown is SplitText with any limit (tests).
func SplitMarkdown(md string, max int) []string {
	if strings.TrimSpace(md) == "" {
		return nil
	}
	var parts []string
	var cur []string // lines of the part being built
	units := 0
	open := "" // the fence line of the code block open at the end of cur, "" if none
	closeMark := ""
	flush := func() {
		if len(cur) == 0 {
			return
		}
		lines := cur
		if open != "" {
			lines = append(lines, closeMark)
		}
		if part := strings.TrimRight(strings.Join(lines, "\n"), "\n "); strings.TrimSpace(part) != "" {
			parts = append(parts, part)
		}
		cur, units = nil, 0
		if open != "" { // the code block goes on in the next part
			cur, units = []string{open}, u16(open)+1
		}
	}
	// lastBreak is the index in cur after the last blank line outside code,
	// where a cut leaves whole paragraphs on both sides.
	lastBreak := -1
	for _, line := range strings.Split(md, "\n") {
		reserve := 0
		if open != "" {
			reserve = u16(closeMark) + 1
		}
		n := u16(line) + 1
		if units+n+reserve > max && len(cur) > 0 {
			if lastBreak > 0 && open == "" && lastBreak < len(cur) {
				rest := cur[lastBreak:]
				cur = cur[:lastBreak]
				flush()
				for _, l := range rest {
					cur = append(cur, l)
					units += u16(l) + 1
				}
			} else {
				flush()
			}
			lastBreak = -1
		}
		if u16(line)+1+reserve > max {
			// One line wider than a part: cut it like plain text.
			for _, piece := range bridge.SplitText(line, max-reserve-u16(open)-2) {
				if units+u16(piece)+1+reserve > max {
					flush()
				}
				cur = append(cur, piece)
				units += u16(piece) + 1
			}
			continue
		}
		cur = append(cur, line)
		units += n
		if m := fence.FindStringSubmatch(line); m != nil {
			switch {
			case open == "":
				open, closeMark = line, m[1]
			case strings.HasPrefix(strings.TrimLeft(line, " "), closeMark[:1]) && strings.TrimSpace(m[2]) == "" && len(m[1]) >= len(closeMark):
				open, closeMark = "", ""
			}
		}
		if open == "" && strings.TrimSpace(line) == "" {
			lastBreak = len(cur)
		}
	}
	open = "" // a fence the text never closed stays unclosed, as written
	flush()
	return parts
}

func u16(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
		if utf16.RuneLen(r) < 1 {
			n++
		}
	}
	return n
}

// formatted calls send with text rendered as Telegram HTML, and once more
// with the text as written, without parse mode, if Telegram refuses the
// entities (400 "can't parse entities"): a reply shown plain beats a reply
// lost to a formatting bug.
func (p *Platform) formatted(text string, send func(body string, mode models.ParseMode) error) error {
	err := send(MarkdownToHTML(text), models.ParseModeHTML)
	if err == nil || !errors.Is(err, bot.ErrorBadRequest) || !strings.Contains(err.Error(), "can't parse entities") {
		return err
	}
	p.log.Warn("Telegram refused the formatted text; sending it plain", "err", err)
	return send(text, "")
}

var _ bridge.TextSplitter = (*Platform)(nil)
