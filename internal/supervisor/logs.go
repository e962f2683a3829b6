package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/agentd/agentd/plugins/bridge"
	bridgev1 "github.com/agentd/agentd/proto/bridge/v1"
)

// stderrTailLines is how many of a plugin's last stderr lines are kept to
// explain a crash.
const stderrTailLines = 3

// maxLogLine bounds one line of plugin output held in memory.
const maxLogLine = 64 << 10

// MaxLogBytes is the size at which a bridge log is rotated: the file moves
// to bridge-<name>.log.1 (replacing the previous one) and a new file starts,
// so a chatty or crash-looping bridge cannot fill the disk.
const MaxLogBytes = 10 << 20

// bridgeLog is logs/bridge-<name>.log. Plugin stderr and the plugin's Log
// calls both end up here, written a whole line per Write under mu so they
// never interleave mid-line.
type bridgeLog struct {
	path  string
	limit int64
	// mu guards f and size.
	mu   sync.Mutex
	f    *os.File
	size int64
}

func openBridgeLog(dir, name string) (*bridgeLog, error) {
	ld := filepath.Join(dir, "logs")
	if err := os.MkdirAll(ld, 0o700); err != nil {
		return nil, fmt.Errorf("open bridge %s log: %w", name, err)
	}
	l := &bridgeLog{path: LogPath(dir, name), limit: MaxLogBytes}
	if err := l.open(); err != nil {
		return nil, fmt.Errorf("open bridge %s log: %w", name, err)
	}
	return l, nil
}

// open opens (or creates) the log for appending; l.mu held or l unshared.
func (l *bridgeLog) open() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	l.f, l.size = f, fi.Size()
	return nil
}

func (l *bridgeLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.size > 0 && l.size+int64(len(p)) > l.limit {
		l.rotate()
	}
	n, err := l.f.Write(p)
	l.size += int64(n)
	return n, err
}

// rotate moves the full log aside and starts a new one; l.mu held. If that
// fails the old file is kept and grows: losing log lines would be worse.
func (l *bridgeLog) rotate() {
	if err := os.Rename(l.path, l.path+".1"); err != nil {
		return
	}
	old := l.f
	if err := l.open(); err != nil {
		l.f = old
		return
	}
	old.Close()
}

func (l *bridgeLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

// LogPath is a bridge's log file.
func LogPath(dir, name string) string {
	return filepath.Join(dir, "logs", "bridge-"+name+".log")
}

// lineWriter receives a plugin's stderr (go-plugin writes a line and its
// newline in two calls), writes it to the log a whole line at a time, and
// remembers the last lines.
type lineWriter struct {
	log *bridgeLog
	// mu guards buf and tail.
	mu   sync.Mutex
	buf  []byte
	tail []string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 && len(w.buf) > maxLogLine {
			// A plugin printing without newlines must not grow agentd's
			// memory: cut the line.
			w.buf = append(w.buf, '\n')
			i = len(w.buf) - 1
		}
		if i < 0 {
			break
		}
		line := w.buf[:i+1]
		w.log.Write(line)
		if t := strings.TrimSpace(string(line)); t != "" {
			w.tail = append(w.tail, t)
			if len(w.tail) > stderrTailLines {
				w.tail = w.tail[1:]
			}
		}
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

// Tail returns the last stderr lines, joined with " | ".
func (w *lineWriter) Tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.tail, " | ")
}

// hostServer is agentd's BridgeHost for one bridge: Log goes to the
// bridge's log file, Event to its status.
type hostServer struct {
	bridgev1.UnimplementedBridgeHostServer
	s   *Supervisor
	e   *entry
	log *slog.Logger
}

func (h *hostServer) Log(ctx context.Context, r *bridgev1.LogRequest) (*bridgev1.LogResponse, error) {
	args := make([]any, 0, len(r.Attrs))
	for _, a := range r.Attrs {
		args = append(args, slog.String(a.Key, a.Value))
	}
	h.log.Log(ctx, slog.Level(r.Level), r.Msg, args...)
	return &bridgev1.LogResponse{}, nil
}

func (h *hostServer) Event(_ context.Context, r *bridgev1.EventRequest) (*bridgev1.EventResponse, error) {
	kind := bridge.EventKindName(r.Kind)
	text := r.Text
	if len(text) > 4096 {
		text = text[:4096] // a QR payload is far shorter; this bounds a misbehaving bridge
	}
	h.log.Info("bridge event", "kind", kind, "text", text)
	h.s.mu.Lock()
	st := &h.e.status
	st.Events = append(st.Events, Event{Time: time.Now(), Kind: kind, Text: text})
	if n := len(st.Events); n > maxEvents {
		st.Events = append(st.Events[:0:0], st.Events[n-maxEvents:]...)
	}
	switch kind {
	case "status":
		st.PlatformStatus = text
	case "logged_out":
		st.PlatformStatus = "logged out"
	}
	h.s.mu.Unlock()
	h.s.notify(h.e.name, ActionEvent)
	return &bridgev1.EventResponse{}, nil
}
