package bridge

import (
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// TextSplitter is implemented by platforms whose message format needs its
// own way of cutting a long reply: one that renders the agent's Markdown
// must not cut inside a code block or an inline span. SplitText returns
// the parts of text in order, each short enough for one message and each
// passed to SendText or EditText as it is. Without it the SDK uses
// SplitText(text, MaxTextLen).
type TextSplitter interface {
	SplitText(text string) []string
}

// split cuts text into the platform's message parts.
func (r *Runner) split(text string) []string {
	if s, ok := r.p.(TextSplitter); ok {
		return s.SplitText(text)
	}
	return SplitText(text, r.maxText)
}

// StatusSetter is implemented by the Host the SDK passes to Platform.Run:
// SetStatus changes the platform status agentd shows (platform_status in
// GET /api/bridges and agentd bridge list) without recording an operator
// event, for states that may change often (a poll conflict that comes and
// goes with every message). Host.Event("status", …) changes it too, and
// is what an operator should hear of.
type StatusSetter interface {
	SetStatus(text string)
}

// SetStatus implements StatusSetter.
func (h *host) SetStatus(text string) {
	if h.onStatus != nil {
		h.onStatus(text)
	}
}

// CertRefused starts the text of the "alert" event a runner reports when
// the gateway refuses its certificate (401/403, e.g. revoked): agentd's
// supervisor then issues the bridge a fresh one and restarts it.
const CertRefused = "the gateway refuses this bridge's certificate"

// SplitText cuts s into parts of at most max UTF-16 code units (the unit
// Telegram counts; never fewer than runes, so also safe for platforms that
// count code points). It prefers to cut after a newline, then after a
// space, in the second half of a part. max <= 0 means no limit.
// Whitespace-only text yields no parts.
func SplitText(s string, max int) []string {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	if max <= 0 {
		return []string{s}
	}
	var out []string
	for s != "" {
		units, cut := 0, len(s)
		for i, r := range s {
			n := utf16.RuneLen(r)
			if n < 1 {
				n = 1 // invalid runes are sent as U+FFFD, one unit
			}
			if units+n > max {
				cut = i
				break
			}
			units += n
		}
		if cut == len(s) {
			if strings.TrimSpace(s) != "" {
				out = append(out, s)
			}
			break
		}
		if cut == 0 { // one rune wider than max: send it alone rather than loop
			_, size := utf8.DecodeRuneInString(s)
			cut = size
		}
		chunk := s[:cut]
		if j := strings.LastIndexByte(chunk, '\n'); j >= len(chunk)/2 {
			cut = j + 1
		} else if j := strings.LastIndexByte(chunk, ' '); j >= len(chunk)/2 {
			cut = j + 1
		}
		if part := strings.TrimRight(s[:cut], " \n"); part != "" {
			out = append(out, part)
		}
		s = s[cut:]
	}
	return out
}
