// Package gateway is agentd's public face: the WebSocket protocol on /ws
// (package wire) and the REST API under /api/, behind device-certificate
// identities that the listeners put on every request (package auth). It
// tracks connected clients for broadcasts (resource events, system
// snapshots) and hands conversation frames to the session manager.
package gateway

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/route"
	"github.com/agentd/agentd/internal/session"
	"github.com/agentd/agentd/internal/sysinfo"
	"github.com/agentd/agentd/wire"
)

// Options configure a Gateway.
type Options struct {
	Config   *config.Watcher
	Sessions *session.Manager
	// AgentDir is the agent directory (agent-info, disk usage snapshots).
	AgentDir  string
	Version   string
	StartedAt time.Time
	Log       *slog.Logger
	// WriteTimeout bounds a write to a client and how long a running reply
	// waits for a client that does not read before closing it as a slow
	// consumer; 0 means DefaultWriteTimeout.
	WriteTimeout time.Duration
	// Info adds the daemon's facts (listeners, iroh endpoint) to
	// /api/agent-info; nil adds nothing.
	Info func() map[string]any
}

// Gateway is the http.Handler of every listener.
type Gateway struct {
	opts     Options
	log      *slog.Logger
	mux      *http.ServeMux
	upgrader websocket.Upgrader
	sampler  *sysinfo.Sampler

	// ctx ends every connection when cancelled (by Close or Run's end).
	ctx    context.Context
	cancel context.CancelFunc

	// mu guards conns.
	mu    sync.RWMutex
	conns map[*conn]struct{}
	wg    sync.WaitGroup // readers

	slowClosed atomic.Int64

	// mountMu guards mounted.
	mountMu sync.Mutex
	mounted []route.Route
}

// New builds the gateway and its routes. Call Run to start the periodic
// broadcasts; Close (or the end of Run) disconnects every client.
func New(opts Options) *Gateway {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	if opts.StartedAt.IsZero() {
		opts.StartedAt = time.Now()
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &Gateway{
		opts:  opts,
		log:   opts.Log,
		mux:   http.NewServeMux(),
		ctx:   ctx,
		conns: map[*conn]struct{}{},
		upgrader: websocket.Upgrader{
			// Small read buffer, shared write buffers: an idle connection
			// holds no write buffer at all.
			ReadBufferSize:  1024,
			WriteBufferSize: 4096,
			WriteBufferPool: &sync.Pool{},
			// CheckOrigin nil: gorilla refuses cross-origin browser
			// requests, so a web page cannot ride a loopback proxy's
			// device certificate; non-browser clients send no Origin.
		},
		cancel:  cancel,
		sampler: sysinfo.NewSampler(opts.AgentDir),
	}
	if opts.Sessions != nil {
		// Session changes, over REST or WebSocket commands, are broadcast.
		opts.Sessions.OnChange(g.ResourceEvent)
	}
	g.upgrader.Error = func(w http.ResponseWriter, r *http.Request, status int, reason error) {
		auth.WriteError(w, status, "bad_request", reason.Error())
	}
	g.Mount(g.routes()...)
	return g
}

// routes are the gateway's own: the WebSocket, agent-info and sessions.
// Bridges chat and manage their own sessions without the chat capability.
func (g *Gateway) routes() []route.Route {
	chatOrBridge := route.Any(auth.CapChat, auth.CapBridge)
	return []route.Route{
		{Pattern: "GET /ws", Cap: chatOrBridge, Handler: http.HandlerFunc(g.serveWS)},
		{Pattern: "GET /api/agent-info", Cap: auth.CapChat, Handler: http.HandlerFunc(g.agentInfo)},
		{Pattern: "GET /api/sessions", Cap: chatOrBridge, Handler: http.HandlerFunc(g.listSessions)},
		{Pattern: "POST /api/sessions/{id}/pin", Cap: chatOrBridge, Handler: http.HandlerFunc(g.pinSession)},
		{Pattern: "POST /api/sessions/{id}/clear", Cap: chatOrBridge, Handler: http.HandlerFunc(g.clearSession)},
		{Pattern: "GET /api/sessions/{id}/messages", Cap: chatOrBridge, Handler: http.HandlerFunc(g.sessionMessages)},
		{Pattern: "DELETE /api/sessions/{id}", Cap: chatOrBridge, Handler: http.HandlerFunc(g.deleteSession)},
	}
}

// Mount serves each route behind its capability check. A route that cannot
// be mounted safely (no capability, unknown capability, bad pattern) is a
// programming error and panics, so no route ever goes unguarded.
func (g *Gateway) Mount(rs ...route.Route) {
	g.mountMu.Lock()
	defer g.mountMu.Unlock()
	for _, r := range rs {
		if err := r.Check(); err != nil {
			panic(err)
		}
		g.mux.Handle(r.Pattern, r.Guarded())
		g.mounted = append(g.mounted, r)
	}
}

// Routes lists every mounted route, in mounting order (the route table in
// docs/routes.md is generated from it).
func (g *Gateway) Routes() []route.Route {
	g.mountMu.Lock()
	defer g.mountMu.Unlock()
	return slices.Clone(g.mounted)
}

// ServeHTTP answers /api/health for anyone, everything else only for
// authenticated requests: an anonymous request learns nothing, not even
// which routes exist.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/api/health" && r.Method == http.MethodGet {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		return
	}
	if _, ok := auth.FromContext(r.Context()); !ok {
		auth.WriteError(w, http.StatusUnauthorized, "unauthorized", "authentication required")
		return
	}
	if _, pattern := g.mux.Handler(r); pattern == "" {
		g.notRouted(w, r)
		return
	}
	g.mux.ServeHTTP(w, r)
}

