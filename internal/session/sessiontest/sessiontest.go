// Package sessiontest runs a real session manager for the tests of the
// packages that are its server-side clients (scheduler, workflow): a real
// SQLite store, the echo model (and optionally an OpenAI-compatible fake),
// and a recorded connection of a bridge that owns session prefix "tg".
package sessiontest

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/agentd/agentd/internal/agent"
	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/provider/providertest"
	"github.com/agentd/agentd/internal/session"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/wire"
)

// BridgeClient is the client id of the recorded bridge.
const BridgeClient = "b41d6e"

// Env is a running session manager.
type Env struct {
	Store   *store.Store
	Manager *session.Manager
	Config  *config.Watcher
	Log     *slog.Logger
	// Bridge records what the "tg" bridge's connection is sent.
	Bridge *Recorder
	// Ctx is the manager's lifetime; Stop cancels it.
	Ctx context.Context

	cancel context.CancelFunc
	once   sync.Once
}

// Start writes openagent.yaml into dir (echo as default model; with
// openAI, provider "oa" at that URL serving model "gpt"; extra appended
// as is), opens the store there and starts the manager. Stop runs at
// cleanup if the test did not call it.
func Start(t testing.TB, dir, openAI, extra string) *Env {
	t.Helper()
	y := "agent:\n  name: t\n  default_model: echo\nproviders:\n  - id: echo\n    kind: echo\n"
	if openAI != "" {
		y += "  - id: oa\n    kind: openai\n    base_url: " + openAI + "\n    api_key: " + providertest.DefaultAPIKey + "\n"
	}
	y += "models:\n  - id: echo\n    provider: echo\n"
	if openAI != "" {
		y += "  - id: gpt\n    provider: oa\n"
	}
	y += extra
	path := filepath.Join(dir, config.FileName)
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.Open(ctx, filepath.Join(dir, store.FileName))
	if err != nil {
		t.Fatal(err)
	}
	w := config.NewWatcher(path, cfg, log)
	mgr, err := session.New(session.Options{
		DB: st.DB(), Config: w, Agent: &agent.Agent{Logger: log}, AgentDir: dir, Log: log,
		Bridges: func(_ context.Context, prefix string) (string, bool, error) { return BridgeClient, prefix == "tg", nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := mgr.Start(ctx); err != nil {
		t.Fatal(err)
	}
	e := &Env{Store: st, Manager: mgr, Config: w, Log: log, Bridge: &Recorder{}, Ctx: ctx, cancel: cancel}
	mgr.Connect(&session.Client{
		Identity: &auth.Identity{ClientID: BridgeClient, Capabilities: []string{auth.CapBridge, auth.SessionPrefixCap + "tg"}},
		Sink:     e.Bridge,
	})
	t.Cleanup(func() { e.Stop() })
	return e
}

// Stop shuts down as agentd does: cancel, wait for the manager's clients
// (waits, e.g. a scheduler's Wait), then the manager, then close the store.
// Only the first call does anything.
func (e *Env) Stop(waits ...func()) {
	e.once.Do(func() {
		e.cancel()
		for _, w := range waits {
			w()
		}
		e.Manager.Wait()
		e.Store.Close()
	})
}

// Recorder is a connection that keeps every frame it is given.
type Recorder struct {
	mu     sync.Mutex
	frames []wire.Message
}

// Send implements session.Sink.
func (r *Recorder) Send(m wire.Message) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frames = append(r.frames, m)
	return true
}

// Stream implements session.Sink.
func (r *Recorder) Stream(_ context.Context, m wire.Message) bool { return r.Send(m) }

// Responses returns the response frames so far.
func (r *Recorder) Responses() []wire.Response {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []wire.Response
	for _, f := range r.frames {
		if x, ok := f.(wire.Response); ok {
			out = append(out, x)
		}
	}
	return out
}
