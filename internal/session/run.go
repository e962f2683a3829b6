package session

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/agentd/agentd/internal/agent"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/metrics"
	"github.com/agentd/agentd/internal/provider"
	"github.com/agentd/agentd/internal/usage"
	"github.com/agentd/agentd/wire"
)

// providerConfigs turns the config's providers into provider.New input.
func providerConfigs(cfg *config.Config) []provider.Config {
	out := make([]provider.Config, 0, len(cfg.Providers))
	for _, p := range cfg.Providers {
		out = append(out, provider.Config{ID: p.ID, Kind: p.Kind, BaseURL: p.BaseURL, APIKey: p.APIKey})
	}
	return out
}

// resolve picks the model of a turn: the session's pin, else the default.
func (m *Manager) resolve(cfg *config.Config, pinned string) (model, provider.Provider, error) {
	id := pinned
	if id == "" {
		id = cfg.Agent.DefaultModel
	}
	if id == "" {
		return model{}, nil, errNoModel
	}
	mo, ok := m.lookupModel(id)
	if !ok {
		return mo, nil, fmt.Errorf("model %q is not configured any more; pick another with the model command", id)
	}
	if !mo.Enabled {
		return mo, nil, fmt.Errorf("model %q is disabled; pick another with the model command", id)
	}
	p, ok := m.providers.Get(mo.Provider)
	if !ok {
		return mo, nil, fmt.Errorf("provider %q of model %q is not available", mo.Provider, id)
	}
	return mo, p, nil
}

// execute runs one turn to its end, stores its result and returns the
// frames that end it, for finishRun to deliver. On shutdown it returns
// without storing anything, so the turn runs again after restart.
func (m *Manager) execute(ctx context.Context, r *run) []wire.Message {
	t := r.turn
	defer m.settle(t)
	m.running.Add(1)
	defer m.running.Add(-1)
	started := time.Now()
	cfg := m.cfg.Current()
	o := outcome{}
	var out *agent.Outcome
	// The reads are not cut by an interrupt (a cut read would fail the
	// turn instead of ending it as interrupted); agent.Run sees ctx. The
	// store bounds its own reads: most turns find their session and
	// history cached, and a timer of their own cost them ~3 µs each.
	rctx := context.WithoutCancel(ctx)
	var row sessionRow
	var err error
	if !t.ephemeral {
		row, err = m.db.session(rctx, t.SessionID)
	}
	if t.model != "" {
		row.Pinned = t.model
	}
	system := cfg.Agent.SystemPrompt
	if t.system != "" {
		system = t.system
	}
	var mo model
	var prov provider.Provider
	var hist []provider.Message
	if err == nil {
		mo, prov, err = m.resolve(cfg, row.Pinned)
		o.Model = mo.ID
	}
	if err == nil && m.metrics != nil {
		m.metrics.TurnStarted(mo.ID, usage.Source(t.SessionID))
	}
	if err == nil && !t.ephemeral {
		hist, err = m.db.history(rctx, t.SessionID)
	}
	userText, atts := t.Text, t.Attachments
	voiceIn, voiceTurn := voiceInput(t)
	if err == nil && voiceTurn {
		userText, atts, err = m.hear(ctx, r, voiceIn)
	}
	if err == nil {
		out, err = m.agent.Run(ctx, agent.Turn{
			Provider:      prov,
			Model:         mo.Name,
			System:        system,
			History:       hist,
			UserText:      userText,
			Attachments:   toAgent(atts),
			MaxToolRounds: cfg.Limits.MaxToolRounds,
			Sink:          r.sink(ctx, m, t),
			BeforeCall:    m.beforeCall(t, mo),
		})
	}
	if m.ctx.Err() != nil {
		// Shutdown, not an interrupt: the turn stays persisted, and one
		// that started at once is written now if it was not yet.
		t.cut.Store(true)
		m.settle(t)
		m.releaseBudget(t)
		return nil
	}
	r.mu.Lock()
	r.stopped = true // whatever happens now, no more deltas for this run
	r.mu.Unlock()
	var spoken []wire.Message
	if out != nil {
		o.Messages = out.Messages
		o.Attachments = fromAgent(out.Attachments)
		if err == nil && out.Text != "" && !out.Interrupted && m.wantsVoice(t, voiceTurn) {
			if att, frames := m.speak(context.WithoutCancel(ctx), t, out.Text); att != nil {
				o.Attachments, spoken = append(o.Attachments, *att), frames
			}
		}
		o.Interrupted = out.Interrupted || errors.Is(context.Cause(ctx), errInterrupted)
		o.Usage = out.Usage
		o.CostUSD = agent.Cost(out.Usage, mo.In, mo.Out)
	}
	o.Price = usage.Price{Input: mo.In, Output: mo.Out}
	o.Err = err
	m.settle(t)
	text := ""
	if out != nil {
		text = out.Text
	}
	final := m.finalFrames(t, o, text, spoken)
	box := m.boxFor(t, final)
	// Store first: a reply the client saw must be in history. The write
	// has no deadline of its own: the group commit bounds each
	// transaction, and a result that waits behind others is stored late
	// rather than dropped.
	sctx := context.WithoutCancel(ctx)
	wstart := time.Now()
	serr := m.db.finishTurn(sctx, t, o, box)
	if testHookStored != nil {
		testHookStored()
	}
	// At once: from here the usage row counts, and the hold would count it
	// twice for the turns that check meanwhile.
	m.releaseBudget(t)
	if serr != nil {
		m.log.Error("store finished turn", "session", t.SessionID, "turn", t.ID, "err", serr)
	} else {
		t.box = box
		if m.budget != nil {
			m.budget.TurnRecorded(sctx, t.SessionID, o.Model)
		}
	}
	m.observe(r, o, started, time.Since(wstart))
	if t.result != nil {
		finishServer(t, text, o)
		return nil
	}
	return final
}

