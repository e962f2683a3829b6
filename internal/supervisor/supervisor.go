// Package supervisor runs agentd's chat bridges as go-plugin subprocesses:
// it finds each enabled bridge's binary, gets the bridge a device identity,
// launches, configures and starts it over the gRPC control plane, restarts
// it with backoff when it crashes, and lets an admin enable, disable and
// restart bridges one at a time. Bridges are independent: nothing done to
// one (or done by one) touches another, and a bridge can never take agentd
// down with it.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/agentd/agentd/devicecert"
	"github.com/agentd/agentd/internal/alert"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/plugins/bridge"
)

// CrashloopAfter is the restart policy's one number of its own (the rest
// is internal/backoff: a crashed bridge is relaunched after a wait that
// doubles per failure in a row, reset by a run of backoff.StableAfter):
// after this many quick failures in a row the state reads "crashloop" so
// an operator sees it is not a passing hiccup; the supervisor keeps trying
// at backoff.Max pace, so fixing the cause (a token, the network) heals
// the bridge without a manual restart.
const CrashloopAfter = 5

// Timeouts of the control plane.
const (
	// StopTimeout bounds the Stop RPC; a bridge that has not stopped by
	// then is killed.
	StopTimeout = 5 * time.Second
	// PluginStartTimeout bounds go-plugin's handshake, so a binary that is
	// not a plugin and prints nothing fails instead of hanging.
	PluginStartTimeout = 5 * time.Second
	// RPCTimeout bounds Info, Configure, Start and Health.
	RPCTimeout = 10 * time.Second
	// HealthInterval is how often a running bridge is asked for Health;
	// HealthFailures failed checks in a row count as a crash.
	HealthInterval = 2 * time.Second
	HealthFailures = 3
	// startErrGrace is how long a failed launch waits for the process to
	// finish dying, so the error can say how it ended and what it printed.
	startErrGrace = 300 * time.Millisecond
	// exitPollInterval is how often go-plugin's exit flag is read: it is a
	// mutex-guarded bool, so polling is cheap and bounds crash detection.
	exitPollInterval = 10 * time.Millisecond
	// maxEvents is how many recent events each status keeps.
	maxEvents = 20
)

// State is a bridge's lifecycle state.
type State string

// States.
const (
	StateStopped   State = "stopped"   // disabled, or not started yet
	StateStarting  State = "starting"  // launching, configuring, starting
	StateRunning   State = "running"   // started and answering Health
	StateBackoff   State = "backoff"   // crashed; waiting to relaunch
	StateCrashloop State = "crashloop" // crashed CrashloopAfter times quickly; still retrying
	StateFailed    State = "failed"    // cannot run as configured (no binary, wrong handshake, refused by its platform…); not retried
	// StateNeedsLogin: running, but its platform account must be linked
	// again (agentd bridge login); not retried.
	StateNeedsLogin State = "needs_login"
)

// Change actions passed to Options.OnChange, besides the State values
// themselves (sent when a bridge enters that state).
const (
	ActionEnabled   = "enabled"
	ActionDisabled  = "disabled"
	ActionRestarted = "restarted"
	ActionEvent     = "event" // the bridge reported an Event
	ActionRemoved   = "removed"
)

// Errors for control requests; test with errors.Is.
var (
	ErrUnknown  = errors.New("unknown bridge")
	ErrDisabled = errors.New("bridge is disabled")
	ErrClosed   = errors.New("bridge supervisor is closed (agentd is shutting down)")
)

// Issuer gives a bridge its device identity: a key and a certificate with
// the bridge capability and its session prefix, saved to
// keys/bridge-<name>.identity in the agent directory. The coordinator
// implements it.
type Issuer interface {
	IssueBridge(ctx context.Context, name, prefix string) (*devicecert.Identity, error)
}

