package logfile

import (
	"bytes"
	"io"
	"strings"
	"sync"
)

// TailLines is how many of a child's last lines a Lines keeps.
const TailLines = 3

// maxLine bounds one line of child output held in memory.
const maxLine = 64 << 10

// Lines receives a child process's output (a bridge plugin's stderr, an MCP
// server's), which may arrive a line and its newline in two writes, writes
// it to Log a whole line at a time, and remembers the last TailLines
// non-blank lines so a crash can be explained with what the child said
// last.
type Lines struct {
	Log io.Writer
	// mu guards buf and tail.
	mu   sync.Mutex
	buf  []byte
	tail []string
}

func (w *Lines) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 && len(w.buf) > maxLine {
			// A child printing without newlines must not grow agentd's
			// memory: cut the line.
			w.buf = append(w.buf, '\n')
			i = len(w.buf) - 1
		}
		if i < 0 {
			break
		}
		line := w.buf[:i+1]
		w.Log.Write(line)
		if t := strings.TrimSpace(string(line)); t != "" {
			w.tail = append(w.tail, t)
			if len(w.tail) > TailLines {
				w.tail = w.tail[1:]
			}
		}
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

// Tail returns the last lines, joined with " | ".
func (w *Lines) Tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.tail, " | ")
}
