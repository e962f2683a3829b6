package bridge_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentd/agentd/client/clienttest"
	"github.com/agentd/agentd/internal/procstat"
	"github.com/agentd/agentd/plugins/bridge"
	bridgev1 "github.com/agentd/agentd/proto/bridge/v1"
	"github.com/agentd/agentd/wire"
)

var (
	serveBinOnce sync.Once
	serveBinDir  string
	serveBinErr  error
)

// serveTestPlugin builds the test plugin once and returns a link to it
// named bridge-<name> (the plugin takes its name and prefix from it).
func serveTestPlugin(t testing.TB, name string) string {
	t.Helper()
	serveBinOnce.Do(func() {
		serveBinDir, serveBinErr = os.MkdirTemp("", "bridge-serve-test")
		if serveBinErr != nil {
			return
		}
		_, file, _, _ := runtime.Caller(0)
		args := []string{"build", "-o", filepath.Join(serveBinDir, "testplugin")}
		if raceBuild {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "./internal/testplugin")...)
		cmd.Dir = filepath.Dir(file)
		if out, err := cmd.CombinedOutput(); err != nil {
			serveBinErr = errors.New(string(out))
		}
	})
	if serveBinErr != nil {
		t.Fatalf("build test plugin: %v", serveBinErr)
	}
	p := filepath.Join(t.TempDir(), "bridge-"+name)
	if err := os.Symlink(filepath.Join(serveBinDir, "testplugin"), p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMain(m *testing.M) {
	code := m.Run()
	if serveBinDir != "" {
		os.RemoveAll(serveBinDir)
	}
	os.Exit(code)
}

// launchServe starts bin as a plugin, as agentd does, and dispenses it.
func launchServe(t testing.TB, bin string) (*plugin.Client, *bridge.Client, int) {
	t.Helper()
	cmd := exec.Command(bin)
	stderr := &syncBuffer{}
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  bridge.Handshake,
		Plugins:          bridge.PluginSet(nil),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		StartTimeout:     5 * time.Second,
		Stderr:           stderr,
		Logger:           hclog.New(&hclog.LoggerOptions{Level: hclog.Off}),
	})
	t.Cleanup(func() {
		pc.Kill()
		if s := stderr.String(); strings.Contains(s, "DATA RACE") {
			t.Errorf("the plugin process reported a data race:\n%s", s)
		}
	})
	bc, err := bridge.Dispense(pc)
	if err != nil {
		t.Fatal(err)
	}
	return pc, bc, cmd.Process.Pid
}

// syncBuffer collects a plugin's stderr.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// recHost is a BridgeHost that records what the plugin sent.
type recHost struct {
	bridgev1.UnimplementedBridgeHostServer
	mu     sync.Mutex
	logs   []*bridgev1.LogRequest
	events []*bridgev1.EventRequest
}

func (h *recHost) Log(_ context.Context, r *bridgev1.LogRequest) (*bridgev1.LogResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.logs = append(h.logs, r)
	return &bridgev1.LogResponse{}, nil
}

func (h *recHost) Event(_ context.Context, r *bridgev1.EventRequest) (*bridgev1.EventResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, r)
	return &bridgev1.EventResponse{}, nil
}

