package vault

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/agentd/agentd/internal/vault/notepath"
)

// syncBatch is how many changed notes one index transaction holds during a
// full sync: big enough for a fast cold build, small enough that sessions
// writing to the same database never wait long.
const syncBatch = 256

// SyncStats says what a full sync did.
type SyncStats struct {
	Notes   int // notes on disk
	Indexed int // (re)indexed because their content changed or was new
	Removed int // gone from disk, dropped from the index
	Elapsed time.Duration
}

// Sync brings the index up to date with the whole folder: notes whose
// mtime and size match the index are skipped, the others are hashed and
// reindexed only when the content changed; notes gone from disk are
// dropped. Every change is notified, except during the very first build of
// an empty index (then the notes were not "created": they were there).
func (v *Vault) Sync(ctx context.Context) (SyncStats, error) {
	start := time.Now()
	var st SyncStats
	rows, err := loadRows(ctx, v.db)
	if err != nil {
		return st, err
	}
	cold := len(rows) == 0
	var found []string
	err = filepath.WalkDir(v.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == v.dir {
				return err
			}
			v.log.Warn("vault: skipping unreadable path", "path", p, "err", err)
			return nil
		}
		rel, ok := v.rel(p)
		if !ok || rel == "." {
			return nil
		}
		if d.IsDir() {
			if notepath.Hidden(rel) {
				return filepath.SkipDir
			}
			return nil
		}
		if notepath.IsNote(rel) {
			found = append(found, rel)
		}
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("scan vault: %w", err)
	}
	st.Notes = len(found)
	for i := 0; i < len(found); i += syncBatch {
		batch := found[i:min(i+syncBatch, len(found))]
		n, err := v.syncFiles(ctx, batch, rows, !cold)
		if err != nil {
			return st, err
		}
		st.Indexed += n
	}
	seen := make(map[string]bool, len(found))
	for _, f := range found {
		seen[f] = true
	}
	for p := range rows {
		if seen[p] {
			continue
		}
		v.wmu.Lock()
		ch, err := v.unindex(ctx, p, false)
		v.wmu.Unlock()
		if err != nil {
			return st, err
		}
		st.Removed += len(ch)
		v.notify(ch)
	}
	if err := v.reloadNames(ctx); err != nil {
		return st, err
	}
	st.Elapsed = time.Since(start)
	return st, nil
}

// reloadNames rebuilds the name table from the index. Two notes whose paths
// differ only in case share a key and only the first is filed; when it
// goes, the other is filed again here.
func (v *Vault) reloadNames(ctx context.Context) error {
	v.wmu.Lock() // no change may slip in between the load and the swap
	defer v.wmu.Unlock()
	rows, err := loadRows(ctx, v.db)
	if err != nil {
		return err
	}
	fresh := newNames()
	for p := range rows {
		fresh.add(p)
	}
	v.names.replace(fresh)
	return nil
}

// rel turns an absolute path below the vault into a vault path.
func (v *Vault) rel(abs string) (string, bool) {
	r, err := filepath.Rel(v.dir, abs)
	if err != nil || r == ".." || strings.HasPrefix(r, "../") {
		return "", false
	}
	return filepath.ToSlash(r), true
}

// syncFiles checks each note against its indexed state (rows; nil means
// look it up) and reindexes the changed ones in one transaction.
func (v *Vault) syncFiles(ctx context.Context, rels []string, rows map[string]indexRow, notify bool) (int, error) {
	v.wmu.Lock()
	ch, err := v.syncFilesLocked(ctx, rels, rows)
	v.wmu.Unlock()
	if notify {
		v.notify(ch) // hooks never run under wmu
	}
	return len(ch), err
}