// Options configure a Supervisor.
type Options struct {
	// Dir is the agent directory (logs/, keys/, bridges/, uploads/).
	Dir string
	// ConfigPath is the openagent.yaml that Enable and Disable write;
	// empty means Dir/openagent.yaml.
	ConfigPath string
	// BinDir is where bridge-<name> binaries are looked up; empty means the
	// directory of the agentd executable.
	BinDir string
	// GatewayNetwork and GatewayAddress say where bridges dial the gateway;
	// empty means the unix socket Dir/agentd.sock.
	GatewayNetwork string
	GatewayAddress string
	Issuer         Issuer
	Logger         *slog.Logger
	// OnChange is called after every change of a bridge (an Action* or a
	// State value). It must not block.
	OnChange func(name, action string)

	// StopTimeout overrides the package constant; zero means StopTimeout.
	StopTimeout time.Duration

	// Alerts hears of bridges that are down, failed, crash-looping, logged
	// out or refused by their platform (see alerts.go); nil: none.
	Alerts *alert.Alerter

	// Pairing answers bridges' pairing requests and supplies the users
	// approved in the database; nil: no pairing (strangers are refused).
	Pairing Pairer
}

// Event is an operator event reported by a bridge.
type Event struct {
	Time time.Time `json:"time"`
	Kind string    `json:"kind"` // qr, logged_out, alert, status
	Text string    `json:"text"`
}

// Status is a bridge as List shows it.
type Status struct {
	Name             string    `json:"name"`
	Enabled          bool      `json:"enabled"`
	State            State     `json:"state"`
	PID              int       `json:"pid,omitempty"`
	Restarts         int       `json:"restarts"`
	LastError        string    `json:"last_error,omitempty"`
	StartedAt        time.Time `json:"started_at,omitzero"`
	UptimeSeconds    float64   `json:"uptime_seconds"`
	PlatformStatus   string    `json:"platform_status,omitempty"`
	GatewayConnected bool      `json:"gateway_connected"`
	Version          string    `json:"version,omitempty"`
	APIVersion       string    `json:"api_version,omitempty"`
	SessionPrefix    string    `json:"session_prefix,omitempty"`
	Path             string    `json:"path,omitempty"`
	Events           []Event   `json:"events"`
	// LoginQR is the newest QR code payload of a bridge waiting for a
	// login (WhatsApp), for a page to draw; cleared by the bridge's next
	// status event (expired, linked) and by a relaunch.
	LoginQR string `json:"login_qr,omitempty"`
	// AllowedUsers is the whole allow-list the bridge applies: the
	// config file's allowed_users and ApprovedUsers (paired in the
	// database, docs/pairing.md).
	AllowedUsers  []string `json:"allowed_users"`
	ApprovedUsers []string `json:"approved_users"`
	DMPolicy      string   `json:"dm_policy"`

	// fromPlatform: State was reported by the platform (platformState),
	// not found by the supervisor. restarting: stopped on the way to a new
	// launch while a platform state's alert is open, which the platform
	// ends when it connects (see report).
	fromPlatform, restarting bool
}

// Supervisor owns the bridge processes.
type Supervisor struct {
	opts     Options
	log      *slog.Logger
	ctx      context.Context // parent of every bridge loop
	cancel   context.CancelFunc
	stopWait time.Duration

	// mu guards bridges and every entry's status and loop fields.
	mu      sync.Mutex
	bridges map[string]*entry
	closed  bool
}

// entry is one configured bridge.
type entry struct {
	name string
	// op serializes control operations (enable, disable, restart, apply)
	// on this bridge only, so a slow stop of one never delays another.
	op sync.Mutex

	// Guarded by Supervisor.mu:
	cfg     config.Bridge
	status  Status
	loopCtl *loop         // nil when no loop runs
	inst    *instance     // the running launch, nil between launches
	changed chan struct{} // closed and replaced on every state change
	// certRenewed is when a refused certificate last made it relaunch
	// with a fresh one (certRefused).
	certRenewed time.Time
	// login are settings for the next launch only (Login: a pair-code
	// phone); the launch takes them.
	login map[string]string
	// gen numbers the launches; a host event of an older one is ignored.
	gen uint64
	// pstate and preason are the platform state the current launch last
	// reported ("" none); platformAlert: an alert for a needs_login or
	// failed platform state is open, which only the platform reporting
	// running again (or a stop) ends — not the process merely running.
	pstate        bridge.PlatformState
	preason       string
	platformAlert bool
}

