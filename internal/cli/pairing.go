package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/agentd/agentd/client"
)

func init() {
	register(&command{
		name: "pairing",
		args: "list DIR | approve|deny DIR CODE | revoke DIR BRIDGE USER",
		summary: `decide who may talk to the agent through its chat bridges
A stranger who writes to a bridge in a direct chat (dm_policy: pairing, the
default) gets a code such as K7QF-2M9D, valid for pairing.expiry (1h).
list shows the waiting requests (bridge, user id, name, code, age) and the
approved users; approve adds the user to that bridge's allowed users at once
(no restart; they are told "You're in."); deny refuses until the code
expires; revoke removes an approved user. Needs the daemon running.
docs/pairing.md.`,
		run: runPairing,
	})
}

type pairingRequest struct {
	Code       string  `json:"code"`
	Bridge     string  `json:"bridge"`
	UserID     string  `json:"user_id"`
	UserName   string  `json:"user_name"`
	State      string  `json:"state"`
	AgeSeconds float64 `json:"age_seconds"`
}

type pairingUser struct {
	Bridge     string    `json:"bridge"`
	UserID     string    `json:"user_id"`
	UserName   string    `json:"user_name"`
	ApprovedAt time.Time `json:"approved_at"`
}

func runPairing(_ *flag.FlagSet, args []string) error {
	if len(args) == 0 {
		return usagef("missing subcommand: list, approve, deny or revoke")
	}
	op := args[0]
	want := map[string]int{"list": 2, "approve": 3, "deny": 3, "revoke": 4}[op]
	switch {
	case want == 0:
		return usagef("unknown subcommand %q", op)
	case len(args) != want && op == "list":
		return usagef("usage: agentd pairing list DIR")
	case len(args) != want && op == "revoke":
		return usagef("usage: agentd pairing revoke DIR BRIDGE USER")
	case len(args) != want:
		return usagef("usage: agentd pairing %s DIR CODE", op)
	}
	d, dir, err := localDialer(args[1])
	if err != nil {
		return err
	}
	defer d.CloseIdle()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch op {
	case "list":
		var out struct {
			Requests []pairingRequest `json:"requests"`
			Users    []pairingUser    `json:"users"`
		}
		if err := d.GetJSON(ctx, "/api/pairing", &out); err != nil {
			return explainDial(err, dir)
		}
		return printPairing(out.Requests, out.Users)
	case "revoke":
		path := "/api/pairing/users/" + url.PathEscape(args[2]) + "/" + url.PathEscape(args[3])
		if err := d.DoJSON(ctx, "DELETE", path, nil, nil); err != nil {
			return pairingErr(explainDial(err, dir))
		}
		fmt.Fprintf(stdout, "pairing: %s on %s revoked; they are refused from their next message\n", args[3], args[2])
		return nil
	}
	var r pairingRequest
	if err := d.PostJSON(ctx, "/api/pairing/"+url.PathEscape(args[2])+"/"+op, nil, &r); err != nil {
		return pairingErr(explainDial(err, dir))
	}
	if op == "approve" {
		fmt.Fprintf(stdout, "pairing: %s approved on %s; they can talk to the agent now\n", who(r), r.Bridge)
	} else {
		fmt.Fprintf(stdout, "pairing: %s denied on %s\n", who(r), r.Bridge)
	}
	return nil
}

func who(r pairingRequest) string {
	if r.UserName != "" {
		return fmt.Sprintf("%s (%s)", r.UserName, r.UserID)
	}
	return r.UserID
}

// pairingErr keeps the daemon's own words ("code expired at 14:02; …").
func pairingErr(err error) error {
	var ae *client.APIError
	if errors.As(err, &ae) && ae.Message != "" {
		return fmt.Errorf("pairing: %s", ae.Message)
	}
	return err
}

func printPairing(reqs []pairingRequest, users []pairingUser) error {
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	if len(reqs) == 0 {
		fmt.Fprintln(w, "no pairing requests waiting")
	} else {
		fmt.Fprintln(w, "BRIDGE\tUSER ID\tNAME\tCODE\tSTATE\tAGE")
		for _, r := range reqs {
			age := (time.Duration(r.AgeSeconds) * time.Second).String()
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Bridge, r.UserID, dash(r.UserName), r.Code, r.State, age)
		}
	}
	if len(users) > 0 {
		fmt.Fprintln(w, "\nAPPROVED ON\tUSER ID\tNAME\tSINCE\t\t")
		for _, u := range users {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t\t\n", u.Bridge, u.UserID, dash(u.UserName), u.ApprovedAt.Local().Format(time.DateTime))
		}
	}
	return w.Flush()
}
