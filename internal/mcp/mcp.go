// Package mcp connects agentd's agent to MCP tool servers through the
// official go-sdk (github.com/modelcontextprotocol/go-sdk): stdio servers
// started as child processes and Streamable HTTP servers. Each enabled
// server has one supervised client, the way internal/supervisor runs
// bridges: start with a timeout, restart with backoff when the server exits
// or the connection breaks, and a crash loop is a visible "failed" state
// carrying the server's last stderr lines. The server's tools are listed on
// connect and again on notifications/tools/list_changed, and enter the
// agent's tool registry as <server>__<tool>; they leave it when the server
// stops.
//
// The servers live in SQLite (table mcps, migration 0007_mcps.sql):
// openagent.yaml's mcps: section seeds the table at the first start only,
// then the table is the truth and REST (rest.go) and `agentd mcp` change it.
// Changes apply at once, one server at a time: a turn using another server
// is never touched. Built-in tool sets (time_now, sessions_send, the vault's
// tools) are rows of kind "builtin" in the same table, with no process.
package mcp

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/agentd/agentd/internal/agent"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/hook"
)

// CrashloopAfter is the restart policy's one number of its own (the rest,
// as for bridges, is internal/backoff): after this many quick failures in
// a row the state reads "failed" with the last error; the pool keeps
// retrying at backoff.Max pace, so fixing the cause heals the server.
const CrashloopAfter = 3

// Timeouts.
const (
	// StartTimeout bounds starting a server and the MCP handshake.
	StartTimeout = 30 * time.Second
	// ListTimeout bounds listing a server's tools.
	ListTimeout = 30 * time.Second
	// StopTimeout is how long a stdio server gets to exit after its stdin
	// closed (the MCP spec's graceful stop) before it gets SIGTERM, and
	// then SIGKILL; short, as agentd's whole shutdown has 2 s.
	StopTimeout = 500 * time.Millisecond
	// DefaultCallTimeout and DefaultMaxResultBytes apply to rows that set
	// none.
	DefaultCallTimeout    = 60 * time.Second
	DefaultMaxResultBytes = 256 << 10
	// keepAlive is the ping period of HTTP sessions, which have no process
	// exit to tell that the server went away: a failed ping closes the
	// session and the server is reconnected with backoff.
	keepAlive = 5 * time.Second
)

// Kinds of a row.
const (
	KindCustom  = "custom"
	KindBuiltin = "builtin"
)

// State is a server's state as the REST API shows it.
type State string

// States.
const (
	StateStarting State = "starting" // launching, or waiting to relaunch after a failure
	StateRunning  State = "running"  // connected; its tools are in the registry
	StateFailed   State = "failed"   // failed CrashloopAfter times in a row (still retried)
	StateDisabled State = "disabled"
)

// Resource and actions passed to OnChange hooks (broadcast as
// resource_event); state changes are sent with the State as action.
const (
	Resource       = "mcp"
	ActionCreated  = "created"
	ActionUpdated  = "updated"
	ActionDeleted  = "deleted"
	ActionEnabled  = "enabled"
	ActionDisabled = "disabled"
	ActionTools    = "tools" // the server's tool list changed
)

