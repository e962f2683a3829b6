// Package agent runs one conversational turn: it streams the model's reply,
// executes the tool calls the model asks for through a Registry, feeds the
// results back, and finally turns attachment markers in the reply into
// structured attachments. Sessions, queues and persistence live elsewhere
// (internal/session); this package is stateless between turns.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/agentd/agentd/internal/provider"
)

// Limits of a turn.
const (
	// DefaultMaxToolRounds is how many times one turn may go model → tools →
	// model before the loop is stopped (limits.max_tool_rounds).
	DefaultMaxToolRounds = 16
	// ToolCallTimeout bounds a single tool call unless the tool sets its
	// own (Limited).
	ToolCallTimeout = 60 * time.Second
	// MaxToolResultBytes truncates tool output fed back to the model unless
	// the tool sets its own cap (Limited).
	MaxToolResultBytes = 256 << 10
)

// Event is streamed to Turn.Sink while a turn runs: Delta or Status.
type Event interface{ isEvent() }

// Delta is a piece of reply text (attachment markers already removed).
type Delta struct{ Text string }

// Status is live progress ("using X…", "X done", "X failed: why", dropped
// attachments, …).
type Status struct{ Text string }

func (Delta) isEvent()  {}
func (Status) isEvent() {}

// Agent holds what is shared by all turns. The zero value works (no tools,
// no attachment roots: every marker is dropped).
type Agent struct {
	// Tools offered to the model; nil means none.
	Tools *Registry
	// AllowedRoots are absolute directories reply attachments may point
	// into (e.g. the agent directory's uploads/ and memories/).
	AllowedRoots []string
	// Instructions are appended to every turn's system prompt: built-in
	// capabilities describe themselves (e.g. the vault and how to cite
	// notes).
	Instructions []string
	// DeniedRoots are never attached even inside an allowed root (the
	// agent directory's keys/, should a root be a symlink to it).
	DeniedRoots []string
	// MaxToolRounds overrides DefaultMaxToolRounds when > 0.
	MaxToolRounds int
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Turn is one user message to answer.
type Turn struct {
	Provider provider.Provider
	// Model is the upstream model name sent to the provider.
	Model string
	// System is the system prompt.
	System string
	// History is the conversation so far (not modified).
	History []provider.Message
	// UserText is the new user message.
	UserText string
	// Attachments the user sent with this message; they are described to
	// the model in the user message (name, type, path).
	Attachments []Attachment
	// MaxTokens per model call; 0 = provider default.
	MaxTokens int
	// MaxToolRounds overrides Agent.MaxToolRounds when > 0 (the config's
	// limits.max_tool_rounds, read per turn so a reload applies).
	MaxToolRounds int
	// BeforeCall, when set, runs before every model call (each tool round
	// too) with the request and what the turn's earlier calls used; an
	// error stops the turn before the call is made and is returned by Run
	// as is (budgets: internal/usage).
	BeforeCall func(ctx context.Context, req *provider.Request, soFar provider.Usage) error
	// Sink receives Delta and Status events, synchronously, in order, on
	// the goroutine that called Run. Nothing is sent after Run returns or
	// after cancellation of ctx was observed. May be nil.
	Sink func(Event)
}

// Outcome is the result of a turn.
type Outcome struct {
	// Text is the user-facing reply: the text of all rounds (joined by a
	// blank line), attachment markers removed. Partial when Interrupted or
	// when Run returned an error.
	Text string
	// Attachments extracted from the reply markers (allowed paths only).
	Attachments []Attachment
	// Usage summed over all model calls of the turn.
	Usage provider.Usage
	// Messages to append to the session history, in order: the user
	// message, then each assistant message (raw model text, markers kept so
	// the model remembers what it sent) and tool result. Always a valid
	// history: every assistant tool call has a result.
	Messages []provider.Message
	// Interrupted is set when ctx was cancelled; Text holds what had been
	// produced by then.
	Interrupted bool
	// ToolRounds is the number of tool rounds executed.
	ToolRounds int
	// Model is the model name the provider reported (may be empty).
	Model string
}

// Run answers one turn. A cancelled ctx is not an error: the Outcome is
// returned with Interrupted set. Provider failures return the Outcome so far
// (partial Text, Messages ending with the partial reply) and the error.
func (a *Agent) Run(ctx context.Context, t Turn) (*Outcome, error) {
	if t.Provider == nil {
		return nil, errors.New("agent: turn has no provider")
	}
	ctx = withTurnState(ctx)
	system := systemPrompt(t.System, a.Instructions)
	log := a.Logger
	if log == nil {
		log = slog.Default()
	}
	maxRounds := t.MaxToolRounds
	if maxRounds <= 0 {
		maxRounds = a.MaxToolRounds
	}
	if maxRounds <= 0 {
		maxRounds = DefaultMaxToolRounds
	}
	emit := func(ev Event) {
		if t.Sink != nil && ctx.Err() == nil {
			t.Sink(ev)
		}
	}

	user := provider.Message{Role: provider.RoleUser, Content: userContent(t.UserText, t.Attachments)}
	msgs := make([]provider.Message, 0, len(t.History)+4)
	msgs = append(append(msgs, t.History...), user)
	out := &Outcome{Messages: []provider.Message{user}}
	var rounds []string // raw text of each model call
	shown := false      // some reply text already went to the sink
	tools := a.Tools.List()

	finish := func() {
		raw := joinRounds(rounds)
		clean, atts, refused := ExtractAttachments(raw, a.AllowedRoots)
		out.Text = clean
		for _, at := range atts {
			if insideAny(at.Path, a.DeniedRoots) {
				refused = append(refused, fmt.Sprintf("attachment %s dropped: %v", at.Path, ErrAttachOutside))
				continue
			}
			out.Attachments = append(out.Attachments, at)
		}
		for _, note := range refused {
			log.Warn("agent: attachment refused", "note", note)
			emit(Status{Text: note})
		}
	}

	for round := 0; ; round++ {
		var filter markerFilter
		started := false
		onEvent := func(ev provider.Event) error {
			if ev.Type != provider.EventTextDelta {
				return nil
			}
			s := filter.write(ev.Text)
			if s == "" {
				return nil
			}
			if !started && shown {
				s = "\n\n" + s // separate this round's text from the previous one
			}
			started, shown = true, true
			emit(Delta{Text: s})
			return nil
		}
		req := &provider.Request{Model: t.Model, System: system, Messages: msgs, Tools: tools, MaxTokens: t.MaxTokens}
		if t.BeforeCall != nil {
			if err := t.BeforeCall(ctx, req, out.Usage); err != nil {
				finish()
				return out, err
			}
		}
		res, err := t.Provider.Stream(ctx, req, onEvent)
		if res != nil {
			out.Usage = out.Usage.Add(res.Usage)
			if res.Model != "" {
				out.Model = res.Model
			}
		}
		if err != nil {
			partial := ""
			if res != nil {
				partial = res.Text
			}
			if partial != "" {
				rounds = append(rounds, partial)
				out.Messages = append(out.Messages, provider.Message{Role: provider.RoleAssistant, Content: partial})
			}
			if ctx.Err() != nil {
				out.Interrupted = true
				finish()
				log.Info("agent: turn interrupted", "rounds", round, "partial_bytes", len(partial))
				return out, nil
			}
			if rest := filter.flush(); rest != "" {
				emit(Delta{Text: rest}) // show everything that did arrive
			}
			finish()
			return out, fmt.Errorf("agent: model call %d: %w", round+1, err)
		}
		if rest := filter.flush(); rest != "" {
			if !started && shown {
				rest = "\n\n" + rest
			}
			shown = true
			emit(Delta{Text: rest})
		}
		if res.Text != "" {
			rounds = append(rounds, res.Text)
		}
		assistant := provider.Message{Role: provider.RoleAssistant, Content: res.Text, ToolCalls: res.ToolCalls}
		msgs = append(msgs, assistant)
		out.Messages = append(out.Messages, assistant)
		if len(res.ToolCalls) == 0 {
			break
		}

		if round >= maxRounds {
			note := fmt.Sprintf("stopped: the model kept calling tools after %d rounds", maxRounds)
			log.Warn("agent: tool round limit reached", "limit", maxRounds)
			emit(Status{Text: note})
			for _, call := range res.ToolCalls {
				tm := provider.Message{Role: provider.RoleTool, ToolCallID: call.ID, IsError: true,
					Content: fmt.Sprintf("error: not executed, tool round limit (%d) reached", maxRounds)}
				msgs = append(msgs, tm)
				out.Messages = append(out.Messages, tm)
			}
			rounds = append(rounds, "("+note+")")
			break
		}
		out.ToolRounds++
		for _, call := range res.ToolCalls {
			var tm provider.Message
			if ctx.Err() != nil {
				tm = provider.Message{Role: provider.RoleTool, ToolCallID: call.ID, IsError: true, Content: "error: not executed, the turn was interrupted"}
			} else {
				emit(Status{Text: "using " + call.Name + "…"})
				tm = a.callTool(ctx, log, call)
				if tm.IsError {
					emit(Status{Text: call.Name + " failed: " + firstLine(strings.TrimPrefix(tm.Content, "error: "))})
				} else {
					emit(Status{Text: call.Name + " done"})
				}
			}
			msgs = append(msgs, tm)
			out.Messages = append(out.Messages, tm)
		}
		if ctx.Err() != nil {
			out.Interrupted = true
			finish()
			return out, nil
		}
	}
	finish()
	return out, nil
}

// callTool runs one tool call, bounded by the tool's timeout, and returns
// the tool message for the model (the result cut at the tool's cap).
func (a *Agent) callTool(ctx context.Context, log *slog.Logger, call provider.ToolCall) provider.Message {
	timeout, maxBytes := a.Tools.limits(call.Name)
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	result, err := a.Tools.Call(tctx, call.Name, call.Arguments)
	msg := provider.Message{Role: provider.RoleTool, ToolCallID: call.ID}
	if err != nil && ctx.Err() == nil && errors.Is(tctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("timed out after %s (the call was cancelled)", timeout)
	}
	if err != nil {
		log.Warn("agent: tool call failed", "tool", call.Name, "err", err, "elapsed", time.Since(start))
		msg.Content, msg.IsError = "error: "+truncate(err.Error(), maxBytes), true
		return msg
	}
	log.Debug("agent: tool call done", "tool", call.Name, "bytes", len(result), "elapsed", time.Since(start))
	msg.Content = truncate(result, maxBytes)
	return msg
}

// firstLine is s up to its first newline, at most 200 bytes, for status
// frames.
func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 200 {
		cut := 200
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf("\n[truncated: %d of %d bytes shown; ask for less, e.g. a smaller range]", cut, len(s))
}

func joinRounds(rounds []string) string {
	parts := make([]string, 0, len(rounds))
	for _, r := range rounds {
		if strings.TrimSpace(r) != "" {
			parts = append(parts, r)
		}
	}
	return strings.Join(parts, "\n\n")
}

// userContent is the user message as the model sees it: the text, then one
// line per attachment the user sent.
func userContent(text string, atts []Attachment) string {
	if len(atts) == 0 {
		return text
	}
	var b strings.Builder
	b.WriteString(text)
	for _, at := range atts {
		if b.Len() > 0 {
			b.WriteString("\n")
		}
		typ := at.Type
		if typ == "" {
			typ = AttachFile
		}
		name := at.Filename
		if name == "" {
			name = at.Path
		}
		fmt.Fprintf(&b, "[user attached %s %q at %s]", typ, name, at.Path)
	}
	return b.String()
}

// Cost is the price in USD of usage at the given prices per million tokens.
func Cost(u provider.Usage, inputPricePerMTok, outputPricePerMTok float64) float64 {
	return float64(u.PromptTokens)*inputPricePerMTok/1e6 + float64(u.CompletionTokens)*outputPricePerMTok/1e6
}
