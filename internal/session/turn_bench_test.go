package session

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/auth"
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
