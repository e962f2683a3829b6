package usage

import (
	"context"
	"fmt"
	"time"
)

// Month is GET /api/usage: this UTC month's spend by model and source, and
// the month budget for all usage, if one is set.
type Month struct {
	Month         string             `json:"month"`
	MonthlySpend  float64            `json:"monthly_spend"`
	MonthlyBudget *float64           `json:"monthly_budget"`
	Remaining     *float64           `json:"remaining"`
	ByModel       map[string]float64 `json:"by_model"`
	BySource      map[string]float64 `json:"by_source"`
}

// Month reports the UTC month holding now.
func (u *Usage) Month(ctx context.Context) (Month, error) {
	now := u.now()
	start := windowStart("month", now)
	m := Month{Month: start.Format("2006-01"), ByModel: map[string]float64{}, BySource: map[string]float64{}}
	rows, err := u.db.QueryContext(ctx, `SELECT model, source, SUM(cost_usd) FROM turn_usage WHERE created_at >= ? GROUP BY model, source`, start.UnixMilli())
	if err != nil {
		return m, fmt.Errorf("usage: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var model, source string
		var cost float64
		if err := rows.Scan(&model, &source, &cost); err != nil {
			return m, fmt.Errorf("usage: %w", err)
		}
		m.ByModel[model] += cost
		m.BySource[source] += cost
		m.MonthlySpend += cost
	}
	if err := rows.Err(); err != nil {
		return m, fmt.Errorf("usage: %w", err)
	}
	bs, err := u.Budgets(ctx)
	if err != nil {
		return m, err
	}
	for _, b := range bs {
		if b.Enabled && b.Scope == "all" && b.Window == "month" && (m.MonthlyBudget == nil || b.LimitUSD < *m.MonthlyBudget) {
			limit, left := b.LimitUSD, max(0, b.LimitUSD-m.MonthlySpend)
			m.MonthlyBudget, m.Remaining = &limit, &left
		}
	}
	return m, nil
}

// Day is one row of GET /api/usage/daily.
type Day struct {
	Date         string  `json:"date"`
	Model        string  `json:"model"`
	Cost         float64 `json:"cost"`
	InputTokens  int64   `json:"input_tokens"`
	OutputTokens int64   `json:"output_tokens"`
	RequestCount int64   `json:"request_count"`
}

// Daily reports the last days UTC days (today included) by model, newest
// date first.
func (u *Usage) Daily(ctx context.Context, days int) ([]Day, error) {
	start := windowStart("day", u.now()).AddDate(0, 0, -(days - 1))
	rows, err := u.db.QueryContext(ctx, `SELECT strftime('%Y-%m-%d', created_at / 1000, 'unixepoch') AS day, model,
		SUM(cost_usd), SUM(prompt_tokens), SUM(completion_tokens), COUNT(*)
		FROM turn_usage WHERE created_at >= ? GROUP BY day, model ORDER BY day DESC, model`, start.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("daily usage: %w", err)
	}
	defer rows.Close()
	out := []Day{}
	for rows.Next() {
		var d Day
		if err := rows.Scan(&d.Date, &d.Model, &d.Cost, &d.InputTokens, &d.OutputTokens, &d.RequestCount); err != nil {
			return nil, fmt.Errorf("daily usage: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// Status is a budget with its window's spend, for GET /api/budgets and
// `agentd usage`.
type Status struct {
	Budget
	SpentUSD     float64   `json:"spent_usd"`
	RemainingUSD float64   `json:"remaining_usd"`
	WindowStart  time.Time `json:"window_start"`
	ResetsAt     time.Time `json:"resets_at"`
}

// Statuses are all budgets with what their current window has spent.
func (u *Usage) Statuses(ctx context.Context) ([]Status, error) {
	bs, err := u.Budgets(ctx)
	if err != nil {
		return nil, err
	}
	now := u.now()
	out := make([]Status, 0, len(bs))
	for _, b := range bs {
		spent, err := u.spent(ctx, b, now)
		if err != nil {
			return nil, fmt.Errorf("budget %s: %w", b.ID, err)
		}
		out = append(out, Status{Budget: b, SpentUSD: spent, RemainingUSD: max(0, b.LimitUSD-spent),
			WindowStart: windowStart(b.Window, now), ResetsAt: windowEnd(b.Window, now)})
	}
	return out, nil
}

// Pricing is GET /api/usage/pricing.
func (u *Usage) Pricing() map[string]Price {
	if u.opt.Prices == nil {
		return map[string]Price{}
	}
	return u.opt.Prices()
}
