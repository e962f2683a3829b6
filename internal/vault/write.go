package vault

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/agentd/agentd/internal/vault/notepath"
)

// Expect is a change's precondition on the note's current version. It is
// what keeps the two writers — the owner in Obsidian, the agent or a REST
// client here — from silently overwriting each other.
type Expect struct {
	// Hash is the version the change is based on (Note.Hash); the change
	// fails with ErrConflict when the file no longer has it. "" = any.
	Hash string
	// Absent: the note must not exist yet (create only; ErrExists).
	Absent bool
}

// ConflictError is ErrConflict with the note's current version ("" when
// the note is gone).
type ConflictError struct {
	Path    string
	Current string
}

func (e *ConflictError) Error() string {
	if e.Current == "" {
		return fmt.Sprintf("%s: the note was deleted since it was read", e.Path)
	}
	return fmt.Sprintf("%s: the note changed since it was read (it is now version %s); read it again and redo the change", e.Path, e.Current)
}

func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// Result is the outcome of a change.
type Result struct {
	Path     string  `json:"path"`
	Hash     string  `json:"hash"`
	Modified float64 `json:"modified"`
	// Created is set when the note did not exist before.
	Created bool `json:"created"`
	// prevHash is the version the change replaced ("" for a new note).
	prevHash string
}

// Write creates or replaces the note at p with content: atomically (a temp
// file in the same folder, then rename), parent folders created, ".md"
// appended when missing.
func (v *Vault) Write(ctx context.Context, p string, content []byte, exp Expect) (Result, error) {
	return v.edit(ctx, p, exp, func([]byte, bool) ([]byte, error) { return content, nil })
}

// Append adds text at the end of the note (on a line of its own), creating
// the note when missing.
func (v *Vault) Append(ctx context.Context, p, text string, exp Expect) (Result, error) {
	return v.edit(ctx, p, exp, func(cur []byte, _ bool) ([]byte, error) {
		out := append([]byte{}, cur...)
		if len(out) > 0 && !bytes.HasSuffix(out, []byte("\n")) {
			out = append(out, '\n')
		}
		out = append(out, text...)
		if !strings.HasSuffix(text, "\n") {
			out = append(out, '\n')
		}
		return out, nil
	})
}

// SetProperties sets frontmatter properties of the note (a nil value
// deletes one), keeping every other property, their order and comments.
// order lists the keys of props in the order new keys are added.
func (v *Vault) SetProperties(ctx context.Context, p string, props map[string]any, order []string, exp Expect) (Result, error) {
	return v.edit(ctx, p, exp, func(cur []byte, exists bool) ([]byte, error) {
		if !exists {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, p)
		}
		out, err := setProperties(cur, props, order)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidContent, err)
		}
		return out, nil
	})
}

// edit runs one change under wmu: read the current file, check exp, build
// the new content with fn, write it atomically, index it, then notify.
func (v *Vault) edit(ctx context.Context, p string, exp Expect, fn func(cur []byte, exists bool) ([]byte, error)) (Result, error) {
	rel, err := CleanPath(p)
	if err != nil {
		return Result{}, err
	}
	v.wmu.Lock()
	res, ch, err := v.editLocked(ctx, rel, exp, fn)
	v.wmu.Unlock()
	if err != nil {
		return Result{}, err
	}
	v.notify(ch)
	return res, nil
}

func (v *Vault) editLocked(ctx context.Context, rel string, exp Expect, fn func([]byte, bool) ([]byte, error)) (Result, []change, error) {
	cur, fi, err := v.readFile(rel)
	exists := err == nil
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Result{}, nil, err
	}
	curHash := ""
	if exists {
		curHash = hashOf(cur)
	}
	if err := checkExpect(rel, exp, exists, curHash); err != nil {
		return Result{}, nil, err
	}
	next, err := fn(cur, exists)
	if err != nil {
		return Result{}, nil, err
	}
	if err := checkContent(next); err != nil {
		return Result{}, nil, err
	}
	if exists && hashOf(next) == curHash {
		return Result{Path: rel, Hash: curHash, Modified: seconds(fi.ModTime().UnixNano()), prevHash: curHash}, nil, nil
	}
	perm := fs.FileMode(0o644)
	if exists {
		perm = fi.Mode().Perm()
	}
	if err := v.writeAtomic(rel, next, perm); err != nil {
		return Result{}, nil, err
	}
	nfi, err := v.root.Stat(rel)
	if err != nil {
		return Result{}, nil, fmt.Errorf("write note %s: %w", rel, err)
	}
	st := stateOf(nfi, next)
	if err := v.index(ctx, rel, st, Parse(rel, next)); err != nil {
		return Result{}, nil, err
	}
	action := "updated"
	if !exists {
		action = "created"
	}
	return Result{Path: rel, Hash: st.hash, Modified: seconds(st.mtime), Created: !exists, prevHash: curHash}, []change{{action, rel}}, nil
}

func checkExpect(rel string, exp Expect, exists bool, cur string) error {
	switch {
	case exp.Absent && exists:
		return fmt.Errorf("%w: %s", ErrExists, rel)
	case exp.Hash != "" && cur != exp.Hash:
		return &ConflictError{Path: rel, Current: cur}
	}
	return nil
}