// notRouted turns ServeMux's plain-text 404/405 into JSON errors.
func (g *Gateway) notRouted(w http.ResponseWriter, r *http.Request) {
	h, _ := g.mux.Handler(r)
	rec := &statusRecorder{header: http.Header{}}
	h.ServeHTTP(rec, r)
	if allow := rec.header.Get("Allow"); allow != "" {
		w.Header().Set("Allow", allow)
	}
	switch rec.status {
	case http.StatusMethodNotAllowed:
		auth.WriteError(w, rec.status, "method_not_allowed", r.Method+" is not allowed on "+r.URL.Path)
	case http.StatusNotFound, 0:
		auth.WriteError(w, http.StatusNotFound, "not_found", "no route "+r.URL.Path)
	default:
		auth.WriteError(w, rec.status, "bad_request", http.StatusText(rec.status))
	}
}

// statusRecorder captures the status and headers of ServeMux's fallback.
type statusRecorder struct {
	header http.Header
	status int
}

func (s *statusRecorder) Header() http.Header         { return s.header }
func (s *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusRecorder) WriteHeader(code int)        { s.status = code }

func writeJSON(w http.ResponseWriter, status int, v any) { route.JSON(w, status, v) }

// Broadcast sends m to every connected client. It never blocks: a client
// whose queue is full is closed as a slow consumer.
func (g *Gateway) Broadcast(m wire.Message) {
	b, err := wire.Encode(m)
	if err != nil {
		g.log.Error("broadcast: encode", "type", m.Type(), "err", err)
		return
	}
	g.mu.RLock()
	defer g.mu.RUnlock()
	for c := range g.conns {
		c.enqueue(b)
	}
}

// ResourceEvent broadcasts resource_event{resource, action, id}: call it
// after every mutation (MCP, vault, task, config, provider, model, bridge,
// device, session).
func (g *Gateway) ResourceEvent(resource, action, id string) {
	g.Broadcast(wire.ResourceEvent{Resource: resource, Action: action, ID: id})
}

// ClientsConnected is the number of open WebSocket connections.
func (g *Gateway) ClientsConnected() int {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return len(g.conns)
}

// SlowConsumersClosed counts connections closed with 4008 since start.
func (g *Gateway) SlowConsumersClosed() int64 { return g.slowClosed.Load() }

// Run broadcasts a config resource_event on every applied config change and
// a system_snapshot every limits.snapshot_interval, until ctx is done or
// Close. It leaves the clients connected: the daemon closes them (Close)
// once the turns they handed over are persisted.
func (g *Gateway) Run(ctx context.Context) error {
	changed := make(chan struct{}, 1)
	g.opts.Config.Subscribe(func(_, _ *config.Config) {
		select {
		case changed <- struct{}{}:
		default:
		}
	})
	interval := func() time.Duration { return g.opts.Config.Current().Limits.SnapshotInterval.D() }
	cur := interval()
	tick := time.NewTicker(cur)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-g.ctx.Done():
			return nil
		case <-changed:
			g.ResourceEvent("config", "updated", "")
			if d := interval(); d != cur {
				cur = d
				tick.Reset(d)
			}
		case <-tick.C:
			if g.ClientsConnected() == 0 {
				continue
			}
			s, err := g.sampler.Sample(ctx)
			if err != nil {
				g.log.Warn("system snapshot", "err", err)
				continue
			}
			g.Broadcast(wire.SystemSnapshot{CPUPercent: s.CPUPercent, RAMPercent: s.RAMPercent, DiskPercent: s.DiskPercent})
		}
	}
}

// shutdownWait is how long Close lets clients answer its close frame
// before it cuts their connections: a client that stopped reading (its
// close frame stuck behind a full socket) must not hold the shutdown.
const shutdownWait = time.Second

// Close disconnects every client with 1001 "going away" and waits for their
// readers to end, at most about shutdownWait: then the connections left are
// cut. Frames read meanwhile are still handled (see conn.read).
func (g *Gateway) Close() {
	g.cancel()
	g.mu.RLock()
	for c := range g.conns {
		c.closeWith(websocket.CloseGoingAway, "server shutting down")
	}
	g.mu.RUnlock()
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(shutdownWait):
	}
	g.mu.RLock()
	if n := len(g.conns); n > 0 {
		g.log.Warn("cutting connections that did not answer the close frame", "connections", n, "waited", shutdownWait)
	}
	for c := range g.conns {
		c.shutdown()
	}
	g.mu.RUnlock()
	<-done
}
