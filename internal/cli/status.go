package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/agentd/agentd/client"
	"github.com/agentd/agentd/devicecert"
	"github.com/agentd/agentd/internal/agentdir"
)

var statusJSON bool

func init() {
	register(&command{
		name: "status",
		args: "DIR",
		summary: `show the running daemon at a glance
Asks the agentd serving DIR over its unix socket, as the owner, for its
health, listeners, iroh NodeId, bridges, devices and sessions. Exits 0 when
it is up, 1 with a clear message when it is not.`,
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&statusJSON, "json", false, "print one JSON object for scripts: agent_info and the sessions, devices and bridges lists")
		},
		run: runStatus,
	})
}

// localDialer returns a client for the daemon serving dir, authenticated
// with the owner identity that `agentd init` created.
func localDialer(arg string) (*client.Dialer, agentdir.Dir, error) {
	dir, err := agentdir.Open(arg)
	if err != nil {
		return nil, dir, err
	}
	if err := dir.Check(); err != nil {
		return nil, dir, err
	}
	id, err := devicecert.LoadIdentity(dir.OwnerIdentity())
	if err != nil {
		return nil, dir, fmt.Errorf("load owner identity: %w", err)
	}
	if _, err := os.Stat(dir.Socket()); errors.Is(err, os.ErrNotExist) {
		return nil, dir, fmt.Errorf("%w in %s (no socket %s; start it with: agentd serve %s)", errNotRunning, dir.Root, dir.Socket(), arg)
	}
	return client.Unix(dir.Socket(), id), dir, nil
}

// explainDial turns "connection refused" into "not running".
func explainDial(err error, dir agentdir.Dir) error {
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("%w in %s (stale socket %s)", errNotRunning, dir.Root, dir.Socket())
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("agentd in %s does not answer: %w", dir.Root, err)
	}
	return err
}

func runStatus(_ *flag.FlagSet, args []string) error {
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
	var info map[string]any
	if err := d.GetJSON(ctx, "/api/agent-info", &info); err != nil {
		return explainDial(err, dir)
	}
	if statusJSON {
		out := map[string]any{"agent_info": info}
		for _, sec := range statusSections {
			var v any
			if err := d.GetJSON(ctx, sec.path, &v); err != nil {
				v = map[string]any{"error": err.Error()}
			}
			out[sec.title] = v
		}
		return printJSON(out)
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "agentd\tup\n")
	for _, k := range []string{"name", "version", "dir", "network_id", "node_id"} {
		if v, ok := info[k]; ok && v != "" && v != nil {
			fmt.Fprintf(w, "%s\t%v\n", k, v)
		}
	}
	if up, ok := info["uptime_seconds"].(float64); ok {
		fmt.Fprintf(w, "uptime\t%s\n", time.Duration(up)*time.Second)
	}
	printListeners(w, info["listeners"])
	if ir, ok := info["iroh"].(map[string]any); ok {
		relay, _ := ir["relay"].(string)
		if relay == "" {
			relay = "none"
		}
		fmt.Fprintf(w, "iroh\t%v, addrs %v, relay %s, restarts %v\n", ir["state"], ir["addrs"], relay, ir["restarts"])
		if e, ok := ir["last_error"].(string); ok && e != "" {
			fmt.Fprintf(w, "iroh last error\t%s\n", e)
		}
	}
	if v, ok := info["voice"].(map[string]any); ok {
		fmt.Fprintf(w, "voice\tstt %v; tts %v\n", v["stt"], v["tts"])
	}
	for _, sec := range statusSections {
		var v any
		if err := d.GetJSON(ctx, sec.path, &v); err != nil {
			fmt.Fprintf(w, "%s\t(unavailable: %v)\n", sec.title, err)
			continue
		}
		sec.print(w, v)
	}
	return w.Flush()
}

func printListeners(w io.Writer, v any) {
	m, ok := v.(map[string]any)
	if !ok {
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "listener %s\t%v\n", k, m[k])
	}
}

type statusSection struct {
	title string
	path  string
	print func(w io.Writer, v any)
}

// statusSections are the REST lists `agentd status` summarises.
var statusSections = []statusSection{
	{"sessions", "/api/sessions", func(w io.Writer, v any) {
		fmt.Fprintf(w, "sessions\t%d\n", countList(v, "sessions"))
	}},
	{"devices", "/api/devices", func(w io.Writer, v any) {
		fmt.Fprintf(w, "devices\t%d\n", countList(v, "devices"))
	}},
	{"bridges", "/api/bridges", func(w io.Writer, v any) {
		list := listOf(v, "bridges")
		if len(list) == 0 {
			fmt.Fprintf(w, "bridges\tnone configured\n")
		}
		for _, b := range list {
			m, _ := b.(map[string]any)
			var extra []string
			platform, _ := m["platform_status"].(string)
			lastErr, _ := m["last_error"].(string)
			for _, s := range []string{platform, newReason(platform, lastErr)} {
				if s != "" {
					extra = append(extra, s)
				}
			}
			fmt.Fprintf(w, "bridge %v\t%v %s\n", m["name"], m["state"], strings.Join(extra, "; "))
		}
	}},
}

func listOf(v any, key string) []any {
	switch t := v.(type) {
	case []any:
		return t
	case map[string]any:
		l, _ := t[key].([]any)
		return l
	}
	return nil
}

func countList(v any, key string) int { return len(listOf(v, key)) }

// printJSON writes v indented on stdout (the --json flags).
func printJSON(v any) error {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
