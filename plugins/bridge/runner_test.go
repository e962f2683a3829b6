package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentd/agentd/client/clienttest"
	"github.com/agentd/agentd/plugins/bridge"
	"github.com/agentd/agentd/plugins/bridge/bridgetest"
	"github.com/agentd/agentd/wire"
)

// runnerPlatform is a minimal platform: plain text only (no edits, files
// or typing), with a small MaxTextLen, that records what it was asked to
// send. It exercises the runner's paths for platforms with few capabilities.
type runnerPlatform struct {
	prefix string
	max    int

	// mu guards sent and host.
	mu    sync.Mutex
	sent  map[string][]string // chat → texts
	host  bridge.Host
	ready chan struct{}
}

func newRunnerPlatform(prefix string, max int) *runnerPlatform {
	return &runnerPlatform{prefix: prefix, max: max, sent: map[string][]string{}, ready: make(chan struct{})}
}

func (p *runnerPlatform) Name() string                          { return "plain" }
func (p *runnerPlatform) SessionPrefix() string                 { return p.prefix }
func (p *runnerPlatform) Configure(bridge.PlatformConfig) error { return nil }
func (p *runnerPlatform) MaxTextLen() int                       { return p.max }
func (p *runnerPlatform) SendText(_ context.Context, chat, text string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sent[chat] = append(p.sent[chat], text)
	return fmt.Sprint(len(p.sent[chat])), nil
}

func (p *runnerPlatform) Run(ctx context.Context, h bridge.Host) error {
	p.mu.Lock()
	p.host = h
	p.mu.Unlock()
	close(p.ready)
	<-ctx.Done()
	return nil
}

func (p *runnerPlatform) texts(chat string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.sent[chat]...)
}

func (p *runnerPlatform) waitTexts(t *testing.T, chat string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if got := p.texts(chat); len(got) >= n {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("chat %s: got %q, want %d texts", chat, p.texts(chat), n)
	return nil
}

func startRunner(t *testing.T, gw *clienttest.Gateway, p *runnerPlatform, idPrefix string, allowed ...string) *bridge.Runner {
	t.Helper()
	r := bridge.NewRunner(p, bridge.RunnerConfig{
		Dialer:       gw.Dialer(gw.BridgeIdentity(idPrefix)),
		AllowedUsers: allowed,
		Logger:       slog.New(slog.DiscardHandler),
	})
	bridgetest.Start(t, r)
	<-p.ready
	return r
}

func TestRunnerPlainPlatformGetsFinalTextSplit(t *testing.T) {
	gw := clienttest.New(t)
	gw.SetAgent(func(ctx context.Context, tr clienttest.Turn) clienttest.Reply {
		return clienttest.Reply{Deltas: []string{"alpha beta ", "gamma delta"}}
	})
	p := newRunnerPlatform("pl", 12)
	startRunner(t, gw, p, "pl", "u1")
	if err := p.host.Deliver(context.Background(), bridge.Incoming{ChatID: "c1", UserID: "u1", Text: "hi"}); err != nil {
		t.Fatal(err)
	}
	got := p.waitTexts(t, "c1", 2)
	if strings.Join(got, "|") != "alpha beta|gamma delta" {
		t.Fatalf("texts = %q", got)
	}
}

func TestRunnerEmptyAllowlistRefusesEveryone(t *testing.T) {
	gw := clienttest.New(t)
	p := newRunnerPlatform("pl", 0)
	startRunner(t, gw, p, "pl")
	if err := p.host.Deliver(context.Background(), bridge.Incoming{ChatID: "c1", UserID: "u1", Text: "hi"}); err != nil {
		t.Fatal(err)
	}
	got := p.waitTexts(t, "c1", 1)
	if got[0] != fmt.Sprintf(bridge.Refusal, "u1") {
		t.Fatalf("reply = %q", got[0])
	}
	if n := len(gw.Turns()); n != 0 {
		t.Fatalf("%d turns reached the gateway", n)
	}
}

func TestRunnerDeliverWaitsForGateway(t *testing.T) {
	gw := clienttest.New(t)
	gw.Stop()
	p := newRunnerPlatform("pl", 0)
	r := startRunner(t, gw, p, "pl", bridge.AllowEveryone)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := p.host.Deliver(ctx, bridge.Incoming{ChatID: "c1", UserID: "u1", Text: "hi"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Deliver with the gateway down = %v, want a deadline error", err)
	}
	if r.Connected() || r.LastError() == "" {
		t.Fatalf("Connected=%v LastError=%q", r.Connected(), r.LastError())
	}
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	if err := p.host.Deliver(context.Background(), bridge.Incoming{ChatID: "c1", UserID: "u1", Text: "hi"}); err != nil {
		t.Fatal(err)
	}
	if got := p.waitTexts(t, "c1", 1); got[0] != "echo: hi" {
		t.Fatalf("reply = %q", got)
	}
	if !r.Connected() || r.LastError() != "" {
		t.Fatalf("Connected=%v LastError=%q", r.Connected(), r.LastError())
	}
}

func TestRunnerReplyCutByGatewayCrash(t *testing.T) {
	gw := clienttest.New(t)
	gw.SetAgent(func(ctx context.Context, tr clienttest.Turn) clienttest.Reply {
		return clienttest.Reply{Deltas: []string{"partial answer", " never sent"}, DeltaDelay: time.Minute}
	})
	p := newRunnerPlatform("pl", 0)
	startRunner(t, gw, p, "pl", bridge.AllowEveryone)
	if err := p.host.Deliver(context.Background(), bridge.Incoming{ChatID: "c1", UserID: "u1", Text: "hi"}); err != nil {
		t.Fatal(err)
	}
	gw.WaitReceived(5*time.Second, func(r clienttest.Received) bool { return r.Msg.Type() == "text_final" })
	time.Sleep(300 * time.Millisecond) // the first delta is on its way
	gw.Stop()
	got := p.waitTexts(t, "c1", 1)
	if !strings.HasPrefix(got[0], "partial answer") || !strings.Contains(got[0], "connection to the agent was lost") {
		t.Fatalf("texts = %q", got)
	}
}

func TestRunnerSessionOutsidePrefixShowsGatewayError(t *testing.T) {
	gw := clienttest.New(t)
	p := newRunnerPlatform("pl", 0)
	// The cert allows "tg:" sessions only; the platform uses "pl:".
	startRunner(t, gw, p, "tg", bridge.AllowEveryone)
	if err := p.host.Deliver(context.Background(), bridge.Incoming{ChatID: "c1", UserID: "u1", Text: "hi"}); err != nil {
		t.Fatal(err)
	}
	got := p.waitTexts(t, "c1", 1)
	if !strings.HasPrefix(got[0], "⚠️ ") || !strings.Contains(got[0], "outside this device's prefix") {
		t.Fatalf("texts = %q", got)
	}
}

func TestRunnerMisuse(t *testing.T) {
	gw := clienttest.New(t)
	bad := newRunnerPlatform("a:b", 0)
	r := bridge.NewRunner(bad, bridge.RunnerConfig{Dialer: gw.Dialer(gw.BridgeIdentity("a"))})
	if err := r.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "invalid session prefix") {
		t.Fatalf("Run = %v", err)
	}
	p := newRunnerPlatform("pl", 0)
	r = startRunner(t, gw, p, "pl", "*")
	if err := r.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "called twice") {
		t.Fatalf("second Run = %v", err)
	}
	if err := p.host.Deliver(context.Background(), bridge.Incoming{UserID: "u"}); err == nil {
		t.Fatal("Deliver without ChatID succeeded")
	}
	var _ wire.Message = wire.Ping{}
}