// loop is a running supervision goroutine of one bridge.
type loop struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a supervisor whose bridges live at most as long as ctx. No
// bridge runs until Apply.
func New(ctx context.Context, opts Options) (*Supervisor, error) {
	if opts.Dir == "" {
		return nil, errors.New("bridge supervisor: agent directory not set")
	}
	if opts.Issuer == nil {
		return nil, errors.New("bridge supervisor: no identity issuer")
	}
	if opts.ConfigPath == "" {
		opts.ConfigPath = filepath.Join(opts.Dir, config.FileName)
	}
	if opts.BinDir == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("bridge supervisor: find agentd executable: %w", err)
		}
		if r, err := filepath.EvalSymlinks(exe); err == nil {
			exe = r
		}
		opts.BinDir = filepath.Dir(exe)
	}
	if opts.GatewayAddress == "" {
		opts.GatewayNetwork, opts.GatewayAddress = "unix", filepath.Join(opts.Dir, "agentd.sock")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Supervisor{
		opts:     opts,
		log:      opts.Logger.With("component", "bridges"),
		stopWait: opts.StopTimeout,
		bridges:  map[string]*entry{},
	}
	if s.stopWait <= 0 {
		s.stopWait = StopTimeout
	}
	s.ctx, s.cancel = context.WithCancel(ctx)
	return s, nil
}

// Apply reconciles the bridges with cfg (at start and on every hot reload):
// enabled bridges that do not run are started, disabled ones are stopped,
// running ones whose section changed are restarted, and bridges no longer
// in the file are stopped and forgotten. Bridges whose section did not
// change are not touched. It returns once every stop has finished.
func (s *Supervisor) Apply(cfg *config.Config) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	var wg sync.WaitGroup
	for name, bc := range cfg.Bridges {
		e := s.bridges[name]
		if e == nil {
			e = &entry{name: name, status: Status{Name: name, State: StateStopped, Events: []Event{}}}
			s.bridges[name] = e
		}
		wg.Go(func() { s.reconcile(e, bc) })
	}
	for name, e := range s.bridges {
		if _, ok := cfg.Bridges[name]; !ok {
			wg.Go(func() { s.remove(e) })
		}
	}
	s.mu.Unlock()
	wg.Wait()
}

// reconcile brings one bridge in line with its config section.
func (s *Supervisor) reconcile(e *entry, bc config.Bridge) {
	e.op.Lock()
	defer e.op.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	old, running := e.cfg, e.loopCtl != nil
	s.mu.Unlock()
	if bc.Enabled != old.Enabled && s.opts.ConfigPath != "" {
		// A reload that read the file before an Enable or Disable wrote
		// it must not undo that: under e.op, the file as it is now says
		// which is in force (the next reload brings the rest).
		if on, ok, err := ReadEnabled(s.opts.ConfigPath, e.name); err == nil && ok {
			bc.Enabled = on
		}
	}
	s.mu.Lock()
	e.cfg = bc
	e.status.Enabled = bc.Enabled
	e.status.AllowedUsers = allowedUsers(bc.AllowedUsers, e.status.ApprovedUsers)
	e.status.DMPolicy = dmPolicy(bc)
	s.mu.Unlock()
	var err error
	switch {
	case !bc.Enabled && running:
		s.stopLoop(e)
	case bc.Enabled && !running:
		err = s.startLoop(e)
	case bc.Enabled && running && !sameBridge(old, bc):
		s.log.Info("bridge config changed; restarting", "bridge", e.name)
		s.stopLoop(e)
		err = s.startLoop(e)
	}
	if err != nil {
		s.log.Info("bridge not started", "bridge", e.name, "err", err)
	}
}

func (s *Supervisor) remove(e *entry) {
	e.op.Lock()
	defer e.op.Unlock()
	s.stopLoop(e)
	s.opts.Alerts.Clear(alertKey(e.name), displayName(e.name)+" was removed (it had been down since {since})")
	s.mu.Lock()
	if s.bridges[e.name] == e {
		delete(s.bridges, e.name)
	}
	s.mu.Unlock()
	s.notify(e.name, ActionRemoved)
}

func sameBridge(a, b config.Bridge) bool {
	return a.Enabled == b.Enabled && a.Path == b.Path &&
		slices.Equal(a.AllowedUsers, b.AllowedUsers) && maps.Equal(a.Settings, b.Settings) &&
		a.DMPolicy == b.DMPolicy && a.GroupPolicy == b.GroupPolicy && slices.Equal(a.AllowedGroups, b.AllowedGroups)
}

