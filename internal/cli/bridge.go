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
		args: "list DIR | enable|disable|restart DIR NAME | login DIR NAME [--phone +NUMBER]\n" +
			"       agentd bridge list|enable|disable|restart|login --remote enrolled|NODEID|TICKET [NAME]\n" +
			"       agentd bridge list|enable|disable|restart|login --proxy http://127.0.0.1:PORT [NAME]",
		summary: `control the chat bridges of the running daemon
list shows each bridge's state (running, needs_login, failed, backoff,
crashloop, stopped), pid, restarts, uptime, last error and platform status
(e.g. "needs_login: WhatsApp was logged out …"). enable and disable also write
bridges.NAME.enabled to openagent.yaml (comments kept); restart restarts one
bridge and touches no other. list and restart need the daemon running;
enable and disable only edit the file when it is not. login starts a login
round on a bridge that links a device (WhatsApp): it shows the QR codes in
the terminal as they rotate, offers a new round when they expire, and ends
with "linked as +…"; --phone asks for an 8-character pair code instead.

With DIR the command talks to the daemon on this machine as its owner. From
another machine, --remote goes over iroh with the identity this machine
enrolled with (agentd enroll; "enrolled" is the agent it enrolled with), and
--proxy through a running agentd proxy with that proxy's identity. Either
needs an admin device: enroll with an invitation made by
agentd invite DIR --role admin. Remotely every subcommand needs the daemon
running (it writes openagent.yaml for enable and disable).`,
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&bridgeJSON, "json", false, "list: print GET /api/bridges as JSON (for scripts)")
			fs.StringVar(&bridgePhone, "phone", "", "login: pair-code login for this phone number (+391234567)")
			fs.StringVar(&bridgeRemote, "remote", "", "control the agent this machine enrolled with, over iroh: \"enrolled\", a NodeId or a ticket (needs an admin device)")
			fs.StringVar(&bridgeProxy, "proxy", "", "control the agent through a running agentd proxy at this URL (http://127.0.0.1:PORT; its device must be an admin)")
		},
		run: runBridge,
	})
}

var (
	bridgeJSON   bool
	bridgeRemote string
	bridgeProxy  string
)

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

// bridgeNeedsName says which subcommands take a bridge NAME.
var bridgeNeedsName = map[string]bool{"list": false, "enable": true, "disable": true, "restart": true, "login": true}

func runBridge(_ *flag.FlagSet, args []string) error {
	if len(args) == 0 {
		return usagef("missing subcommand: list, enable, disable, restart or login")
	}
	op := args[0]
	needsName, known := bridgeNeedsName[op]
	if !known {
		return usagef("unknown subcommand %q", op)
	}
	if bridgeRemote != "" || bridgeProxy != "" {
		return runBridgeRemote(op, args[1:], needsName)
	}
	switch {
	case !needsName && len(args) != 2:
		return usagef("usage: agentd bridge list DIR")
	case needsName && len(args) != 3:
		return usagef("usage: agentd bridge %s DIR NAME", op)
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
	return explainDial(bridgeOp(d, args[1], op, args[2:]), dir)
}

// runBridgeRemote runs op on an agent reached with --remote or --proxy.
func runBridgeRemote(op string, operands []string, needsName bool) error {
	switch {
	case !needsName && len(operands) != 0:
		return usagef("usage: agentd bridge list --remote TARGET|--proxy URL (no DIR: the agent is elsewhere)")
	case needsName && len(operands) != 1:
		return usagef("usage: agentd bridge %s --remote TARGET|--proxy URL NAME (no DIR: the agent is elsewhere)", op)
	}
	ra, err := openRemoteAdmin(bridgeRemote, bridgeProxy)
	if err != nil {
		return err
	}
	defer ra.close()
	return ra.explain(bridgeOp(ra.api, ra.where, op, operands))
}

// bridgeOp runs op (name is operands[0] when op takes one); where is how
// the user named the agent (DIR, "--remote X"), for hints.
func bridgeOp(api adminAPI, where, op string, operands []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if op == "list" {
		return bridgeList(ctx, api)
	}
	name := operands[0]
	if op == "login" {
		return bridgeLogin(api, where, name)
	}
	path := "/api/bridges/" + url.PathEscape(name)
	var before bridgeStatus
	if err := api.GetJSON(ctx, path, &before); err != nil {
		return err
	}
	var st bridgeStatus
	if err := api.PostJSON(ctx, path+"/"+op, nil, &st); err != nil {
		return err
	}
	msg, ok := controlOutcome(op, before, st)
	fmt.Fprintf(stdout, "bridge %s: %s\n", st.Name, msg)
	if !ok {
		return fmt.Errorf("bridge %s did not come up; see agentd bridge list %s and logs/bridge-%s.log", st.Name, where, st.Name)
	}
	return nil
}

func bridgeList(ctx context.Context, api adminAPI) error {
	if bridgeJSON {
		var raw json.RawMessage
		if err := api.GetJSON(ctx, "/api/bridges", &raw); err != nil {
			return err
		}
		return printJSON(raw)
	}
	var out struct {
		Bridges []bridgeStatus `json:"bridges"`
	}
	if err := api.GetJSON(ctx, "/api/bridges", &out); err != nil {
		return err
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
			dash(b.PlatformStatus), dash(strings.Join(b.AllowedUsers, ",")), dash(newReason(b.PlatformStatus, b.LastError)))
	}
	return w.Flush()
}

// newReason is lastErr unless the platform status already says it (a
// failed or needs_login state reported by the platform is both), so that
// a listing shows the reason once.
func newReason(platform, lastErr string) string {
	if lastErr != "" && strings.Contains(platform, lastErr) {
		return ""
	}
	return lastErr
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
	case after.State == "needs_login":
		// Running, waiting for the operator: what a restart of an
		// unlinked bridge is expected to end in.
		return fmt.Sprintf("%s; running as pid %d, needs a login: %s", done, after.PID, after.LastError), true
	}
	msg := fmt.Sprintf("%s, but it is %s", done, after.State)
	if after.LastError != "" {
		msg += ": " + after.LastError
	}
	return msg, false
}
