package usage

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/provider"
	"github.com/agentd/agentd/internal/store/storetest"
)

type fixture struct {
	u      *Usage
	db     *sql.DB
	now    time.Time
	alerts []Alert
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	st := storetest.Open(t, t.TempDir())
	f := &fixture{db: st.DB(), now: time.Date(2026, 12, 15, 12, 0, 0, 0, time.UTC)}
	f.u = Open(Options{DB: st.DB(), Now: func() time.Time { return f.now },
		OnAlert: func(a Alert) { f.alerts = append(f.alerts, a) },
		Prices:  func() map[string]Price { return map[string]Price{"m": {1, 2}} }})
	return f
}

// turn stores a usage row as the session store does.
func (f *fixture) turn(t *testing.T, at time.Time, session, model string, cost float64) {
	t.Helper()
	if _, err := f.db.Exec(`INSERT INTO turn_usage(session_id, client_id, model, prompt_tokens, completion_tokens, cost_usd, status, created_at,
		input_price_per_mtok, output_price_per_mtok, source) VALUES (?, 'c', ?, 10, 20, ?, 'ok', ?, 1, 2, ?)`,
		session, model, cost, at.UnixMilli(), Source(session)); err != nil {
		t.Fatal(err)
	}
}

func call(session, model string) Call {
	return Call{SessionID: session, Model: model, Price: Price{1, 2},
		Request: &provider.Request{MaxTokens: 1000, Messages: []provider.Message{{Role: provider.RoleUser, Content: "hi"}}}}
}

