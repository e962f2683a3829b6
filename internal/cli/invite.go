package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mdp/qrterminal/v3"
	"rsc.io/qr"

	"github.com/agentd/agentd/client"
	"github.com/agentd/agentd/internal/enroll"
)

var (
	inviteRole   string
	inviteUses   int
	inviteTTL    string
	inviteHandle string
	inviteNoQR   bool
	inviteJSON   bool
)

func init() {
	register(&command{
		name: "invite",
		args: "DIR [--role chat|admin] [--uses N] [--ttl 7d] [--handle H]",
		summary: `print an invitation ticket and its QR code
Asks the agentd serving DIR (over its unix socket, as the owner) to mint a
one-time invitation: POST /api/invites. The running daemon puts its live iroh
NodeId, direct addresses and relay into the ticket, so a device can enroll
even with relays disabled. The ticket goes to stdout, its details and QR code
to stderr. Redeem it on the other machine with: agentd enroll TICKET`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&inviteRole, "role", "chat", "capability of the device: chat or admin")
			fs.IntVar(&inviteUses, "uses", 1, "how many devices may redeem it")
			fs.StringVar(&inviteTTL, "ttl", "24h", "validity: a Go duration (90m, 12h) or days (7d); at most 30d")
			fs.StringVar(&inviteHandle, "handle", "", "user handle the certificates bind (default: one per device)")
			fs.BoolVar(&inviteNoQR, "no-qr", false, "do not print the QR code")
			fs.BoolVar(&inviteJSON, "json", false, "print the full answer as JSON on stdout")
		},
		run: runInvite,
	})
}

// parseTTL accepts Go durations and whole days ("7d").
func parseTTL(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("--ttl %q: want a positive number of days like 7d", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("--ttl %q: want a positive duration like 12h or 7d", s)
	}
	return d, nil
}

func runInvite(_ *flag.FlagSet, args []string) error {
	arg, err := oneDir(args)
	if err != nil {
		return err
	}
	if inviteRole != "chat" && inviteRole != "admin" {
		return usagef("--role %q: want chat or admin", inviteRole)
	}
	if inviteUses < 1 {
		return usagef("--uses %d: want at least 1", inviteUses)
	}
	ttl, err := parseTTL(inviteTTL)
	if err != nil {
		return usagef("%v", err)
	}
	d, dir, err := localDialer(arg)
	if err != nil {
		return err
	}
	defer d.CloseIdle()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var resp enroll.InviteResponse
	err = d.PostJSON(ctx, "/api/invites", enroll.InviteRequest{
		Role: inviteRole, Uses: inviteUses, TTLSeconds: int64(ttl / time.Second), Handle: inviteHandle,
	}, &resp)
	var ae *client.APIError
	switch {
	case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
		return fmt.Errorf("the running agentd does not offer POST /api/invites (too old?): %w", err)
	case err != nil:
		return explainDial(err, dir)
	}
	if inviteJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(resp)
	}
	fmt.Fprintln(stdout, resp.Ticket)
	fmt.Fprintf(stderr, "\ninvitation to %q: role %s, %d use(s), expires %s\n", resp.Name, resp.Role, inviteUses, resp.ExpiresAt.Local().Format(time.RFC1123))
	fmt.Fprintf(stderr, "agent node %s, addresses %s, relay %s\n", resp.NodeID, strings.Join(resp.Addrs, " "), orNone(resp.Relay))
	fmt.Fprintf(stderr, "on the other machine run:\n\n  agentd enroll %s\n\n", resp.Ticket)
	if !inviteNoQR {
		if _, err := qr.Encode(resp.Ticket, qr.L); err != nil {
			fmt.Fprintf(stderr, "(no QR code: %v)\n", err)
		} else {
			qrterminal.GenerateHalfBlock(resp.Ticket, qrterminal.L, stderr)
		}
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
