package vault

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/agentd/agentd/internal/vault/notepath"
)

// Run brings the index up to date with the folder, then keeps it current
// until ctx ends: every folder is watched (inotify is not recursive, so new
// folders are added as they appear and renamed ones re-added under their
// new name), events are collected per path and handled once the burst has
// settled, and a full Sync runs every Rescan as the safety net for anything
// the watcher missed (queue overflow, a folder that appeared and filled
// before its watch was set). The daemon's own writes come back as events
// too; they change nothing because the index already has their mtime, size
// and hash.
func (v *Vault) Run(ctx context.Context) error {
	// Without a watcher (inotify instances used up) the vault still works:
	// outside changes then wait for the rescan.
	var events <-chan fsnotify.Event
	var errs <-chan error
	w, err := fsnotify.NewBufferedWatcher(4096)
	if err != nil {
		v.log.Error("vault: no file watcher; changes made outside agentd show up at the next rescan", "every", v.opts.Rescan, "err", err)
		w = nil
	} else {
		defer w.Close()
		events, errs = w.Events, w.Errors
	}
	dw := &dirWatch{w: w, v: v}
	full := func() {
		v.watchTree(dw.add)
		st, err := v.Sync(ctx)
		if err != nil && ctx.Err() == nil {
			v.log.Error("vault: full rescan failed", "err", err)
			return
		}
		v.log.Debug("vault: rescanned", "notes", st.Notes, "indexed", st.Indexed, "removed", st.Removed, "elapsed", st.Elapsed)
	}
	v.watchTree(dw.add)
	st, err := v.Sync(ctx)
	if err != nil {
		return err
	}
	v.log.Info("vault indexed", "dir", v.dir, "notes", st.Notes, "indexed", st.Indexed, "removed", st.Removed, "elapsed", st.Elapsed)
	close(v.ready)

	rescan := time.NewTicker(v.opts.Rescan)
	defer rescan.Stop()
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	pending := map[string]bool{}
	var first time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				return nil
			}
			rel, ok := v.rel(ev.Name)
			if !ok || rel == "." || notepath.Hidden(rel) || ev.Op == fsnotify.Chmod {
				continue // a chmod or touch changes nothing indexed
			}
			if len(pending) == 0 {
				first = time.Now()
			}
			pending[rel] = true
			// Wait for the burst to settle, but never longer than four
			// debounce periods after its first event.
			wait := min(v.opts.Debounce, max(4*v.opts.Debounce-time.Since(first), 0))
			settle.Reset(wait)
		case err, ok := <-errs:
			if !ok {
				return nil
			}
			v.log.Warn("vault: watcher", "err", err)
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				full()
			}
		case <-settle.C:
			v.settle(ctx, pending, dw)
			clear(pending)
		case <-rescan.C:
			full()
		}
	}
}

// settle handles the paths of one burst of events: first those that are
// gone, then those that exist. The order matters for a moved folder: the
// old name's watches must be dropped before the new name is watched, since
// inotify hands back the same watch for the same inode.
func (v *Vault) settle(ctx context.Context, pending map[string]bool, dw *dirWatch) {
	var gone, here []string
	for rel := range pending {
		if _, err := v.root.Lstat(rel); err != nil {
			gone = append(gone, rel)
		} else {
			here = append(here, rel)
		}
	}
	for _, rel := range append(gone, here...) {
		if err := v.syncPath(ctx, rel, dw); err != nil && ctx.Err() == nil {
			v.log.Warn("vault: reindex failed", "path", rel, "err", err)
		}
	}
}

// dirWatch adds and drops the watches of folders (nothing without a
// watcher). Only the first failure to add one is logged: past the
// system's inotify watch limit every further folder fails alike.
type dirWatch struct {
	w      *fsnotify.Watcher
	v      *Vault
	failed bool
}

func (d *dirWatch) add(rel string) {
	if d.w == nil {
		return
	}
	if err := d.w.Add(d.abs(rel)); err != nil && !d.failed {
		d.failed = true
		d.v.log.Warn("vault: cannot watch folder; changes in unwatched folders show up at the next rescan (raise fs.inotify.max_user_watches)", "folder", rel, "err", err)
	}
}

// drop removes the watches of rel and every folder below it.
func (d *dirWatch) drop(rel string) {
	if d.w == nil {
		return
	}
	root := d.abs(rel)
	for _, p := range d.w.WatchList() {
		if p == root || strings.HasPrefix(p, root+string(filepath.Separator)) {
			d.w.Remove(p) // already gone when inotify dropped it itself
		}
	}
}

func (d *dirWatch) abs(rel string) string {
	return filepath.Join(d.v.dir, filepath.FromSlash(rel))
}

// watchTree calls watch for the vault and every folder below it except
// dot-folders.
func (v *Vault) watchTree(watch func(rel string)) {
	fs.WalkDir(v.root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if p != "." && notepath.Hidden(p) {
			return fs.SkipDir
		}
		watch(p)
		return nil
	})
}