func TestBudgetStopsTheCallThatCouldPassIt(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.u.Create(ctx, Budget{ID: "tg-day", Scope: "source:tg", Window: "day", LimitUSD: 0.01, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	f.turn(t, f.now.Add(-24*time.Hour), "tg:1", "m", 5) // yesterday: another window
	f.turn(t, f.now.Add(-time.Hour), "tg:1", "m", 0.007)
	f.turn(t, f.now.Add(-time.Hour), "cli-session", "m", 5) // another source
	// worst case: 1000 output tokens at $2/M = $0.002 (+ a few prompt tokens)
	if err := f.u.BeforeCall(ctx, call("tg:2", "m")); err != nil {
		t.Fatalf("a call that fits: %v", err)
	}
	c := call("tg:2", "m")
	c.TurnSoFar = provider.Usage{CompletionTokens: 1000} // $0.002 used by this turn's earlier round
	err := f.u.BeforeCall(ctx, c)
	if !IsBudget(err) || !strings.HasPrefix(err.Error(), `budget reached: the daily budget "tg-day" (source:tg) of $0.01 has $0.009 spent`) {
		t.Fatalf("over budget: %v", err)
	}
	if err := f.u.BeforeCall(ctx, call("dc:1", "m")); err != nil {
		t.Errorf("another source is not limited: %v", err)
	}
	if len(f.alerts) != 1 || f.alerts[0].Threshold != 1 {
		t.Errorf("alerts = %+v, want one limit alert", f.alerts)
	}
	f.u.BeforeCall(ctx, c)
	if len(f.alerts) != 1 {
		t.Errorf("limit alert raised twice in one window: %+v", f.alerts)
	}
	f.now = f.now.Add(24 * time.Hour) // a new day
	if err := f.u.BeforeCall(ctx, c); err != nil {
		t.Errorf("next day: %v", err)
	}
}

func TestAlertsOncePerWindowAcrossRestarts(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.u.Create(ctx, Budget{ID: "all", Scope: "all", Window: "month", LimitUSD: 10, AlertAt: []float64{0.8, 0.5}, Enabled: true})
	f.turn(t, f.now, "s", "m", 4)
	f.u.TurnRecorded(ctx, "s", "m")
	f.turn(t, f.now, "s", "m", 2) // 60%
	f.u.TurnRecorded(ctx, "s", "m")
	// A restarted daemon: a new Usage on the same database.
	var again []Alert
	u2 := Open(Options{DB: f.db, Now: func() time.Time { return f.now }, OnAlert: func(a Alert) { again = append(again, a) }})
	u2.TurnRecorded(ctx, "s", "m")
	f.turn(t, f.now, "s", "m", 3) // 90%
	u2.TurnRecorded(ctx, "s", "m")
	if len(f.alerts) != 1 || f.alerts[0].Threshold != 0.5 || len(again) != 1 || again[0].Threshold != 0.8 {
		t.Errorf("alerts before restart %+v, after %+v; want 0.5 once, then 0.8 once", f.alerts, again)
	}
	if !strings.Contains(again[0].Text, "80% of the monthly limit of $10.00 is spent ($9.00)") {
		t.Errorf("alert text %q", again[0].Text)
	}
}

func TestReports(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.turn(t, f.now, "tg:1", "m", 0.5)
	f.turn(t, f.now.Add(-time.Hour), "s", "m", 0.25)
	f.turn(t, f.now.Add(-48*time.Hour), "s", "x", 1)
	f.turn(t, time.Date(2026, 11, 30, 23, 0, 0, 0, time.UTC), "s", "m", 100) // last month
	f.u.Create(ctx, Budget{ID: "all", Scope: "all", Window: "month", LimitUSD: 10, Enabled: true})
	m, err := f.u.Month(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.Month != "2026-12" || m.MonthlySpend != 1.75 || m.ByModel["m"] != 0.75 || m.BySource["tg"] != 0.5 || m.BySource["cli"] != 1.25 ||
		*m.MonthlyBudget != 10 || *m.Remaining != 8.25 {
		t.Errorf("month %+v", m)
	}
	ds, err := f.u.Daily(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(ds)
	want := `[{"date":"2026-12-15","model":"m","cost":0.75,"input_tokens":20,"output_tokens":40,"request_count":2},` +
		`{"date":"2026-12-13","model":"x","cost":1,"input_tokens":10,"output_tokens":20,"request_count":1}]`
	if string(b) != want {
		t.Errorf("daily %s\nwant  %s", b, want)
	}
}

func TestBudgetREST(t *testing.T) {
	f := newFixture(t)
	mux := http.NewServeMux()
	for _, r := range Routes(f.u) {
		mux.Handle(r.Pattern, r.Handler)
	}
	do := func(method, path, body string) (int, string) {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
		return rec.Code, rec.Body.String()
	}
	for _, tc := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"POST", "/api/budgets", `{"id":"b1","scope":"all","window":"day","limit_usd":1,"alert_at":[0.8,0.5]}`, 201, `"alert_at":[0.5,0.8]`},
		{"POST", "/api/budgets", `{"id":"b1","limit_usd":1}`, 409, "exists"},
		{"POST", "/api/budgets", `{"scope":"everything","limit_usd":1}`, 400, `scope: \"everything\"`},
		{"POST", "/api/budgets", `{"limit_usd":-1}`, 400, "limit_usd: must be a positive amount"},
		{"POST", "/api/budgets", `{"limit_usd":1,"alert_at":[1.5]}`, 400, "alert_at: 1.5"},
		{"POST", "/api/budgets", `{"limit_usd":1,"window":"week"}`, 400, `window: \"week\"`},
		{"PUT", "/api/budgets/b1", `{"limit_usd":2,"enabled":false}`, 200, `"limit_usd":2,"alert_at":[0.5,0.8],"enabled":false`},
		{"PUT", "/api/budgets/nope", `{"limit_usd":2}`, 404, "not_found"},
		{"GET", "/api/budgets", ``, 200, `"spent_usd":0,"remaining_usd":2`},
		{"GET", "/api/usage/daily?days=0", ``, 400, "days: want a whole number from 1 to 366"},
		{"GET", "/api/usage/daily?days=367", ``, 400, "days"},
		{"GET", "/api/usage/pricing", ``, 200, `{"pricing":{"m":{"input_cost_per_million":1,"output_cost_per_million":2}}}`},
		{"GET", "/api/usage", ``, 200, `"monthly_budget":null,"remaining":null`},
		{"DELETE", "/api/budgets/b1", ``, 200, `"ok":true`},
		{"DELETE", "/api/budgets/b1", ``, 404, "not_found"},
	} {
		code, body := do(tc.method, tc.path, tc.body)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s %s %s = %d %s; want %d with %s", tc.method, tc.path, tc.body, code, body, tc.code, tc.want)
		}
	}
}

func TestWorstCase(t *testing.T) {
	req := &provider.Request{System: strings.Repeat("s", 400), Messages: []provider.Message{{Content: strings.Repeat("m", 384)}}}
	// (400 + 384 + 16) / 4 + 1 = 201 prompt tokens, 4096 output tokens
	if got, want := WorstCase(req, Price{1e6, 1e6}), float64(201+provider.DefaultMaxTokens); got != want {
		t.Errorf("worst case %v, want %v", got, want)
	}
}

// Turns running at once hold what their calls may cost: two that would
// each fit a budget are not both let through when together they could
// pass it, and a turn that ended no longer holds anything.
func TestRunningTurnsHoldTheirWorstCase(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.u.Create(ctx, Budget{ID: "tg-day", Scope: "source:tg", Window: "day", LimitUSD: 0.01, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	f.turn(t, f.now.Add(-time.Hour), "tg:1", "m", 0.005)
	// Each call's worst case is ~$0.002: two fit beside the $0.005 spent,
	// a third does not.
	a, b, c := call("tg:1", "m"), call("tg:2", "m"), call("tg:3", "m")
	a.Turn, b.Turn, c.Turn = "ta", "tb", "tc"
	for _, x := range []Call{a, b} {
		if err := f.u.BeforeCall(ctx, x); err != nil {
			t.Fatalf("turn %s: %v", x.Turn, err)
		}
	}
	err := f.u.BeforeCall(ctx, c)
	if !IsBudget(err) || !strings.Contains(err.Error(), "held by 2 other turn(s) running") {
		t.Fatalf("third turn while two run: %v", err)
	}
	if err := f.u.BeforeCall(ctx, a); err != nil { // a's next call replaces its own hold
		t.Fatalf("turn ta's second call: %v", err)
	}
	if err := f.u.BeforeCall(ctx, call("dc:1", "m")); err != nil {
		t.Fatalf("a source the budget does not cover: %v", err)
	}
	f.u.TurnEnded("tb")
	if err := f.u.BeforeCall(ctx, c); err != nil {
		t.Fatalf("third turn once one ended: %v", err)
	}
}

// The budgets are cached for the check before each call, and every change
// through the API is seen by the next call.
func TestBudgetChangesReachTheNextCall(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := call("tg:1", "m") // worst case ~$0.002
	if err := f.u.BeforeCall(ctx, c); err != nil {
		t.Fatalf("no budgets yet: %v", err)
	}
	if _, err := f.u.Create(ctx, Budget{ID: "tiny", Scope: "all", Window: "day", LimitUSD: 0.001, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	if err := f.u.BeforeCall(ctx, c); !IsBudget(err) {
		t.Fatalf("after the budget was created: %v, want a refusal", err)
	}
	if _, err := f.u.Update(ctx, "tiny", func(b *Budget) { b.Enabled = false }); err != nil {
		t.Fatal(err)
	}
	if err := f.u.BeforeCall(ctx, c); err != nil {
		t.Fatalf("after the budget was disabled: %v", err)
	}
	if _, err := f.u.Update(ctx, "tiny", func(b *Budget) { b.Enabled = true }); err != nil {
		t.Fatal(err)
	}
	if err := f.u.BeforeCall(ctx, c); !IsBudget(err) {
		t.Fatalf("after the budget was enabled again: %v, want a refusal", err)
	}
	if err := f.u.Delete(ctx, "tiny"); err != nil {
		t.Fatal(err)
	}
	if err := f.u.BeforeCall(ctx, c); err != nil {
		t.Fatalf("after the budget was deleted: %v", err)
	}
}

// BenchmarkBeforeCall: the check before every model call, with no budget
// (most agents) and with one that applies.
func BenchmarkBeforeCall(b *testing.B) {
	for _, n := range []int{0, 1} {
		b.Run(fmt.Sprintf("budgets=%d", n), func(b *testing.B) {
			f := newFixture(b)
			ctx := context.Background()
			if n == 1 {
				if _, err := f.u.Create(ctx, Budget{ID: "cap", Scope: "all", Window: "month", LimitUSD: 100, Enabled: true}); err != nil {
					b.Fatal(err)
				}
			}
			c := call("tg:1", "m")
			b.ResetTimer()
			for b.Loop() {
				if err := f.u.BeforeCall(ctx, c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
