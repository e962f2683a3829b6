package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/agentd/agentd/internal/procstat"
)

func init() {
	register(&command{
		name: "restart",
		args: "DIR",
		summary: `restart the running daemon
Asks the agentd serving DIR (as the owner, POST /api/restart) to shut down
cleanly and exit with status 75, then waits until it has stopped. Under the
systemd unit in deploy/ (RestartForceExitStatus=75) it starts again at once,
running the binary now installed; queued turns are kept and run after the
start. Without a service manager, start it again with agentd serve DIR.`,
		run: runRestart,
	})
}

func runRestart(_ *flag.FlagSet, args []string) error {
	arg, err := oneDir(args)
	if err != nil {
		return err
	}
	d, dir, err := localDialer(arg)
	if err != nil {
		return err
	}
	defer d.CloseIdle()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// The lock file names the serving process (internal/daemon/lock.go).
	b, _ := os.ReadFile(dir.Lock())
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if err := d.PostJSON(ctx, "/api/restart", nil, nil); err != nil {
		return explainDial(err, dir)
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if pid <= 0 || exited(pid) {
			fmt.Fprintf(stdout, "agentd in %s stopped for a restart (exit status 75); a service manager starts it again, otherwise run: agentd serve %s\n", dir.Root, arg)
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("agentd in %s accepted the restart but has not stopped after 15 s", dir.Root)
}

// exited reports whether process pid is gone (or a zombie: it has exited
// and only waits for its parent).
func exited(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	st, err := procstat.State(procstat.Path(pid))
	return err == nil && st == 'Z'
}
