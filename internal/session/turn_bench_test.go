package session

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/provider"
	"github.com/agentd/agentd/wire"
)

// BenchmarkTurns runs b.N echo turns from 256 concurrent clients through
// the session manager and its store (no gateway): the turn path's share of
// BenchmarkConcurrentClients in internal/gateway, measured alone, with the
// same 20 turns per session. It reports turns/s and the process's CPU per
// turn.
func BenchmarkTurns(b *testing.B) {
	const turnsPerSession = 20
	h := start(b, b.TempDir(), yamlWith("echo", ""))
	const clients = 256
	type cl struct {
		c   *Client
		got chan struct{}
	}
	cs := make([]cl, clients)
	for i := range cs {
		got := make(chan struct{}, 1)
		id := &auth.Identity{ClientID: fmt.Sprintf("c%03d", i), Capabilities: []string{auth.CapChat}}
		cs[i] = cl{c: &Client{Identity: id, Sink: doneSink(got)}, got: got}
		defer h.m.Connect(cs[i].c)()
	}
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range cs {
		n := b.N / clients
		if i < b.N%clients {
			n++
		}
		wg.Go(func() {
			for j := range n {
				// A session of turnsPerSession turns, then the next: the
				// history (and with it a turn's cost) does not grow with b.N.
				sid := fmt.Sprintf("s%03d-%d", i, j/turnsPerSession)
				h.m.Handle(context.Background(), cs[i].c, wire.TextFinal{Text: fmt.Sprintf("turn %d of a benchmark", j), SessionID: sid})
				<-cs[i].got
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(syscall.TimevalToNsec(ru1.Utime) + syscall.TimevalToNsec(ru1.Stime) - syscall.TimevalToNsec(ru0.Utime) - syscall.TimevalToNsec(ru0.Stime))
	b.ReportMetric(float64(b.N)/el.Seconds(), "turns/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/turn")
}

// doneSink signals got at every turn_complete.
type doneSink chan struct{}

func (d doneSink) Send(m wire.Message) bool {
	if _, ok := m.(wire.TurnComplete); ok {
		d <- struct{}{}
	}
	return true
}

func (d doneSink) Stream(_ context.Context, m wire.Message) bool { return d.Send(m) }

// BenchmarkFinishTurn is the store's share of a turn alone: b.N finished
// echo turns (user message, reply, usage row) from 64 concurrent writers,
// through finishTurn and the group commit, on 1,000 sessions. Its
// cpu-µs/turn is the floor under BenchmarkTurns' that no change above the
// store can remove.
func BenchmarkFinishTurn(b *testing.B) {
	h := start(b, b.TempDir(), yamlWith("echo", ""))
	d := h.m.db
	ctx := context.Background()
	const sessions, writers = 1000, 64
	for i := range sessions {
		if _, err := d.ensureSession(ctx, fmt.Sprintf("s%d", i), "c"); err != nil {
			b.Fatal(err)
		}
	}
	reply := provider.EchoReply("client 12 turn 3")
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := w; i < b.N; i += writers {
				t := &turn{SessionID: fmt.Sprintf("s%d", i%sessions), ClientID: "c", Text: "client 12 turn 3"}
				o := outcome{Model: "echo", Usage: provider.Usage{PromptTokens: 100, CompletionTokens: 18},
					Messages: []provider.Message{{Role: provider.RoleUser, Content: t.Text}, {Role: provider.RoleAssistant, Content: reply}}}
				if err := d.finishTurn(ctx, t, o, nil); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := syscall.TimevalToNsec(ru1.Utime) + syscall.TimevalToNsec(ru1.Stime) - syscall.TimevalToNsec(ru0.Utime) - syscall.TimevalToNsec(ru0.Stime)
	b.ReportMetric(float64(cpu)/1e3/float64(b.N), "cpu-µs/turn")
}
