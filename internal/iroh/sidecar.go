// Package iroh runs agentd's iroh sidecar (a Node program using the
// @number0/iroh binding, see sidecar/iroh and docs/iroh-sidecar.md) and
// exposes its streams to Go: a Listener for streams accepted in serve mode
// and a Dialer for outgoing streams.
package iroh

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/agentd/agentd/internal/backoff"
)

// ALPNs used by agentd.
const (
	ALPNGateway     = "openagent/gateway/1"
	ALPNCoordinator = "openagent/coordinator/1"
)

// Mode selects what the sidecar does.
type Mode string

const (
	// ModeServe accepts streams for the configured ALPNs and forwards them to
	// the accept socket (and also serves DialSocket if set).
	ModeServe Mode = "serve"
	// ModeDial only dials out, through DialSocket.
	ModeDial Mode = "dial"
)

// Relay modes (any other value is a relay URL).
const (
	RelayDefault  = "default"
	RelayDisabled = "disabled"
)

// Presets of the iroh endpoint builder.
const (
	// PresetN0 is the production preset (n0 relays and discovery).
	PresetN0 = "n0"
	// PresetMinimal has no relays and no discovery: for tests and offline use.
	PresetMinimal = "minimal"
)

// Supervision timings.
const (
	// DefaultStartTimeout bounds the wait for the sidecar's ready line.
	DefaultStartTimeout = 20 * time.Second
	// DefaultStopTimeout is how long a SIGTERMed sidecar may take before SIGKILL.
	DefaultStopTimeout = 5 * time.Second
	// stderrTailBytes of the sidecar's stderr are kept for error messages.
	stderrTailBytes = 4096
)

// State of the supervised sidecar.
type State string

const (
	StateIdle       State = "idle"       // Start not called yet
	StateStarting   State = "starting"   // first start in progress
	StateRunning    State = "running"    // ready line received, process alive
	StateRestarting State = "restarting" // process died; waiting to restart
	StateFailed     State = "failed"     // the last start attempt failed; retrying with backoff
	StateStopped    State = "stopped"    // context cancelled, process gone
)

// Info is what the running sidecar reported about its endpoint.
type Info struct {
	NodeID string   `json:"node_id"` // 64 lowercase hex chars (Ed25519 public key)
	Addrs  []string `json:"addrs"`   // direct addresses, "ip:port"
	Relay  string   `json:"relay"`   // home relay URL, or ""
}

// Status is a snapshot of the supervisor.
type Status struct {
	State     State
	LastError error
	Restarts  int
	PID       int
	Info      Info
}

// Config of a sidecar.
type Config struct {
	Mode Mode
	// SecretKey is the endpoint's identity; its public key is the NodeId.
	SecretKey ed25519.PrivateKey
	// Relay: RelayDefault (""), RelayDisabled or a relay URL.
	Relay string
	// Preset: PresetN0 ("") or PresetMinimal.
	Preset string
	// ALPNs accepted in serve mode.
	ALPNs []string
	// AcceptSocket (serve mode): agentd's Listener socket path.
	AcceptSocket string
	// DialSocket: where the sidecar listens for dial requests (optional in
	// serve mode, required in dial mode).
	DialSocket string
	// BindHost/BindPort: local UDP address ("" and 0: the binding's default).
	BindHost string
	BindPort int
	// NodePath: node binary (path or name on PATH); default "node".
	NodePath string
	// Dir: the sidecar directory (sidecar.mjs + node_modules); default DefaultDir().
	Dir string
	// Stderr receives the sidecar's log lines (agentd: logs/iroh.log); default discarded.
	Stderr io.Writer
	Logger *slog.Logger
	// StartTimeout / StopTimeout; defaults DefaultStartTimeout / DefaultStopTimeout.
	StartTimeout time.Duration
	StopTimeout  time.Duration
}

// wireConfig is the stdin config line of the contract.
type wireConfig struct {
	Mode         Mode     `json:"mode"`
	SecretKeyHex string   `json:"secret_key_hex"`
	Relay        string   `json:"relay"`
	Preset       string   `json:"preset"`
	ALPNs        []string `json:"alpns"`
	AcceptSocket string   `json:"accept_socket,omitempty"`
	DialSocket   string   `json:"dial_socket,omitempty"`
	BindHost     string   `json:"bind_host,omitempty"`
	BindPort     int      `json:"bind_port,omitempty"`
}

