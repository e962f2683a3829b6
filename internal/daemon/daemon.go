// Package daemon composes `agentd serve`: it opens the agent directory,
// config, store and coordinator, builds the gateway and session manager,
// serves them on every enabled listener behind the same device-certificate
// authentication, supervises the iroh sidecar and the bridges, and shuts it
// all down in order.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentd/agentd/internal/agent"
	"github.com/agentd/agentd/internal/agentdir"
	"github.com/agentd/agentd/internal/alert"
	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/catalog"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/coordinator"
	"github.com/agentd/agentd/internal/enroll"
	"github.com/agentd/agentd/internal/gateway"
	"github.com/agentd/agentd/internal/iroh"
	"github.com/agentd/agentd/internal/logfile"
	"github.com/agentd/agentd/internal/mcp"
	"github.com/agentd/agentd/internal/metrics"
	"github.com/agentd/agentd/internal/pairing"
	"github.com/agentd/agentd/internal/route"
	"github.com/agentd/agentd/internal/scheduler"
	"github.com/agentd/agentd/internal/session"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/supervisor"
	"github.com/agentd/agentd/internal/upload"
	"github.com/agentd/agentd/internal/usage"
	"github.com/agentd/agentd/internal/vault"
	"github.com/agentd/agentd/internal/voice"
	"github.com/agentd/agentd/internal/web"
	"github.com/agentd/agentd/internal/workflow"
)

// shutdownGrace bounds the graceful part of shutdown; the spec allows 2 s
// in all, and closing listeners and the database takes the rest.
const shutdownGrace = 1500 * time.Millisecond

// mcpStartWait bounds how long serve waits for MCP servers to come up
// before resuming persisted turns and opening the listeners.
const mcpStartWait = 5 * time.Second

// HTTP timeouts of every listener. readTimeout covers a whole request with
// its body (a 50 MiB upload over a slow link fits); WebSockets clear it
// when they take over the stream.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 10 * time.Minute
)

// Options configure Run.
type Options struct {
	Dir     string
	Console io.Writer // human-readable log; nil means stderr
	Version string
	Level   slog.Level
	// BinDir is where bridge binaries live; empty means beside agentd.
	BinDir string
}

// Run serves the agent in opts.Dir until ctx is cancelled.
func Run(ctx context.Context, opts Options) error {
	dir, err := agentdir.Open(opts.Dir)
	if err != nil {
		return err
	}
	if err := dir.Check(); err != nil {
		return err
	}
	lock, err := acquireLock(dir.Lock())
	if err != nil {
		return fmt.Errorf("%s: %w", dir.Root, err)
	}
	defer lock.release()

	console := opts.Console
	if console == nil {
		console = os.Stderr
	}
	log, logFile, err := newLogger(dir.Log("agentd.log"), console, opts.Level)
	if err != nil {
		return err
	}
	defer logFile.Close()

	if changed, err := dir.Secure(); err != nil {
		log.Error("could not make the agent directory private", "err", err)
	} else if len(changed) > 0 {
		log.Warn("took group and other permissions away from the agent directory (0700) and its private files (0600)", "paths", changed)
	}
	d := &daemon{dir: dir, log: log, opts: opts, started: time.Now(), restart: make(chan struct{}, 1)}
	if err := d.open(ctx); err != nil {
		log.Error("start failed", "err", err)
		d.close()
		return err
	}
	err = d.serve(ctx)
	d.close()
	if errors.Is(err, ErrRestart) {
		log.Info("stopped for a restart", "exit_status", ExitRestart)
		return err
	}
	if err != nil {
		log.Error("stopped with error", "err", err)
		return err
	}
	log.Info("stopped")
	return nil
}

// ErrRestart is returned by Run after POST /api/restart and a clean
// shutdown; `agentd serve` then exits with ExitRestart, on which the
// systemd unit in deploy/ starts agentd again (RestartForceExitStatus).
var ErrRestart = errors.New("restart requested: exiting with status 75 so the service manager starts agentd again")

