package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/agentd/agentd/internal/usage"
)

var usageJSON bool

func init() {
	register(&command{
		name: "usage",
		args: "DIR",
		summary: `show what the agent spent this month, and its budgets
Asks the agentd serving DIR (as the owner) for this UTC month's spending by
model and by source (cli, tg, dc, wa, scheduler, workflow), and lists the
budgets with what their current day or month has spent and what is left.
Budgets are changed over REST (POST/PUT/DELETE /api/budgets, admin).`,
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&usageJSON, "json", false, "print the answers of /api/usage and /api/budgets as one JSON object")
		},
		run: runUsage,
	})
}

func runUsage(_ *flag.FlagSet, args []string) error {
	arg, err := oneDir(args)
	if err != nil {
		return err
	}
	d, dir, err := localDialer(arg)
	if err != nil {
		return err
	}
	defer d.CloseIdle()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var raw struct {
		Usage   json.RawMessage `json:"usage"`
		Budgets json.RawMessage `json:"budgets"`
	}
	var budgets struct {
		Budgets json.RawMessage `json:"budgets"`
	}
	if err := d.GetJSON(ctx, "/api/usage", &raw.Usage); err != nil {
		return explainDial(err, dir)
	}
	if err := d.GetJSON(ctx, "/api/budgets", &budgets); err != nil {
		return explainDial(err, dir)
	}
	raw.Budgets = budgets.Budgets
	if usageJSON {
		return printJSON(raw)
	}
	var m usage.Month
	var bs []usage.Status
	if err := json.Unmarshal(raw.Usage, &m); err != nil {
		return fmt.Errorf("read /api/usage: %w", err)
	}
	if err := json.Unmarshal(raw.Budgets, &bs); err != nil {
		return fmt.Errorf("read /api/budgets: %w", err)
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "month\t%s\nspent\t$%.4f\n", m.Month, m.MonthlySpend)
	if m.MonthlyBudget != nil && m.Remaining != nil {
		fmt.Fprintf(w, "monthly budget\t$%.4f (left $%.4f)\n", *m.MonthlyBudget, *m.Remaining)
	}
	printCosts(w, "by model", m.ByModel)
	printCosts(w, "by source", m.BySource)
	if len(bs) == 0 {
		fmt.Fprintf(w, "budgets\tnone\n")
	} else {
		fmt.Fprintf(w, "budgets\n  ID\tSCOPE\tWINDOW\tLIMIT\tSPENT\tLEFT\tRESETS (UTC)\n")
		for _, b := range bs {
			id := b.ID
			if !b.Enabled {
				id += " (off)"
			}
			fmt.Fprintf(w, "  %s\t%s\t%s\t$%.4f\t$%.4f\t$%.4f\t%s\n", id, b.Scope, b.Window, b.LimitUSD, b.SpentUSD, b.RemainingUSD,
				b.ResetsAt.UTC().Format("2006-01-02 15:04"))
		}
	}
	return w.Flush()
}

func printCosts(w *tabwriter.Writer, title string, m map[string]float64) {
	if len(m) == 0 {
		fmt.Fprintf(w, "%s\tnothing yet\n", title)
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintf(w, "%s\n", title)
	for _, k := range keys {
		fmt.Fprintf(w, "  %s\t$%.4f\n", k, m[k])
	}
}
