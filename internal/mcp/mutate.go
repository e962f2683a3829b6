package mcp

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/agentd/agentd/internal/config"
)

// Masked is how a literal env or header value is shown, and, sent back in
// a PUT, means "keep the current value".
const Masked = "***"

// envRef is a ${NAME} reference to agentd's environment.
var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// Limits of what the API accepts.
const (
	maxArgs       = 64
	maxArgLen     = 4096
	maxPairs      = 64
	maxValueLen   = 8192
	maxURLLen     = 2048
	maxCallTimout = time.Hour
	maxResult     = 16 << 20
)

// View is a server as the REST API shows it: env and header values masked
// (a value that is only a ${NAME} reference is shown as written).
type View struct {
	Name           string            `json:"name"`
	Kind           string            `json:"kind"`
	Command        []string          `json:"command"`
	URL            *string           `json:"url"`
	Env            map[string]string `json:"env"`
	Headers        map[string]string `json:"headers"`
	Enabled        bool              `json:"enabled"`
	Status         State             `json:"status"`
	Tools          []string          `json:"tools"`
	LastError      string            `json:"last_error"`
	Restarts       int               `json:"restarts"`
	PID            int               `json:"pid,omitempty"`
	TimeoutS       float64           `json:"timeout_s"`
	MaxResultBytes int               `json:"max_result_bytes"`
	CreatedAt      time.Time         `json:"created_at"`
	UpdatedAt      time.Time         `json:"updated_at"`
}

func view(r Server, st Status) View {
	v := View{
		Name: r.Name, Kind: r.Kind, Command: r.Command, Env: mask(r.Env), Headers: mask(r.Headers),
		Enabled: r.Enabled, Status: st.State, Tools: []string{}, LastError: st.LastError,
		Restarts: st.Restarts, PID: st.PID, TimeoutS: r.Timeout.Seconds(), MaxResultBytes: r.MaxResultBytes,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
	}
	if r.URL != "" {
		u := r.URL
		v.URL = &u
	}
	if v.TimeoutS == 0 && r.Kind == KindCustom {
		v.TimeoutS = DefaultCallTimeout.Seconds()
	}
	if v.MaxResultBytes == 0 && r.Kind == KindCustom {
		v.MaxResultBytes = DefaultMaxResultBytes
	}
	for _, t := range st.Tools {
		v.Tools = append(v.Tools, t.Registered)
	}
	return v
}

// mask shows ${NAME} references as written and every literal as Masked.
func mask(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		if envRef.ReplaceAllString(v, "") == "" && v != "" {
			out[k] = v
		} else {
			out[k] = Masked
		}
	}
	return out
}

// Input creates a server (POST /api/mcps).
type Input struct {
	Name           string            `json:"name"`
	Command        []string          `json:"command"`
	URL            string            `json:"url"`
	Env            map[string]string `json:"env"`
	Headers        map[string]string `json:"headers"`
	Enabled        *bool             `json:"enabled"`
	TimeoutS       float64           `json:"timeout_s"`
	MaxResultBytes int               `json:"max_result_bytes"`
}

// Patch updates a server (PUT /api/mcps/{name}): nil fields keep their
// value. Env and Headers replace the whole map, except that a Masked value
// keeps the key's current value.
type Patch struct {
	Command        *[]string          `json:"command"`
	URL            *string            `json:"url"`
	Env            *map[string]string `json:"env"`
	Headers        *map[string]string `json:"headers"`
	Enabled        *bool              `json:"enabled"`
	TimeoutS       *float64           `json:"timeout_s"`
	MaxResultBytes *int               `json:"max_result_bytes"`
}

func invalid(format string, a ...any) error { return errorf(ErrInvalid, format, a...) }

