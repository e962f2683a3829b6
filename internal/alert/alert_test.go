package alert

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/wire"
)

// inbox records pushed messages as "session: text".
type inbox struct {
	mu   sync.Mutex
	msgs []string
	fail map[string]bool
}

func (b *inbox) push(_ context.Context, sid, text string, _ []wire.Attachment) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail[sid] {
		return errors.New("no such session")
	}
	b.msgs = append(b.msgs, sid+": "+text)
	return nil
}

func (b *inbox) got() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.msgs)
}

// waitFor waits until the inbox holds n messages.
func (b *inbox) waitFor(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(b.got()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("inbox %q, want %d messages", b.got(), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return b.got()
}

func newAlerter(t *testing.T, after time.Duration, targets ...string) (*Alerter, *inbox) {
	t.Helper()
	cfg := config.Default()
	cfg.Alerts = config.Alerts{DeliverTo: targets, After: config.Duration(after)}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b := &inbox{fail: map[string]bool{}}
	a := New(Options{Push: b.push, Config: config.NewWatcher("", cfg, log), Log: log})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return a, b
}

// pending is how many messages wait for Run (deterministic: enqueueing is
// synchronous in Raise and Clear).
func (a *Alerter) pending() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.queue)
}

// A retry loop raising the same problem over and over, and a bridge that
// flaps up and down, say nothing before alerts.after.
func TestNoAlertBeforeAfter(t *testing.T) {
	a, b := newAlerter(t, time.Hour, "tg:1", "cli")
	for i := range 100 {
		a.Raise("bridge:discord", fmt.Sprintf("Discord is down since 14:02: attempt %d", i))
		if i%10 == 0 {
			a.Clear("bridge:discord", "Discord is back up")
		}
	}
	if n := a.pending(); n != 0 || len(b.got()) != 0 {
		t.Fatalf("%d pending, sent %q", n, b.got())
	}
	if got := a.Open(); !slices.Equal(got, []string{"bridge:discord"}) {
		t.Fatalf("open incidents %q", got)
	}
}

// One alert per incident, through the other channels, however often it is
// raised; one "back up" message once it is cleared for good.
func TestOneAlertOneBackUp(t *testing.T) {
	a, b := newAlerter(t, 20*time.Millisecond, "tg:1", "dc:2", "cli")
	for range 20 {
		a.Raise("bridge:discord", "Discord is down since 14:02: invalid token", NotVia("dc"))
	}
	got := b.waitFor(t, 2)
	want := []string{"tg:1: Discord is down since 14:02: invalid token", "cli: Discord is down since 14:02: invalid token"}
	if !slices.Equal(got, want) {
		t.Fatalf("alerts %q, want %q", got, want)
	}
	for range 20 { // retries: nothing more
		a.Raise("bridge:discord", "Discord is down since 14:02: still", NotVia("dc"))
	}
	a.Clear("bridge:discord", "Discord is back up")
	got = b.waitFor(t, 4)
	if !slices.Equal(got[2:], []string{"tg:1: Discord is back up", "cli: Discord is back up"}) {
		t.Fatalf("after clear %q", got)
	}
	if len(a.Open()) != 0 {
		t.Fatalf("still open: %q", a.Open())
	}
	// A new incident of the same key is a new alert.
	a.Raise("bridge:discord", "Discord is down since 15:00: gone", NotVia("dc"), Immediately())
	if got := b.waitFor(t, 6); got[4] != "tg:1: Discord is down since 15:00: gone" {
		t.Fatalf("second incident %q", got)
	}
	if len(b.got()) != 6 {
		t.Fatalf("messages %q", b.got())
	}
}

// Immediately skips the wait; a failing target does not stop the others;
// a cleared incident that was never reported says nothing.
func TestImmediatelyAndQuietClear(t *testing.T) {
	a, b := newAlerter(t, time.Hour, "gone", "cli")
	b.fail["gone"] = true
	a.Raise("bridge:whatsapp", "WhatsApp is logged out since {since}", Immediately())
	if got := b.waitFor(t, 1); got[0] != "cli: WhatsApp is logged out since "+time.Now().Format("15:04") && got[0] != "cli: WhatsApp is logged out since "+time.Now().Add(-time.Minute).Format("15:04") {
		t.Fatalf("got %q", got)
	}
	a.Raise("mcp:files", "MCP server files is down since 14:00: exit 1")
	a.Clear("mcp:files", "MCP server files is back up")
	if a.pending() != 0 || len(b.got()) != 1 {
		t.Fatalf("unreported incident sent something: %q", b.got())
	}
	var nilA *Alerter // components may hold none
	nilA.Raise("x", "y")
	nilA.Clear("x", "y")
}

func (b *inbox) setFail(sid string, fail bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fail[sid] = fail
}

// A target that cannot take an alert yet (at start-up, the Telegram
// bridge has no identity when Discord fails) gets it once it can, in
// order, exactly once; the other targets are not held up.
func TestFailedDeliveryRetriedInOrder(t *testing.T) {
	a, b := newAlerter(t, 0, "tg:1", "cli") // no quiet period: Clear sends at once
	b.setFail("tg:1", true)
	a.Raise("bridge:discord", "Discord has failed", Immediately())
	a.Raise("pairing:K7QF", "Ada asks to talk to the agent", Immediately())
	if got := b.waitFor(t, 2); !slices.Equal(got, []string{"cli: Discord has failed", "cli: Ada asks to talk to the agent"}) {
		t.Fatalf("while tg:1 fails: %q", got)
	}
	time.Sleep(3 * retryFirst) // a few failed retries
	a.Clear("bridge:discord", "Discord is back up")
	b.setFail("tg:1", false)
	got := b.waitFor(t, 6)
	tg := slices.DeleteFunc(slices.Clone(got), func(s string) bool { return !strings.HasPrefix(s, "tg:1: ") })
	if want := []string{"tg:1: Discord has failed", "tg:1: Ada asks to talk to the agent", "tg:1: Discord is back up"}; !slices.Equal(tg, want) {
		t.Fatalf("tg:1 got %q, want %q", tg, want)
	}
	time.Sleep(3 * retryFirst)
	if n := len(b.got()); n != 6 {
		t.Fatalf("%d messages, want 6 (none twice): %q", n, b.got())
	}
}

// A target removed from alerts.deliver_to while it fails loses its
// waiting alerts instead of getting them later.
func TestBacklogDroppedWithItsTarget(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "openagent.yaml")
	write := func(targets string) {
		t.Helper()
		if err := os.WriteFile(path, []byte("alerts:\n  deliver_to: "+targets+"\n  after: 1h\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`["tg:1", "cli"]`)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	w := config.NewWatcher(path, cfg, log)
	b := &inbox{fail: map[string]bool{"tg:1": true}}
	a := New(Options{Push: b.push, Config: w, Log: log})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	a.Raise("bridge:discord", "Discord has failed", Immediately())
	b.waitFor(t, 1)
	write(`["cli"]`)
	if err := w.Reload(); err != nil {
		t.Fatal(err)
	}
	b.setFail("tg:1", false)
	time.Sleep(6 * retryFirst) // past two retries
	if got := b.got(); !slices.Equal(got, []string{"cli: Discord has failed"}) {
		t.Fatalf("got %q: the removed target's alert was delivered", got)
	}
}