// testHookStored, set by a test, runs right after a turn's result is
// committed, before anything else: blocked, it stands for a process
// killed there.
var testHookStored func()

// finalFrames are the frames that end t for its client: its reply (or the
// error that failed it) and turn_complete. A server-side turn has none.
func (m *Manager) finalFrames(t *turn, o outcome, text string, spoken []wire.Message) []wire.Message {
	if t.result != nil {
		return nil
	}
	used := wire.Usage{
		PromptTokens: o.Usage.PromptTokens, CompletionTokens: o.Usage.CompletionTokens,
		TotalTokens: o.Usage.Total(), CostUSD: o.CostUSD,
	}
	done := wire.TurnComplete{SessionID: t.SessionID, Usage: used, TurnID: t.TurnID}
	if o.Err != nil {
		msg := "the turn failed: " + o.Err.Error()
		if usage.IsBudget(o.Err) {
			msg = o.Err.Error() // "budget reached: …", for every client alike
		}
		m.log.Warn("turn failed", "session", t.SessionID, "model", o.Model, "err", o.Err)
		return []wire.Message{wire.Error{Text: msg, SessionID: t.SessionID, TurnID: t.TurnID}, done}
	}
	resp := wire.Response{
		Text: text, SessionID: t.SessionID, Model: o.Model,
		Attachments: nonNil(o.Attachments), Interrupted: o.Interrupted, TurnID: t.TurnID,
	}
	return append(append([]wire.Message{resp}, spoken...), done)
}

// observe reports a finished turn to the metrics.
func (m *Manager) observe(r *run, o outcome, started time.Time, storeWrite time.Duration) {
	if m.metrics == nil {
		return
	}
	status := o.status()
	if usage.IsBudget(o.Err) {
		status = "budget"
	}
	tools := 0
	for _, msg := range o.Messages {
		if msg.Role == provider.RoleTool {
			tools++
		}
	}
	r.mu.Lock()
	var first time.Duration
	if !r.firstDelta.IsZero() {
		first = r.firstDelta.Sub(started)
	}
	r.mu.Unlock()
	m.metrics.TurnFinished(metrics.Turn{
		Model: o.Model, Source: usage.Source(r.turn.SessionID), Status: status,
		Duration: time.Since(started), FirstDelta: first, ToolCalls: tools,
		PromptTokens: o.Usage.PromptTokens, CompletionTokens: o.Usage.CompletionTokens,
		CostUSD: o.CostUSD, StoreWrite: storeWrite,
	})
}

// releaseBudget ends what the turn's budget checks held (its usage row is
// stored, or it ended without one).
func (m *Manager) releaseBudget(t *turn) {
	if m.budget != nil {
		m.budget.TurnEnded(t.TurnID)
	}
}

// beforeCall is the turn's budget check before each model call.
func (m *Manager) beforeCall(t *turn, mo model) func(context.Context, *provider.Request, provider.Usage) error {
	if m.budget == nil {
		return nil
	}
	return func(ctx context.Context, req *provider.Request, soFar provider.Usage) error {
		return m.budget.BeforeCall(ctx, usage.Call{
			SessionID: t.SessionID, Model: mo.ID, Price: usage.Price{Input: mo.In, Output: mo.Out},
			Request: req, TurnSoFar: soFar, Turn: t.TurnID,
		})
	}
}

// sink forwards the agent's events as frames until the run is stopped.
// It holds r.mu while delivering, so once stop has returned no frame of the
// run can still go out; a delivery waiting for a slow reader ends when
// stop cancels ctx.
func (r *run) sink(ctx context.Context, m *Manager, t *turn) func(agent.Event) {
	return func(ev agent.Event) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.stopped || ctx.Err() != nil {
			return
		}
		switch e := ev.(type) {
		case agent.Delta:
			first := r.firstDelta.IsZero()
			if first {
				r.firstDelta = time.Now()
			}
			m.streamDelta(ctx, t.ClientID, t.SessionID, e.Text, first && m.firstDeltaNow(t))
		case agent.Status:
			m.stream(ctx, t.ClientID, wire.Status{Text: e.Text, SessionID: t.SessionID})
		}
	}
}

// firstDeltaNow says whether the first delta of t's run is written at once
// (DeltaNower) rather than queued for the connection's writer: while no
// more runs execute than there are processors, so a lone client's first
// delta does not wait for a thread to be woken. Under load every thread
// is busy anyway, and queued deltas merge into fewer frames (one more
// frame per turn halved throughput when every run yielded to its writer).
// Never for a bridge's turn: a bridge paces its platform's messages and
// edits (a second apart at least), so a sooner first delta gains its
// users nothing, while a delta merged with the words behind it spares the
// bridge an edit.
func (m *Manager) firstDeltaNow(t *turn) bool {
	return !t.bridge && m.running.Load() <= int64(runtime.GOMAXPROCS(0))
}

func toAgent(in []wire.Attachment) []agent.Attachment {
	var out []agent.Attachment
	for _, a := range in {
		out = append(out, agent.Attachment{Type: a.Kind, Path: a.Path, Filename: a.Filename})
	}
	return out
}

func fromAgent(in []agent.Attachment) []wire.Attachment {
	var out []wire.Attachment
	for _, a := range in {
		out = append(out, wire.Attachment{Kind: a.Type, Path: a.Path, Filename: a.Filename})
	}
	return out
}
