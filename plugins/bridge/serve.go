package bridge

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentd/agentd/devicecert"
	"github.com/agentd/agentd/plugins/bridge/internal/testhook"
	"github.com/agentd/agentd/plugins/bridge/store"
	bridgev1 "github.com/agentd/agentd/proto/bridge/v1"
)

// Plugin-side timing. stopWait is below the supervisor's kill timeout, so a
// platform that is merely slow to stop reports that itself before agentd
// gives up on it; orphanCheck bounds how long a bridge outlives an agentd
// that was killed without stopping it.
const (
	stopWait    = 4 * time.Second
	orphanCheck = time.Second
)

// Versioner is implemented by platforms that report their own release
// version in Info; others report the bridge binary's module version.
type Versioner interface {
	Version() string
}

// Serve is a bridge binary's main: it serves p to agentd over go-plugin
// (gRPC only) and returns when agentd ends the plugin. Run by hand, the
// binary explains that it is a plugin and exits.
func Serve(p Platform) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := newServer(p, nil)
	srv.ctx = ctx
	go srv.watchParent(ctx, os.Getppid())
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         plugin.PluginSet{PluginName: &GRPCPlugin{Platform: p, srv: srv}},
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name: "bridge-" + p.Name(), Output: os.Stderr, Level: hclog.Warn,
		}),
	})
	// agentd closed the plugin (normally after Stop); make sure the platform
	// is not left running with nobody to report to.
	srv.stop()
	srv.closeStore()
}

// server implements the Bridge service in the plugin process.
type server struct {
	bridgev1.UnimplementedBridgeServer
	p      Platform
	broker *plugin.GRPCBroker
	ctx    context.Context // the plugin process's lifetime

	// mu guards every field below.
	mu             sync.Mutex
	state          bridgev1.State
	cfg            *RunnerConfig // nil until configured
	host           *hostConn     // nil without a host service
	store          *store.Store  // in the configured DataDir; nil without one
	runner         *Runner       // the current run; nil when not running
	cancel         context.CancelFunc
	done           chan struct{} // closed when the current run ends
	lastErr        string
	platformStatus string
	platformState  PlatformState // "" until the platform reports one
	platformReason string
}

func newServer(p Platform, broker *plugin.GRPCBroker) *server {
	return &server{p: p, broker: broker, ctx: context.Background(), state: bridgev1.State_STATE_NEW}
}

func (s *server) Info(context.Context, *bridgev1.InfoRequest) (*bridgev1.InfoResponse, error) {
	_, edits := s.p.(MessageEditor)
	_, files := s.p.(FileSender)
	_, voice := s.p.(VoiceSender)
	_, typing := s.p.(Typer)
	return &bridgev1.InfoResponse{
		Name:          s.p.Name(),
		Version:       version(s.p),
		ApiVersions:   slices.Clone(APIVersions),
		Capabilities:  &bridgev1.Capabilities{Edits: edits, Files: files, Voice: voice, Typing: typing},
		SessionPrefix: s.p.SessionPrefix(),
	}, nil
}

func version(p Platform) string {
	if v, ok := p.(Versioner); ok {
		return v.Version()
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "unknown"
}

func (s *server) Configure(_ context.Context, req *bridgev1.ConfigureRequest) (*bridgev1.ConfigureResponse, error) {
	if !slices.Contains(APIVersions, req.ApiVersion) {
		return nil, status.Errorf(codes.InvalidArgument, "bridge API version %q not supported (this bridge speaks %s)", req.ApiVersion, listOrNone(APIVersions))
	}
	if req.GatewayNetwork != "unix" && req.GatewayNetwork != "tcp" {
		return nil, status.Errorf(codes.InvalidArgument, "gateway network %q: want unix or tcp", req.GatewayNetwork)
	}
	if req.GatewayAddress == "" || req.IdentityPath == "" {
		return nil, status.Error(codes.InvalidArgument, "gateway address and identity path are required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.runner != nil {
		return nil, status.Error(codes.FailedPrecondition, "bridge is running; stop it before configuring it again")
	}
	id, err := devicecert.LoadIdentity(req.IdentityPath)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "bridge identity: %v", err)
	}
	if len(id.Cert) == 0 {
		return nil, status.Errorf(codes.InvalidArgument, "bridge identity %s has no certificate", req.IdentityPath)
	}
	if req.HostBrokerId != 0 && s.host == nil && s.broker != nil {
		h, err := dialHost(s.ctx, s.broker, req.HostBrokerId)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "%v", err)
		}
		s.host = h
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if s.host != nil {
		logger = newHostLogger(s.host, hostLevel(req.Settings))
	}
	if err := s.openStore(req.DataDir); err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "%v", err)
	}
	if err := s.p.Configure(PlatformConfig{
		Store:        s.store,
		Settings:     req.Settings,
		AllowedUsers: req.AllowedUsers,
		DataDir:      req.DataDir,
		UploadsDir:   req.UploadsDir,
		Logger:       logger,
	}); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "configure %s: %v", s.p.Name(), err)
	}
	s.cfg = &RunnerConfig{
		Network:       req.GatewayNetwork,
		Address:       req.GatewayAddress,
		Identity:      id,
		AllowedUsers:  req.AllowedUsers,
		DMPolicy:      req.DmPolicy,
		GroupPolicy:   req.GroupPolicy,
		AllowedGroups: req.AllowedGroups,
		Logger:        logger,
		OnEvent:       s.onEvent,
		// A setting every bridge shares, not the platform's own.
		ShowTranscript: req.Settings["show_transcript"] == "true",
		OnStatus: func(text string) {
			s.mu.Lock()
			s.platformStatus = text
			s.mu.Unlock()
		},
		OnState: s.onState,
		Store:   s.store,
	}
	if s.host != nil {
		s.cfg.Pair = s.host.RequestPairing
	}
	s.state = bridgev1.State_STATE_CONFIGURED
	s.lastErr = ""
	return &bridgev1.ConfigureResponse{}, nil
}

