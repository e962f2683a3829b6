// Package logfile owns agentd's log files: size-rotated writers (agentd.log
// and the bridges' logs), suppression of repeated identical lines so a flood
// cannot fill the disk, and reading the newest entries back from the end of
// a file for GET /api/logs.
package logfile

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// MaxBytes is the size at which a log is rotated.
const MaxBytes = 10 << 20

// Backups is how many rotated files (name.1 … name.N) are kept.
const Backups = 5

// File is a log file rotated by size: when a write would pass the limit the
// file moves to name.1 (name.1 to name.2, … the oldest dropped) and a new
// one starts. Writes are whole lines from the caller and never split across
// files. It is the bridge logs' rotator, generalised to numbered backups and
// shared with agentd.log rather than adding lumberjack for the same few lines.
type File struct {
	path    string
	limit   int64
	backups int
	// mu guards f and size.
	mu   sync.Mutex
	f    *os.File
	size int64
}

// Open opens (creating, mode 0600) path for appending, rotating at limit
// bytes and keeping backups old files. The directory is created (0700).
func Open(path string, limit int64, backups int) (*File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	if backups < 1 {
		backups = 1
	}
	l := &File{path: path, limit: limit, backups: backups}
	if err := l.open(); err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	return l, nil
}

// Path is the file's name.
func (l *File) Path() string { return l.path }

// SetLimit changes the rotation size (tests use small ones).
func (l *File) SetLimit(n int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.limit = n
}

// open opens the log for appending; l.mu held or l unshared.
func (l *File) open() error {
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

func (l *File) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.size > 0 && l.size+int64(len(p)) > l.limit {
		l.rotate()
	}
	n, err := l.f.Write(p)
	l.size += int64(n)
	return n, err
}

// rotate shifts the backups and starts a new file; l.mu held. If that fails
// the old file is kept and grows: losing log lines would be worse.
func (l *File) rotate() {
	for i := l.backups - 1; i >= 1; i-- {
		os.Rename(fmt.Sprintf("%s.%d", l.path, i), fmt.Sprintf("%s.%d", l.path, i+1))
	}
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

// Close closes the file.
func (l *File) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}
