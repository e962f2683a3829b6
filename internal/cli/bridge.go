package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"github.com/agentd/agentd/internal/supervisor"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"
)

func init() {
	register(&command{
		name: "bridge",
		args: "list DIR | enable|disable|restart DIR NAME | login DIR NAME [--phone +NUMBER]",
		summary: `control the chat bridges of the running daemon
list shows each bridge's state, pid, restarts, uptime, last error and
platform status (e.g. "logged out"). enable and disable also write
bridges.NAME.enabled to openagent.yaml (comments kept); restart restarts one
bridge and touches no other. list and restart need the daemon running;
enable and disable only edit the file when it is not. login starts a login
round on a bridge that links a device (WhatsApp): it shows the QR codes in
the terminal as they rotate, offers a new round when they expire, and ends
with "linked as +…"; --phone asks for an 8-character pair code instead.`,
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&bridgeJSON, "json", false, "list: print GET /api/bridges as JSON (for scripts)")
			fs.StringVar(&bridgePhone, "phone", "", "login: pair-code login for this phone number (+391234567)")
		},
		run: runBridge,
	})
}

var bridgeJSON bool

// bridgeStatus mirrors supervisor.Status as served by GET /api/bridges.
type bridgeStatus struct {
	Name           string    `json:"name"`
	State          string    `json:"state"`
	PID            int       `json:"pid"`
	Restarts       int       `json:"restarts"`
	LastError      string    `json:"last_error"`
	StartedAt      time.Time `json:"started_at"`
	PlatformStatus string    `json:"platform_status"`
	Enabled        bool      `json:"enabled"`
	AllowedUsers   []string  `json:"allowed_users"`
}

func runBridge(_ *flag.FlagSet, args []string) error {
	if len(args) == 0 {
		return usagef("missing subcommand: list, enable, disable, restart or login")
	}
	op := args[0]
	switch op {
	case "list":
		if len(args) != 2 {
			return usagef("usage: agentd bridge list DIR")
		}
	case "enable", "disable", "restart", "login":
		if len(args) != 3 {
			return usagef("usage: agentd bridge %s DIR NAME", op)
		}
	default:
		return usagef("unknown subcommand %q", op)
	}
	d, dir, err := localDialer(args[1])
	if err != nil {
		// Enabling or disabling only edits the config, which works with
		// the daemon stopped; the next serve applies it.
		if isNotRunning(err) && (op == "enable" || op == "disable") {
			if err := supervisor.WriteEnabled(dir.Config(), args[2], op == "enable"); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "bridge %s: %sd in %s (agentd is not running; applies at the next start)\n", args[2], op, dir.Config())
			return nil
		}
		return err
	}
	defer d.CloseIdle()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if op == "list" && bridgeJSON {
		var raw json.RawMessage
		if err := d.GetJSON(ctx, "/api/bridges", &raw); err != nil {
			return explainDial(err, dir)
		}
		return printJSON(raw)
	}
	if op == "list" {
		var out struct {
			Bridges []bridgeStatus `json:"bridges"`
		}
		if err := d.GetJSON(ctx, "/api/bridges", &out); err != nil {
			return explainDial(err, dir)
		}
		if len(out.Bridges) == 0 {
			fmt.Fprintln(stdout, "no bridges configured (see bridges: in openagent.yaml)")
			return nil
		}
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "NAME\tSTATE\tPID\tRESTARTS\tUPTIME\tPLATFORM\tALLOWED USERS\tLAST ERROR")
		for _, b := range out.Bridges {
			up := "-"
			if b.State == "running" && !b.StartedAt.IsZero() {
				up = time.Since(b.StartedAt).Round(time.Second).String()
			}
			fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", b.Name, b.State, b.PID, b.Restarts, up,
				dash(b.PlatformStatus), dash(strings.Join(b.AllowedUsers, ",")), dash(b.LastError))
		}
		return w.Flush()
	}
	if op == "login" {
		return explainDial(bridgeLogin(d, args[1], args[2]), dir)
	}
	path := "/api/bridges/" + url.PathEscape(args[2])
	var before bridgeStatus
	if err := d.GetJSON(ctx, path, &before); err != nil {
		return explainDial(err, dir)
	}
	var st bridgeStatus
	if err := d.PostJSON(ctx, path+"/"+op, nil, &st); err != nil {
		return explainDial(err, dir)
	}
	msg, ok := controlOutcome(op, before, st)
	fmt.Fprintf(stdout, "bridge %s: %s\n", st.Name, msg)
	if !ok {
		return fmt.Errorf("bridge %s did not come up; see agentd bridge list %s and logs/bridge-%s.log", st.Name, args[1], st.Name)
	}
	return nil
}

// controlOutcome says what an enable, disable or restart did, from the
// status before and the one the daemon answered with once the launch had
// run or failed; ok is false when the bridge should run and does not.
func controlOutcome(op string, before, after bridgeStatus) (string, bool) {
	done := map[string]string{"enable": "enabled", "disable": "disabled", "restart": "restarted"}[op]
	switch {
	case op == "disable":
		if before.State == "stopped" && !before.Enabled {
			return "already disabled; stopped", true
		}
		return "disabled and stopped", after.State == "stopped"
	case after.State == "running":
		msg := fmt.Sprintf("%s; running as pid %d", done, after.PID)
		if op == "restart" && before.PID != 0 {
			msg += fmt.Sprintf(" (was pid %d)", before.PID)
		}
		if op == "enable" && before.State == "running" {
			msg = fmt.Sprintf("already enabled; running as pid %d", after.PID)
		}
		return msg, true
	case after.State == "starting":
		return done + "; still starting (see agentd bridge list)", true
	}
	msg := fmt.Sprintf("%s, but it is %s", done, after.State)
	if after.LastError != "" {
		msg += ": " + after.LastError
	}
	return msg, false
}
