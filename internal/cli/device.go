package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/agentd/agentd/client"
	"github.com/agentd/agentd/internal/coordinator"
	"github.com/agentd/agentd/internal/store"
)

func init() {
	register(&command{
		name: "device",
		args: "list DIR | revoke DIR <pubkey-prefix|handle>",
		summary: `list or revoke the devices of the network
list shows each device's handle, label, capabilities, status and last use.
revoke takes a client id (public key hex) prefix or a handle; the device's
open connections are closed at once. Both go through the running daemon,
as the owner; when it is not running they work on the database directly.`,
		run: runDevice,
	})
}

func runDevice(_ *flag.FlagSet, args []string) error {
	if len(args) == 0 {
		return usagef("missing subcommand: list or revoke")
	}
	switch args[0] {
	case "list":
		dir, err := oneDir(args[1:])
		if err != nil {
			return err
		}
		return deviceList(dir)
	case "revoke":
		if len(args) != 3 {
			return usagef("usage: agentd device revoke DIR <pubkey-prefix|handle>")
		}
		return deviceRevoke(args[1], args[2])
	default:
		return usagef("unknown subcommand %q (want list or revoke)", args[0])
	}
}

// withDaemonOrDB runs viaREST against the running daemon, or viaDB on the
// database when the daemon is not running.
func withDaemonOrDB(arg string, viaREST func(context.Context, *client.Dialer) error,
	viaDB func(context.Context, *coordinator.Coordinator) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, dir, err := localDialer(arg)
	if err == nil {
		defer d.CloseIdle()
		if err = explainDial(viaREST(ctx, d), dir); !isNotRunning(err) {
			return err
		}
	} else if !isNotRunning(err) {
		return err
	}
	st, err := store.Open(ctx, dir.DB())
	if err != nil {
		return err
	}
	defer st.Close()
	c, err := coordinator.Open(ctx, dir.Root, st)
	if err != nil {
		return err
	}
	return viaDB(ctx, c)
}

func isNotRunning(err error) bool { return errors.Is(err, errNotRunning) }

func deviceList(arg string) error {
	var devs []coordinator.Device
	err := withDaemonOrDB(arg, func(ctx context.Context, d *client.Dialer) error {
		var out struct {
			Devices []coordinator.Device `json:"devices"`
		}
		err := d.GetJSON(ctx, "/api/devices", &out)
		devs = out.Devices
		return err
	}, func(ctx context.Context, c *coordinator.Coordinator) error {
		var err error
		devs, err = c.Devices(ctx)
		return err
	})
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CLIENT ID\tHANDLE\tLABEL\tCAPABILITIES\tSTATUS\tLAST SEEN")
	for _, dv := range devs {
		seen := "never"
		if dv.LastSeenAt != nil {
			seen = dv.LastSeenAt.Local().Format(time.DateTime)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", short(dv.ClientID), dv.Handle, dash(dv.Label),
			strings.Join(dv.Capabilities, ","), dv.Status, seen)
	}
	return w.Flush()
}

func deviceRevoke(arg, who string) error {
	var revoked []coordinator.Device
	err := withDaemonOrDB(arg, func(ctx context.Context, d *client.Dialer) error {
		var out struct {
			Revoked []coordinator.Device `json:"revoked"`
		}
		err := d.PostJSON(ctx, "/api/devices/"+url.PathEscape(who)+"/revoke", nil, &out)
		revoked = out.Revoked
		return err
	}, func(ctx context.Context, c *coordinator.Coordinator) error {
		var err error
		revoked, err = c.Revoke(ctx, who)
		return err
	})
	if err != nil {
		return err
	}
	for _, dv := range revoked {
		fmt.Fprintf(stdout, "revoked %s (%s)\n", dv.ClientID, dv.Handle)
	}
	return nil
}

func short(id string) string {
	if len(id) > 16 {
		return id[:16]
	}
	return id
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
