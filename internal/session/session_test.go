package session

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/agent"
	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/catalog"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/provider"
	"github.com/agentd/agentd/internal/provider/providertest"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/wire"
)

// recorder is a connection that keeps every frame it is given.
type recorder struct {
	mu     sync.Mutex
	frames []wire.Message
	added  chan struct{}
}

func newRecorder() *recorder { return &recorder{added: make(chan struct{}, 1)} }

func (r *recorder) Send(m wire.Message) bool {
	r.mu.Lock()
	r.frames = append(r.frames, m)
	r.mu.Unlock()
	select {
	case r.added <- struct{}{}:
	default:
	}
	return true
}

func (r *recorder) Stream(_ context.Context, m wire.Message) bool { return r.Send(m) }

// wait returns the frames once cond holds for them.
func (r *recorder) wait(t *testing.T, cond func([]wire.Message) bool) []wire.Message {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		fs := append([]wire.Message(nil), r.frames...)
		r.mu.Unlock()
		if cond(fs) {
			return fs
		}
		select {
		case <-r.added:
		case <-time.After(5 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out; frames so far: %#v", fs)
		}
	}
}

func responses(fs []wire.Message) []wire.Response {
	var out []wire.Response
	for _, f := range fs {
		if r, ok := f.(wire.Response); ok {
			out = append(out, r)
		}
	}
	return out
}

// completes counts the turn_complete frames in fs.
func completes(fs []wire.Message) int {
	n := 0
	for _, f := range fs {
		if _, ok := f.(wire.TurnComplete); ok {
			n++
		}
	}
	return n
}

type harness struct {
	st     *store.Store
	m      *Manager
	cancel context.CancelFunc
}

func start(t testing.TB, dir, yaml string) *harness {
	t.Helper()
	return startWith(t, dir, yaml, Options{})
}

// startWith is start with extra options (DB, Config, Agent, AgentDir and
// Log are the harness's).
func startWith(t testing.TB, dir, yaml string, opts Options) *harness {
	t.Helper()
	path := filepath.Join(dir, config.FileName)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
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
	opts.DB, opts.Config, opts.Agent, opts.AgentDir, opts.Log = st.DB(), config.NewWatcher(path, cfg, log), &agent.Agent{Logger: log}, dir, log
	m, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	h := &harness{st: st, m: m, cancel: cancel}
	t.Cleanup(func() { cancel(); m.Wait(); st.Close() })
	return h
}

func yamlWith(defaultModel, openAI string) string {
	y := "agent:\n  name: t\n  default_model: " + defaultModel + "\nproviders:\n  - id: echo\n    kind: echo\n"
	if openAI != "" {
		y += "  - id: oa\n    kind: openai\n    base_url: " + openAI + "\n    api_key: " + providertest.DefaultAPIKey + "\n"
	}
	y += "models:\n  - id: echo\n    provider: echo\n"
	if openAI != "" {
		y += "  - id: gpt\n    provider: oa\n"
	}
	return y
}

var alice = &auth.Identity{ClientID: "a11ce", Capabilities: []string{auth.CapChat}}

// A turn that starts at once is persisted a little later than a turn that
// another connection of the same device queues right behind it; the
// restart still runs them in acceptance order.
func TestRestartKeepsAcceptanceOrder(t *testing.T) {
	fake := providertest.NewOpenAI(t, providertest.Response{Hang: true})
	dir := t.TempDir()
	h1 := start(t, dir, yamlWith("gpt", fake.BaseURL()))
	c1 := &Client{Identity: alice, Sink: newRecorder()}
	c2 := &Client{Identity: alice, Sink: newRecorder()}
	done := make(chan struct{})
	go func() {
		h1.m.Handle(context.Background(), c1, wire.TextFinal{Text: "first", SessionID: "s1"})
		close(done)
	}()
	// Wait until "first" runs, then queue "second" while "first" may still
	// be unpersisted.
	for len(fake.Requests()) == 0 {
		time.Sleep(100 * time.Microsecond)
	}
	h1.m.Handle(context.Background(), c2, wire.TextFinal{Text: "second", SessionID: "s1"})
	<-done
	// "first" is written persistDelay after it started, after "second".
	order := waitTurnRows(t, h1, 2)
	if fmt.Sprint(order) != "[first second]" {
		t.Fatalf("persisted order %v", order)
	}
	// Crash: abandon h1 (its run hangs) and restart on the same file.
	rs := restartReplies(t, h1, dir, 2)
	if rs[0].Text != provider.EchoReply("first") || rs[1].Text != provider.EchoReply("second") {
		t.Fatalf("replies after restart: %q, %q", rs[0].Text, rs[1].Text)
	}
}

