package bridge

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
