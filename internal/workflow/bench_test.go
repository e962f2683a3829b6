package workflow

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/session/sessiontest"
)

// BenchmarkSetVariable50 runs a 50-block chain of set-variable blocks (a
// manual trigger, then v0 … v49, each storing a template value) and
// compares it with a plain Go loop doing the same 50 map writes, measured
// in the same run. The engine's cost per block is dominated by what makes
// a run durable: its trace row in SQLite, written as the block finishes.
func BenchmarkSetVariable50(b *testing.B) {
	se := sessiontest.Start(b, b.TempDir(), "", "")
	e, err := New(Options{DB: se.Store.DB(), Turns: se.Manager, Log: se.Log})
	if err != nil {
		b.Fatal(err)
	}
	if err := e.Start(se.Ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { se.Stop(e.Wait) })
	var nodes, edges []string
	nodes = append(nodes, `{"id":"start","type":"trigger-manual","config":{}}`)
	prev := "start"
	for i := 0; i < 50; i++ {
		id := fmt.Sprintf("v%d", i)
		nodes = append(nodes, fmt.Sprintf(`{"id":"%s","type":"set-variable","config":{"name":"%s","value":"value {{run_id}}"}}`, id, id))
		edges = append(edges, fmt.Sprintf(`{"source":"%s","target":"%s"}`, prev, id))
		prev = id
	}
	name := "chain"
	g := graph(b, `{"version":1,"nodes":[`+strings.Join(nodes, ",")+`],"edges":[`+strings.Join(edges, ",")+`]}`)
	sv, err := e.Create(context.Background(), Input{Name: &name, Graph: g})
	if err != nil {
		b.Fatal(err)
	}
	// The baseline: the same 50 writes into a map.
	loop := func(runID string) map[string]any {
		m := map[string]any{}
		for i := 0; i < 50; i++ {
			m[fmt.Sprintf("v%d", i)] = "value " + runID
		}
		return m
	}
	const loops = 10000
	t0 := time.Now()
	for i := 0; i < loops; i++ {
		loop("r")
	}
	base := time.Since(t0) / loops
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id, err := e.Run(context.Background(), sv.Workflow.ID, nil)
		if err != nil {
			b.Fatal(err)
		}
		if !e.Await(context.Background(), id, time.Minute) {
			b.Fatal("run did not end")
		}
	}
	b.StopTimer()
	per := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(per.Microseconds())/1000, "ms/run")
	b.ReportMetric(float64(per.Microseconds())/50, "µs/block")
	b.ReportMetric(float64(base.Nanoseconds())/1000, "µs/plain-loop")
	b.ReportMetric(float64(per)/float64(max(base, 1)), "x-vs-plain-loop")
}
