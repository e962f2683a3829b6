package integration

import (
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/procstat"
)

// stopProcess sends SIGSTOP to pid and returns once every thread of it
// is stopped. kill returns as soon as the signal is queued, and the group
// stop reaches the other threads only once one thread has taken the
// signal: on a loaded machine another thread of the process can still
// answer a request for milliseconds (TestBridgeDiscordSlashCommands saw
// agentd answer a command sent after kill had returned).
func stopProcess(t testing.TB, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !allThreadsStopped(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d: some thread still not stopped 10 s after SIGSTOP", pid)
		}
		time.Sleep(time.Millisecond)
	}
}

// allThreadsStopped reports whether every thread of pid is in state T
// (stopped by a signal), read from /proc/<pid>/task/*/stat.
func allThreadsStopped(pid int) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, task := range tasks {
		if st, err := procstat.State(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name())); err != nil || st != 'T' {
			return false
		}
	}
	return true
}