// NodeIDFromKey returns the iroh NodeId (hex public key) of a secret key.
func NodeIDFromKey(k ed25519.PrivateKey) string {
	return hex.EncodeToString(k.Public().(ed25519.PublicKey))
}

// Sidecar supervises one sidecar process.
type Sidecar struct {
	cfg    Config
	node   string
	script string
	nodeID string
	log    *slog.Logger

	mu       sync.Mutex // mu guards the fields below
	started  bool
	state    State
	lastErr  error
	info     Info
	restarts int
	cur      *process
	changed  chan struct{} // closed and replaced on every state change
	done     chan struct{} // closed when supervision has ended
}

// New validates cfg and checks that node and the npm package are installed.
// Errors about missing prerequisites wrap ErrMissingPrerequisite and say how
// to fix them.
func New(cfg Config) (*Sidecar, error) {
	if err := validate(&cfg); err != nil {
		return nil, fmt.Errorf("start iroh sidecar: %w", err)
	}
	node, err := FindNode(cfg.NodePath)
	if err != nil {
		return nil, fmt.Errorf("start iroh sidecar: %w", err)
	}
	if err := CheckDir(cfg.Dir); err != nil {
		return nil, fmt.Errorf("start iroh sidecar: %w", err)
	}
	return &Sidecar{
		cfg:     cfg,
		node:    node,
		script:  filepath.Join(cfg.Dir, ScriptName),
		nodeID:  NodeIDFromKey(cfg.SecretKey),
		log:     cfg.Logger.With("component", "iroh-sidecar", "mode", string(cfg.Mode)),
		state:   StateIdle,
		changed: make(chan struct{}),
		done:    make(chan struct{}),
	}, nil
}

func validate(cfg *Config) error {
	switch cfg.Mode {
	case ModeServe:
		if cfg.AcceptSocket == "" {
			return errors.New("serve mode needs AcceptSocket")
		}
		if len(cfg.ALPNs) == 0 {
			return errors.New("serve mode needs at least one ALPN")
		}
	case ModeDial:
		if cfg.DialSocket == "" {
			return errors.New("dial mode needs DialSocket")
		}
	default:
		return fmt.Errorf("unknown mode %q", cfg.Mode)
	}
	if len(cfg.SecretKey) != ed25519.PrivateKeySize {
		return fmt.Errorf("secret key must be an ed25519.PrivateKey (%d bytes), got %d bytes", ed25519.PrivateKeySize, len(cfg.SecretKey))
	}
	if cfg.Relay == "" {
		cfg.Relay = RelayDefault
	}
	if cfg.Preset == "" {
		cfg.Preset = PresetN0
	}
	if cfg.Preset != PresetN0 && cfg.Preset != PresetMinimal {
		return fmt.Errorf("unknown preset %q", cfg.Preset)
	}
	if cfg.Dir == "" {
		cfg.Dir = DefaultDir()
	}
	if cfg.Stderr == nil {
		cfg.Stderr = io.Discard
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = DefaultStartTimeout
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = DefaultStopTimeout
	}
	return nil
}

// NodeID is this sidecar's NodeId (known before it starts).
func (s *Sidecar) NodeID() string { return s.nodeID }

// Info returns what the running sidecar last reported (zero before the first start).
func (s *Sidecar) Info() Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.info
	i.Addrs = append([]string(nil), i.Addrs...)
	return i
}

// Status returns a snapshot of the supervisor's state.
func (s *Sidecar) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{State: s.state, LastError: s.lastErr, Restarts: s.restarts, Info: s.info}
	st.Info.Addrs = append([]string(nil), s.info.Addrs...)
	if s.cur != nil && s.cur.cmd.Process != nil {
		st.PID = s.cur.cmd.Process.Pid
	}
	return st
}

// Done is closed when supervision has ended (after ctx cancel) and the process is gone.
func (s *Sidecar) Done() <-chan struct{} { return s.done }