// openStore opens the bridge's store in dir, keeping one already open
// there; called with mu held.
func (s *server) openStore(dir string) error {
	if s.store != nil && filepath.Dir(s.store.Path()) == dir {
		return nil
	}
	s.closeStoreLocked()
	if dir == "" {
		return nil
	}
	st, err := store.Open(s.ctx, dir)
	if err != nil {
		return fmt.Errorf("bridge state: %w", err)
	}
	s.store = st
	return nil
}

func (s *server) closeStore() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.runner == nil {
		s.closeStoreLocked()
	}
}

func (s *server) closeStoreLocked() {
	if s.store != nil {
		s.store.Close()
		s.store = nil
	}
}

// onEvent forwards a platform event to agentd and keeps the status text
// Health reports.
func (s *server) onEvent(kind, text string) {
	s.mu.Lock()
	if kind == "status" {
		s.platformStatus = text
	}
	h := s.host
	s.mu.Unlock()
	if h != nil {
		h.Event(EventKind(kind), text)
	}
}

// onState keeps the platform state Health reports and tells agentd at
// once (Health is the backstop).
func (s *server) onState(state PlatformState, reason string) {
	s.mu.Lock()
	s.platformStatus = StateStatus(state, reason)
	s.platformState, s.platformReason = state, reason
	h := s.host
	s.mu.Unlock()
	if h != nil && !testhook.LoseStateEvents.Load() {
		h.State(state, reason)
	}
}

func (s *server) Start(context.Context, *bridgev1.StartRequest) (*bridgev1.StartResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.runner != nil:
		return &bridgev1.StartResponse{}, nil // already running
	case s.cfg == nil:
		return nil, status.Error(codes.FailedPrecondition, "bridge is not configured")
	}
	r := NewRunner(s.p, *s.cfg)
	ctx, cancel := context.WithCancel(s.ctx)
	done := make(chan struct{})
	s.runner, s.cancel, s.done = r, cancel, done
	s.state = bridgev1.State_STATE_RUNNING
	s.lastErr = ""
	s.platformState, s.platformReason = "", ""
	go func() {
		defer close(done)
		err := r.Run(ctx)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.runner == r {
			s.runner, s.cancel = nil, nil
		}
		switch {
		case err != nil && ctx.Err() == nil:
			// The platform gave up on its own: report it, and let agentd
			// decide to relaunch the process.
			s.state, s.lastErr = bridgev1.State_STATE_FAILED, err.Error()
			s.cfg.Logger.Error("bridge stopped with an error", "err", err)
		case err != nil:
			s.state, s.lastErr = bridgev1.State_STATE_CONFIGURED, err.Error()
		default:
			s.state = bridgev1.State_STATE_CONFIGURED
		}
		cancel()
	}()
	return &bridgev1.StartResponse{}, nil
}

func (s *server) Stop(context.Context, *bridgev1.StopRequest) (*bridgev1.StopResponse, error) {
	if err := s.stop(); err != nil {
		return nil, status.Error(codes.DeadlineExceeded, err.Error())
	}
	return &bridgev1.StopResponse{}, nil
}

// stop cancels the current run and waits for it, at most stopWait.
func (s *server) stop() error {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	if cancel != nil {
		s.state = bridgev1.State_STATE_STOPPING
	}
	s.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	t := time.NewTimer(stopWait)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
		return fmt.Errorf("bridge %s did not stop within %s", s.p.Name(), stopWait)
	}
}

// SetAllowedUsers applies a new allow-list to the running bridge (and to
// its next start) and welcomes a newly approved user.
func (s *server) SetAllowedUsers(_ context.Context, req *bridgev1.SetAllowedUsersRequest) (*bridgev1.SetAllowedUsersResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg == nil {
		return nil, status.Error(codes.FailedPrecondition, "bridge is not configured")
	}
	s.cfg.AllowedUsers = slices.Clone(req.AllowedUsers)
	if s.runner != nil {
		s.runner.SetAllowedUsers(req.AllowedUsers)
		if req.WelcomeChatId != "" {
			s.runner.Notify(req.WelcomeChatId, PairingWelcome)
		}
	}
	return &bridgev1.SetAllowedUsersResponse{}, nil
}

func (s *server) Health(context.Context, *bridgev1.HealthRequest) (*bridgev1.HealthResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := &bridgev1.HealthResponse{State: s.state, PlatformStatus: s.platformStatus, LastError: s.lastErr,
		PlatformState: stateWire(s.platformState), PlatformReason: s.platformReason}
	if s.runner != nil {
		h.GatewayConnected = s.runner.Connected()
		if h.LastError == "" {
			h.LastError = s.runner.LastError()
		}
	}
	return h, nil
}

// watchParent ends the plugin when agentd is gone without having stopped
// it (killed, crashed): the process is then re-parented, and a bridge that
// nobody supervises must not keep answering chats.
func (s *server) watchParent(ctx context.Context, ppid int) {
	t := time.NewTicker(orphanCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if os.Getppid() != ppid {
				fmt.Fprintf(os.Stderr, "bridge %s: agentd (pid %d) is gone; stopping\n", s.p.Name(), ppid)
				s.stop()
				os.Exit(1)
			}
		}
	}
}