// ExitRestart is the exit status of a requested restart (EX_TEMPFAIL).
const ExitRestart = 75

// daemon holds the running parts, in the order they are opened.
type daemon struct {
	dir     agentdir.Dir
	log     *slog.Logger
	opts    Options
	started time.Time
	// restart is signalled by POST /api/restart.
	restart chan struct{}

	cfg *config.Watcher
	// pairing holds chat-user pairing requests and approved users.
	pairing *pairing.Pairing
	st      *store.Store
	coord   *coordinator.Coordinator
	cat     *catalog.Catalog
	vault   *vault.Vault
	voice   *voice.Service
	authn   *auth.Authenticator
	usage   *usage.Usage
	mgr     *session.Manager
	// alerts is the operator alert service every component reports to.
	alerts *alert.Alerter
	gw     *gateway.Gateway
	sup    *supervisor.Supervisor
	tools  *agent.Registry
	mcp    *mcp.Pool
	srv    *http.Server
	sched  *scheduler.Scheduler
	flows  *workflow.Engine
	// metrics is the Prometheus registry (GET /api/metrics, metrics.listen).
	metrics *metrics.Metrics

	// mu guards listeners and iroh.
	mu        sync.Mutex
	listeners []net.Listener
	iroh      *irohListener
}

func (d *daemon) open(ctx context.Context) error {
	cfg, err := config.Load(d.dir.Config())
	if err != nil {
		return err
	}
	d.cfg = config.NewWatcher(d.dir.Config(), cfg, d.log.With("component", "config"))

	if d.st, err = store.Open(ctx, d.dir.DB()); err != nil {
		return err
	}
	if d.coord, err = coordinator.Open(ctx, d.dir.Root, d.st); err != nil {
		return fmt.Errorf("open coordinator: %w", err)
	}
	d.coord.SetLogger(d.log.With("component", "coordinator"))
	d.authn = auth.NewAuthenticator(d.coord)

	d.cat, err = catalog.Open(ctx, d.st.DB(), cfg, d.log.With("component", "catalog"))
	if err != nil {
		return fmt.Errorf("open model catalog: %w", err)
	}
	if d.vault, err = vault.Open(ctx, d.st.DB(), d.dir.Memories(), vault.Options{Logger: d.log.With("component", "vault")}); err != nil {
		return err
	}
	if err := d.openTools(ctx, cfg); err != nil {
		return err
	}
	d.voice = voice.New(d.cfg.Current)
	// Attachments, in and out, come from uploads/ and memories/ only;
	// keys/ never, whatever a symlink says.
	attachRoots := []string{d.dir.Uploads(), d.dir.Memories()}
	ag := &agent.Agent{
		Tools:        d.tools,
		Instructions: []string{vault.Instructions},
		AllowedRoots: attachRoots,
		DeniedRoots:  []string{d.dir.Keys()},
		Logger:       d.log.With("component", "agent"),
	}
	d.usage = usage.Open(usage.Options{
		DB: d.st.DB(), Prices: d.prices, Log: d.log.With("component", "usage"),
		OnAlert:  d.budgetAlert,
		OnChange: func(res, action, id string) { d.gw.ResourceEvent(res, action, id) },
	})
	d.metrics = metrics.New()
	d.mgr, err = session.New(session.Options{
		Budget: d.usage, Metrics: d.metrics,
		DB: d.st.DB(), Config: d.cfg, Agent: ag, AgentDir: d.dir.Root, AttachRoots: attachRoots,
		Providers: d.cat.Registry(), Catalog: d.cat,
		Log:     d.log.With("component", "session"),
		Bridges: d.coord.BridgeClient,
		Voice:   voice.Files{Service: d.voice, Dir: d.dir.Uploads()},
	})
	if err != nil {
		return fmt.Errorf("open sessions: %w", err)
	}
	d.alerts = alert.New(alert.Options{Push: d.mgr.Push, Config: d.cfg, Log: d.log.With("component", "alert")})
	d.gw = gateway.New(gateway.Options{
		Config: d.cfg, Sessions: d.mgr, AgentDir: d.dir.Root, Version: d.opts.Version,
		StartedAt: d.started, Log: d.log.With("component", "gateway"), Info: d.info,
	})
	d.gw.Mount(coordinator.Routes(d.coord)...)
	d.coord.OnRevoke(func(id string) { d.gw.ResourceEvent("device", "revoked", id) })
	d.gw.Mount(enroll.Routes(d.coord, d.irohInfo)...)
	d.gw.Mount(catalog.Routes(d.cat)...)
	d.gw.Mount(voice.Routes(d.voice)...)
	d.gw.Mount(web.Routes(web.Options{FileRoots: []string{d.dir.Uploads(), d.dir.Memories()}})...)
	d.cat.OnChange(d.gw.ResourceEvent)
	d.gw.Mount(vault.Routes(d.vault)...)
	d.vault.OnChange(d.gw.ResourceEvent)
	d.gw.Mount(mcp.Routes(d.mcp)...)
	d.mcp.OnChange(d.gw.ResourceEvent)
	if err := d.openAutomation(); err != nil {
		return err
	}

	d.pairing = pairing.New(pairing.Options{
		DB: d.st.DB(), Config: d.cfg, Alerts: d.alerts, Log: d.log.With("component", "pairing"),
	})
	d.pairing.OnChange(d.gw.ResourceEvent)
	d.sup, err = supervisor.New(ctx, supervisor.Options{
		Dir: d.dir.Root, ConfigPath: d.dir.Config(), BinDir: d.opts.BinDir,
		GatewayNetwork: "unix", GatewayAddress: d.dir.Socket(),
		Issuer: d.coord, Logger: d.log.With("component", "supervisor"), Alerts: d.alerts,
		OnChange: func(name, action string) { d.gw.ResourceEvent("bridge", action, name) },
		Pairing:  d.pairing,
	})
	if err != nil {
		return fmt.Errorf("start bridge supervisor: %w", err)
	}
	d.pairing.SetPush(d.sup.SetApproved)
	d.gw.Mount(supervisor.Routes(d.sup)...)
	d.gw.Mount(pairing.Routes(d.pairing)...)
	d.gw.Mount(config.Routes(d.cfg)...)
	d.gw.Mount(usage.Routes(d.usage)...)
	d.gw.Mount(d.lifecycleRoutes()...)
	d.gw.Mount(metrics.Routes(d.metrics)...)
	d.registerMetrics()
	d.gw.Mount(upload.Routes(&upload.Uploads{
		Dir: d.dir.Uploads(), Log: d.log.With("component", "upload"),
		Limit:      func() int64 { return d.cfg.Current().Limits.UploadMaxBytes },
		Transcribe: voice.Files{Service: d.voice}.Hear, NotAudio: voice.ErrNotAudio,
	})...)
	d.cfg.Subscribe(func(old, cur *config.Config) {
		if !reflect.DeepEqual(old.Listeners, cur.Listeners) {
			d.log.Warn("listener changes in openagent.yaml apply at the next restart of agentd")
		}
		if !reflect.DeepEqual(old.MCPs, cur.MCPs) {
			d.log.Warn("mcps: in openagent.yaml only seeds the MCP servers at the first start; change them with `agentd mcp` or /api/mcps")
		}
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := d.cat.Seed(sctx, cur); err != nil {
			d.log.Error("model catalog not reseeded", "err", err)
		}
		d.sup.Apply(cur) // the gateway broadcasts config/updated itself
	})
	d.authn.SetConnLimit(connLimit(cfg.Limits.MaxConnections, d.log), d.log.With("component", "auth"))
	d.srv = &http.Server{
		Handler:           auth.CloseAnonymous(d.gw),
		ConnContext:       auth.ConnContext,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		// A keep-alive stream that sends no request for this long is
		// closed, like a WebSocket that sends nothing.
		IdleTimeout: cfg.Limits.IdleTimeout.D(),
		ErrorLog:    slog.NewLogLogger(d.log.With("component", "http").Handler(), slog.LevelDebug),
	}
	return nil
}