// Dialer returns a Dialer using this sidecar's DialSocket that waits for the
// sidecar to be running before each dial.
func (s *Sidecar) Dialer() *Dialer {
	return &Dialer{SocketPath: s.cfg.DialSocket, WaitReady: s.WaitReady}
}

// WaitReady blocks until the sidecar is running, ctx ends, or supervision stops.
func (s *Sidecar) WaitReady(ctx context.Context) error {
	for {
		s.mu.Lock()
		state, lastErr, ch := s.state, s.lastErr, s.changed
		s.mu.Unlock()
		switch state {
		case StateRunning:
			return nil
		case StateStopped, StateIdle:
			return fmt.Errorf("%w: iroh sidecar is %s", ErrSidecarUnavailable, state)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("%w: iroh sidecar is %s (last error: %v): %w", ErrSidecarUnavailable, state, lastErr, ctx.Err())
			}
			return fmt.Errorf("%w: iroh sidecar is %s: %w", ErrSidecarUnavailable, state, ctx.Err())
		}
	}
}

func (s *Sidecar) setState(st State, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state = st
	if err != nil {
		s.lastErr = err
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

// Start launches the sidecar, waits for its ready line and then supervises it
// until ctx is cancelled: a sidecar that dies is restarted with exponential
// backoff; on cancel it gets SIGTERM (stdin closed), then SIGKILL after
// StopTimeout. Start returns the first launch's error, if any (then nothing
// keeps running).
func (s *Sidecar) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("start iroh sidecar: already started")
	}
	s.started = true
	s.mu.Unlock()
	s.setState(StateStarting, nil)
	p, err := s.launch(ctx)
	if err != nil {
		err = fmt.Errorf("start iroh sidecar: %w", err)
		s.setState(StateStopped, err)
		close(s.done)
		return err
	}
	go s.supervise(ctx, p)
	return nil
}

// process is one run of the sidecar.
type process struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	started time.Time
	tail    *tailBuffer
	exited  chan struct{} // closed once cmd.Wait returned
	waitErr error         // set before exited is closed
}

// exitError describes why the process ended, with the last stderr line.
func (p *process) exitError() error {
	msg := "exited"
	if p.waitErr != nil {
		msg = p.waitErr.Error()
	}
	if last := p.tail.lastLine(); last != "" {
		return fmt.Errorf("iroh sidecar %s; last log line: %s", msg, last)
	}
	return fmt.Errorf("iroh sidecar %s", msg)
}

func (s *Sidecar) launch(ctx context.Context) (*process, error) {
	line, err := json.Marshal(wireConfig{
		Mode:         s.cfg.Mode,
		SecretKeyHex: hex.EncodeToString(s.cfg.SecretKey.Seed()),
		Relay:        s.cfg.Relay,
		Preset:       s.cfg.Preset,
		ALPNs:        s.cfg.ALPNs,
		AcceptSocket: s.cfg.AcceptSocket,
		DialSocket:   s.cfg.DialSocket,
		BindHost:     s.cfg.BindHost,
		BindPort:     s.cfg.BindPort,
	})
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(s.node, s.script)
	cmd.Dir = s.cfg.Dir
	// The binding prints Rust backtraces in every error when asked to.
	cmd.Env = append(os.Environ(), "RUST_BACKTRACE=0", "RUST_LIB_BACKTRACE=0")
	p := &process{cmd: cmd, tail: &tailBuffer{max: stderrTailBytes}, exited: make(chan struct{})}
	cmd.Stderr = io.MultiWriter(s.cfg.Stderr, p.tail)
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s %s: %w", s.node, s.script, err)
	}
	p.started = time.Now()
	// The config (with the secret key) goes on stdin only; stdin stays open.
	if _, err := p.stdin.Write(append(line, '\n')); err != nil {
		s.kill(p)
		return nil, fmt.Errorf("write config to sidecar: %w", err)
	}

	ready := make(chan Info, 1)
	go s.readStdout(p, stdout, ready)

	timer := time.NewTimer(s.cfg.StartTimeout)
	defer timer.Stop()
	select {
	case info := <-ready:
		if info.NodeID != s.nodeID {
			s.kill(p)
			return nil, fmt.Errorf("sidecar reported node id %q, want %q (the public key of the configured secret key)", info.NodeID, s.nodeID)
		}
		s.mu.Lock()
		s.info = info
		s.cur = p
		s.mu.Unlock()
		s.setState(StateRunning, nil)
		s.log.Info("iroh sidecar ready", "pid", cmd.Process.Pid, "node_id", info.NodeID, "addrs", info.Addrs, "relay", info.Relay,
			"startup", time.Since(p.started).Round(time.Millisecond))
		return p, nil
	case <-p.exited:
		return nil, p.exitError()
	case <-timer.C:
		s.kill(p)
		return nil, fmt.Errorf("no ready line within %s: %w", s.cfg.StartTimeout, p.exitError())
	case <-ctx.Done():
		s.kill(p)
		return nil, ctx.Err()
	}
}

