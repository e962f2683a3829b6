package cli

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"
)

// Flags of `agentd task add`.
var (
	taskName, taskCron, taskPrompt, taskTZ, taskDeliver, taskModel, taskSession, taskCatchUp string
)

func init() {
	register(&command{
		name: "task",
		args: "list DIR | add DIR --name N --cron EXPR --prompt TEXT [flags] | run|enable|disable|remove DIR ID",
		summary: `manage the scheduled tasks of the running daemon
A task runs its prompt as a turn on a cron schedule and delivers the reply
to the sessions of --deliver (tg:155490357 reaches that Telegram chat).
--cron takes 5 fields (minute hour day month weekday), an optional leading
seconds field, a macro (@hourly, @daily, @weekly, @monthly, @every 90m) or
@once:2026-12-24T18:00:00+01:00. list shows each task's schedule, next run
and last status; run starts one at once (its reply is delivered as usual).
Talks to the daemon over its socket as the owner (admin); see
docs/scheduler.md.`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&taskName, "name", "", "add: the task's name")
			fs.StringVar(&taskCron, "cron", "", "add: when it runs (cron expression, macro or @once:RFC3339)")
			fs.StringVar(&taskPrompt, "prompt", "", "add: what the agent is asked each time")
			fs.StringVar(&taskTZ, "tz", "", "add: IANA time zone (default: scheduler.timezone, else the machine's)")
			fs.StringVar(&taskDeliver, "deliver", "", "add: comma-separated session ids that get the reply")
			fs.StringVar(&taskModel, "model", "", "add: model id for its turns (default: the session's)")
			fs.StringVar(&taskSession, "session", "", "add: session its turns run in (default: scheduler:<id>)")
			fs.StringVar(&taskCatchUp, "catch-up", "", "add: once or skip: what a slot missed while agentd was down does (default: once for daily-like schedules)")
		},
		run: runTask,
	})
}

// taskView mirrors the fields of scheduler.Task the CLI shows.
type taskView struct {
	ID             string   `json:"id"`
	Name           string   `json:"name"`
	CronExpression string   `json:"cron_expression"`
	EffectiveTZ    string   `json:"effective_timezone"`
	DeliverTo      []string `json:"deliver_to"`
	Enabled        bool     `json:"enabled"`
	NextRunISO     *string  `json:"next_run_iso"`
	LastStatus     string   `json:"last_status"`
}

func runTask(_ *flag.FlagSet, args []string) error {
	if len(args) == 0 {
		return usagef("missing subcommand: list, add, run, enable, disable or remove")
	}
	op := args[0]
	switch op {
	case "list", "add":
		if len(args) != 2 {
			return usagef("usage: agentd task %s DIR", op)
		}
	case "run", "enable", "disable", "remove":
		if len(args) != 3 {
			return usagef("usage: agentd task %s DIR ID", op)
		}
	default:
		return usagef("unknown subcommand %q", op)
	}
	d, dir, err := localDialer(args[1])
	if err != nil {
		return err
	}
	defer d.CloseIdle()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var path string
	if len(args) == 3 {
		path = "/api/scheduled-tasks/" + url.PathEscape(args[2])
	}
	var out struct {
		Task  taskView   `json:"task"`
		Tasks []taskView `json:"tasks"`
		RunID int64      `json:"run_id"`
	}
	switch op {
	case "list":
		err = d.GetJSON(ctx, "/api/scheduled-tasks", &out)
	case "add":
		in, ierr := taskInput()
		if ierr != nil {
			return ierr
		}
		err = d.PostJSON(ctx, "/api/scheduled-tasks", in, &out)
	case "run":
		err = d.PostJSON(ctx, path+"/run", nil, &out)
	case "enable", "disable":
		err = d.DoJSON(ctx, "PATCH", path, map[string]bool{"enabled": op == "enable"}, &out)
	case "remove":
		err = d.DoJSON(ctx, "DELETE", path, nil, nil)
	}
	if err != nil {
		return explainDial(err, dir)
	}
	switch op {
	case "list":
		return printTasks(out.Tasks)
	case "run":
		fmt.Fprintf(stdout, "task %s: run %d started (see GET /api/scheduled-tasks/%s/runs)\n", args[2], out.RunID, args[2])
	case "remove":
		fmt.Fprintf(stdout, "task %s removed\n", args[2])
	default:
		fmt.Fprintf(stdout, "task %s (%s): %s, next run %s\n", out.Task.ID, out.Task.Name, enabledWord(out.Task.Enabled), orDash(out.Task.NextRunISO))
	}
	return nil
}

// taskInput builds the create request from the add flags.
func taskInput() (map[string]any, error) {
	if taskName == "" || taskCron == "" || taskPrompt == "" {
		return nil, usagef("add needs --name, --cron and --prompt")
	}
	in := map[string]any{"name": taskName, "cron_expression": taskCron, "prompt": taskPrompt}
	for k, v := range map[string]string{"timezone": taskTZ, "model": taskModel, "session_id": taskSession, "catch_up": taskCatchUp} {
		if v != "" {
			in[k] = v
		}
	}
	if taskDeliver != "" {
		var ids []string
		for _, s := range strings.Split(taskDeliver, ",") {
			if s = strings.TrimSpace(s); s != "" {
				ids = append(ids, s)
			}
		}
		in["deliver_to"] = ids
	}
	return in, nil
}

func printTasks(tasks []taskView) error {
	if len(tasks) == 0 {
		fmt.Fprintln(stdout, "no scheduled tasks (add one with: agentd task add DIR --name … --cron … --prompt …)")
		return nil
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tNAME\tSCHEDULE\tZONE\tSTATE\tNEXT RUN\tLAST\tDELIVER TO")
	for _, t := range tasks {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.CronExpression, t.EffectiveTZ, enabledWord(t.Enabled),
			orDash(t.NextRunISO), dash(t.LastStatus), dash(strings.Join(t.DeliverTo, ",")))
	}
	return w.Flush()
}

func enabledWord(on bool) string {
	if on {
		return "enabled"
	}
	return "disabled"
}

func orDash(s *string) string {
	if s == nil {
		return "-"
	}
	return *s
}