// registerMetrics adds the series read at scrape time from the running
// parts (labels: transports, bridge names and states, never user ids).
func (d *daemon) registerMetrics() {
	d.metrics.Family("agentd_connections", "Authenticated streams open, by transport.", prometheus.GaugeValue,
		[]string{"transport"}, func() []metrics.Sample {
			var out []metrics.Sample
			for tr, n := range d.authn.Streams() {
				out = append(out, metrics.Sample{Labels: []string{tr}, Value: float64(n)})
			}
			return out
		})
	d.metrics.Gauge("agentd_queue_depth", "Turns waiting behind a running one.", func() float64 { return float64(d.mgr.QueueDepth()) })
	d.metrics.Family("agentd_bridge_state", "1 for each bridge's current state.", prometheus.GaugeValue,
		[]string{"bridge", "state"}, func() []metrics.Sample {
			var out []metrics.Sample
			for _, b := range d.sup.List() {
				out = append(out, metrics.Sample{Labels: []string{b.Name, string(b.State)}, Value: 1})
			}
			return out
		})
	d.metrics.Family("agentd_bridge_restarts_total", "Restarts of each bridge process since agentd started.", prometheus.CounterValue,
		[]string{"bridge"}, func() []metrics.Sample {
			var out []metrics.Sample
			for _, b := range d.sup.List() {
				out = append(out, metrics.Sample{Labels: []string{b.Name}, Value: float64(b.Restarts)})
			}
			return out
		})
	d.metrics.Counter("agentd_iroh_sidecar_restarts_total", "Restarts of the iroh sidecar since agentd started.", func() float64 {
		if il := d.irohL(); il != nil {
			return float64(il.sidecar.Status().Restarts)
		}
		return 0
	})
}

