// Command testplugin is a real bridge plugin for agentd's tests. Its
// behaviour is chosen by the bridge settings agentd passes in Configure:
//
//	mode: run         run until stopped (the default); reports a qr and a
//	                  status event and logs a line at start
//	mode: crash       exit with status 1 as soon as it is started
//	mode: crash_after exit with status 1 after settings.after (e.g. "1s")
//	mode: fail        the platform returns an error (the process stays up)
//	mode: hang_stop   ignore Stop: the platform never returns
//	mode: state       report settings.state with settings.reason at start;
//	                  with lose_event: "true" the state event is lost on
//	                  the way, so only Health tells agentd
//	deliver: TEXT     in mode run, deliver TEXT from user u1 in chat 1 at
//	                  start; SendText logs "testplugin sent" with the reply
//
// Built with -ldflags "-X main.cookie=…" or "-X main.protocol=N" it serves
// with that magic cookie or plugin protocol version instead of agentd's, to
// test handshake refusals.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/agentd/agentd/plugins/bridge"
	"github.com/agentd/agentd/plugins/bridge/internal/testhook"
)

// Set with -ldflags -X to build a mismatched plugin.
var (
	cookie   string
	protocol string
)

// platform takes its name and session prefix from the executable's name
// (bridge-<name>), so tests can run several bridges from one build through
// links without their prefixes colliding.
type platform struct {
	name    string
	mode    string
	after   time.Duration
	deliver string
	state   bridge.PlatformState // mode state: reported at start, with reason
	reason  string
	log     *slog.Logger
	sent    atomic.Int64
}

func (p *platform) Name() string          { return p.name }
func (p *platform) SessionPrefix() string { return p.name }

func (p *platform) Configure(cfg bridge.PlatformConfig) error {
	p.mode = cfg.Settings["mode"]
	p.deliver = cfg.Settings["deliver"]
	p.log = cfg.Logger
	switch p.mode {
	case "", "run", "crash", "fail", "hang_stop":
	case "state":
		p.state, p.reason = bridge.PlatformState(cfg.Settings["state"]), cfg.Settings["reason"]
		testhook.LoseStateEvents.Store(cfg.Settings["lose_event"] == "true")
	case "crash_after":
		d, err := time.ParseDuration(cfg.Settings["after"])
		if err != nil {
			return fmt.Errorf("settings.after: %w", err)
		}
		p.after = d
	default:
		return fmt.Errorf("unknown mode %q", p.mode)
	}
	cfg.Logger.Info("testplugin configured", "mode", p.mode, "data_dir", cfg.DataDir)
	return nil
}

func (p *platform) Run(ctx context.Context, host bridge.Host) error {
	switch p.mode {
	// log writes to the process's real stderr (go-plugin relays os.Stderr
	// over gRPC once serving, and a relay does not outlive os.Exit).
	case "crash":
		log.Fatal("testplugin: crashing at start as configured")
	case "crash_after":
		time.AfterFunc(p.after, func() {
			log.Fatalf("testplugin: crashing after %s as configured", p.after)
		})
	case "fail":
		return errors.New("testplugin: platform failed as configured")
	case "hang_stop":
		select {} // ignores ctx on purpose
	case "state":
		host.(bridge.StateReporter).ReportState(p.state, p.reason)
		<-ctx.Done()
		return nil
	}
	host.Logger().Info("testplugin running", "pid", os.Getpid())
	host.Event("qr", "2@testplugin-qr-code")
	host.Event("status", "connected to testplatform")
	if p.deliver != "" {
		// One message from platform user u1 in chat 1, as a platform would
		// hand it over; the gateway's reply comes back through SendText.
		if err := host.Deliver(ctx, bridge.Incoming{ChatID: "1", UserID: "u1", UserName: "user one", Text: p.deliver}); err != nil {
			return fmt.Errorf("deliver: %w", err)
		}
	}
	<-ctx.Done()
	return nil
}

// SendText logs what the agent answered, so tests can read it in agentd's
// bridge log.
func (p *platform) SendText(_ context.Context, chatID, text string) (string, error) {
	n := p.sent.Add(1)
	p.log.Info("testplugin sent", "chat_id", chatID, "text", text)
	return strconv.FormatInt(n, 10), nil
}

func main() {
	p := &platform{name: strings.TrimPrefix(filepath.Base(os.Args[0]), "bridge-")}
	if cookie == "" && protocol == "" {
		bridge.Serve(p)
		return
	}
	hs := bridge.Handshake
	if cookie != "" {
		hs.MagicCookieValue = cookie
	}
	if protocol != "" {
		v, err := strconv.Atoi(protocol)
		if err != nil {
			panic(err)
		}
		hs.ProtocolVersion = uint(v)
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: hs,
		Plugins:         bridge.PluginSet(p),
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}