func checkContent(b []byte) error {
	switch {
	case len(b) > MaxNoteBytes:
		return fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(b), MaxNoteBytes)
	case !utf8.Valid(b):
		return fmt.Errorf("%w: not UTF-8 text", ErrInvalidContent)
	case bytes.IndexByte(b, 0) >= 0:
		return fmt.Errorf("%w: NUL byte (notes are text)", ErrInvalidContent)
	}
	return nil
}

// index records one note in the index and the name table.
func (v *Vault) index(ctx context.Context, rel string, st fileState, p *Parsed) error {
	tx, err := beginIndex(ctx, v.db)
	if err != nil {
		return err
	}
	if err := tx.upsert(ctx, rel, st, p); err != nil {
		tx.rollback()
		return err
	}
	if err := tx.commit(ctx); err != nil {
		return fmt.Errorf("index %s: %w", rel, err)
	}
	v.names.add(rel)
	return nil
}

// writeAtomic writes data to rel through a temp file in the same folder
// and a rename, so a reader (Obsidian, Syncthing, the watcher) sees the old
// note or the new one, never half of it. The temp name starts with a dot:
// the watcher ignores it.
func (v *Vault) writeAtomic(rel string, data []byte, perm fs.FileMode) error {
	dir := path.Dir(rel)
	if dir != "." {
		if err := v.root.MkdirAll(dir, 0o755); err != nil {
			return v.fsError("create folder "+dir, err)
		}
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	tmp := path.Join(dir, "."+path.Base(rel)+".tmp-"+hex.EncodeToString(rnd[:]))
	f, err := v.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return v.fsError("write "+rel, err)
	}
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = v.root.Rename(tmp, rel)
	}
	if werr != nil {
		v.root.Remove(tmp)
		return v.fsError("write "+rel, werr)
	}
	if d, err := v.root.Open(dir); err == nil {
		d.Sync() // the rename itself survives a crash
		d.Close()
	}
	return nil
}

func (v *Vault) fsError(what string, err error) error {
	if notepath.Escapes(err) {
		return fmt.Errorf("%w: %s: a symlink leads out of the vault", ErrInvalidPath, what)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Delete removes the note at p by moving it to .trash/ (Obsidian's own
// trash folder, never indexed), so a deletion can be undone by hand.
func (v *Vault) Delete(ctx context.Context, p string, exp Expect) error {
	rel, err := CleanPath(p)
	if err != nil {
		return err
	}
	v.wmu.Lock()
	ch, err := v.deleteLocked(ctx, rel, exp)
	v.wmu.Unlock()
	if err != nil {
		return err
	}
	v.notify(ch)
	return nil
}

func (v *Vault) deleteLocked(ctx context.Context, rel string, exp Expect) ([]change, error) {
	cur, _, err := v.readFile(rel)
	if err != nil {
		return nil, err
	}
	if err := checkExpect(rel, exp, true, hashOf(cur)); err != nil {
		return nil, err
	}
	trash := path.Join(".trash", rel)
	if err := v.root.MkdirAll(path.Dir(trash), 0o755); err != nil {
		return nil, v.fsError("delete "+rel, err)
	}
	if _, err := v.root.Lstat(trash); err == nil {
		trash = strings.TrimSuffix(trash, ".md") + " " + strconv.FormatInt(time.Now().UnixNano(), 10) + ".md"
	}
	if err := v.root.Rename(rel, trash); err != nil {
		return nil, v.fsError("delete "+rel, err)
	}
	return v.unindex(ctx, rel, false)
}

// unindex drops rel — and with under, every note below the folder rel —
// from the index, returning the deletions to notify.
func (v *Vault) unindex(ctx context.Context, rel string, under bool) ([]change, error) {
	q := `SELECT id, path FROM vault_notes WHERE path = ?`
	args := []any{rel}
	if under {
		// Byte-wise range: every path starting with "rel/" ('0' follows '/').
		q = `SELECT id, path FROM vault_notes WHERE path = ? OR (path >= ? AND path < ?)`
		args = append(args, rel+"/", rel+"0")
	}
	rows, err := v.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("unindex %s: %w", rel, err)
	}
	type victim struct {
		id   int64
		path string
	}
	var gone []victim
	for rows.Next() {
		var g victim
		if err := rows.Scan(&g.id, &g.path); err != nil {
			rows.Close()
			return nil, fmt.Errorf("unindex %s: %w", rel, err)
		}
		gone = append(gone, g)
	}
	rows.Close()
	if len(gone) == 0 {
		return nil, nil
	}
	tx, err := beginIndex(ctx, v.db)
	if err != nil {
		return nil, err
	}
	var ch []change
	for _, g := range gone {
		if err := tx.remove(ctx, g.id); err != nil {
			tx.rollback()
			return nil, fmt.Errorf("unindex %s: %w", g.path, err)
		}
		ch = append(ch, change{"deleted", g.path})
	}
	if err := tx.commit(ctx); err != nil {
		return nil, fmt.Errorf("unindex %s: %w", rel, err)
	}
	for _, g := range gone {
		v.names.remove(g.path)
	}
	return ch, nil
}
