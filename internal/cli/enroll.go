package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/agentd/agentd/internal/enroll"
	"github.com/agentd/agentd/internal/identity"
)

var (
	enrollLabel    string
	enrollIdentity string
	enrollTimeout  time.Duration
)

func init() {
	register(&command{
		name: "enroll",
		args: "TICKET [--label L] [--identity FILE]",
		summary: `enroll this machine with an agent, from an invitation ticket
Creates a device key (also this machine's iroh NodeId), dials the agent over
iroh with the ticket's NodeId and addresses, redeems the one-time code for a
device certificate and stores both, with the agent's address, in
$XDG_CONFIG_HOME/agentd/identity.json (0600). Afterwards 'agentd chat
--remote' and 'agentd proxy' reach the agent from here.`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&enrollLabel, "label", "", "label of this device in the agent's device list (default: the host name)")
			fs.StringVar(&enrollIdentity, "identity", "", "identity file to create (default $AGENTD_IDENTITY or $XDG_CONFIG_HOME/agentd/identity.json)")
			fs.DurationVar(&enrollTimeout, "timeout", 60*time.Second, "give up after this long")
		},
		run: runEnroll,
	})
}

func runEnroll(_ *flag.FlagSet, args []string) error {
	switch len(args) {
	case 0:
		return usagef("missing invitation ticket (oa1…; make one with agentd invite DIR on the agent's machine)")
	case 1:
	default:
		return usagef("unexpected arguments after the ticket: %s", strings.Join(args[1:], " "))
	}
	label := enrollLabel
	if label == "" {
		label, _ = os.Hostname()
	}
	path := enrollIdentity
	if path == "" {
		path = identityPathFromEnv()
	}
	path, err := identity.Resolve(path)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, enrollTimeout)
	defer cancel()
	id, agent, err := enroll.Enroll(ctx, args[0], label, path, deviceOptions())
	if err != nil {
		return err
	}
	cert, err := id.Parsed()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "enrolled with agent %q\n", agent.Name)
	fmt.Fprintf(stdout, "  device     %s (handle %s, capabilities %s)\n", id.ClientID(), cert.Handle, strings.Join(cert.Capabilities, ","))
	fmt.Fprintf(stdout, "  network    %s\n", agent.NetworkID)
	fmt.Fprintf(stdout, "  agent node %s\n", agent.NodeID)
	fmt.Fprintf(stdout, "  expires    %s (renewed automatically after half of it)\n", cert.ExpiresAt.Format(time.RFC3339))
	fmt.Fprintf(stdout, "  identity   %s\n", path)
	return nil
}
