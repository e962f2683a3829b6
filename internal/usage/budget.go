package usage

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Budget is a spending rule (rest.md "Usage").
type Budget struct {
	ID       string    `json:"id"`
	Scope    string    `json:"scope"`  // all, model:<id>, source:<prefix>
	Window   string    `json:"window"` // day, month
	LimitUSD float64   `json:"limit_usd"`
	AlertAt  []float64 `json:"alert_at"`
	Enabled  bool      `json:"enabled"`
	Created  time.Time `json:"-"`
	Updated  time.Time `json:"-"`
}

func (b Budget) describe() string {
	if b.Scope == "all" {
		return fmt.Sprintf("%q (all usage)", b.ID)
	}
	return fmt.Sprintf("%q (%s)", b.ID, b.Scope)
}

// ErrNotFound is returned for an unknown budget id.
var ErrNotFound = errors.New("no such budget")

// InvalidError is a budget that breaks a rule; its text names the field.
type InvalidError struct{ Msg string }

func (e *InvalidError) Error() string { return e.Msg }

// Is makes every InvalidError match ErrInvalid.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

// ErrInvalid is matched by every InvalidError.
var ErrInvalid = errors.New("invalid budget")

var (
	idRe    = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	scopeRe = regexp.MustCompile(`^(all|model:[^\s]{1,128}|source:[a-z0-9_-]{1,32})$`)
)

func (b *Budget) validate() error {
	bad := func(f string, a ...any) error { return &InvalidError{Msg: fmt.Sprintf(f, a...)} }
	switch {
	case !idRe.MatchString(b.ID):
		return bad("id: %q is not a valid id (lowercase letters, digits, . _ -)", b.ID)
	case !scopeRe.MatchString(b.Scope):
		return bad(`scope: %q: want "all", "model:<id>" or "source:<prefix>"`, b.Scope)
	case b.Window != "day" && b.Window != "month":
		return bad(`window: %q: want "day" or "month"`, b.Window)
	case !(b.LimitUSD > 0) || b.LimitUSD > 1e9:
		return bad("limit_usd: must be a positive amount in USD")
	}
	if b.AlertAt == nil {
		b.AlertAt = []float64{}
	}
	slices.Sort(b.AlertAt)
	b.AlertAt = slices.Compact(b.AlertAt)
	for _, a := range b.AlertAt {
		if !(a > 0 && a < 1) {
			return bad("alert_at: %v: each threshold is a fraction of the limit between 0 and 1 (e.g. 0.8)", a)
		}
	}
	return nil
}

// applies reports whether b counts a call of model from source.
func (b Budget) applies(model, source string) bool {
	switch {
	case b.Scope == "all":
		return true
	case strings.HasPrefix(b.Scope, "model:"):
		return b.Scope[len("model:"):] == model
	default:
		return b.Scope[len("source:"):] == source
	}
}

// where is the SQL condition on turn_usage for b's scope, with its args.
func (b Budget) where() (string, []any) {
	switch {
	case strings.HasPrefix(b.Scope, "model:"):
		return " AND model = ?", []any{b.Scope[len("model:"):]}
	case strings.HasPrefix(b.Scope, "source:"):
		return " AND source = ?", []any{b.Scope[len("source:"):]}
	}
	return "", nil
}

// spent is what b's scope has cost in the window holding now.
func (u *Usage) spent(ctx context.Context, b Budget, now time.Time) (float64, error) {
	cond, args := b.where()
	var v float64
	err := u.db.QueryRowContext(ctx, `SELECT COALESCE(SUM(cost_usd), 0) FROM turn_usage WHERE created_at >= ?`+cond,
		append([]any{windowStart(b.Window, now).UnixMilli()}, args...)...).Scan(&v)
	return v, err
}

const budgetCols = `id, scope, period, limit_usd, alert_at, enabled, created_at, updated_at`

func scanBudget(s interface{ Scan(...any) error }) (Budget, error) {
	var b Budget
	var alerts string
	var created, updated int64
	if err := s.Scan(&b.ID, &b.Scope, &b.Window, &b.LimitUSD, &alerts, &b.Enabled, &created, &updated); err != nil {
		return b, err
	}
	if err := json.Unmarshal([]byte(alerts), &b.AlertAt); err != nil || b.AlertAt == nil {
		b.AlertAt = []float64{}
	}
	b.Created, b.Updated = time.UnixMilli(created), time.UnixMilli(updated)
	return b, nil
}

