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

func init() {
	register(&command{
		name: "mcp",
		args: "list DIR | add DIR NAME (--url URL | -- COMMAND [ARGS…]) | enable|disable|remove DIR NAME",
		summary: `manage the MCP tool servers of the running daemon (as admin)
list shows each server's state, tool count and last error (with the server's
last stderr lines when it failed). add starts a stdio server (COMMAND runs in
the agent directory with PATH, HOME and the --env variables only; run npm
servers from node_modules/.bin, not npx) or connects to a Streamable HTTP
server (--url, with --header). Values may be ${NAME} references to agentd's
environment; they are shown masked. Its tools are usable from the next turn,
named NAME__TOOL. enable, disable and remove apply at once, without a
restart; built-in tool sets (time, sessions, vault) can be disabled only.`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&mcpOpts.url, "url", "", "Streamable HTTP endpoint of the server (add)")
			fs.Var(&mcpOpts.env, "env", "KEY=VALUE for the server's environment, repeatable (add)")
			fs.Var(&mcpOpts.headers, "header", "Name=Value sent with every request to an --url server, repeatable (add)")
			fs.DurationVar(&mcpOpts.timeout, "timeout", 0, "bound of one tool call (add; default 60s)")
			fs.BoolVar(&mcpOpts.disabled, "disabled", false, "add the server without starting it (add)")
		},
		run: runMCP,
	})
}

var mcpOpts struct {
	url      string
	env      pairs
	headers  pairs
	timeout  time.Duration
	disabled bool
}

// pairs is a repeatable KEY=VALUE flag.
type pairs map[string]string

func (p *pairs) String() string { return "" }

func (p *pairs) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q: want KEY=VALUE", s)
	}
	if *p == nil {
		*p = pairs{}
	}
	(*p)[k] = v
	return nil
}

// mcpView mirrors mcp.View as served by /api/mcps.
type mcpView struct {
	Name      string   `json:"name"`
	Kind      string   `json:"kind"`
	Command   []string `json:"command"`
	URL       *string  `json:"url"`
	Enabled   bool     `json:"enabled"`
	Status    string   `json:"status"`
	Tools     []string `json:"tools"`
	LastError string   `json:"last_error"`
	Restarts  int      `json:"restarts"`
	PID       int      `json:"pid"`
}

func runMCP(_ *flag.FlagSet, args []string) error {
	if len(args) == 0 {
		return usagef("missing subcommand: list, add, enable, disable or remove")
	}
	op := args[0]
	addFlags := mcpOpts.url != "" || len(mcpOpts.env) > 0 || len(mcpOpts.headers) > 0 || mcpOpts.timeout != 0 || mcpOpts.disabled
	switch {
	case op == "list" && len(args) != 2:
		return usagef("usage: agentd mcp list DIR")
	case op == "add" && len(args) < 3:
		return usagef("usage: agentd mcp add DIR NAME (--url URL | -- COMMAND [ARGS…])")
	case (op == "enable" || op == "disable" || op == "remove") && len(args) != 3:
		return usagef("usage: agentd mcp %s DIR NAME", op)
	case op != "list" && op != "add" && op != "enable" && op != "disable" && op != "remove":
		return usagef("unknown subcommand %q", op)
	case op != "add" && addFlags:
		return usagef("--url, --env, --header, --timeout and --disabled are for add")
	}
	d, dir, err := localDialer(args[1])
	if err != nil {
		return err
	}
	defer d.CloseIdle()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out struct {
		MCP mcpView `json:"mcp"`
	}
	switch op {
	case "list":
		var list struct {
			MCPs []mcpView `json:"mcps"`
		}
		if err := d.GetJSON(ctx, "/api/mcps", &list); err != nil {
			return explainDial(err, dir)
		}
		return printMCPs(list.MCPs)
	case "add":
		in := map[string]any{"name": args[2], "enabled": !mcpOpts.disabled}
		if cmd := args[3:]; len(cmd) > 0 {
			if mcpOpts.url != "" {
				return usagef("give either --url or a command, not both")
			}
			in["command"] = cmd
		} else if mcpOpts.url != "" {
			in["url"] = mcpOpts.url
		} else {
			return usagef("add needs --url URL or -- COMMAND [ARGS…]")
		}
		if len(mcpOpts.env) > 0 {
			in["env"] = mcpOpts.env
		}
		if len(mcpOpts.headers) > 0 {
			in["headers"] = mcpOpts.headers
		}
		if mcpOpts.timeout > 0 {
			in["timeout_s"] = mcpOpts.timeout.Seconds()
		}
		if err := d.PostJSON(ctx, "/api/mcps", in, &out); err != nil {
			return explainDial(err, dir)
		}
		v := waitStarted(ctx, func(v *mcpView) error {
			var o struct {
				MCP mcpView `json:"mcp"`
			}
			err := d.GetJSON(ctx, "/api/mcps/"+url.PathEscape(args[2]), &o)
			*v = o.MCP
			return err
		}, out.MCP)
		fmt.Fprintf(stdout, "mcp %s: %s\n", v.Name, describeMCP(v))
		return nil
	case "remove":
		if err := d.DoJSON(ctx, "DELETE", "/api/mcps/"+url.PathEscape(args[2]), nil, nil); err != nil {
			return explainDial(err, dir)
		}
		fmt.Fprintf(stdout, "mcp %s: removed\n", args[2])
		return nil
	}
	if err := d.PostJSON(ctx, "/api/mcps/"+url.PathEscape(args[2])+"/"+op, nil, &out); err != nil {
		return explainDial(err, dir)
	}
	fmt.Fprintf(stdout, "mcp %s: %s\n", out.MCP.Name, describeMCP(out.MCP))
	return nil
}

// waitStarted polls a just-added server for up to 30 s until it is past
// "starting", so add can say whether it runs or why not.
func waitStarted(ctx context.Context, get func(*mcpView) error, v mcpView) mcpView {
	deadline := time.Now().Add(30 * time.Second)
	for v.Status == "starting" && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
		var next mcpView
		if get(&next) != nil {
			break
		}
		v = next
	}
	return v
}

func describeMCP(v mcpView) string {
	switch v.Status {
	case "running":
		return fmt.Sprintf("running, %d tools", len(v.Tools))
	case "failed":
		return "failed: " + v.LastError
	case "starting":
		if v.LastError != "" {
			return "starting (retrying after: " + v.LastError + ")"
		}
	}
	return v.Status
}

func printMCPs(list []mcpView) error {
	if len(list) == 0 {
		fmt.Fprintln(stdout, "no MCP servers (add one with agentd mcp add)")
		return nil
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tKIND\tSTATE\tTOOLS\tRESTARTS\tRUNS\tLAST ERROR")
	for _, v := range list {
		runs := "-"
		switch {
		case v.URL != nil:
			runs = *v.URL
		case len(v.Command) > 0:
			runs = strings.Join(v.Command, " ")
		}
		if len(runs) > 60 {
			runs = runs[:57] + "..."
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", v.Name, v.Kind, v.Status, len(v.Tools), v.Restarts, runs, dash(v.LastError))
	}
	return w.Flush()
}