// dmPolicy is a bridge's dm_policy with its default.
func dmPolicy(b config.Bridge) string {
	if b.DMPolicy == "" {
		return "pairing"
	}
	return b.DMPolicy
}

// Enable persists bridges.<name>.enabled: true and starts the bridge.
func (s *Supervisor) Enable(name string) error {
	return s.setEnabled(name, true)
}

// Disable persists bridges.<name>.enabled: false and stops the bridge,
// returning once it has stopped.
func (s *Supervisor) Disable(name string) error {
	return s.setEnabled(name, false)
}

func (s *Supervisor) setEnabled(name string, on bool) error {
	e, err := s.entry(name)
	if err != nil {
		return err
	}
	e.op.Lock()
	defer e.op.Unlock()
	if err := s.checkOpen(); err != nil {
		return fmt.Errorf("bridge %s: %w", name, err)
	}
	// The file first: if it cannot be written, nothing changes, and a hot
	// reload of the written file then finds the bridge already as wanted.
	if err := WriteEnabled(s.opts.ConfigPath, name, on); err != nil {
		return fmt.Errorf("bridge %s: %w", name, err)
	}
	s.mu.Lock()
	e.cfg.Enabled = on
	e.status.Enabled = on
	running := e.loopCtl != nil
	// Enabling a bridge that waits for the operator (failed, needs a
	// login) launches it afresh: that is what the operator asks for.
	stuck := e.status.State == StateFailed || e.status.State == StateNeedsLogin
	s.mu.Unlock()
	if on {
		if running && stuck {
			s.stopLoop(e)
			running = false
		}
		if !running {
			if err := s.startLoop(e); err != nil {
				return fmt.Errorf("bridge %s: %w", name, err)
			}
		}
		s.notify(name, ActionEnabled)
		s.settled(e, settleTimeout)
	} else {
		if running {
			s.stopLoop(e)
		}
		s.notify(name, ActionDisabled)
	}
	return nil
}

// Restart stops the bridge (gracefully, then by force) and starts it again.
func (s *Supervisor) Restart(name string) error {
	e, err := s.entry(name)
	if err != nil {
		return err
	}
	e.op.Lock()
	defer e.op.Unlock()
	s.mu.Lock()
	enabled, closed := e.cfg.Enabled, s.closed
	s.mu.Unlock()
	if closed {
		return fmt.Errorf("restart bridge %s: %w", name, ErrClosed)
	}
	if !enabled {
		return fmt.Errorf("restart bridge %s: %w; enable it first", name, ErrDisabled)
	}
	s.stopLoop(e)
	s.mu.Lock()
	e.status.Restarts++
	s.mu.Unlock()
	// The stop may have taken long enough for Close to begin: then the
	// bridge stays stopped.
	if err := s.startLoop(e); err != nil {
		return fmt.Errorf("restart bridge %s: %w", name, err)
	}
	s.notify(name, ActionRestarted)
	s.settled(e, settleTimeout)
	return nil
}

// Login restarts the bridge for a new login round: an unlinked WhatsApp
// bridge then shows fresh QR codes, or with phone a pair code (the setting
// pair_phone, for that launch only). The codes reach the operator as the
// bridge's events (GET /api/bridges/{name}, `agentd bridge login`).
func (s *Supervisor) Login(name, phone string) error {
	e, err := s.entry(name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	e.login = nil
	if phone != "" {
		e.login = map[string]string{"pair_phone": phone}
	}
	s.mu.Unlock()
	return s.Restart(name)
}

// settleTimeout bounds how long Enable and Restart wait for the launch
// they started to run or fail, so their answer says which: a launch takes
// at most the plugin handshake plus the Info…Health RPCs.
const settleTimeout = PluginStartTimeout + 2*RPCTimeout

// List returns every configured bridge's status, sorted by name.
func (s *Supervisor) List() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Status, 0, len(s.bridges))
	for _, e := range s.bridges {
		out = append(out, s.snapshot(e))
	}
	slices.SortFunc(out, func(a, b Status) int { return cmpString(a.Name, b.Name) })
	return out
}

