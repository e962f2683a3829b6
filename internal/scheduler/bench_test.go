package scheduler

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/session/sessiontest"
)

// rssKB is this process's resident set (Linux).
func rssKB() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}

// startOnce builds and starts a scheduler over se's tables, returns how
// long New+Start took and the heap it holds, and stops it.
func startOnce(b *testing.B, se *sessiontest.Env) (time.Duration, uint64) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ctx, cancel := context.WithCancel(se.Ctx)
	start := time.Now()
	s, err := New(Options{DB: se.Store.DB(), Config: se.Config, Turns: se.Manager, Log: se.Log})
	if err == nil {
		err = s.Start(ctx)
	}
	took := time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	cancel()
	s.Wait()
	return took, after.HeapAlloc - min(after.HeapAlloc, before.HeapAlloc)
}

// BenchmarkStart1000Tasks is agentd's start-up with 1,000 tasks stored:
// reading them, checking each for missed slots and registering it with
// gocron. The baseline is the same start with no task, in the same run;
// heap and RSS are what the 1,000 registered tasks hold.
func BenchmarkStart1000Tasks(b *testing.B) {
	empty := sessiontest.Start(b, b.TempDir(), "", "")
	full := sessiontest.Start(b, b.TempDir(), "", "")
	setup, err := New(Options{DB: full.Store.DB(), Config: full.Config, Turns: full.Manager, Log: full.Log})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		name, cron, prompt := "task "+strconv.Itoa(i), strconv.Itoa(i%60)+" "+strconv.Itoa(i%24)+" * * *", "report "+strconv.Itoa(i)
		if _, err := setup.Create(context.Background(), Input{Name: &name, CronExpression: &cron, Prompt: &prompt}); err != nil {
			b.Fatal(err)
		}
	}
	var base, with time.Duration
	var heap uint64
	rss0 := rssKB()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d0, _ := startOnce(b, empty)
		d1, h := startOnce(b, full)
		base, with, heap = base+d0, with+d1, heap+h
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(with.Microseconds())/n/1000, "ms/start-1000")
	b.ReportMetric(float64(base.Microseconds())/n/1000, "ms/start-empty")
	b.ReportMetric(float64(with)/float64(max(base, 1)), "x-vs-empty")
	b.ReportMetric(float64(heap)/n/1000, "heap-B/task")
	b.ReportMetric(float64(rssKB()-rss0)/1024, "rss-growth-MB")
}