// Each session has its own history; the model sees only its session's.
func TestSessionsIsolated(t *testing.T) {
	fake := providertest.NewOpenAI(t,
		providertest.Response{Text: []string{"A1"}},
		providertest.Response{Text: []string{"B1"}},
		providertest.Response{Text: []string{"A2"}},
	)
	h := start(t, t.TempDir(), yamlWith("gpt", fake.BaseURL()))
	rec := newRecorder()
	c := &Client{Identity: alice, Sink: rec}
	h.m.Connect(c)
	for i, s := range []struct{ sid, text string }{{"a", "to a"}, {"b", "to b"}, {"a", "again a"}} {
		h.m.Handle(context.Background(), c, wire.TextFinal{Text: s.text, SessionID: s.sid})
		rec.wait(t, func(fs []wire.Message) bool { return len(responses(fs)) == i+1 })
	}
	var got []string
	for _, m := range fake.Requests()[2].OpenAI(t).Messages {
		got = append(got, m.Text())
	}
	if strings.Join(got, "|") != "to a|A1|again a" {
		t.Fatalf("third call saw %q", got)
	}
}

func TestHistCacheRefusesStaleLoads(t *testing.T) {
	h := newHistCache(1 << 20)
	msgs := []provider.Message{{Role: provider.RoleUser, Content: "x"}}
	_, token, ok := h.get("s")
	if ok {
		t.Fatal("hit on an empty cache")
	}
	h.appendTurn("s", msgs) // the session changed after the load began
	h.put("s", token, msgs)
	if _, _, ok := h.get("s"); ok {
		t.Fatal("a load older than a change was cached")
	}
	_, token, _ = h.get("s")
	h.put("s", token, msgs)
	got, _, ok := h.get("s")
	if !ok || len(got) != 1 {
		t.Fatalf("fresh load not cached: %v %v", got, ok)
	}
	h.appendTurn("s", []provider.Message{{Role: provider.RoleAssistant, Content: "y"}})
	if got, _, _ := h.get("s"); len(got) != 2 || cap(got) != 2 {
		t.Fatalf("after append: %v (cap %d)", got, cap(got))
	}
	h.drop("s")
	if _, _, ok := h.get("s"); ok {
		t.Fatal("dropped entry still cached")
	}
	// The byte bound evicts.
	small := newHistCache(4 * 200)
	for i := range 10 {
		id := fmt.Sprint(i)
		_, tok, _ := small.get(id)
		small.put(id, tok, []provider.Message{{Content: strings.Repeat("z", 100)}})
	}
	if small.bytes > small.maxBytes || len(small.entries) > 4 {
		t.Fatalf("cache holds %d bytes in %d entries", small.bytes, len(small.entries))
	}
}

func TestHistoryMatchesDatabase(t *testing.T) {
	h := start(t, t.TempDir(), yamlWith("echo", ""))
	rec := newRecorder()
	c := &Client{Identity: alice, Sink: rec}
	h.m.Connect(c)
	for i := range 3 {
		h.m.Handle(context.Background(), c, wire.TextFinal{Text: fmt.Sprintf("m%d", i), SessionID: "s"})
		rec.wait(t, func(fs []wire.Message) bool { return len(responses(fs)) == i+1 })
	}
	cached, err := h.m.db.history(context.Background(), "s")
	if err != nil {
		t.Fatal(err)
	}
	fromDB, err := h.m.db.readHistory(context.Background(), "s")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(cached) != fmt.Sprint(fromDB) || len(fromDB) != 6 {
		t.Fatalf("cache %v\n   db %v", cached, fromDB)
	}
}

