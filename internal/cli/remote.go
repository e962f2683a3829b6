package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/agentd/agentd/client"
	"github.com/agentd/agentd/internal/enroll"
	"github.com/agentd/agentd/internal/proxy"
)

// remoteOpenTimeout bounds starting the dial sidecar and a due renewal.
const remoteOpenTimeout = 30 * time.Second

// deviceOptions are the device-side settings of enroll, proxy and remote
// chat. AGENTD_IROH_PRESET=minimal keeps the dial sidecar fully offline
// (no discovery), as tests and air-gapped setups want.
func deviceOptions() enroll.DeviceOptions {
	return enroll.DeviceOptions{
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
}

// identityPathFromEnv is the identity file remote commands use when no
// --identity flag applies: $AGENTD_IDENTITY, else the XDG default.
func identityPathFromEnv() string { return os.Getenv("AGENTD_IDENTITY") }

// remoteDialer returns a client for the agent this machine enrolled with,
// over iroh: target is "" (the enrolled agent), a ticket of the same
// network or a NodeId. The identity comes from $AGENTD_IDENTITY or
// $XDG_CONFIG_HOME/agentd/identity.json; its certificate is renewed first
// when past half of its life. The returned func stops the dial sidecar.
func remoteDialer(target string) (*client.Dialer, func(), error) {
	return remoteDialerAt(identityPathFromEnv(), target)
}

func remoteDialerAt(path, target string) (*client.Dialer, func(), error) {
	ctx, cancel := context.WithTimeout(context.Background(), remoteOpenTimeout)
	defer cancel()
	r, err := enroll.OpenRemote(ctx, path, target, deviceOptions())
	if err != nil {
		return nil, nil, err
	}
	d := r.ClientDialer()
	return d, func() {
		d.CloseIdle()
		r.Close()
	}, nil
}

// adminAPI is what the admin commands need of their way to agentd: the
// owner socket or iroh (*client.Dialer), or an `agentd proxy`
// (*client.Loopback).
type adminAPI interface {
	GetJSON(ctx context.Context, path string, out any) error
	PostJSON(ctx context.Context, path string, in, out any) error
}

// remoteAdmin is an admin command's way to an agent on another machine.
type remoteAdmin struct {
	api      adminAPI
	where    string // the flag as typed, for hints: "--remote enrolled"
	viaProxy bool
	close    func()
}

// openRemoteAdmin opens --remote TARGET (iroh, with this machine's
// enrolled identity; "enrolled" is the agent it enrolled with) or --proxy
// URL (a running `agentd proxy`, which presents its own identity).
func openRemoteAdmin(remote, proxyURL string) (*remoteAdmin, error) {
	switch {
	case remote != "" && proxyURL != "":
		return nil, usagef("--remote and --proxy are two ways to the same agent: give one")
	case proxyURL != "":
		u, err := url.Parse(proxyURL)
		if err != nil || u.Scheme != "http" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, usagef("--proxy %q: want the URL agentd proxy printed, e.g. http://127.0.0.1:8765", proxyURL)
		}
		if err := proxy.CheckLoopback(u.Host); err != nil {
			return nil, usagef("--proxy: %v", err)
		}
		l := &client.Loopback{BaseURL: "http://" + u.Host, HTTP: &http.Client{}}
		return &remoteAdmin{api: l, where: "--proxy " + proxyURL, viaProxy: true, close: l.HTTP.CloseIdleConnections}, nil
	}
	target := remote
	if target == "enrolled" {
		target = ""
	}
	d, closeRemote, err := remoteDialer(target)
	if err != nil {
		return nil, err
	}
	return &remoteAdmin{api: d, where: "--remote " + remote, close: closeRemote}, nil
}

// explain turns the gateway's refusals of a remote admin request into
// what to do about them.
func (r *remoteAdmin) explain(err error) error {
	var ae *client.APIError
	if !errors.As(err, &ae) {
		return err
	}
	who := "this device"
	if r.viaProxy {
		who = "the proxy's device"
	}
	switch {
	case ae.Status == http.StatusForbidden && ae.Code == "forbidden":
		return fmt.Errorf("%s is not an admin: enroll with an admin invitation (agentd invite DIR --role admin) (the agent said: %s)", who, ae.Message)
	case ae.Status == http.StatusUnauthorized:
		return fmt.Errorf("the agent refused %s's certificate (%s): revoked or expired devices must enroll again (agentd enroll TICKET)", who, ae.Message)
	}
	return err
}
