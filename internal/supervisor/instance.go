package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/agentd/agentd/internal/backoff"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/logfile"
	"github.com/agentd/agentd/internal/procstat"
	"github.com/agentd/agentd/plugins/bridge"
	bridgev1 "github.com/agentd/agentd/proto/bridge/v1"
)

// permanentError marks a failure that relaunching cannot fix (no binary, a
// binary that is not a bridge, no common API version): the bridge goes to
// StateFailed instead of being retried.
type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

func permanent(err error) error { return &permanentError{err} }

// prefixRe is what a session prefix must look like: it becomes part of a
// certificate capability and of every session id the bridge uses.
var prefixRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// hostEnv are the variables of agentd's environment a bridge inherits.
// Everything else (provider API keys above all) stays in agentd: a bridge
// gets its own settings through Configure.
var hostEnv = []string{"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "TZ",
	"SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
	"http_proxy", "https_proxy", "no_proxy"}

// instance is one launched plugin process.
type instance struct {
	name   string
	pc     *plugin.Client
	cmd    *exec.Cmd
	bc     *bridge.Client
	pid    int
	stderr *logfile.Lines
}

// run supervises one bridge until ctx is done: launch, watch, and relaunch
// with backoff after every failure.
func (s *Supervisor) run(ctx context.Context, e *entry, cfg config.Bridge) {
	logs, err := openBridgeLog(s.opts.Dir, e.name)
	if err != nil {
		s.setState(e, StateFailed, func(st *Status) { st.LastError = err.Error() })
		<-ctx.Done()
		return
	}
	defer logs.Close()
	blog := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	restarts := backoff.Restarts{CrashloopAfter: CrashloopAfter}
	for {
		s.setState(e, StateStarting, nil)
		t0 := time.Now()
		inst, err := s.launch(ctx, e, cfg, logs, blog)
		if err == nil {
			started := time.Now()
			s.mu.Lock()
			state, back := launchedState(e)
			s.mu.Unlock()
			s.setState(e, state, func(st *Status) {
				st.PID, st.StartedAt = inst.pid, started
				switch {
				case state != StateRunning: // reported during the launch
					st.LastError, st.fromPlatform = e.preason, true
				case back:
					st.LastError = ""
				}
			})
			if back {
				s.platformBack(e)
			}
			s.mu.Lock()
			e.inst = inst
			s.mu.Unlock()
			s.log.Info("bridge running", "bridge", e.name, "pid", inst.pid, "launch", time.Since(t0).Round(time.Microsecond))
			// Back up: at once after a first launch, but after quick
			// failures only once it has run backoff.StableAfter, so a
			// crash loop is never reported as up between its crashes.
			wait := time.Duration(0)
			if restarts.Failing() {
				wait = backoff.StableAfter
			}
			up := time.AfterFunc(wait, func() {
				if !back { // else the platform said so already (platformBack)
					s.backUp(e)
				}
			})
			err = s.watch(ctx, e, inst)
			up.Stop()
			s.mu.Lock()
			e.inst = nil
			s.mu.Unlock()
			if err == nil { // stopped on request
				return
			}
			restarts.Ran(time.Since(started))
		}
		if ctx.Err() != nil {
			return
		}
		if pe := (*permanentError)(nil); errors.As(err, &pe) {
			s.log.Error("bridge cannot run", "bridge", e.name, "err", err)
			blog.Error("bridge cannot run", "err", err)
			s.setState(e, StateFailed, func(st *Status) {
				st.LastError, st.PID, st.GatewayConnected = err.Error(), 0, false
			})
			<-ctx.Done()
			return
		}
		delay, crashloop := restarts.Fail()
		state := StateBackoff
		if crashloop {
			state = StateCrashloop
		}
		s.log.Warn("bridge failed; relaunching", "bridge", e.name, "err", err, "in", delay, "state", state)
		blog.Warn("bridge failed; relaunching", "err", err, "in", delay)
		s.setState(e, state, func(st *Status) {
			st.LastError, st.PID, st.GatewayConnected = err.Error(), 0, false
			st.Restarts++
		})
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// binaryPath is bridges.<name>.path (relative to the agent directory) or
// bridge-<name> in BinDir.
func (s *Supervisor) binaryPath(name string, cfg config.Bridge) string {
	if cfg.Path == "" {
		return filepath.Join(s.opts.BinDir, "bridge-"+name)
	}
	if filepath.IsAbs(cfg.Path) {
		return cfg.Path
	}
	return filepath.Join(s.opts.Dir, cfg.Path)
}

// launch starts the plugin and takes it through Info, identity, Configure
// and Start. On error nothing is left running.
func (s *Supervisor) launch(ctx context.Context, e *entry, cfg config.Bridge, logs *logfile.File, blog *slog.Logger) (_ *instance, err error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("launch bridge %s: %w", e.name, err) // stopped before it began: spawn nothing
	}
	path := s.binaryPath(e.name, cfg)
	s.mu.Lock()
	e.status.Path = path
	e.gen++
	gen := e.gen
	e.pstate, e.preason = "", ""
	e.status.LoginQR = ""
	s.mu.Unlock()
	if fi, err := os.Stat(path); err != nil {
		return nil, permanent(fmt.Errorf("launch bridge %s: binary %s: %w (install bridge-%s beside agentd or set bridges.%s.path)",
			e.name, path, errors.Unwrap(err), e.name, e.name))
	} else if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return nil, permanent(fmt.Errorf("launch bridge %s: %s is not an executable file", e.name, path))
	}
	dataDir := filepath.Join(s.opts.Dir, "bridges", e.name)
	uploads := filepath.Join(s.opts.Dir, "uploads")
	for _, d := range []string{dataDir, uploads} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("launch bridge %s: %w", e.name, err)
		}
	}

	cmd := exec.Command(path)
	cmd.Dir = dataDir
	// Its own process group: a terminal's Ctrl-C reaches agentd only (which
	// then stops bridges in order), and a kill can take the plugin's
	// children with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	for _, k := range hostEnv {
		if v, ok := os.LookupEnv(k); ok {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	stderr := &logfile.Lines{Log: logs}
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  bridge.Handshake,
		Plugins:          bridge.PluginSet(nil),
		Cmd:              cmd,
		SkipHostEnv:      true,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		StartTimeout:     PluginStartTimeout,
		Stderr:           stderr,
		// Once serving, go-plugin redirects the plugin's os.Stdout and
		// os.Stderr over gRPC; they belong in the same log.
		SyncStderr: stderr,
		SyncStdout: &logfile.Lines{Log: logs},
		// Plugin stderr already goes to the bridge log verbatim; go-plugin's
		// own logger would only repeat it.
		Logger: hclog.New(&hclog.LoggerOptions{Name: "go-plugin", Level: hclog.Off}),
	})
	inst := &instance{name: e.name, pc: pc, cmd: cmd, stderr: stderr}
	defer func() {
		if err != nil {
			s.kill(inst)
		}
	}()

	bc, err := bridge.Dispense(pc)
	if cmd.Process != nil { // set by go-plugin's start, even if the handshake failed
		inst.pid = cmd.Process.Pid
	}
	if err != nil {
		inst.waitExit(startErrGrace)
		inst.end(false) // reaps it, and with it the rest of its stderr
		derr, perm := describeStartErr(err, stderr)
		err = fmt.Errorf("launch bridge %s: %s: %w", e.name, path, derr)
		if perm {
			return nil, permanent(err)
		}
		return nil, err
	}
	inst.bc = bc

	rctx, cancel := context.WithTimeout(ctx, RPCTimeout)
	defer cancel()
	info, err := bc.Info(rctx)
	if err != nil {
		return nil, inst.explain("info", err)
	}
	api, err := bridge.NegotiateAPIVersion(bridge.APIVersions, info.ApiVersions)
	if err != nil {
		return nil, permanent(fmt.Errorf("launch bridge %s: %w", e.name, err))
	}
	if !prefixRe.MatchString(info.SessionPrefix) {
		return nil, permanent(fmt.Errorf("launch bridge %s: invalid session prefix %q (want %s)", e.name, info.SessionPrefix, prefixRe))
	}
	if other := s.claimPrefix(e, info.SessionPrefix); other != "" {
		return nil, permanent(fmt.Errorf("launch bridge %s: session prefix %q is already used by bridge %s", e.name, info.SessionPrefix, other))
	}
	s.mu.Lock()
	e.status.Version, e.status.APIVersion = info.Version, api
	s.mu.Unlock()
	blog.Info("bridge launched", "pid", inst.pid, "plugin_name", info.Name, "version", info.Version, "api_version", api)

	id, err := s.opts.Issuer.IssueBridge(rctx, e.name, info.SessionPrefix)
	if err != nil {
		return nil, fmt.Errorf("launch bridge %s: issue identity: %w", e.name, err)
	}
	blog.Info("bridge identity ready", "client_id", id.ClientID())

	err = bc.Configure(rctx, &bridgev1.ConfigureRequest{
		ApiVersion:     api,
		Settings:       s.takeLogin(e, cfg.Settings),
		AllowedUsers:   allowedUsers(cfg.AllowedUsers, s.approvedUsers(rctx, e)),
		DmPolicy:       dmPolicy(cfg),
		GroupPolicy:    cfg.GroupPolicy,
		AllowedGroups:  cfg.AllowedGroups,
		GatewayNetwork: s.opts.GatewayNetwork,
		GatewayAddress: s.opts.GatewayAddress,
		IdentityPath:   IdentityPath(s.opts.Dir, e.name),
		DataDir:        dataDir,
		UploadsDir:     uploads,
	}, &hostServer{s: s, e: e, gen: gen, log: blog})
	if err != nil {
		return nil, inst.explain("configure", err)
	}
	if err := bc.Start(rctx); err != nil {
		return nil, inst.explain("start", err)
	}
	// Running means answering Health, not merely launched.
	h, err := bc.Health(rctx)
	if err != nil {
		return nil, inst.explain("health", err)
	}
	if h.State == bridgev1.State_STATE_FAILED {
		return nil, fmt.Errorf("launch bridge %s: %s", e.name, h.LastError)
	}
	s.mu.Lock()
	e.status.GatewayConnected = h.GatewayConnected
	if h.PlatformStatus != "" {
		e.status.PlatformStatus = h.PlatformStatus
	}
	s.mu.Unlock()
	return inst, nil
}

