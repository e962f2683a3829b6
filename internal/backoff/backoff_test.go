package backoff

import (
	"testing"
	"time"
)

func TestRestarts(t *testing.T) {
	ms := time.Millisecond
	type step struct {
		op        string // fail, permanent, ran-short, ran-stable
		wait      time.Duration
		crashloop bool
		failing   bool
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"waits double up to Max, crash loop at the third", []step{
			{"fail", 200 * ms, false, true}, {"fail", 400 * ms, false, true}, {"fail", 800 * ms, true, true},
			{"fail", 1600 * ms, true, true}, {"fail", 3200 * ms, true, true}, {"fail", 6400 * ms, true, true},
			{"fail", 12800 * ms, true, true}, {"fail", 25600 * ms, true, true}, {"fail", Max, true, true}, {"fail", Max, true, true},
		}},
		{"a short run resets nothing", []step{
			{"fail", 200 * ms, false, true}, {"ran-short", 0, false, true}, {"fail", 400 * ms, false, true},
		}},
		{"a stable run starts again", []step{
			{"fail", 200 * ms, false, true}, {"fail", 400 * ms, false, true}, {"fail", 800 * ms, true, true},
			{"ran-stable", 0, false, false}, {"fail", 200 * ms, false, true},
		}},
		{"a permanent failure waits Max until a stable run", []step{
			{"fail", 200 * ms, false, true}, {"permanent", Max, false, true}, {"fail", Max, true, true},
			{"ran-stable", 0, false, false}, {"fail", 200 * ms, false, true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Restarts{CrashloopAfter: 3}
			for i, s := range tc.steps {
				var wait time.Duration
				var crash bool
				switch s.op {
				case "fail":
					wait, crash = r.Fail()
				case "permanent":
					r.Hold()
					wait, crash = r.Fail()
				case "ran-short":
					r.Ran(StableAfter - time.Second)
				case "ran-stable":
					r.Ran(StableAfter)
				}
				if wait != s.wait || crash != s.crashloop || r.Failing() != s.failing {
					t.Fatalf("step %d %s: wait %s crashloop %v failing %v, want %s %v %v", i, s.op, wait, crash, r.Failing(), s.wait, s.crashloop, s.failing)
				}
			}
		})
	}
}