// findLog returns the first log record with msg, waiting up to timeout.
func (h *recHost) findLog(t *testing.T, msg string, timeout time.Duration) *bridgev1.LogRequest {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		h.mu.Lock()
		i := slices.IndexFunc(h.logs, func(r *bridgev1.LogRequest) bool { return r.Msg == msg })
		var r *bridgev1.LogRequest
		if i >= 0 {
			r = h.logs[i]
		}
		h.mu.Unlock()
		if r != nil {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q log record within %s", msg, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func attr(r *bridgev1.LogRequest, key string) string {
	for _, a := range r.Attrs {
		if a.Key == key {
			return a.Value
		}
	}
	return ""
}

func waitHealth(t *testing.T, bc *bridge.Client, timeout time.Duration, cond func(*bridgev1.HealthResponse) bool) *bridgev1.HealthResponse {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		h, err := bc.Health(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if cond(h) {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("health not as wanted within %s: %v", timeout, h)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func code(err error) codes.Code { return status.Code(err) }

// TestServeLifecycle drives a real plugin process through the whole control
// plane against a real (test) gateway: the bridge connects with its own
// certificate, delivers a platform message and gets the agent's reply.
func TestServeLifecycle(t *testing.T) {
	ctx := context.Background()
	gw := clienttest.New(t)
	idPath := filepath.Join(t.TempDir(), "bridge-tp.identity")
	if err := gw.BridgeIdentity("tp").Save(idPath); err != nil {
		t.Fatal(err)
	}
	_, bc, _ := launchServe(t, serveTestPlugin(t, "tp"))

	info, err := bc.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "tp" || info.SessionPrefix != "tp" || !slices.Equal(info.ApiVersions, []string{"v1"}) {
		t.Errorf("info = %v", info)
	}
	if c := info.Capabilities; c.Edits || c.Files || c.Voice || c.Typing {
		t.Errorf("test plugin claims capabilities it lacks: %v", c)
	}
	if h, _ := bc.Health(ctx); h.State != bridgev1.State_STATE_NEW {
		t.Errorf("state before configure = %v", h.State)
	}
	if err := bc.Start(ctx); code(err) != codes.FailedPrecondition {
		t.Errorf("start before configure: %v", err)
	}

	good := func() *bridgev1.ConfigureRequest {
		return &bridgev1.ConfigureRequest{
			ApiVersion: "v1", Settings: map[string]string{"mode": "run", "deliver": "hello there"},
			AllowedUsers: []string{"u1"}, GatewayNetwork: "unix", GatewayAddress: gw.SocketPath(),
			IdentityPath: idPath, DataDir: t.TempDir(), UploadsDir: t.TempDir(),
		}
	}
	for _, tc := range []struct {
		name string
		edit func(*bridgev1.ConfigureRequest)
		want string
	}{
		{"unknown api version", func(r *bridgev1.ConfigureRequest) { r.ApiVersion = "v9" }, `"v9" not supported`},
		{"bad network", func(r *bridgev1.ConfigureRequest) { r.GatewayNetwork = "udp" }, "want unix or tcp"},
		{"no identity", func(r *bridgev1.ConfigureRequest) { r.IdentityPath = "/nonexistent" }, "bridge identity"},
		{"platform refuses", func(r *bridgev1.ConfigureRequest) { r.Settings = map[string]string{"mode": "dance"} }, `unknown mode "dance"`},
	} {
		r := good()
		tc.edit(r)
		err := bc.Configure(ctx, r, nil)
		if code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want InvalidArgument with %q", tc.name, err, tc.want)
		}
	}

	host := &recHost{}
	if err := bc.Configure(ctx, good(), host); err != nil {
		t.Fatal(err)
	}
	if err := bc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	h := waitHealth(t, bc, 5*time.Second, func(h *bridgev1.HealthResponse) bool { return h.GatewayConnected })
	if h.State != bridgev1.State_STATE_RUNNING || h.PlatformStatus != "connected to testplatform" {
		t.Errorf("health = %v", h)
	}
	if err := bc.Configure(ctx, good(), host); code(err) != codes.FailedPrecondition {
		t.Errorf("configure while running: %v", err)
	}

	// The message went through the gateway as session tp:1 with the
	// bridge's identity, and the echo agent's reply came back to the chat.
	gw.WaitReceived(5*time.Second, func(r clienttest.Received) bool {
		tf, ok := r.Msg.(wire.TextFinal)
		return ok && tf.SessionID == "tp:1" && tf.Text == "hello there"
	})
	sent := host.findLog(t, "testplugin sent", 5*time.Second)
	if attr(sent, "chat_id") != "1" || attr(sent, "text") != "echo: hello there" {
		t.Errorf("reply sent to the platform: %v", sent)
	}
	if r := host.findLog(t, "testplugin running", time.Second); attr(r, "pid") == "" {
		t.Errorf("log attrs lost: %v", r)
	}
	host.mu.Lock()
	var kinds []string
	for _, e := range host.events {
		kinds = append(kinds, bridge.EventKindName(e.Kind)+"="+e.Text)
	}
	host.mu.Unlock()
	if !slices.Contains(kinds, "qr=2@testplugin-qr-code") || !slices.Contains(kinds, "status=connected to testplatform") {
		t.Errorf("events = %v", kinds)
	}

	if err := bc.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if h, _ := bc.Health(ctx); h.State != bridgev1.State_STATE_CONFIGURED || h.GatewayConnected {
		t.Errorf("after stop: %v", h)
	}
	// A stopped bridge starts again in the same process.
	if err := bc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, bc, 5*time.Second, func(h *bridgev1.HealthResponse) bool { return h.GatewayConnected })
	if err := bc.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestServeReportsPlatformFailure(t *testing.T) {
	ctx := context.Background()
	gw := clienttest.New(t)
	idPath := filepath.Join(t.TempDir(), "id")
	gw.BridgeIdentity("tp").Save(idPath)
	_, bc, _ := launchServe(t, serveTestPlugin(t, "tp"))
	err := bc.Configure(ctx, &bridgev1.ConfigureRequest{ApiVersion: "v1", Settings: map[string]string{"mode": "fail"},
		GatewayNetwork: "unix", GatewayAddress: gw.SocketPath(), IdentityPath: idPath}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	h := waitHealth(t, bc, 5*time.Second, func(h *bridgev1.HealthResponse) bool { return h.State == bridgev1.State_STATE_FAILED })
	if !strings.Contains(h.LastError, "platform failed as configured") {
		t.Errorf("last error %q", h.LastError)
	}
}

// TestServeStopBounded: a platform that ignores cancellation makes Stop
// fail after the plugin's own bound instead of hanging agentd's call.
func TestServeStopBounded(t *testing.T) {
	ctx := context.Background()
	gw := clienttest.New(t)
	idPath := filepath.Join(t.TempDir(), "id")
	gw.BridgeIdentity("tp").Save(idPath)
	_, bc, _ := launchServe(t, serveTestPlugin(t, "tp"))
	err := bc.Configure(ctx, &bridgev1.ConfigureRequest{ApiVersion: "v1", Settings: map[string]string{"mode": "hang_stop"},
		GatewayNetwork: "unix", GatewayAddress: gw.SocketPath(), IdentityPath: idPath}, nil)
	if err != nil {
		t.Fatal(err)
	}
	bc.Start(ctx)
	start := time.Now()
	err = bc.Stop(ctx)
	if code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), "did not stop within") {
		t.Errorf("stop: %v", err)
	}
	if took := time.Since(start); took > 6*time.Second {
		t.Errorf("stop took %s", took)
	}
}

// TestServeRunByHand: the binary started without agentd explains itself
// and exits instead of waiting for a handshake.
func TestServeRunByHand(t *testing.T) {
	bin := serveTestPlugin(t, "tp")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "This binary is a plugin") {
		t.Errorf("run by hand: %v\n%s", err, out)
	}
}

// TestServeExitsWhenOrphaned: a bridge whose agentd died without stopping
// it ends itself instead of running unsupervised.
func TestServeExitsWhenOrphaned(t *testing.T) {
	bin := serveTestPlugin(t, "tp")
	pidFile := filepath.Join(t.TempDir(), "pid")
	// sh starts the plugin (with the cookie, so it serves) and exits soon
	// after: the plugin is re-parented.
	cmd := exec.Command("sh", "-c", `"$0" >/dev/null 2>&1 & echo $! > "$1"; sleep 0.3`, bin, pidFile)
	cmd.Env = append(os.Environ(), bridge.MagicCookieKey+"="+bridge.MagicCookieValue,
		"PLUGIN_PROTOCOL_VERSIONS=1", "PLUGIN_MIN_PORT=0", "PLUGIN_MAX_PORT=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	b, _ := os.ReadFile(pidFile)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for processLive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("orphaned plugin %d still running after 5s", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processLive reports whether pid runs (a zombie awaiting its new parent's
// reaping counts as ended).
func processLive(pid int) bool {
	st, err := procstat.State(procstat.Path(pid))
	return err == nil && st != 0 && st != 'Z'
}

// BenchmarkControlRPC measures one Health call over go-plugin's gRPC.
func BenchmarkControlRPC(b *testing.B) {
	_, bc, _ := launchServe(b, serveTestPlugin(b, "tp"))
	ctx := context.Background()
	var lat []time.Duration
	for b.Loop() {
		s := time.Now()
		if _, err := bc.Health(ctx); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(s))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "µs-p50")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "µs-p99")
}

// BenchmarkLaunch measures process start, handshake, dispense and Info, and
// the kill that ends it.
func BenchmarkLaunch(b *testing.B) {
	bin := serveTestPlugin(b, "tp")
	var launch, kill time.Duration
	for b.Loop() {
		s := time.Now()
		pc := plugin.NewClient(&plugin.ClientConfig{
			HandshakeConfig: bridge.Handshake, Plugins: bridge.PluginSet(nil), Cmd: exec.Command(bin),
			AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
			Logger:           hclog.New(&hclog.LoggerOptions{Level: hclog.Off}),
		})
		bc, err := bridge.Dispense(pc)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := bc.Info(context.Background()); err != nil {
			b.Fatal(err)
		}
		launch += time.Since(s)
		s = time.Now()
		pc.Kill()
		kill += time.Since(s)
	}
	b.ReportMetric(float64(launch.Microseconds())/float64(b.N)/1000, "ms-launch")
	b.ReportMetric(float64(kill.Microseconds())/float64(b.N)/1000, "ms-kill")
}
