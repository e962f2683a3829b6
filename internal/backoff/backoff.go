// Package backoff is the restart policy of what agentd supervises (bridge
// plugins in internal/supervisor, MCP servers in internal/mcp): the wait
// before a relaunch starts at Initial and grows by Factor per failure in a
// row up to Max; a run that lasted StableAfter counts as healthy and starts
// the count again. After a number of quick failures in a row, which each
// supervisor sets, the failures read as a crash loop; the retries go on at
// Max pace, so fixing the cause (a token, a command) heals without a manual
// restart.
package backoff

import "time"

// The policy's numbers.
const (
	Initial     = 200 * time.Millisecond
	Max         = 30 * time.Second
	Factor      = 2
	StableAfter = 60 * time.Second
)

// Restarts is the state of one restart loop. It belongs to that loop's
// goroutine (not safe for concurrent use); the zero value with
// CrashloopAfter set is ready.
type Restarts struct {
	// CrashloopAfter is how many quick failures in a row make a crash loop.
	CrashloopAfter int

	next  time.Duration // the wait after the next failure; 0 means Initial
	quick int           // failures since the last stable run
}

// Ran records a run (a process, a connection) that lasted d; one of
// StableAfter or more was healthy and resets the waits and the count.
func (r *Restarts) Ran(d time.Duration) {
	if d >= StableAfter {
		r.next, r.quick = 0, 0
	}
}

// Fail records a failure: it returns how long to wait before the next
// attempt and whether the failures in a row now make a crash loop.
func (r *Restarts) Fail() (wait time.Duration, crashloop bool) {
	if r.next == 0 {
		r.next = Initial
	}
	wait = r.next
	r.next = min(r.next*Factor, Max)
	r.quick++
	return wait, r.quick >= r.CrashloopAfter
}

// Hold is for a failure that will not pass by itself (a command that is
// not installed): the next wait and every one until a stable run are Max.
func (r *Restarts) Hold() { r.next = Max }

// Failing reports failures since the last stable run: a run that starts
// now is a retry, not yet a recovery.
func (r *Restarts) Failing() bool { return r.quick > 0 }