func (v *Vault) syncFilesLocked(ctx context.Context, rels []string, rows map[string]indexRow) ([]change, error) {
	if rows == nil {
		var err error
		if rows, err = v.rowsOf(ctx, rels); err != nil {
			return nil, err
		}
	}
	type pending struct {
		rel     string
		st      fileState
		parsed  *Parsed
		changed bool // content differs (else only mtime/size moved)
	}
	var work []pending
	for _, rel := range rels {
		fi, err := v.root.Stat(rel)
		if err != nil || !fi.Mode().IsRegular() {
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				v.log.Debug("vault: not indexing", "path", rel, "err", err)
			}
			continue // gone since the walk, or a symlink out of the vault: the removal pass drops it
		}
		old, had := rows[rel]
		if had && old.mtime == fi.ModTime().UnixNano() && old.size == fi.Size() {
			continue
		}
		content, err := v.root.ReadFile(rel)
		if err != nil {
			v.log.Warn("vault: cannot read note", "path", rel, "err", err)
			continue
		}
		st := stateOf(fi, content)
		if had && old.hash == st.hash {
			work = append(work, pending{rel: rel, st: st})
			continue
		}
		work = append(work, pending{rel: rel, st: st, parsed: Parse(rel, content), changed: true})
	}
	if len(work) == 0 {
		return nil, nil
	}
	tx, err := beginIndex(ctx, v.db)
	if err != nil {
		return nil, err
	}
	var ch []change
	for _, w := range work {
		if !w.changed {
			err = tx.touch(ctx, w.rel, w.st)
		} else {
			err = tx.upsert(ctx, w.rel, w.st, w.parsed)
			action := "updated"
			if _, had := rows[w.rel]; !had {
				action = "created"
			}
			ch = append(ch, change{action, w.rel})
		}
		if err != nil {
			tx.rollback()
			return nil, err
		}
	}
	if err := tx.commit(ctx); err != nil {
		return nil, fmt.Errorf("vault index: %w", err)
	}
	for _, c := range ch {
		v.names.add(c.path)
	}
	return ch, nil
}

// rowsOf loads the indexed state of the given notes.
func (v *Vault) rowsOf(ctx context.Context, rels []string) (map[string]indexRow, error) {
	out := map[string]indexRow{}
	for _, rel := range rels {
		var r indexRow
		err := v.db.QueryRowContext(ctx, `SELECT id, mtime_ns, size, hash FROM vault_notes WHERE path = ?`, rel).
			Scan(&r.id, &r.mtime, &r.size, &r.hash)
		if err == nil {
			out[rel] = r
		} else if !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("vault index: %w", err)
		}
	}
	return out, nil
}

// syncPath brings one changed path (file or folder, present or gone) into
// the index; dw (may be nil) watches folders that appeared and drops the
// watches of folders that went away.
func (v *Vault) syncPath(ctx context.Context, rel string, dw *dirWatch) error {
	if notepath.Hidden(rel) {
		return nil
	}
	fi, err := v.root.Stat(rel)
	switch {
	case err != nil:
		if dw != nil {
			dw.drop(rel)
		}
		// Gone (or now a symlink out of the vault): drop it and, if it
		// was a folder, everything below it.
		v.wmu.Lock()
		ch, err := v.unindex(ctx, rel, true)
		v.wmu.Unlock()
		v.notify(ch)
		return err
	case fi.IsDir():
		return v.syncTree(ctx, rel, dw)
	case notepath.IsNote(rel):
		_, err := v.syncFiles(ctx, []string{rel}, nil, true)
		return err
	}
	return nil
}

// syncTree indexes a folder that appeared or moved in: every note below it,
// and drops indexed notes below it that are not there any more. Each
// folder is watched before it is read, so nothing created in it meanwhile
// is missed.
func (v *Vault) syncTree(ctx context.Context, rel string, dw *dirWatch) error {
	var notes []string
	err := fs.WalkDir(v.root.FS(), rel, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			if notepath.Hidden(p) {
				return fs.SkipDir
			}
			if dw != nil {
				dw.add(p)
			}
			return nil
		}
		if notepath.IsNote(p) {
			notes = append(notes, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("scan %s: %w", rel, err)
	}
	for i := 0; i < len(notes); i += syncBatch {
		if _, err := v.syncFiles(ctx, notes[i:min(i+syncBatch, len(notes))], nil, true); err != nil {
			return err
		}
	}
	present := map[string]bool{}
	for _, n := range notes {
		present[n] = true
	}
	rows, err := v.db.QueryContext(ctx, `SELECT path FROM vault_notes WHERE path >= ? AND path < ?`, rel+"/", rel+"0")
	if err != nil {
		return fmt.Errorf("scan %s: %w", rel, err)
	}
	var stale []string
	for rows.Next() {
		var p string
		if rows.Scan(&p) == nil && !present[p] {
			stale = append(stale, p)
		}
	}
	rows.Close()
	for _, p := range stale {
		v.wmu.Lock()
		ch, err := v.unindex(ctx, p, false)
		v.wmu.Unlock()
		if err != nil {
			return err
		}
		v.notify(ch)
	}
	return nil
}
