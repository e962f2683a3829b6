package cli

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/agentd/agentd/client"
	"github.com/agentd/agentd/internal/enroll"
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
