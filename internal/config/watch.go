package config

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// reloadDebounce lets an editor finish its write-rename dance before we read.
const reloadDebounce = 100 * time.Millisecond

// Watcher holds the config in force and replaces it when the file changes
// and the new content is valid. An invalid file is refused and logged; the
// old config stays in force.
type Watcher struct {
	path string
	log  *slog.Logger
	// lookup expands ${NAME}; nil means the process environment.
	lookup func(string) (string, bool)

	// mu guards cur, subs and lastErr.
	mu      sync.Mutex
	cur     *Config
	subs    []func(old, cur *Config)
	lastErr error
}

// NewWatcher starts from cfg, already loaded from path.
func NewWatcher(path string, cfg *Config, log *slog.Logger) *Watcher {
	return &Watcher{path: path, cur: cfg, log: log}
}

// Current returns the config in force. Callers must not modify it.
func (w *Watcher) Current() *Config {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cur
}

// LastError returns the error of the last refused reload, nil after a good one.
func (w *Watcher) LastError() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr
}

// Subscribe registers fn, called after every applied change.
func (w *Watcher) Subscribe(fn func(old, cur *Config)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.subs = append(w.subs, fn)
}

// Run watches the file until ctx is done. It watches the directory, since
// editors and atomic writers replace the file rather than write into it.
func (w *Watcher) Run(ctx context.Context) error {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch config: %w", err)
	}
	defer fw.Close()
	if err := fw.Add(filepath.Dir(w.path)); err != nil {
		return fmt.Errorf("watch config dir: %w", err)
	}
	name := filepath.Base(w.path)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return nil
			}
			if filepath.Base(ev.Name) == name && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) != 0 {
				timer.Reset(reloadDebounce)
			}
		case err, ok := <-fw.Errors:
			if !ok {
				return nil
			}
			w.log.Warn("config watcher", "err", err)
		case <-timer.C:
			w.Reload()
		}
	}
}

// Reload reads the file now and applies it if it is valid and different.
// It returns the load error, if any.
func (w *Watcher) Reload() error {
	cfg, err := w.load()
	w.mu.Lock()
	if err != nil {
		w.lastErr = err
		w.mu.Unlock()
		w.log.Error("config reload refused, keeping the config in force", "err", err)
		return err
	}
	w.lastErr = nil
	old := w.cur
	if reflect.DeepEqual(old, cfg) {
		w.mu.Unlock()
		return nil
	}
	w.cur = cfg
	subs := append([]func(old, cur *Config){}, w.subs...)
	w.mu.Unlock()
	w.log.Info("config reloaded", "path", w.path)
	for _, fn := range subs {
		fn(old, cfg)
	}
	return nil
}

func (w *Watcher) load() (*Config, error) {
	data, err := os.ReadFile(w.path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(w.path, data, w.lookupEnv())
}
