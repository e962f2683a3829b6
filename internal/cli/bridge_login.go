package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/mdp/qrterminal/v3"
)

// loginWait bounds one login round (WhatsApp's QR codes last about two
// minutes in all); loginPoll is how often the CLI looks at the bridge.
const (
	loginWait = 5 * time.Minute
	loginPoll = 300 * time.Millisecond
)

// bridgePhone is the --phone flag of `bridge login`.
var bridgePhone string

// loginStdin is where `bridge login` reads "new round?" answers (tests).
var loginStdin io.Reader = os.Stdin

// bridgeEvents mirrors the events of GET /api/bridges/{name}.
type bridgeEvents struct {
	State          string `json:"state"`
	PID            int    `json:"pid"`
	PlatformStatus string `json:"platform_status"`
	Events         []struct {
		Time time.Time `json:"time"`
		Kind string    `json:"kind"`
		Text string    `json:"text"`
	} `json:"events"`
}

// bridgeLogin starts a login round on the bridge and shows its QR codes
// (or pair code) as they come, until the bridge reports the link. where
// is how the user named the agent (DIR, "--remote X"), for hints.
func bridgeLogin(api adminAPI, where, name string) error {
	in := bufio.NewReader(loginStdin)
	path := "/api/bridges/" + url.PathEscape(name)
	for {
		// The events already listed belong to earlier rounds. They are
		// told apart by content, not by time: the agent's clock may not
		// be this machine's.
		var before bridgeEvents
		if err := getEvents(api, path, &before); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var st bridgeEvents
		err := api.PostJSON(ctx, path+"/login", map[string]string{"phone": bridgePhone}, &st)
		cancel()
		if err != nil {
			return err
		}
		if st.State != "running" && st.State != "starting" && st.State != "needs_login" {
			return fmt.Errorf("bridge %s is %s; see agentd bridge list %s and logs/bridge-%s.log", name, st.State, where, name)
		}
		fmt.Fprintf(stdout, "bridge %s: waiting for a login round (pid %d)\n", name, st.PID)
		linked, err := followLogin(api, path, before)
		if err != nil {
			return err
		}
		if linked != "" {
			fmt.Fprintln(stdout, linked)
			return nil
		}
		fmt.Fprint(stdout, "Press Enter for a new round (Ctrl-C to stop): ")
		if _, err := in.ReadString('\n'); err != nil {
			return fmt.Errorf("login of %s not completed: the codes expired", name)
		}
	}
}

func getEvents(api adminAPI, path string, st *bridgeEvents) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return api.GetJSON(ctx, path, st)
}

// eventKey identifies one event of a bridge's list.
func eventKey(t time.Time, kind, text string) string {
	return t.String() + "\x00" + kind + "\x00" + text
}

// followLogin prints the round's codes, skipping the events listed in
// before; it returns "linked as +…" on success, "" when the round ended
// without a link.
func followLogin(api adminAPI, path string, before bridgeEvents) (string, error) {
	deadline := time.Now().Add(loginWait)
	seen := map[string]bool{}
	for _, ev := range before.Events {
		seen[eventKey(ev.Time, ev.Kind, ev.Text)] = true
	}
	codes, fresh := 0, 0
	for time.Now().Before(deadline) {
		var st bridgeEvents
		if err := getEvents(api, path, &st); err != nil {
			return "", err
		}
		for _, ev := range st.Events {
			key := eventKey(ev.Time, ev.Kind, ev.Text)
			if seen[key] {
				continue
			}
			seen[key] = true
			fresh++
			switch {
			case ev.Kind == "qr":
				codes++
				fmt.Fprintf(stdout, "\nQR code %d: scan it in WhatsApp > Linked devices > Link a device (it rotates; the first lasts 60 s, the next 20 s)\n", codes)
				qrterminal.GenerateHalfBlock(ev.Text, qrterminal.L, stdout)
			case strings.HasPrefix(ev.Text, "linked as "):
				return ev.Text, nil
			case strings.Contains(ev.Text, "pair code "):
				fmt.Fprintln(stdout, strings.TrimPrefix(ev.Text, "needs_login: "))
			case strings.Contains(ev.Text, "QR codes expired"):
				fmt.Fprintln(stdout, "\nThe QR codes expired.")
				return "", nil
			case strings.Contains(ev.Text, "login failed"):
				fmt.Fprintln(stdout, "\n"+strings.TrimPrefix(ev.Text, "needs_login: "))
				return "", nil
			}
		}
		if strings.HasPrefix(st.PlatformStatus, "connected as ") && codes == 0 && fresh > 0 {
			return "already linked " + strings.TrimPrefix(st.PlatformStatus, "connected "), nil
		}
		time.Sleep(loginPoll)
	}
	return "", nil
}