func TestRunnerAlertsOnceWhenRefused(t *testing.T) {
	gw := clienttest.New(t)
	id := gw.BridgeIdentity("pl")
	gw.Revoke(id.ClientID())
	var mu sync.Mutex
	var alerts []string
	p := newRunnerPlatform("pl", 0)
	r := bridge.NewRunner(p, bridge.RunnerConfig{
		Dialer: gw.Dialer(id),
		Logger: slog.New(slog.DiscardHandler),
		OnEvent: func(kind, text string) {
			mu.Lock()
			defer mu.Unlock()
			alerts = append(alerts, kind+": "+text)
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if err := r.Run(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(alerts) != 1 || !strings.HasPrefix(alerts[0], "alert: the gateway refuses this bridge's certificate") || !strings.Contains(alerts[0], "device revoked") {
		t.Fatalf("events = %q", alerts)
	}
	if !strings.Contains(r.LastError(), "401") {
		t.Fatalf("LastError = %q", r.LastError())
	}
}

// gatedPlatform holds every SendText until release is closed.
type gatedPlatform struct {
	*runnerPlatform
	entered chan struct{}
	release chan struct{}
}

func (p *gatedPlatform) SendText(ctx context.Context, chat, text string) (string, error) {
	select {
	case p.entered <- struct{}{}:
	default:
	}
	<-p.release
	return p.runnerPlatform.SendText(ctx, chat, text)
}

// The runner opts into acknowledged delivery and acks a turn once it is
// shown; an ack that finds no connection is sent on the next one, before
// its auth frame, so the gateway does not send the shown reply again.
func TestRunnerAcksShownTurns(t *testing.T) {
	gw := clienttest.New(t)
	p := &gatedPlatform{runnerPlatform: newRunnerPlatform("pl", 0), entered: make(chan struct{}, 1), release: make(chan struct{})}
	r := bridge.NewRunner(p, bridge.RunnerConfig{
		Dialer:       gw.Dialer(gw.BridgeIdentity("pl")),
		AllowedUsers: []string{bridge.AllowEveryone},
		Logger:       slog.New(slog.DiscardHandler),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	<-p.ready
	auth := gw.WaitReceived(5*time.Second, func(r clienttest.Received) bool { return r.Msg.Type() == "auth" })
	if !auth.Msg.(wire.Auth).Acks {
		t.Fatal("the runner did not opt into acknowledged delivery")
	}
	if err := p.host.Deliver(context.Background(), bridge.Incoming{ChatID: "c1", UserID: "u1", Text: "hi"}); err != nil {
		t.Fatal(err)
	}
	// The reply is being posted when the gateway goes away.
	<-p.entered
	gw.WaitReceived(5*time.Second, func(r clienttest.Received) bool { return r.Msg.Type() == "text_final" })
	time.Sleep(100 * time.Millisecond) // response and turn_complete are queued in the worker
	gw.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for r.Connected() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	close(p.release)
	if got := p.waitTexts(t, "c1", 1); got[0] != "echo: hi" {
		t.Fatalf("texts = %q", got)
	}
	for _, rc := range gw.Received() {
		if rc.Msg.Type() == "ack" {
			t.Fatal("ack before the reply was shown")
		}
	}
	time.Sleep(100 * time.Millisecond) // the worker reaches turn_complete: no connection for its ack
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	types := func() (out []string) {
		for _, rc := range gw.Received() {
			out = append(out, rc.Msg.Type())
		}
		return out
	}
	deadline = time.Now().Add(5 * time.Second)
	for strings.Count(strings.Join(types(), ","), "auth") < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	got := types()
	if !strings.HasSuffix(strings.Join(got, ","), "text_final,ack,auth") {
		t.Fatalf("frames = %v, want the pending ack just before the new connection's auth", got)
	}
	if a := gw.Received()[len(got)-2].Msg.(wire.Ack); a.SessionID != "pl:c1" {
		t.Fatalf("ack = %+v", a)
	}
	// On a live connection the ack follows the shown turn.
	if err := p.host.Deliver(context.Background(), bridge.Incoming{ChatID: "c1", UserID: "u1", Text: "again"}); err != nil {
		t.Fatal(err)
	}
	p.waitTexts(t, "c1", 2)
	deadline = time.Now().Add(5 * time.Second)
	for strings.Count(strings.Join(types(), ","), "ack") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no ack after the second turn: frames %v", types())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logSignal is a slog.Handler that closes ch at the first record whose
// message is msg.
type logSignal struct {
	msg  string
	ch   chan struct{}
	once sync.Once
}

func (h *logSignal) Enabled(context.Context, slog.Level) bool { return true }
func (h *logSignal) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logSignal) WithGroup(string) slog.Handler            { return h }
func (h *logSignal) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.once.Do(func() { close(h.ch) })
	}
	return nil
}

// limitedPlatform refuses its first send with a bot-wide RateLimited and
// records when every call came.
type limitedPlatform struct {
	*runnerPlatform
	wait time.Duration

	// mu guards refusedAt and calls.
	mu        sync.Mutex
	refusedAt time.Time
	calls     []time.Time
}

func (p *limitedPlatform) SendText(ctx context.Context, chat, text string) (string, error) {
	p.mu.Lock()
	now := time.Now()
	p.calls = append(p.calls, now)
	first := p.refusedAt.IsZero()
	if first {
		p.refusedAt = now
	}
	p.mu.Unlock()
	if first {
		return "", fmt.Errorf("send: %w", &bridge.RateLimited{RetryAfter: p.wait, Scope: bridge.ScopeBot})
	}
	return p.runnerPlatform.SendText(ctx, chat, text)
}

// A bot-wide refusal in one chat holds every chat: no call anywhere before
// the wait is over, and the refused reply is delivered after it. The
// second chat's message comes once the runner has noted the refusal: a
// call another chat had already decided on when the refusal came cannot
// be held back (a real platform refuses it too, and that is handled).
func TestRunnerBotWideWaitHoldsEveryChat(t *testing.T) {
	gw := clienttest.New(t)
	p := &limitedPlatform{runnerPlatform: newRunnerPlatform("pl", 0), wait: 300 * time.Millisecond}
	noted := &logSignal{msg: "platform rate limit; waiting", ch: make(chan struct{})}
	r := bridge.NewRunner(p, bridge.RunnerConfig{Dialer: gw.Dialer(gw.BridgeIdentity("pl")), AllowedUsers: []string{"u1"},
		Logger: slog.New(noted), DataDir: t.TempDir()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-p.ready
	for i, c := range []string{"c1", "c2"} {
		if i == 1 {
			select {
			case <-noted.ch:
			case <-time.After(10 * time.Second):
				t.Fatal("the runner never noted the refusal")
			}
		}
		if err := p.host.Deliver(context.Background(), bridge.Incoming{ChatID: c, UserID: "u1", Text: "hi " + c}); err != nil {
			t.Fatal(err)
		}
	}
	p.waitTexts(t, "c1", 1)
	p.waitTexts(t, "c2", 1)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, at := range p.calls[1:] {
		if at.Before(p.refusedAt.Add(p.wait)) {
			t.Fatalf("a call %v after the refusal, inside its %v wait", at.Sub(p.refusedAt), p.wait)
		}
	}
}