// Get returns one bridge's status.
func (s *Supervisor) Get(name string) (Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.bridges[name]
	if !ok {
		return Status{}, fmt.Errorf("bridge %q: %w", name, ErrUnknown)
	}
	return s.snapshot(e), nil
}

// snapshot copies e's status; s.mu must be held.
func (s *Supervisor) snapshot(e *entry) Status {
	st := e.status
	st.Events = slices.Clone(e.status.Events)
	st.AllowedUsers = slices.Clone(e.status.AllowedUsers)
	st.ApprovedUsers = slices.Clone(e.status.ApprovedUsers)
	if st.ApprovedUsers == nil {
		st.ApprovedUsers = []string{}
	}
	if st.State == StateRunning && !st.StartedAt.IsZero() {
		st.UptimeSeconds = time.Since(st.StartedAt).Seconds()
	}
	return st
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Close stops every bridge (each gracefully, all at once) and returns when
// they have stopped. The supervisor is unusable afterwards.
func (s *Supervisor) Close() error {
	s.mu.Lock()
	s.closed = true
	es := slices.Collect(maps.Values(s.bridges))
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, e := range es {
		wg.Go(func() {
			e.op.Lock()
			defer e.op.Unlock()
			s.stopLoop(e)
		})
	}
	wg.Wait()
	s.cancel()
	return nil
}

func (s *Supervisor) entry(name string) (*entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	e, ok := s.bridges[name]
	if !ok {
		return nil, fmt.Errorf("bridge %q: %w (not in %s)", name, ErrUnknown, config.FileName)
	}
	return e, nil
}

// checkOpen returns ErrClosed once Close has begun.
func (s *Supervisor) checkOpen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return nil
}

// startLoop starts e's supervision goroutine; e.op must be held. After
// Close has begun it starts nothing (ErrClosed): Close stops only the
// loops that exist when it takes each bridge's lock, so a loop started
// later would outlive it, and its plugin agentd.
func (s *Supervisor) startLoop(e *entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	ctx, cancel := context.WithCancel(s.ctx)
	l := &loop{cancel: cancel, done: make(chan struct{})}
	e.loopCtl = l
	cfg := e.cfg
	go func() {
		defer close(l.done)
		s.run(ctx, e, cfg)
	}()
	return nil
}

// stopLoop stops e's supervision goroutine, which stops the plugin, and
// waits for it; e.op must be held.
func (s *Supervisor) stopLoop(e *entry) {
	s.mu.Lock()
	l := e.loopCtl
	e.loopCtl = nil
	s.mu.Unlock()
	if l == nil {
		return
	}
	l.cancel()
	<-l.done
	s.setState(e, StateStopped, func(st *Status) {
		st.PID, st.StartedAt, st.GatewayConnected, st.LoginQR = 0, time.Time{}, false, ""
	})
}

// setState moves e to state, applies edit (under s.mu) and notifies.
func (s *Supervisor) setState(e *entry, state State, edit func(*Status)) {
	s.mu.Lock()
	changed := e.status.State != state
	e.status.State = state
	e.status.fromPlatform = false
	if edit != nil {
		edit(&e.status)
	}
	st := e.status
	st.restarting = state == StateStopped && e.platformAlert && e.cfg.Enabled
	if state == StateStopped && !st.restarting {
		e.platformAlert = false // stopped for good: report clears the alert
	}
	if e.changed != nil {
		close(e.changed)
	}
	e.changed = make(chan struct{})
	s.mu.Unlock()
	s.report(e.name, st)
	if changed {
		s.notify(e.name, string(state))
	}
}

// settled waits until e has left the states of a launch in progress
// (stopped right after startLoop, starting) or timeout passed, and returns
// its status then: what a control request reports to the operator.
func (s *Supervisor) settled(e *entry, timeout time.Duration) Status {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		st := s.snapshot(e)
		if e.changed == nil {
			e.changed = make(chan struct{})
		}
		ch := e.changed
		s.mu.Unlock()
		if st.State != StateStarting && st.State != StateStopped {
			return st
		}
		select {
		case <-ch:
		case <-deadline.C:
			return st
		}
	}
}

func (s *Supervisor) notify(name, action string) {
	if s.opts.OnChange != nil {
		s.opts.OnChange(name, action)
	}
}