// validate checks a custom row.
func validate(r Server) error {
	if !config.MCPNameRe.MatchString(r.Name) || strings.Contains(r.Name, "__") {
		return invalid("name: %q is not a valid MCP server name (1-32 of letters, digits, _ and -, starting with a letter or digit, no __)", r.Name)
	}
	if (len(r.Command) == 0) == (r.URL == "") {
		return invalid("set exactly one of command (an argv list) or url")
	}
	if len(r.Command) > maxArgs {
		return invalid("command: more than %d arguments", maxArgs)
	}
	for i, a := range r.Command {
		if len(a) > maxArgLen || strings.ContainsRune(a, 0) || (i == 0 && strings.TrimSpace(a) == "") {
			return invalid("command[%d]: empty, longer than %d bytes or containing NUL", i, maxArgLen)
		}
	}
	if r.URL != "" {
		u, err := url.Parse(r.URL)
		switch {
		case len(r.URL) > maxURLLen:
			return invalid("url: longer than %d bytes", maxURLLen)
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			return invalid("url: %q is not an absolute http(s) URL", r.URL)
		case u.User != nil:
			return invalid("url: must not contain credentials; use headers")
		case len(r.Env) > 0:
			return invalid("env: is for command servers; an url server takes headers")
		}
	}
	if len(r.Command) > 0 && len(r.Headers) > 0 {
		return invalid("headers: are for url servers; a command server takes env")
	}
	if err := validatePairs("env", r.Env, envKey); err != nil {
		return err
	}
	if err := validatePairs("headers", r.Headers, headerKey); err != nil {
		return err
	}
	switch {
	case r.Timeout < 0 || r.Timeout > maxCallTimout:
		return invalid("timeout_s: must be between 0 (default %s) and %s", DefaultCallTimeout, maxCallTimout)
	case r.MaxResultBytes < 0 || r.MaxResultBytes > maxResult:
		return invalid("max_result_bytes: must be between 0 (default %d) and %d", DefaultMaxResultBytes, maxResult)
	}
	return nil
}

var (
	envKey    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	headerKey = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
)

