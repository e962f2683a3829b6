package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentd/agentd/client/clienttest"
	"github.com/agentd/agentd/devicecert"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/coordinator"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/plugins/bridge/bridgetest"
)

// Test plugin builds are shared by all tests of the package: building is
// the slow part, and each variant differs only in link flags.
var (
	buildMu  sync.Mutex
	builds   = map[string]string{}
	buildDir string
)

// testPlugin builds plugins/bridge/internal/testplugin with ldflags (once
// per variant) and returns the binary's path.
func testPlugin(t testing.TB, ldflags string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := builds[ldflags]; ok {
		return p
	}
	if buildDir == "" {
		d, err := os.MkdirTemp("", "supervisor-test-plugins")
		if err != nil {
			t.Fatal(err)
		}
		buildDir = d
	}
	out := filepath.Join(buildDir, fmt.Sprintf("testplugin-%d", len(builds)))
	_, file, _, _ := runtime.Caller(0)
	pkg := filepath.Join(filepath.Dir(file), "..", "..", "plugins", "bridge", "internal", "testplugin")
	cmd := exec.Command("go", "build", "-ldflags", ldflags, "-o", out, ".")
	cmd.Dir = pkg
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build test plugin: %v\n%s", err, b)
	}
	builds[ldflags] = out
	return out
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// fixture is an agent directory with a real coordinator and a supervisor.
type fixture struct {
	t       testing.TB
	dir     string
	cfgPath string
	sup     *Supervisor

	// mu guards changes.
	mu      sync.Mutex
	changes []string
}

// link makes dir/bin/bridge-<name> point at the binary: the test plugin
// takes its name and session prefix from its executable name.
func link(t testing.TB, dir, name, bin string) string {
	t.Helper()
	p := filepath.Join(dir, "bin", "bridge-"+name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bin, p); err != nil {
		t.Fatal(err)
	}
	return p
}

func newFixture(t testing.TB, yaml string, opts Options) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, store.FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := coordinator.Bootstrap(ctx, dir, st, "test-agent"); err != nil {
		t.Fatal(err)
	}
	co, err := coordinator.Open(ctx, dir, st)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, dir: dir, cfgPath: filepath.Join(dir, config.FileName)}
	f.writeConfig(yaml)
	opts.Dir = dir
	opts.BinDir = filepath.Join(dir, "bin")
	if opts.Issuer == nil {
		opts.Issuer = co
	}
	opts.Logger = bridgetest.Log(t)
	opts.OnChange = func(name, action string) {
		f.mu.Lock()
		f.changes = append(f.changes, name+":"+action)
		f.mu.Unlock()
	}
	f.sup, err = New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.sup.Close() })
	return f
}

// gatewayIssuer issues bridge identities signed by a test gateway's
// coordinator key, so bridges can really connect to it.
type gatewayIssuer struct {
	gw  *clienttest.Gateway
	dir func() string
}

func (g gatewayIssuer) IssueBridge(_ context.Context, name, prefix string) (*devicecert.Identity, error) {
	id := g.gw.BridgeIdentity(prefix)
	return id, id.Save(IdentityPath(g.dir(), name))
}

func (f *fixture) writeConfig(yaml string) {
	f.t.Helper()
	yaml = strings.ReplaceAll(yaml, "$DIR", f.dir)
	if err := os.WriteFile(f.cfgPath, []byte(yaml), 0o600); err != nil {
		f.t.Fatal(err)
	}
}

// apply loads the config file and applies it, as a hot reload does.
func (f *fixture) apply() {
	f.t.Helper()
	cfg, err := config.Load(f.cfgPath)
	if err != nil {
		f.t.Fatal(err)
	}
	f.sup.Apply(cfg)
}

// waitFor polls the bridge's status until cond holds or timeout passes.
func (f *fixture) waitFor(name string, timeout time.Duration, what string, cond func(Status) bool) Status {
	f.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st, err := f.sup.Get(name)
		if err == nil && cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("bridge %s: not %s within %s; status %+v (err %v)", name, what, timeout, st, err)
		}
		time.Sleep(time.Millisecond)
	}
}

func running(st Status) bool { return st.State == StateRunning && st.PID > 0 }

// alive reports whether pid is a live (not reaped) process.
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
