package provider

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// EchoNotice ends every echo reply so nobody mistakes it for a model.
const EchoNotice = "(this is the echo provider; configure a real model to get real answers)"

// EchoModel is the only model the echo provider lists.
const EchoModel = "echo"

// Echo is a deterministic, offline Provider: it streams the last user message
// back word by word, prefixed with "echo:" and followed by EchoNotice. Token
// counts are word counts. It never calls tools and never touches the network.
type Echo struct {
	id    string
	delay time.Duration
}

// NewEcho returns an echo provider; delay (may be 0) is slept between deltas.
func NewEcho(id string, delay time.Duration) *Echo {
	if id == "" {
		id = KindEcho
	}
	return &Echo{id: id, delay: delay}
}

func (e *Echo) Name() string { return e.id }

// EchoReply is the full reply the echo provider gives to userText.
func EchoReply(userText string) string {
	words := strings.Fields(userText)
	if len(words) == 0 {
		return "echo: (empty message) " + EchoNotice
	}
	return "echo: " + strings.Join(words, " ") + " " + EchoNotice
}

// Stream implements Provider.
func (e *Echo) Stream(ctx context.Context, req *Request, onEvent func(Event) error) (*Result, error) {
	last := ""
	prompt := countWords(req.System)
	for _, m := range req.Messages {
		prompt += countWords(m.Content)
		if m.Role == RoleUser {
			last = m.Content
		}
	}
	words := strings.Fields(EchoReply(last))
	res := &Result{Model: EchoModel, Usage: Usage{PromptTokens: prompt}}
	var text strings.Builder
	var timer *time.Timer
	for i, w := range words {
		if err := ctx.Err(); err != nil {
			res.Text = text.String()
			return res, fmt.Errorf("provider %s: stream interrupted: %w", e.id, context.Cause(ctx))
		}
		if i > 0 && e.delay > 0 {
			if timer == nil {
				timer = time.NewTimer(e.delay)
				defer timer.Stop()
			} else {
				timer.Reset(e.delay)
			}
			select {
			case <-ctx.Done():
				res.Text = text.String()
				return res, fmt.Errorf("provider %s: stream interrupted: %w", e.id, context.Cause(ctx))
			case <-timer.C:
			}
		}
		d := w
		if i > 0 {
			d = " " + w
		}
		text.WriteString(d)
		res.Usage.CompletionTokens++
		if onEvent != nil {
			if err := onEvent(Event{Type: EventTextDelta, Text: d}); err != nil {
				res.Text = text.String()
				return res, fmt.Errorf("provider %s: %w", e.id, err)
			}
		}
	}
	res.Text = text.String()
	res.FinishReason = FinishStop
	return res, nil
}

// ListModels implements Provider.
func (e *Echo) ListModels(context.Context) ([]ModelInfo, error) {
	return []ModelInfo{{ID: EchoModel, DisplayName: "Echo (offline demo)", OwnedBy: "agentd"}}, nil
}

// countWords is len(strings.Fields(s)) without building the slice: the
// echo provider counts the whole history's words on every turn, a few KB,
// so the ASCII loop is branch-free (a word starts where a space is
// followed by a non-space); the first non-ASCII byte hands the rest to
// countWordsUnicode.
func countWords(s string) int {
	n, prev := 0, uint8(1) // the start counts as a space
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			return n + countWordsUnicode(s[i:], prev == 1)
		}
		sp := asciiSpace[c]
		n += int(prev &^ sp)
		prev = sp
	}
	return n
}

// asciiSpace marks the ASCII spaces of unicode.IsSpace.
var asciiSpace = [256]uint8{'\t': 1, '\n': 1, '\v': 1, '\f': 1, '\r': 1, ' ': 1}

// countWordsUnicode counts the words of s, afterSpace telling whether the
// byte before s was a space (or s starts the text).
func countWordsUnicode(s string, afterSpace bool) int {
	n, in := 0, !afterSpace
	for i := 0; i < len(s); {
		var space bool
		if c := s[i]; c < utf8.RuneSelf {
			space = asciiSpace[c] == 1
			i++
		} else {
			r, size := utf8.DecodeRuneInString(s[i:])
			space = unicode.IsSpace(r)
			i += size
		}
		if !space && !in {
			n++
		}
		in = !space
	}
	return n
}
