// Package usage owns what the agent spends: usage reports from turn_usage
// (each row priced when its turn ran) and budgets, rules that are checked
// before every model call with the call's worst-case cost, so a call that
// could pass a limit is never made.
package usage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/agentd/agentd/internal/provider"
)

// alertCheckTimeout bounds what one turn's alert check reads and writes.
const alertCheckTimeout = 10 * time.Second

// Price is a model's price in USD per million tokens.
type Price struct {
	Input  float64 `json:"input_cost_per_million"`
	Output float64 `json:"output_cost_per_million"`
}

// Cost is the price of u.
func (p Price) Cost(u provider.Usage) float64 {
	return float64(u.PromptTokens)*p.Input/1e6 + float64(u.CompletionTokens)*p.Output/1e6
}

// Alert is a budget threshold crossed (Threshold 1: the limit stopped a
// call). It is raised once per budget, window and threshold.
type Alert struct {
	BudgetID    string
	WindowStart time.Time
	Threshold   float64
	SpentUSD    float64
	LimitUSD    float64
	Text        string
}

// Options configure Open.
type Options struct {
	DB *sql.DB
	// Prices are the current prices by model id, for /api/usage/pricing.
	Prices func() map[string]Price
	// OnAlert is called for every alert raised (the daemon turns it into a
	// resource_event{budget, alert, id} and an operator event).
	OnAlert func(Alert)
	// OnChange is called after a budget is created, updated or deleted.
	OnChange func(resource, action, id string)
	Log      *slog.Logger
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Usage answers usage queries and enforces budgets.
type Usage struct {
	db  *sql.DB
	opt Options
	log *slog.Logger
	now func() time.Time
	// alertMu serialises alert evaluation so two turns ending together do
	// not both raise the same alert.
	alertMu sync.Mutex
	// holdMu guards holds and serialises BeforeCall's check and hold, so
	// that turns running at once each see what the others may spend.
	holdMu sync.Mutex
	holds  map[string]hold // turn id → hold
	// bmu guards budgets and bgen: the budgets, read before every model
	// call, are cached until one changes (a nil slice: not loaded). bgen
	// counts changes, so a load that raced with one is not kept.
	bmu     sync.Mutex
	budgets []Budget
	bgen    uint64
}

// hold is what a running turn may have spent once its current call ends:
// its earlier calls and the call's worst case. It counts against every
// budget that applies to the turn until the turn's usage row is stored
// (TurnEnded); without it, turns running at once would each fit a budget
// the sum of them passes.
type hold struct {
	model, source string
	usd           float64
}

// Open returns the usage service over the agent database (migrated).
func Open(opt Options) *Usage {
	u := &Usage{db: opt.DB, opt: opt, log: opt.Log, now: opt.Now, holds: map[string]hold{}}
	if u.log == nil {
		u.log = slog.Default()
	}
	if u.now == nil {
		u.now = time.Now
	}
	return u
}

// Source is the usage source of a session: its id's prefix before ":"
// (tg, dc, wa, scheduler, workflow, …), cli for a session without one.
func Source(sessionID string) string {
	if i := strings.IndexByte(sessionID, ':'); i > 0 {
		return sessionID[:i]
	}
	return "cli"
}

// WorstCase is the most a model call can cost: its prompt tokens
// estimated from the request's size (4 bytes a token, generous for
// English, plus a few per message) and max_tokens (provider.DefaultMaxTokens
// when the request sets none) of output.
func WorstCase(req *provider.Request, p Price) float64 {
	n := len(req.System)
	for _, m := range req.Messages {
		n += len(m.Content) + 16
		for _, c := range m.ToolCalls {
			n += len(c.Name) + len(c.Arguments)
		}
	}
	if len(req.Tools) > 0 {
		if b, err := json.Marshal(req.Tools); err == nil {
			n += len(b)
		}
	}
	out := req.MaxTokens
	if out <= 0 {
		out = provider.DefaultMaxTokens
	}
	return p.Cost(provider.Usage{PromptTokens: n/4 + 1, CompletionTokens: out})
}

// Call is a model call about to be made.
type Call struct {
	SessionID string
	Model     string // the model id
	Price     Price
	Request   *provider.Request
	// TurnSoFar is what the turn's earlier calls used (not yet stored).
	TurnSoFar provider.Usage
	// Turn names the turn (its id) for the hold its calls keep until
	// TurnEnded; "" holds nothing.
	Turn string
}

// BudgetError refuses a call; its text is what the user reads.
type BudgetError struct{ Text string }

func (e *BudgetError) Error() string { return e.Text }

// IsBudget reports whether err is a budget refusal.
func IsBudget(err error) bool {
	var be *BudgetError
	return errors.As(err, &be)
}

// BeforeCall refuses c (a *BudgetError) when its worst-case cost, on top of
// what the window has spent and the turn has used so far, would pass an
// enabled budget that applies to it.
func (u *Usage) BeforeCall(ctx context.Context, c Call) error {
	u.holdMu.Lock()
	defer u.holdMu.Unlock()
	source := Source(c.SessionID)
	bs, err := u.matching(ctx, c.Model, source)
	if err != nil {
		return fmt.Errorf("check budgets: %w", err)
	}
	soFar := c.Price.Cost(c.TurnSoFar)
	worst := WorstCase(c.Request, c.Price)
	now := u.now()
	for _, b := range bs {
		spent, err := u.spent(ctx, b, now)
		if err != nil {
			return fmt.Errorf("check budgets: %w", err)
		}
		held, turns := u.heldFor(b, c.Turn)
		if spent+held+soFar+worst <= b.LimitUSD {
			continue
		}
		others := ""
		if turns > 0 {
			others = fmt.Sprintf(", $%s held by %d other turn(s) running,", money(held), turns)
		}
		text := fmt.Sprintf("budget reached: the %s budget %s of $%s has $%s spent%s and this call could cost up to $%s; it resets %s UTC",
			periodName(b.Window), b.describe(), money(b.LimitUSD), money(spent+soFar), others, money(worst),
			windowEnd(b.Window, now).Format("2006-01-02 15:04"))
		u.raise(ctx, b, windowStart(b.Window, now), 1, spent+soFar, text)
		return &BudgetError{Text: text}
	}
	if c.Turn != "" {
		u.holds[c.Turn] = hold{model: c.Model, source: source, usd: soFar + worst}
	}
	return nil
}

// heldFor sums the holds of the turns other than turn that budget b
// applies to; the caller holds holdMu.
func (u *Usage) heldFor(b Budget, turn string) (usd float64, turns int) {
	for id, h := range u.holds {
		if id != turn && b.applies(h.model, h.source) {
			usd += h.usd
			turns++
		}
	}
	return usd, turns
}

// TurnEnded releases the hold of turn: it ended, and its usage row, if it
// has one, is stored.
func (u *Usage) TurnEnded(turn string) {
	u.holdMu.Lock()
	delete(u.holds, turn)
	u.holdMu.Unlock()
}

// TurnRecorded raises the alerts a stored turn may have crossed. Only a
// turn that a budget applies to gets a deadline for its check (most have
// none, and find the budgets cached: a timer each would be spent for
// nothing).
func (u *Usage) TurnRecorded(ctx context.Context, sessionID, model string) {
	bs, err := u.matching(ctx, model, Source(sessionID))
	if err != nil {
		u.log.Warn("budget alerts not checked", "err", err)
		return
	}
	if len(bs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, alertCheckTimeout)
	defer cancel()
	now := u.now()
	for _, b := range bs {
		spent, err := u.spent(ctx, b, now)
		if err != nil {
			u.log.Warn("budget alerts not checked", "budget", b.ID, "err", err)
			continue
		}
		// The highest threshold crossed is the one worth a message.
		for i := len(b.AlertAt) - 1; i >= 0; i-- {
			t := b.AlertAt[i]
			if spent >= t*b.LimitUSD {
				text := fmt.Sprintf("budget %s: %.0f%% of the %s limit of $%s is spent ($%s)",
					b.describe(), t*100, periodName(b.Window), money(b.LimitUSD), money(spent))
				u.raise(ctx, b, windowStart(b.Window, now), t, spent, text)
				break
			}
		}
	}
}

// raise records and announces an alert unless this window already had it
// or a higher one (after "limit reached", "50% spent" is noise).
func (u *Usage) raise(ctx context.Context, b Budget, start time.Time, threshold, spent float64, text string) {
	u.alertMu.Lock()
	res, err := u.db.ExecContext(ctx, `INSERT INTO budget_alerts(budget_id, window_start, threshold, created_at)
		SELECT ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM budget_alerts WHERE budget_id = ? AND window_start = ? AND threshold >= ?)`,
		b.ID, start.UnixMilli(), threshold, u.now().UnixMilli(), b.ID, start.UnixMilli(), threshold)
	u.alertMu.Unlock()
	if err != nil {
		u.log.Warn("budget alert not recorded", "budget", b.ID, "err", err)
		return
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return
	}
	u.log.Warn("budget alert", "budget", b.ID, "threshold", threshold, "spent_usd", spent, "limit_usd", b.LimitUSD)
	if u.opt.OnAlert != nil {
		u.opt.OnAlert(Alert{BudgetID: b.ID, WindowStart: start, Threshold: threshold, SpentUSD: spent, LimitUSD: b.LimitUSD, Text: text})
	}
}

func periodName(w string) string {
	if w == "day" {
		return "daily"
	}
	return "monthly"
}

// money prints USD with enough digits for cents and fractions of them.
func money(v float64) string {
	s := fmt.Sprintf("%.4f", v)
	s = strings.TrimRight(s, "0")
	if i := strings.IndexByte(s, '.'); i >= 0 && len(s)-i < 3 {
		s += strings.Repeat("0", 3-(len(s)-i))
	}
	return s
}

// windowStart is the start of the UTC day or month holding t.
func windowStart(window string, t time.Time) time.Time {
	t = t.UTC()
	if window == "day" {
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	}
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

func windowEnd(window string, t time.Time) time.Time {
	s := windowStart(window, t)
	if window == "day" {
		return s.AddDate(0, 0, 1)
	}
	return s.AddDate(0, 1, 0)
}