// With a catalog, models added over REST can be pinned and answer, priced
// by the catalog; disabled ones are refused.
func TestCatalogModels(t *testing.T) {
	fake := providertest.NewOpenAI(t, providertest.Response{Text: []string{"from the catalog"},
		Usage: &providertest.Usage{PromptTokens: 1000, CompletionTokens: 100}})
	dir := t.TempDir()
	path := filepath.Join(dir, config.FileName)
	if err := os.WriteFile(path, []byte(yamlWith("echo", fake.BaseURL())), 0o600); err != nil {
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
	cat, err := catalog.Open(ctx, st.DB(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Options{DB: st.DB(), Config: config.NewWatcher(path, cfg, log), Agent: &agent.Agent{Logger: log},
		Providers: cat.Registry(), Catalog: cat, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); m.Wait(); st.Close() })
	if _, err := cat.CreateModel(ctx, catalog.ModelInput{ID: "api-model", Provider: "oa", Name: "model-b",
		InputPricePerMTok: 1, OutputPricePerMTok: 4}); err != nil {
		t.Fatal(err)
	}
	off := false
	if _, err := cat.CreateModel(ctx, catalog.ModelInput{ID: "off-model", Provider: "oa", Enabled: &off}); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	c := &Client{Identity: alice, Sink: rec}
	m.Connect(c)
	m.Handle(ctx, c, wire.Command{Name: "model", SessionID: "s", Args: "off-model"})
	m.Handle(ctx, c, wire.Command{Name: "model", SessionID: "s", Args: "api-model"})
	m.Handle(ctx, c, wire.TextFinal{Text: "hi", SessionID: "s"})
	fs := rec.wait(t, func(fs []wire.Message) bool { return len(responses(fs)) == 1 })
	if e, ok := fs[0].(wire.Error); !ok || !strings.Contains(e.Text, `"off-model" is disabled`) {
		t.Fatalf("pinning a disabled model: %#v", fs[0])
	}
	if r, ok := fs[1].(wire.CommandResult); !ok || !strings.Contains(r.Text, "api-model") {
		t.Fatalf("pinning a catalog model: %#v", fs[1])
	}
	if r := responses(fs)[0]; r.Text != "from the catalog" || r.Model != "api-model" {
		t.Fatalf("response %#v", r)
	}
	if got := fake.Requests()[0].OpenAI(t).Model; got != "model-b" {
		t.Fatalf("upstream model %q", got)
	}
	done := rec.wait(t, func(fs []wire.Message) bool {
		_, ok := fs[len(fs)-1].(wire.TurnComplete)
		return ok
	})
	if u := done[len(done)-1].(wire.TurnComplete).Usage; u.CostUSD != (1000*1+100*4)/1e6 {
		t.Fatalf("cost %v", u.CostUSD)
	}
}

// A finished turn touches its session (the usage row's trigger, migration
// 0013): the list is newest first, by the last turn.
func TestTurnTouchesItsSession(t *testing.T) {
	var clock atomic.Int64
	clock.Store(1_000)
	h := startWith(t, t.TempDir(), yamlWith("echo", ""), Options{Now: func() time.Time { return time.UnixMilli(clock.Load()) }})
	rec := newRecorder()
	c := &Client{Identity: alice, Sink: rec}
	h.m.Connect(c)
	for i, sid := range []string{"s1", "s2", "s1"} {
		clock.Store(int64(i+1) * 1_000)
		h.m.Handle(context.Background(), c, wire.TextFinal{Text: "hi", SessionID: sid})
		rec.wait(t, func(fs []wire.Message) bool { return len(responses(fs)) == i+1 })
	}
	list, err := h.m.List(context.Background(), alice)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range list {
		got = append(got, fmt.Sprintf("%s created %d updated %d", s.ID, s.CreatedAt.UnixMilli(), s.UpdatedAt.UnixMilli()))
	}
	want := []string{"s1 created 1000 updated 3000", "s2 created 2000 updated 2000"}
	if !slices.Equal(got, want) {
		t.Fatalf("sessions %q, want %q", got, want)
	}
}

// nower is a recorder that can write a delta at once (DeltaNower); it
// records which way each delta came.
type nower struct {
	*recorder
	mu  sync.Mutex
	how []string
}

func (n *nower) StreamDelta(_ context.Context, sid, text string) bool {
	return n.record("queued", sid, text)
}

func (n *nower) StreamDeltaNow(_ context.Context, sid, text string) bool {
	return n.record("now", sid, text)
}

// record notes how a delta came and keeps it.
func (n *nower) record(way, sid, text string) bool {
	n.mu.Lock()
	n.how = append(n.how, way+" "+text)
	n.mu.Unlock()
	return n.Send(wire.Delta{Text: text, SessionID: sid})
}

// ways says how the deltas came so far, in order.
func (n *nower) ways() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return strings.Join(n.how, ", ")
}