// Server is one row of the table: what to run.
type Server struct {
	Name string
	Kind string
	// Command is the argv of a stdio server; URL a Streamable HTTP server.
	Command []string
	URL     string
	// Env and Headers as stored: values may hold ${NAME} references to
	// agentd's environment, expanded at start.
	Env     map[string]string
	Headers map[string]string
	Enabled bool
	// Timeout and MaxResultBytes of a tool call; 0 means the default.
	Timeout        time.Duration
	MaxResultBytes int
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// ToolInfo is a tool as GET /api/mcp-tools lists it.
type ToolInfo struct {
	MCP         string `json:"mcp"`
	Name        string `json:"name"`
	Registered  string `json:"registered_as"`
	Description string `json:"description"`
	InputSchema any    `json:"input_schema"`
}

// Status is the live part of a server.
type Status struct {
	State     State
	LastError string
	Restarts  int
	PID       int
	Tools     []ToolInfo
}

// Options configure a Pool.
type Options struct {
	DB *sql.DB
	// Dir is the agent directory: the working directory of stdio servers
	// and home of logs/mcp-<name>.log.
	Dir string
	// Tools is the agent's registry the servers' tools go into.
	Tools *agent.Registry
	// Seed is the config whose mcps: section fills the table at the first
	// start; nil seeds nothing.
	Seed   *config.Config
	Logger *slog.Logger
	// LookupEnv resolves ${NAME} in env and header values; nil means
	// os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// BaseEnv is the part of agentd's environment every stdio server gets;
	// nil means PATH and HOME.
	BaseEnv []string
}

// Pool owns the MCP servers.
type Pool struct {
	db     *sql.DB
	dir    string
	reg    *agent.Registry
	log    *slog.Logger
	lookup func(string) (string, bool)
	base   []string
	now    func() time.Time

	ctx    context.Context // parent of every server loop; set by Start
	cancel context.CancelFunc

	// wmu serialises writes to the table and the decisions taken on them.
	wmu sync.Mutex

	// mu guards servers, builtins, started, closed and every entry's
	// fields marked "guarded by Pool.mu".
	mu       sync.Mutex
	servers  map[string]*entry
	builtins map[string]*builtinSet
	started  bool
	closed   bool

	hooks hook.Changes
}

// entry is one row and its supervision.
type entry struct {
	name string
	// op serialises control operations on this server only, so a slow
	// stop of one never delays another.
	op sync.Mutex

	// Guarded by Pool.mu:
	row    Server
	status Status
	loop   *loop // nil when no loop runs
}

type loop struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// Open loads the table (seeding it from opts.Seed the first time). No
// server runs before Start.
func Open(ctx context.Context, opts Options) (*Pool, error) {
	if opts.DB == nil || opts.Dir == "" || opts.Tools == nil {
		return nil, errors.New("mcp pool: DB, Dir and Tools are required")
	}
	p := &Pool{
		db: opts.DB, dir: opts.Dir, reg: opts.Tools, log: opts.Logger,
		lookup: opts.LookupEnv, base: opts.BaseEnv, now: time.Now,
		servers: map[string]*entry{}, builtins: map[string]*builtinSet{},
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	if p.lookup == nil {
		p.lookup = os.LookupEnv
	}
	if p.base == nil {
		for _, k := range []string{"PATH", "HOME"} {
			if v, ok := os.LookupEnv(k); ok {
				p.base = append(p.base, k+"="+v)
			}
		}
	}
	if opts.Seed != nil {
		if err := p.seed(ctx, opts.Seed); err != nil {
			return nil, err
		}
	}
	rows, err := p.loadRows(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		p.servers[r.Name] = &entry{name: r.Name, row: r, status: Status{State: StateDisabled}}
	}
	return p, nil
}

// Start starts every enabled server; their loops live until Close (or ctx
// ends).
func (p *Pool) Start(ctx context.Context) {
	p.mu.Lock()
	if p.started || p.closed {
		p.mu.Unlock()
		return
	}
	p.started = true
	p.ctx, p.cancel = context.WithCancel(ctx)
	es := slices.Collect(maps.Values(p.servers))
	p.mu.Unlock()
	for _, e := range es {
		e.op.Lock()
		p.reconcile(e)
		e.op.Unlock()
	}
}

// WaitStarted waits, at most d, until no enabled server is still in its
// first start, so that turns resumed right after agentd starts see the
// tools of servers that come up quickly. A slow or broken server does not
// hold agentd up longer than d.
func (p *Pool) WaitStarted(ctx context.Context, d time.Duration) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		p.mu.Lock()
		pending := 0
		for _, e := range p.servers {
			if e.row.Kind == KindCustom && e.loop != nil && e.status.State == StateStarting && e.status.Restarts == 0 {
				pending++
			}
		}
		p.mu.Unlock()
		if pending == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			p.log.Info("MCP servers still starting; not waiting for them", "starting", pending)
			return
		case <-tick.C:
		}
	}
}

// Close stops every server (all at once) and returns when they are gone.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	es := slices.Collect(maps.Values(p.servers))
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, e := range es {
		wg.Go(func() {
			e.op.Lock()
			defer e.op.Unlock()
			p.stopLoop(e)
		})
	}
	wg.Wait()
	if p.cancel != nil {
		p.cancel()
	}
}