// IdentityPath is where a bridge's identity file lives (the Issuer writes
// it; the bridge reads it).
func IdentityPath(dir, name string) string {
	return filepath.Join(dir, "keys", "bridge-"+name+".identity")
}

// claimPrefix records session prefix p for e unless another supervised
// bridge holds it, in which case it returns that bridge's name: two bridges
// on one prefix could act on each other's sessions. Check and claim happen
// under one lock so two bridges launching together cannot both win.
func (s *Supervisor) claimPrefix(e *entry, p string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for n, o := range s.bridges {
		if o != e && o.loopCtl != nil && o.status.SessionPrefix == p {
			return n
		}
	}
	e.status.SessionPrefix = p
	return ""
}

// describeStartErr turns go-plugin's start errors into what an operator
// needs to read, and says whether relaunching the same binary could help.
func describeStartErr(err error, stderr *logfile.Lines) (error, bool) {
	msg := err.Error()
	first, _, _ := strings.Cut(msg, "\n")
	tail := stderr.Tail()
	switch {
	case strings.Contains(tail, "This binary is a plugin"):
		// go-plugin's own refusal when the magic cookie does not match.
		return errors.New("plugin handshake refused: the binary is a go-plugin plugin with another magic cookie, not an agentd bridge"), true
	case strings.Contains(strings.ToLower(first), "incompatible api version"):
		return fmt.Errorf("plugin handshake version mismatch (agentd speaks bridge plugin protocol %d): %s", bridge.ProtocolVersion, first), true
	case strings.HasPrefix(first, "Unrecognized remote plugin message: ") && len(first) > len("Unrecognized remote plugin message: "):
		return fmt.Errorf("not an agentd bridge plugin: it printed %q instead of the go-plugin handshake",
			strings.TrimPrefix(first, "Unrecognized remote plugin message: ")), true
	case strings.Contains(msg, "timeout while waiting for plugin to start"):
		return fmt.Errorf("no plugin handshake within %s; is this a bridge binary?", PluginStartTimeout), true
	case strings.Contains(msg, "Failed to read any lines"), strings.Contains(msg, "exited before we could connect"):
		if tail != "" {
			return fmt.Errorf("exited during the plugin handshake: %s", tail), false
		}
		return errors.New("exited during the plugin handshake without a word"), false
	}
	return errors.New(first), false
}

