package mcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os/exec"
	"syscall"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentd/agentd/internal/backoff"
	"github.com/agentd/agentd/internal/logfile"
)

// permanentError marks a failure that retrying soon cannot fix (no such
// command, a ${NAME} that is not set): the server goes to failed at once.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// conn is one live connection to a server.
type conn struct {
	sess    *sdk.ClientSession
	cmd     *exec.Cmd // stdio only
	stderr  *logfile.Lines
	changed chan struct{} // a tools/list_changed arrived (buffered 1)
}

// run supervises one server until ctx is done: connect, serve its tools,
// and reconnect with backoff after every failure.
func (p *Pool) run(ctx context.Context, e *entry, row Server) {
	logs, err := logfile.Open(LogPath(p.dir, row.Name), logfile.MaxBytes, logfile.Backups)
	if err != nil {
		p.setState(e, StateFailed, func(st *Status) { st.LastError = err.Error() })
		<-ctx.Done()
		return
	}
	defer logs.Close()
	// The pool's notes on this server go to its log too, beside its stderr.
	flog := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))

	restarts := backoff.Restarts{CrashloopAfter: CrashloopAfter}
	for {
		p.setState(e, StateStarting, nil)
		t0 := time.Now()
		c, err := p.connect(ctx, row, logs)
		if err == nil {
			flog.Info("connected", "pid", c.pid(), "took", time.Since(t0).Round(time.Millisecond))
			started := time.Now()
			err = p.serve(ctx, e, row, c, flog)
			if err == nil {
				flog.Info("stopped")
				return // stopped on request
			}
			restarts.Ran(time.Since(started))
		}
		if ctx.Err() != nil {
			return
		}
		var pe *permanentError
		permanent := errors.As(err, &pe)
		if permanent {
			restarts.Hold()
		}
		delay, crashloop := restarts.Fail()
		state := StateStarting
		if crashloop || permanent {
			state = StateFailed
		}
		p.log.Warn("MCP server failed; retrying", "mcp", row.Name, "err", err, "in", delay, "state", state)
		flog.Warn("failed; retrying", "err", err, "in", delay)
		p.setState(e, state, func(st *Status) {
			st.LastError, st.PID = err.Error(), 0
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

// connect starts (stdio) or reaches (HTTP) the server and does the MCP
// handshake within StartTimeout. On error nothing is left running.
func (p *Pool) connect(ctx context.Context, row Server, logs *logfile.File) (*conn, error) {
	c := &conn{changed: make(chan struct{}, 1), stderr: &logfile.Lines{Log: logs}}
	opts := &sdk.ClientOptions{
		ToolListChangedHandler: func(context.Context, *sdk.ToolListChangedRequest) {
			select {
			case c.changed <- struct{}{}:
			default: // one pending refresh covers any number of notices
			}
		},
	}
	var transport sdk.Transport
	if row.URL != "" {
		hdr, err := p.expandAll(row.Headers, "headers")
		if err != nil {
			return nil, err
		}
		transport = &sdk.StreamableClientTransport{
			Endpoint:   row.URL,
			HTTPClient: &http.Client{Transport: &headerTransport{headers: hdr, base: http.DefaultTransport}},
		}
		opts.KeepAlive = keepAlive
	} else {
		cmd, err := p.command(row)
		if err != nil {
			return nil, err
		}
		cmd.Stderr = c.stderr // CommandTransport leaves stderr alone
		c.cmd = cmd
		transport = &sdk.CommandTransport{Command: cmd, TerminateDuration: StopTimeout}
	}
	client := sdk.NewClient(&sdk.Implementation{Name: "agentd", Version: Version}, opts)
	cctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	sess, err := client.Connect(cctx, transport, nil)
	if err != nil {
		c.kill()
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.EACCES) {
			return nil, &permanentError{fmt.Errorf("start %s: %w", row.Command[0], err)}
		}
		if cctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("no MCP handshake within %s", StartTimeout)
		}
		return nil, c.describe("connect", err)
	}
	c.sess = sess
	return c, nil
}

// command is the exec.Cmd of a stdio server: argv, the agent directory as
// working directory, and an environment of PATH, HOME and the row's env
// only, so agentd's own secrets (provider API keys) never reach a server.
func (p *Pool) command(row Server) (*exec.Cmd, error) {
	if len(row.Command) == 0 {
		return nil, &permanentError{errors.New("no command")}
	}
	env, err := p.expandAll(row.Env, "env")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(row.Command[0], row.Command[1:]...)
	cmd.Dir = p.dir
	cmd.Env = append([]string{}, p.base...)
	for _, k := range sortedKeys(env) {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	// Its own process group: a terminal's Ctrl-C reaches agentd only, and
	// a kill takes the server's children along.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A child of the server holding stderr open must not block Wait.
	cmd.WaitDelay = StopTimeout
	return cmd, nil
}

// serve registers the server's tools and keeps them current until ctx is
// done (then it stops the server and returns nil) or the connection ends
// (then it returns why).
func (p *Pool) serve(ctx context.Context, e *entry, row Server, c *conn, log *slog.Logger) error {
	done := make(chan error, 1)
	go func() { done <- c.sess.Wait() }()
	defer p.clearTools(e)
	if err := p.refreshTools(ctx, e, row, c); err != nil {
		c.close()
		<-done
		return c.describe("list tools", err)
	}
	p.setState(e, StateRunning, func(st *Status) { st.PID, st.LastError = c.pid(), "" })
	for {
		select {
		case <-ctx.Done():
			p.clearTools(e)
			c.close()
			<-done
			return nil
		case err := <-done:
			p.clearTools(e)
			c.close()
			if err == nil {
				err = errors.New("connection closed")
			}
			return c.describe("connection", err)
		case <-c.changed:
			if err := p.refreshTools(ctx, e, row, c); err != nil && ctx.Err() == nil {
				log.Warn("tools/list_changed: listing failed; keeping the old list", "err", err)
			}
		}
	}
}

// refreshTools lists the server's tools and swaps them into the registry.
func (p *Pool) refreshTools(ctx context.Context, e *entry, row Server, c *conn) error {
	lctx, cancel := context.WithTimeout(ctx, ListTimeout)
	defer cancel()
	var remote []*sdk.Tool
	for t, err := range c.sess.Tools(lctx, nil) {
		if err != nil {
			return err
		}
		remote = append(remote, t)
	}
	tools, infos := adapt(row, c.sess, remote)
	p.mu.Lock()
	old := toolNames(e.status.Tools)
	p.mu.Unlock()
	if err := p.reg.Replace(old, tools...); err != nil {
		return err
	}
	p.mu.Lock()
	e.status.Tools = infos
	p.mu.Unlock()
	p.notify(ActionTools, e.name)
	return nil
}

// clearTools takes e's tools out of the registry.
func (p *Pool) clearTools(e *entry) {
	p.mu.Lock()
	old := toolNames(e.status.Tools)
	e.status.Tools = nil
	p.mu.Unlock()
	if len(old) > 0 {
		_ = p.reg.Replace(old)
		p.notify(ActionTools, e.name)
	}
}

func (c *conn) pid() int {
	if c.cmd != nil && c.cmd.Process != nil {
		return c.cmd.Process.Pid
	}
	return 0
}

// close ends the session: a stdio server gets its stdin closed and
// StopTimeout to exit, then its process group is killed.
func (c *conn) close() {
	if c.sess != nil {
		done := make(chan struct{})
		go func() { defer close(done); _ = c.sess.Close() }()
		select {
		case <-done:
		case <-time.After(2*StopTimeout + time.Second):
			c.kill() // Close waits on the process; this ends the wait
			<-done
		}
	}
	c.kill()
}

// kill sends SIGKILL to a stdio server's process group and reaps it.
func (c *conn) kill() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	// The SDK's transport owns Wait (it reaps the process when the
	// session closes, also when Connect fails).
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
}

// describe says how the server ended, with its last stderr lines, which
// is what an operator can act on.
func (c *conn) describe(step string, err error) error {
	msg := fmt.Sprintf("%s: %v", step, err)
	if c.cmd != nil && c.cmd.ProcessState != nil {
		msg = fmt.Sprintf("process %d ended (%s) during %s", c.cmd.Process.Pid, c.cmd.ProcessState.String(), step)
	}
	if tail := c.stderr.Tail(); tail != "" {
		msg += "; stderr: " + tail
	}
	return errors.New(msg)
}

// headerTransport adds a row's headers to every request to an HTTP server.
type headerTransport struct {
	headers map[string]string
	base    http.RoundTripper
}

func (h *headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h.headers {
		r.Header.Set(k, v)
	}
	return h.base.RoundTrip(r)
}

// expandAll resolves ${NAME} references in the values of m against
// agentd's environment; an unset variable is a permanent error (a missing
// secret must not become "").
func (p *Pool) expandAll(m map[string]string, field string) (map[string]string, error) {
	out := make(map[string]string, len(m))
	for k, v := range m {
		var missing string
		s := envRef.ReplaceAllStringFunc(v, func(ref string) string {
			name := envRef.FindStringSubmatch(ref)[1]
			val, ok := p.lookup(name)
			if !ok && missing == "" {
				missing = name
			}
			return val
		})
		if missing != "" {
			return nil, &permanentError{fmt.Errorf("%s.%s: environment variable %s is not set", field, k, missing)}
		}
		out[k] = s
	}
	return out, nil
}
