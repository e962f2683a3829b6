package discord

import (
	"strings"

	"github.com/agentd/agentd/plugins/bridge"
)

// splitAt leaves room in each part for closing a code block and reopening
// it (with its language, up to maxLang) in the next.
const (
	maxLang = 24
	splitAt = MaxMessageLen - len("```")*2 - maxLang - 2
)

// SplitText implements bridge.TextSplitter: parts of at most 2,000
// characters cut between paragraphs or lines (bridge.SplitText), and a
// code block that does not fit one part is closed at its end and reopened,
// with its language, at the start of the next — Discord renders every
// message's Markdown on its own.
func (p *Platform) SplitText(text string) []string { return SplitText(text) }

// SplitText is Platform.SplitText.
func SplitText(text string) []string {
	parts := bridge.SplitText(text, splitAt)
	open := "" // the fence line a part ends inside of
	for i, part := range parts {
		part = strings.TrimRight(part, " \t\n") // Discord trims it too; the shown text is what was sent
		if open != "" {
			part = open + "\n" + part
		}
		open = fenceOpenAtEnd(part)
		if open != "" {
			part += "\n```"
		}
		parts[i] = part
	}
	return parts
}

// fenceOpenAtEnd returns the opening fence line (e.g. "```go") of a code
// block still open at the end of s, or "".
func fenceOpenAtEnd(s string) string {
	open := ""
	for line := range strings.SplitSeq(s, "\n") {
		t := strings.TrimSpace(line)
		if !strings.HasPrefix(t, "```") {
			continue
		}
		if open != "" {
			open = ""
			continue
		}
		open = t
		if len(open) > len("```")+maxLang {
			open = "```"
		}
	}
	return open
}