func validatePairs(field string, m map[string]string, key *regexp.Regexp) error {
	if len(m) > maxPairs {
		return invalid("%s: more than %d entries", field, maxPairs)
	}
	for _, k := range sortedKeys(m) {
		v := m[k]
		switch {
		case !key.MatchString(k):
			return invalid("%s: %q is not a valid name", field, k)
		case field == "env" && (k == "PATH" || k == "HOME"):
			return invalid("env.%s: is set by agentd", k)
		case len(v) > maxValueLen || strings.ContainsAny(v, "\x00\r\n"):
			return invalid("%s.%s: longer than %d bytes or containing NUL or a line break", field, k, maxValueLen)
		case v == Masked:
			return invalid("%s.%s: %q only means \"keep the current value\" in an update", field, k, Masked)
		}
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}

// Create adds a server and starts it when enabled.
func (p *Pool) Create(ctx context.Context, in Input) (View, error) {
	now := p.now()
	r := Server{
		Name: in.Name, Kind: KindCustom, Command: in.Command, URL: in.URL, Env: in.Env, Headers: in.Headers,
		Enabled: in.Enabled == nil || *in.Enabled, Timeout: seconds(in.TimeoutS), MaxResultBytes: in.MaxResultBytes,
		CreatedAt: now, UpdatedAt: now,
	}
	if len(r.Command) == 0 {
		r.Command = nil
	}
	if err := validate(r); err != nil {
		return View{}, err
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.mu.Lock()
	_, exists := p.servers[r.Name]
	closed := p.closed
	p.mu.Unlock()
	switch {
	case closed:
		return View{}, errorf(ErrInvalid, "the MCP pool is shut down")
	case exists:
		return View{}, errorf(ErrExists, "MCP server %q already exists; change it with PUT", r.Name)
	}
	if err := insertRow(ctx, p.db, r); err != nil {
		return View{}, fmt.Errorf("create MCP server %s: %w", r.Name, err)
	}
	e := &entry{name: r.Name, row: r, status: Status{State: StateDisabled}}
	e.op.Lock()
	defer e.op.Unlock()
	p.mu.Lock()
	p.servers[r.Name] = e
	p.mu.Unlock()
	p.log.Info("MCP server added", "mcp", r.Name, "enabled", r.Enabled)
	p.notify(ActionCreated, r.Name)
	p.reconcile(e)
	return p.Get(r.Name)
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// Update merges patch into a server and restarts it when what it runs
// changed. Built-in rows take only enabled.
func (p *Pool) Update(ctx context.Context, name string, patch Patch) (View, error) {
	e, err := p.entry(name)
	if err != nil {
		return View{}, err
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if err := p.still(e); err != nil {
		return View{}, err
	}
	e.op.Lock()
	defer e.op.Unlock()
	p.mu.Lock()
	old := e.row
	p.mu.Unlock()
	r := old
	if r.Kind == KindBuiltin && (patch.Command != nil || patch.URL != nil || patch.Env != nil || patch.Headers != nil ||
		patch.TimeoutS != nil || patch.MaxResultBytes != nil) {
		return View{}, errorf(ErrBuiltin, "%s is built in: only enabled can be changed", name)
	}
	if patch.Command != nil {
		r.Command = *patch.Command
		if len(r.Command) == 0 {
			r.Command = nil
		}
	}
	if patch.URL != nil {
		r.URL = *patch.URL
	}
	if patch.Env != nil {
		r.Env = keepMasked(*patch.Env, old.Env)
	}
	if patch.Headers != nil {
		r.Headers = keepMasked(*patch.Headers, old.Headers)
	}
	if patch.Enabled != nil {
		r.Enabled = *patch.Enabled
	}
	if patch.TimeoutS != nil {
		r.Timeout = seconds(*patch.TimeoutS)
	}
	if patch.MaxResultBytes != nil {
		r.MaxResultBytes = *patch.MaxResultBytes
	}
	if r.Kind == KindCustom {
		if err := validate(r); err != nil {
			return View{}, err
		}
	}
	r.UpdatedAt = p.now()
	if err := updateRow(ctx, p.db, r); err != nil {
		return View{}, fmt.Errorf("update MCP server %s: %w", name, err)
	}
	p.mu.Lock()
	e.row = r
	p.mu.Unlock()
	p.notify(ActionUpdated, name)
	if r.Kind == KindCustom && r.Enabled && old.Enabled && !sameRun(old, r) {
		p.log.Info("MCP server changed; restarting it", "mcp", name)
		p.restart(e)
	} else {
		p.reconcile(e)
	}
	return p.Get(name)
}

// keepMasked is next with Masked values replaced by cur's.
func keepMasked(next, cur map[string]string) map[string]string {
	out := make(map[string]string, len(next))
	for k, v := range next {
		if v == Masked {
			c, ok := cur[k]
			if !ok {
				continue // nothing to keep; validate would refuse "***" itself
			}
			v = c
		}
		out[k] = v
	}
	return out
}

// sameRun reports whether a and b run the same thing the same way.
func sameRun(a, b Server) bool {
	return slices.Equal(a.Command, b.Command) && a.URL == b.URL && maps.Equal(a.Env, b.Env) &&
		maps.Equal(a.Headers, b.Headers) && a.Timeout == b.Timeout && a.MaxResultBytes == b.MaxResultBytes
}

// SetEnabled enables or disables a server (or built-in tool set).
func (p *Pool) SetEnabled(ctx context.Context, name string, on bool) (View, error) {
	v, err := p.Update(ctx, name, Patch{Enabled: &on})
	if err == nil {
		action := ActionDisabled
		if on {
			action = ActionEnabled
		}
		p.notify(action, name)
	}
	return v, err
}

// Delete stops and removes a custom server; built-in ones can only be
// disabled.
func (p *Pool) Delete(ctx context.Context, name string) error {
	e, err := p.entry(name)
	if err != nil {
		return err
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if err := p.still(e); err != nil {
		return err
	}
	e.op.Lock()
	defer e.op.Unlock()
	p.mu.Lock()
	kind := e.row.Kind
	p.mu.Unlock()
	if kind == KindBuiltin {
		return errorf(ErrBuiltin, "%s is built in: disable it instead", name)
	}
	p.stopLoop(e)
	if _, err := p.db.ExecContext(ctx, `DELETE FROM mcps WHERE name = ?`, name); err != nil {
		return fmt.Errorf("delete MCP server %s: %w", name, err)
	}
	p.mu.Lock()
	delete(p.servers, name)
	p.mu.Unlock()
	p.log.Info("MCP server removed", "mcp", name)
	p.notify(ActionDeleted, name)
	return nil
}

func (p *Pool) entry(name string) (*entry, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.servers[name]
	if !ok {
		return nil, errorf(ErrNotFound, "MCP server %q not found", name)
	}
	return e, nil
}

// still checks that e was not deleted meanwhile; p.wmu held.
func (p *Pool) still(e *entry) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.servers[e.name] != e {
		return errorf(ErrNotFound, "MCP server %q not found", e.name)
	}
	return nil
}