// readStdout reads the ready line, then address events, then reaps the process.
func (s *Sidecar) readStdout(p *process, stdout io.Reader, ready chan<- Info) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	first := true
	for sc.Scan() {
		var ev struct {
			Info
			Event string `json:"event"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			s.log.Warn("iroh sidecar: bad stdout line", "line", sc.Text(), "err", err)
			continue
		}
		if first {
			first = false
			ready <- ev.Info
			continue
		}
		if ev.Event == "addr" {
			s.mu.Lock()
			if s.cur == p {
				s.info.Addrs, s.info.Relay = ev.Addrs, ev.Relay
			}
			s.mu.Unlock()
			s.log.Info("iroh addresses changed", "addrs", ev.Addrs, "relay", ev.Relay)
		}
	}
	// Drain anything left so Wait does not block, then reap.
	_, _ = io.Copy(io.Discard, stdout)
	p.waitErr = p.cmd.Wait()
	close(p.exited)
}

// kill force-stops p and waits until it is reaped.
func (s *Sidecar) kill(p *process) {
	_ = p.stdin.Close()
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// stop asks p to exit (stdin EOF + SIGTERM) and kills it after StopTimeout.
func (s *Sidecar) stop(p *process) {
	_ = p.stdin.Close()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(s.cfg.StopTimeout)
	defer t.Stop()
	select {
	case <-p.exited:
	case <-t.C:
		s.log.Warn("iroh sidecar did not stop in time; killing", "timeout", s.cfg.StopTimeout)
		s.kill(p)
	}
}

func (s *Sidecar) supervise(ctx context.Context, p *process) {
	defer close(s.done)
	// The restart policy every supervised process shares (internal/backoff):
	// doubling waits, reset by a run of backoff.StableAfter. A sidecar has no
	// crash-loop state of its own; it keeps retrying at the longest wait.
	var restarts backoff.Restarts
	for {
		select {
		case <-ctx.Done():
			s.stop(p)
			s.mu.Lock()
			s.cur = nil
			s.mu.Unlock()
			s.setState(StateStopped, nil)
			s.log.Info("iroh sidecar stopped")
			return
		case <-p.exited:
		}
		err := p.exitError()
		restarts.Ran(time.Since(p.started))
		s.mu.Lock()
		s.cur = nil
		s.mu.Unlock()
		s.setState(StateRestarting, err)
		wait, _ := restarts.Fail()
		s.log.Warn("iroh sidecar died; restarting", "err", err, "backoff", wait)
		for {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				s.setState(StateStopped, nil)
				return
			case <-t.C:
			}
			np, err := s.launch(ctx)
			if err == nil {
				p = np
				s.mu.Lock()
				s.restarts++
				s.mu.Unlock()
				break
			}
			if ctx.Err() != nil {
				s.setState(StateStopped, nil)
				return
			}
			err = fmt.Errorf("restart iroh sidecar: %w", err)
			s.setState(StateFailed, err)
			wait, _ = restarts.Fail()
			s.log.Error("iroh sidecar restart failed", "err", err, "next_backoff", wait)
		}
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex // mu guards buf
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// lastLine returns the last non-empty line written.
func (t *tailBuffer) lastLine() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := bytes.Split(bytes.TrimSpace(t.buf), []byte("\n"))
	return string(bytes.TrimSpace(lines[len(lines)-1]))
}
