package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/agentd/agentd/client"
	"github.com/agentd/agentd/internal/enroll"
	"github.com/agentd/agentd/internal/proxy"
)

var (
	proxyListen   string
	proxyIdentity string
	proxyAgent    string
)

func init() {
	register(&command{
		name: "proxy",
		args: "--listen 127.0.0.1:PORT [--identity FILE] [--agent NODEID|TICKET]",
		summary: `loopback proxy: plain HTTP and WebSocket on localhost to the agent over iroh
Listens on a loopback address only and forwards every request and WebSocket
connection over its own iroh stream, presenting this machine's device
certificate (from agentd enroll), so curl, browsers and WebSocket clients
work unchanged: curl http://127.0.0.1:PORT/api/health. Requests naming
another Host, or from another web origin, are refused. Prints the URL on
stdout once the agent answered; runs until SIGINT/SIGTERM.`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&proxyListen, "listen", "127.0.0.1:8765", "loopback address to listen on (port 0 picks one)")
			fs.StringVar(&proxyIdentity, "identity", "", "identity file (default $AGENTD_IDENTITY or $XDG_CONFIG_HOME/agentd/identity.json)")
			fs.StringVar(&proxyAgent, "agent", "", "agent to reach: NodeId or ticket (default: the one this identity enrolled with)")
		},
		run: runProxy,
	})
}

func runProxy(_ *flag.FlagSet, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected arguments: %s", strings.Join(args, " "))
	}
	// Refuse a bad address before starting anything.
	if err := proxy.CheckLoopback(proxyListen); err != nil {
		return usagef("%v", err)
	}
	path := proxyIdentity
	if path == "" {
		path = identityPathFromEnv()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	octx, cancel := context.WithTimeout(ctx, remoteOpenTimeout)
	opts := deviceOptions()
	r, err := enroll.OpenRemote(octx, path, proxyAgent, opts)
	cancel()
	if err != nil {
		return err
	}
	defer r.Close()
	p, err := proxy.Listen(proxy.Config{Listen: proxyListen, Dial: r.DialAuth, Log: opts.Logger})
	if err != nil {
		return err
	}
	name, err := checkAgent(ctx, p.Transport())
	if err != nil {
		return err
	}
	a := r.Addr()
	fmt.Fprintf(stderr, "agentd proxy: http://%s → agent %q (node %.16s…) as device %.16s…\n", p.Addr(), name, a.NodeID, r.Identity().ClientID())
	fmt.Fprintf(stdout, "http://%s\n", p.Addr())
	return p.Serve(ctx)
}

// checkAgent asks the agent who it is through the proxy's transport, so a
// revoked device, an unknown NodeId or a node that is no agentd fail at
// start with a clear message instead of on the first local request.
func checkAgent(ctx context.Context, rt http.RoundTripper) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, client.BaseURL+"/api/agent-info", nil)
	if err != nil {
		return "", err
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return "", fmt.Errorf("reach the agent: %w", err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		ae := client.ReadAPIError(resp)
		return "", fmt.Errorf("the agent refused this device's certificate (%s): revoked or expired devices must enroll again: %w", ae.Message, ae)
	case resp.StatusCode != http.StatusOK:
		return "", fmt.Errorf("agent-info: %w", client.ReadAPIError(resp))
	}
	var info struct {
		Name string `json:"name"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		return "", errors.New("agent-info: the node answered, but not like an agentd gateway")
	}
	return info.Name, nil
}