// OnChange registers fn, called after every change with (Resource, action,
// server name). Hooks must not block.
func (p *Pool) OnChange(fn func(resource, action, id string)) {
	p.hooks.Add(fn)
}

func (p *Pool) notify(action, name string) { p.hooks.Notify(Resource, action, name) }

// LogPath is a server's log file (its stderr, and the pool's notes on it).
func LogPath(dir, name string) string {
	return filepath.Join(dir, "logs", "mcp-"+name+".log")
}

// reconcile starts or stops e's loop to match its row; e.op held.
func (p *Pool) reconcile(e *entry) {
	p.mu.Lock()
	want := e.row.Enabled && p.started && !p.closed
	running := e.loop != nil
	kind := e.row.Kind
	p.mu.Unlock()
	if kind == KindBuiltin {
		p.applyBuiltin(e)
		return
	}
	switch {
	case want && !running:
		p.startLoop(e)
	case !want && running:
		p.stopLoop(e)
	case !want:
		p.setState(e, StateDisabled, nil)
	}
}

// restart stops e's loop (if any) and starts it again when enabled; e.op
// held.
func (p *Pool) restart(e *entry) {
	p.stopLoop(e)
	p.reconcile(e)
}

// startLoop starts e's supervision goroutine; e.op held.
func (p *Pool) startLoop(e *entry) {
	ctx, cancel := context.WithCancel(p.ctx)
	l := &loop{cancel: cancel, done: make(chan struct{})}
	p.mu.Lock()
	e.loop = l
	row := e.row
	p.mu.Unlock()
	// Starting from now on, so an answer right after an enable or create
	// does not read "disabled".
	p.setState(e, StateStarting, nil)
	go func() {
		defer close(l.done)
		p.run(ctx, e, row)
	}()
}

// stopLoop stops e's goroutine, which stops the server and takes its tools
// out of the registry, and waits for it; e.op held.
func (p *Pool) stopLoop(e *entry) {
	p.mu.Lock()
	l := e.loop
	e.loop = nil
	p.mu.Unlock()
	if l != nil {
		l.cancel()
		<-l.done
	}
	p.setState(e, StateDisabled, func(st *Status) { st.PID = 0 })
}

// setState moves e to state, applies edit under p.mu and notifies when the
// state changed.
func (p *Pool) setState(e *entry, state State, edit func(*Status)) {
	p.mu.Lock()
	changed := e.status.State != state
	e.status.State = state
	if edit != nil {
		edit(&e.status)
	}
	p.mu.Unlock()
	if changed {
		p.notify(string(state), e.name)
	}
}

// List returns every server with its status, sorted by name.
func (p *Pool) List() []View {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]View, 0, len(p.servers))
	for _, e := range p.servers {
		out = append(out, view(e.row, e.status))
	}
	slices.SortFunc(out, func(a, b View) int { return cmpString(a.Name, b.Name) })
	return out
}

// Get returns one server.
func (p *Pool) Get(name string) (View, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.servers[name]
	if !ok {
		return View{}, errorf(ErrNotFound, "MCP server %q not found", name)
	}
	return view(e.row, e.status), nil
}

// Tools lists the tools of every running server and enabled built-in set,
// sorted by server and name.
func (p *Pool) Tools() []ToolInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := []ToolInfo{}
	for _, e := range p.servers {
		out = append(out, e.status.Tools...)
	}
	slices.SortFunc(out, func(a, b ToolInfo) int {
		if c := cmpString(a.MCP, b.MCP); c != 0 {
			return c
		}
		return cmpString(a.Name, b.Name)
	})
	return out
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

// toolNames are the registered names of tools.
func toolNames(tools []ToolInfo) []string {
	out := make([]string, 0, len(tools))
	for _, t := range tools {
		out = append(out, t.Registered)
	}
	return out
}

// Error is a refused change; Kind is one of the Err* sentinels.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Is matches the sentinel kind.
func (e *Error) Is(target error) bool { return target != nil && target == e.Kind }

// Kinds of refusal.
var (
	ErrInvalid  = errors.New("invalid")
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrBuiltin  = errors.New("built-in")
)

func errorf(kind error, format string, a ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, a...)}
}