// serveMetrics starts the plain loopback listener of metrics.listen, which
// serves /metrics alone; config validation allows loopback addresses only.
func (d *daemon) serveMetrics(addr string, wg *sync.WaitGroup) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listener %s: %w", addr, err)
	}
	srv := &http.Server{Handler: d.metrics.Mux(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(d.log.With("component", "metrics").Handler(), slog.LevelDebug)}
	d.mu.Lock()
	d.listeners = append(d.listeners, ln)
	d.mu.Unlock()
	wg.Add(1)
	go func() {
		defer wg.Done()
		srv.Serve(ln) // ends when shutdown closes ln
	}()
	d.log.Info("listening", "listener", "metrics", "addr", ln.Addr().String())
	return nil
}

// lifecycleRoutes are the daemon's own routes.
func (d *daemon) lifecycleRoutes() []route.Route {
	return []route.Route{
		// Admin: it ends every connection and bridge for a moment.
		{Pattern: "POST /api/restart", Cap: auth.CapAdmin, Handler: http.HandlerFunc(d.handleRestart)},
		// Admin: the logs name devices, sessions and every error.
		{Pattern: "GET /api/logs", Cap: auth.CapAdmin, Handler: http.HandlerFunc(d.handleLogs)},
	}
}

// handleLogs is GET /api/logs: the newest entries of agentd.log and the
// bridges' logs, read from the end of the files.
func (d *daemon) handleLogs(w http.ResponseWriter, r *http.Request) {
	q, err := logfile.ParseQuery(r.URL.Query())
	if err != nil {
		route.Error(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	es, err := logfile.Read(d.dir.Logs(), q)
	if err != nil {
		route.Error(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	if es == nil {
		es = []logfile.Entry{}
	}
	route.JSON(w, http.StatusOK, map[string]any{"entries": es})
}

// handleRestart answers 202 first, then the ordered shutdown runs (serve
// waits for this handler to return before it closes the connection).
func (d *daemon) handleRestart(w http.ResponseWriter, r *http.Request) {
	route.JSON(w, http.StatusAccepted, map[string]any{"ok": true, "exit_status": ExitRestart})
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	select {
	case d.restart <- struct{}{}:
	default: // already requested
	}
}

// prices are the catalog's current model prices, for /api/usage/pricing.
func (d *daemon) prices() map[string]usage.Price {
	out := map[string]usage.Price{}
	for _, m := range d.cat.Models() {
		out[m.ID] = usage.Price{Input: m.InputPricePerMTok, Output: m.OutputPricePerMTok}
	}
	return out
}

// budgetAlert announces a budget threshold: to clients as
// resource_event{budget, alert, id}, and to the operator (alerts.deliver_to).
func (d *daemon) budgetAlert(a usage.Alert) {
	d.gw.ResourceEvent("budget", "alert", a.BudgetID)
	// usage raises each alert once per window; the key keeps alerts of
	// different windows and thresholds apart.
	key := fmt.Sprintf("budget:%s:%d:%g", a.BudgetID, a.WindowStart.Unix(), a.Threshold)
	d.alerts.Raise(key, a.Text, alert.Immediately())
}

// irohInfo is the running endpoint's address, for invitation tickets; empty
// while iroh is off or not up.
func (d *daemon) irohInfo() iroh.Info {
	if il := d.irohL(); il != nil {
		return il.info()
	}
	return iroh.Info{}
}

func (d *daemon) irohL() *irohListener {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.iroh
}

// info is what /api/agent-info and `agentd status` show beyond the basics.
func (d *daemon) info() map[string]any {
	cfg := d.cfg.Current()
	listeners := map[string]any{}
	if cfg.Listeners.Unix.Enabled {
		listeners["unix"] = d.dir.Socket()
	}
	if cfg.Listeners.TCP.Enabled {
		listeners["tcp"] = cfg.Listeners.TCP.Address
	}
	out := map[string]any{"listeners": listeners, "network_id": d.coord.NetworkID()}
	out["voice"] = d.voice.Health(context.Background())
	if il := d.irohL(); il != nil {
		st := il.status()
		listeners["iroh"] = st["state"]
		out["iroh"] = st
		if id, _ := st["node_id"].(string); id != "" {
			out["node_id"] = id
		}
	} else if cfg.Listeners.Iroh.Enabled {
		listeners["iroh"] = "unavailable"
	}
	return out
}

func (d *daemon) serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cfg := d.cfg.Current()
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	goServe := func(name string, ln net.Listener) {
		d.mu.Lock()
		d.listeners = append(d.listeners, ln)
		d.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && ctx.Err() == nil {
				errc <- fmt.Errorf("%s listener: %w", name, err)
			}
		}()
		d.log.Info("listening", "listener", name, "addr", ln.Addr().String())
	}

	// stop runs the ordered shutdown, also when starting fails half-way
	// (the tcp port is taken after the unix socket is already served).
	stop := func(err error) error {
		d.shutdown(cancel)
		wg.Wait()
		return err
	}

	// Persisted turns resume, and turns are accepted, before any listener
	// serves a client.
	// Tools first, so that resumed turns find the servers that start fast.
	d.mcp.Start(ctx)
	d.mcp.WaitStarted(ctx, mcpStartWait)
	if err := d.mgr.Start(ctx); err != nil {
		return stop(fmt.Errorf("start sessions: %w", err))
	}
	if err := d.startAutomation(ctx); err != nil {
		return stop(err)
	}
	if cfg.Listeners.Unix.Enabled {
		ln, err := listenUnix(d.dir.Socket())
		if err != nil {
			return stop(err)
		}
		goServe("unix", auth.NewListener(ln, auth.ModeNonce, d.authn, d.log.With("listener", "unix")))
	}
	if cfg.Listeners.TCP.Enabled {
		ln, err := net.Listen("tcp", cfg.Listeners.TCP.Address)
		if err != nil {
			return stop(fmt.Errorf("listen tcp %s: %w", cfg.Listeners.TCP.Address, err))
		}
		goServe("tcp", auth.NewListener(ln, auth.ModeNonce, d.authn, d.log.With("listener", "tcp")))
	}
	if addr := cfg.Metrics.Listen; addr != "" {
		if err := d.serveMetrics(addr, &wg); err != nil {
			return stop(err)
		}
	}

	// Background loops, each owned by ctx.
	loops := []struct {
		name string
		run  func(context.Context) error
	}{
		{"config watcher", d.cfg.Run},
		{"coordinator", d.coord.Run},
		{"gateway", d.gw.Run},
		{"alerts", func(ctx context.Context) error { d.alerts.Run(ctx); return nil }},
		{"vault", d.vault.Run},
	}
	for _, l := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.run(ctx); err != nil && ctx.Err() == nil {
				d.log.Error("loop stopped", "loop", l.name, "err", err)
			}
		}()
	}
	if cfg.Listeners.Iroh.Enabled {
		// A missing Node or sidecar package must not take the other
		// listeners down: log exactly what is missing and go on.
		il, err := startIroh(ctx, d, cfg.Listeners.Iroh)
		if err != nil {
			d.log.Error("iroh listener unavailable; serving the other listeners", "err", err)
		} else {
			d.mu.Lock()
			d.iroh = il
			d.mu.Unlock()
			goServe("iroh", auth.NewListener(il.gateway, auth.ModeIroh, d.authn, d.log.With("listener", "iroh")))
			wg.Add(1)
			go func() { defer wg.Done(); il.serveCoordinator(ctx) }()
		}
	}
	d.sup.Apply(cfg)
	d.log.Info("agentd serving", "dir", d.dir.Root, "version", d.opts.Version, "pid", os.Getpid())

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	case <-d.restart:
		d.log.Info("restart requested over REST")
		err = ErrRestart
	}
	return stop(err)
}

