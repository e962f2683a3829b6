package daemon

import (
	"fmt"
	"io"
	"log/slog"
	"os"
)

// newLogger logs JSON to file (for machines) and text to console (for
// people). The file is opened in append mode so restarts keep history.
func newLogger(file string, console io.Writer, level slog.Level) (*slog.Logger, io.Closer, error) {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("open log: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	h := slog.NewMultiHandler(slog.NewJSONHandler(f, opts), slog.NewTextHandler(console, opts))
	return slog.New(h), f, nil
}