// watch waits until ctx is done (then stops the plugin and returns nil) or
// the plugin fails (then returns why, with the process gone).
func (s *Supervisor) watch(ctx context.Context, e *entry, inst *instance) error {
	poll := time.NewTicker(exitPollInterval)
	defer poll.Stop()
	health := time.NewTicker(HealthInterval)
	defer health.Stop()
	fails := 0
	var lastPS platformReport
	for {
		select {
		case <-ctx.Done():
			s.stop(e, inst)
			return nil
		case <-poll.C:
			if inst.pc.Exited() || inst.leaderGone() {
				s.log.Debug("bridge process ended", "bridge", e.name, "pid", inst.pid)
				s.kill(inst) // reaps it, so exitError can read the status
				return inst.exitError()
			}
		case <-health.C:
			hctx, cancel := context.WithTimeout(ctx, HealthInterval)
			h, err := inst.bc.Health(hctx)
			cancel()
			if ctx.Err() != nil {
				continue // the Done case stops it
			}
			if err != nil {
				if inst.pc.Exited() {
					continue // the poll case reports it with the exit status
				}
				if fails++; fails >= HealthFailures {
					s.kill(inst)
					return fmt.Errorf("bridge %s failed %d health checks: %w", e.name, fails, err)
				}
				continue
			}
			fails = 0
			if h.State == bridgev1.State_STATE_FAILED {
				s.kill(inst)
				return fmt.Errorf("bridge %s reported failure: %s", e.name, h.LastError)
			}
			// The backstop of the state events: one lost on the way (the
			// host queue full) is applied once two checks in a row say
			// it, so that a check answered just before an event cannot
			// undo that event.
			ps := platformReport{bridge.StateName(h.PlatformState), h.PlatformReason}
			if ps == lastPS {
				s.mu.Lock()
				gen := e.gen
				s.mu.Unlock()
				s.platformState(e, gen, ps.state, ps.reason)
			}
			lastPS = ps
			s.mu.Lock()
			e.status.GatewayConnected = h.GatewayConnected
			if h.PlatformStatus != "" {
				e.status.PlatformStatus = h.PlatformStatus
			}
			s.mu.Unlock()
		}
	}
}

