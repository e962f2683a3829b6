package daemon

import (
	"io"
	"log/slog"

	"github.com/agentd/agentd/internal/logfile"
)

// newLogger logs JSON to file (for machines) and text to console (for
// people). The file is appended to, so restarts keep history, and rotated
// by size (logfile.MaxBytes × logfile.Backups).
func newLogger(file string, console io.Writer, level slog.Level) (*slog.Logger, io.Closer, error) {
	f, err := logfile.Open(file, logfile.MaxBytes, logfile.Backups)
	if err != nil {
		return nil, nil, err
	}
	opts := &slog.HandlerOptions{Level: level}
	h := slog.NewMultiHandler(slog.NewJSONHandler(f, opts), slog.NewTextHandler(console, opts))
	return slog.New(h), f, nil
}
