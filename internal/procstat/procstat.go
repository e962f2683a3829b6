// Package procstat reads the state of a Linux process or thread from
// /proc. gopsutil's process.Status reads the same field but only for a
// whole process, maps the letters to words, and lists no thread states:
// this is the one parser the supervisor, the CLI and the tests share.
package procstat

import (
	"bytes"
	"fmt"
	"os"
)

// Path is the stat file of process pid.
func Path(pid int) string { return fmt.Sprintf("/proc/%d/stat", pid) }

// State returns the state letter (R, S, D, T, Z, …) in the stat file at
// path (/proc/<pid>/stat or /proc/<pid>/task/<tid>/stat), or 0 when the
// file holds none. The error is the read's, so callers can test
// os.ErrNotExist (the process is gone and reaped).
func State(path string) (byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	// "pid (comm) state …": comm may hold spaces or parentheses, so the
	// state follows the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, nil
	}
	return b[i+2], nil
}