// shutdown stops the daemon in the order that loses nothing: stop
// starting turns (cancel: runs are cut, a turn handed over from now on is
// persisted to run after the restart), wait until the cut runs have
// persisted theirs, close the client connections (a frame read meanwhile
// is still handled; a client that does not answer is cut) and the
// listeners, then stop the bridges, which by then can hand nothing over.
func (d *daemon) shutdown(cancel context.CancelFunc) {
	d.log.Info("shutting down")
	sctx, scancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer scancel()
	cancel()
	persisted := make(chan struct{})
	go func() { d.mgr.Wait(); close(persisted) }()
	select {
	case <-persisted:
	case <-sctx.Done():
		d.log.Warn("runs still ending after the shutdown grace; closing connections anyway")
	}
	var wg sync.WaitGroup
	wg.Go(d.gw.Close) // hijacked WebSocket conns are not closed by Shutdown
	wg.Go(func() { d.srv.Shutdown(sctx) })
	wg.Wait()
	d.mu.Lock()
	for _, ln := range d.listeners {
		ln.Close()
	}
	d.mu.Unlock()
	if il := d.irohL(); il != nil {
		il.close()
	}
	// The MCP servers too: no run uses their tools any more.
	wg.Go(func() { d.sup.Close() })
	wg.Go(func() { d.mcp.Close() })
	wg.Wait()
}

// close releases what open acquired; safe on a partly opened daemon.
func (d *daemon) close() {
	d.waitAutomation()
	if d.mgr != nil {
		d.mgr.Wait()
	}
	if d.coord != nil {
		fctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		d.coord.FlushSeen(fctx)
		cancel()
	}
	if d.vault != nil {
		d.vault.Close()
	}
	if d.st != nil {
		d.st.Close()
	}
}