// waitExit waits up to d for the process to end and its output to be read.
func (inst *instance) waitExit(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !inst.pc.Exited() && !inst.leaderGone() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(exitPollInterval)
	}
	return true
}

// explain replaces an RPC error caused by the plugin dying mid-call
// ("Unavailable: EOF") with how the process ended, which is what an
// operator can act on.
func (inst *instance) explain(step string, err error) error {
	if inst.waitExit(startErrGrace) {
		inst.end(false) // reaps it, so exitError can read the status
		err = inst.exitError()
	}
	return fmt.Errorf("launch bridge %s: %s: %w", inst.name, step, err)
}

// exitError describes how the process ended, with its last stderr line.
func (inst *instance) exitError() error {
	how := "exited"
	if ps := inst.cmd.ProcessState; ps != nil {
		how = ps.String() // "exit status 2", "signal: killed"
	}
	if last := inst.stderr.Tail(); last != "" {
		return fmt.Errorf("plugin process %d ended (%s): %s", inst.pid, how, last)
	}
	return fmt.Errorf("plugin process %d ended (%s)", inst.pid, how)
}

// stop asks the plugin to stop and ends the process, killing it if Stop
// does not return within the stop timeout.
func (s *Supervisor) stop(e *entry, inst *instance) {
	ctx, cancel := context.WithTimeout(context.Background(), s.stopWait)
	defer cancel()
	start := time.Now()
	graceful := true
	if err := inst.bc.Stop(ctx); err != nil {
		s.log.Warn("bridge did not stop; killing it", "bridge", e.name, "pid", inst.pid, "err", err, "after", time.Since(start).Round(time.Millisecond))
		graceful = false
	}
	inst.end(graceful)
	s.log.Info("bridge stopped", "bridge", e.name, "pid", inst.pid, "took", time.Since(start).Round(time.Millisecond))
}

// kill ends the process group at once and releases go-plugin's resources.
func (s *Supervisor) kill(inst *instance) { inst.end(false) }

// end ends the process and releases go-plugin's resources, returning once
// the process is gone. graceful lets go-plugin close the connection first
// (the plugin then exits by itself); otherwise the process group gets
// SIGKILL at once, since go-plugin's Kill would first ask a stuck process
// to shut down and wait 2 s more.
func (inst *instance) end(graceful bool) {
	if !graceful {
		inst.killGroup()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		inst.pc.Kill()
	}()
	poll := time.NewTicker(exitPollInterval)
	defer poll.Stop()
	for {
		select {
		case <-done:
			inst.killGroup()
			return
		case <-poll.C:
			// go-plugin's Kill also waits for the plugin's stdout and stderr
			// to close; a child of the plugin that inherited them would hold
			// that forever, so once the plugin is gone its group goes too.
			if inst.pc.Exited() || inst.leaderGone() {
				inst.killGroup()
			}
		}
	}
}

// killGroup sends SIGKILL to the plugin's process group (see Setpgid).
func (inst *instance) killGroup() {
	if inst.pid > 0 {
		_ = syscall.Kill(-inst.pid, syscall.SIGKILL)
	}
}

// leaderGone reports whether the plugin process itself has terminated
// (it may be an unreaped zombie while go-plugin waits for its pipes).
func (inst *instance) leaderGone() bool {
	if inst.pid <= 0 || runtime.GOOS != "linux" {
		return false // elsewhere go-plugin's exit flag has to do
	}
	st, err := procstat.State(procstat.Path(inst.pid))
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	return st == 0 || st == 'Z'
}

// takeLogin is settings plus the one-launch login settings of e (Login),
// which it clears.
func (s *Supervisor) takeLogin(e *entry, settings map[string]string) map[string]string {
	s.mu.Lock()
	login := e.login
	e.login = nil
	s.mu.Unlock()
	if len(login) == 0 {
		return settings
	}
	out := make(map[string]string, len(settings)+len(login))
	for k, v := range settings {
		out[k] = v
	}
	for k, v := range login {
		out[k] = v
	}
	return out
}