// A run's first delta is written at once while the processors are not all
// busy running turns; the rest of its deltas, and every delta of a run
// that starts while as many runs execute as there are processors, are
// queued (merged by the connection).
func TestFirstDeltaWrittenNowUnlessBusy(t *testing.T) {
	busy := runtime.GOMAXPROCS(0)
	resps := []providertest.Response{{Text: []string{"A", "B", "C"}}}
	for range busy {
		resps = append(resps, providertest.Response{Hang: true})
	}
	resps = append(resps, providertest.Response{Text: []string{"D", "E"}})
	fake := providertest.NewOpenAI(t, resps...)
	h := start(t, t.TempDir(), yamlWith("gpt", fake.BaseURL()))
	n := &nower{recorder: newRecorder()}
	c := &Client{Identity: alice, Sink: n}
	h.m.Connect(c)
	h.m.Handle(context.Background(), c, wire.TextFinal{Text: "lone", SessionID: "s0"})
	n.wait(t, func(fs []wire.Message) bool { return completes(fs) == 1 })
	for i := range busy { // each of its own device: a device's turns run one at a time
		id := &auth.Identity{ClientID: fmt.Sprintf("b%d", i), Capabilities: []string{auth.CapChat}}
		h.m.Handle(context.Background(), &Client{Identity: id, Sink: newRecorder()}, wire.TextFinal{Text: "hang", SessionID: fmt.Sprintf("h%d", i)})
	}
	for deadline := time.Now().Add(10 * time.Second); len(fake.Requests()) < 1+busy; time.Sleep(100 * time.Microsecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d hanging runs started", len(fake.Requests())-1, busy)
		}
	}
	h.m.Handle(context.Background(), c, wire.TextFinal{Text: "busy", SessionID: "s1"})
	n.wait(t, func(fs []wire.Message) bool { return completes(fs) == 2 })
	if got := n.ways(); got != "now A, queued B, queued C, queued D, queued E" {
		t.Fatalf("deltas went %s", got)
	}
}

// A bridge's turn queues even its first delta (firstDeltaNow).
func TestBridgeFirstDeltaQueued(t *testing.T) {
	fake := providertest.NewOpenAI(t, providertest.Response{Text: []string{"A", "B"}})
	h := start(t, t.TempDir(), yamlWith("gpt", fake.BaseURL()))
	n := &nower{recorder: newRecorder()}
	tg := &auth.Identity{ClientID: "7e1e", Capabilities: []string{auth.CapBridge, auth.SessionPrefixCap + "tg"}}
	c := &Client{Identity: tg, Sink: n}
	h.m.Connect(c)
	h.m.Handle(context.Background(), c, wire.TextFinal{Text: "hi", SessionID: "tg:1"})
	n.wait(t, func(fs []wire.Message) bool { return completes(fs) == 1 })
	if got := n.ways(); got != "queued A, queued B" {
		t.Fatalf("deltas went %s", got)
	}
}
