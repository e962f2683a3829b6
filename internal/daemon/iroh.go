package daemon

import (
	"context"
	"fmt"
	"os"

	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/coordinator"
	"github.com/agentd/agentd/internal/enroll"
	"github.com/agentd/agentd/internal/handoff"
	"github.com/agentd/agentd/internal/iroh"
)

// irohListener owns the agent's iroh sidecar and splits the streams it
// hands over by ALPN: gateway streams go to the same http.Server as every
// other listener; coordinator streams to the enrollment RPC.
type irohListener struct {
	sidecar *iroh.Sidecar
	ln      *iroh.Listener
	gateway *handoff.Listener
	coord   *handoff.Listener
	logFile *os.File
	cancel  context.CancelFunc
	done    chan struct{}
	d       *daemon
}

func startIroh(ctx context.Context, d *daemon, cfg config.IrohListener) (*irohListener, error) {
	key, err := coordinator.LoadNodeKey(d.dir.Root)
	if err != nil {
		return nil, err
	}
	logFile, err := os.OpenFile(d.dir.Log("iroh.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open iroh log: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	fail := func(err error) (*irohListener, error) {
		cancel()
		logFile.Close()
		return nil, err
	}
	os.Remove(d.dir.IrohSocket()) // we hold the directory lock: a leftover is stale
	ln, err := iroh.Listen(ctx, d.dir.IrohSocket(), d.log)
	if err != nil {
		return fail(fmt.Errorf("iroh accept socket: %w", err))
	}
	relay := cfg.Relay
	preset := iroh.PresetN0
	if relay == "disabled" {
		relay, preset = iroh.RelayDisabled, iroh.PresetMinimal
	} else if relay == "default" {
		relay = iroh.RelayDefault
	}
	sc, err := iroh.New(iroh.Config{
		Mode: iroh.ModeServe, SecretKey: key, Relay: relay, Preset: preset,
		ALPNs:        []string{iroh.ALPNGateway, iroh.ALPNCoordinator},
		AcceptSocket: ln.Path(), BindPort: cfg.BindPort,
		NodePath: cfg.Node, Dir: cfg.SidecarDir,
		Stderr: logFile, Logger: d.log,
	})
	if err != nil {
		ln.Close()
		return fail(err)
	}
	if err := sc.Start(ctx); err != nil {
		ln.Close()
		return fail(fmt.Errorf("start iroh sidecar: %w", err))
	}
	il := &irohListener{
		sidecar: sc, ln: ln, logFile: logFile, cancel: cancel, done: make(chan struct{}), d: d,
		gateway: handoff.New(ln.Addr()), coord: handoff.New(ln.Addr()),
	}
	go il.route()
	info := sc.Info()
	d.log.Info("iroh ready", "node_id", info.NodeID, "addrs", info.Addrs, "relay", info.Relay)
	return il, nil
}

// route hands each accepted stream to the listener of its ALPN.
func (il *irohListener) route() {
	defer close(il.done)
	defer il.gateway.Close()
	defer il.coord.Close()
	for {
		c, err := il.ln.AcceptConn()
		if err != nil {
			return
		}
		switch c.ALPN() {
		case iroh.ALPNGateway:
			il.gateway.Put(c)
		case iroh.ALPNCoordinator:
			il.coord.Put(c)
		default:
			c.Close()
		}
	}
}

func (il *irohListener) status() map[string]any {
	st := il.sidecar.Status()
	info := il.sidecar.Info()
	out := map[string]any{
		"state": string(st.State), "node_id": info.NodeID, "addrs": info.Addrs,
		"relay": info.Relay, "restarts": st.Restarts,
	}
	if st.LastError != nil {
		out["last_error"] = st.LastError.Error()
	}
	return out
}

func (il *irohListener) close() {
	il.cancel()
	il.ln.Close()
	<-il.done
	<-il.sidecar.Done()
	il.logFile.Close()
}

// serveCoordinator answers enrollment streams (ALPN openagent/coordinator/1).
func (il *irohListener) serveCoordinator(ctx context.Context) {
	srv := enroll.NewServer(il.d.coord, il.sidecar.NodeID(), il.d.log)
	if err := srv.Serve(ctx, il.coord); err != nil && ctx.Err() == nil {
		il.d.log.Error("coordinator RPC stopped", "err", err)
	}
}

// info reports the endpoint for invitation tickets.
func (il *irohListener) info() iroh.Info { return il.sidecar.Info() }
