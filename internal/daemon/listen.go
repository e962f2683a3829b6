package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"syscall"
	"time"
)

// listenUnix listens on path with mode 0600. The caller holds the directory
// lock, so a socket file already there was left by a crashed run: it is
// replaced. As a second guard, a socket that still answers is refused.
func listenUnix(path string) (net.Listener, error) {
	if _, err := os.Lstat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
			c.Close()
			return nil, fmt.Errorf("%w: %s answers", ErrAlreadyRunning, path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	// The umask makes the socket 0600 from its first instant; a chmod after
	// Listen would leave a window in which anyone could connect.
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	return ln, nil
}

// fdReserve is kept free of client streams for the database, logs, the
// sidecar and bridges.
const fdReserve = 256

// connLimit is limits.max_connections, lowered (and said so) when the
// process may not open that many files.
func connLimit(want int, log *slog.Logger) int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<30 {
		return want
	}
	if room := int(rl.Cur) - fdReserve; want > room {
		log.Warn("limits.max_connections lowered to what the file descriptor limit allows", "configured", want, "limit", max(room, 16), "nofile", rl.Cur)
		return max(room, 16)
	}
	return want
}