// Budgets lists every budget by id.
func (u *Usage) Budgets(ctx context.Context) ([]Budget, error) {
	rows, err := u.db.QueryContext(ctx, `SELECT `+budgetCols+` FROM budgets ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list budgets: %w", err)
	}
	defer rows.Close()
	out := []Budget{}
	for rows.Next() {
		b, err := scanBudget(rows)
		if err != nil {
			return nil, fmt.Errorf("list budgets: %w", err)
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// matching are the enabled budgets that count a call of model from source.
func (u *Usage) matching(ctx context.Context, model, source string) ([]Budget, error) {
	all, err := u.cachedBudgets(ctx)
	if err != nil {
		return nil, err
	}
	var out []Budget
	for _, b := range all {
		if b.Enabled && b.applies(model, source) {
			out = append(out, b)
		}
	}
	return out, nil
}

// Budget returns one budget.
func (u *Usage) Budget(ctx context.Context, id string) (Budget, error) {
	b, err := scanBudget(u.db.QueryRowContext(ctx, `SELECT `+budgetCols+` FROM budgets WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return b, ErrNotFound
	}
	return b, err
}

// ErrExists is returned when creating a budget whose id is taken.
var ErrExists = errors.New("a budget with this id exists")

// Create stores a new budget; an empty id gets a random one.
func (u *Usage) Create(ctx context.Context, b Budget) (Budget, error) {
	if b.ID == "" {
		var r [4]byte
		rand.Read(r[:])
		b.ID = "b-" + hex.EncodeToString(r[:])
	}
	if err := b.validate(); err != nil {
		return b, err
	}
	alerts, _ := json.Marshal(b.AlertAt)
	now := u.now()
	res, err := u.db.ExecContext(ctx, `INSERT INTO budgets(`+budgetCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING`,
		b.ID, b.Scope, b.Window, b.LimitUSD, string(alerts), b.Enabled, now.UnixMilli(), now.UnixMilli())
	if err != nil {
		return b, fmt.Errorf("create budget: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return b, ErrExists
	}
	u.changed("created", b.ID)
	return u.Budget(ctx, b.ID)
}

// Update replaces the budget's fields (its id stays).
func (u *Usage) Update(ctx context.Context, id string, fn func(*Budget)) (Budget, error) {
	b, err := u.Budget(ctx, id)
	if err != nil {
		return b, err
	}
	fn(&b)
	b.ID = id
	if err := b.validate(); err != nil {
		return b, err
	}
	alerts, _ := json.Marshal(b.AlertAt)
	if _, err := u.db.ExecContext(ctx, `UPDATE budgets SET scope = ?, period = ?, limit_usd = ?, alert_at = ?, enabled = ?, updated_at = ? WHERE id = ?`,
		b.Scope, b.Window, b.LimitUSD, string(alerts), b.Enabled, u.now().UnixMilli(), id); err != nil {
		return b, fmt.Errorf("update budget: %w", err)
	}
	u.changed("updated", id)
	return u.Budget(ctx, id)
}

// Delete removes a budget.
func (u *Usage) Delete(ctx context.Context, id string) error {
	res, err := u.db.ExecContext(ctx, `DELETE FROM budgets WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("delete budget: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	u.changed("deleted", id)
	return nil
}

// cachedBudgets is Budgets, read from the database only after a change.
func (u *Usage) cachedBudgets(ctx context.Context) ([]Budget, error) {
	u.bmu.Lock()
	all, gen := u.budgets, u.bgen
	u.bmu.Unlock()
	if all != nil {
		return all, nil // never changed in place: a change replaces it
	}
	all, err := u.Budgets(ctx)
	if err != nil {
		return nil, err
	}
	u.bmu.Lock()
	if u.bgen == gen {
		u.budgets = all
	}
	u.bmu.Unlock()
	return all, nil
}

func (u *Usage) changed(action, id string) {
	u.bmu.Lock()
	u.budgets, u.bgen = nil, u.bgen+1
	u.bmu.Unlock()
	if u.opt.OnChange != nil {
		u.opt.OnChange("budget", action, id)
	}
}
