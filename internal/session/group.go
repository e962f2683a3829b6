package session

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
)

// Group commit: the writes of many turns (a finished turn's messages and
// usage, a persisted turn, a new session, replies kept in the outbox and
// their acks) share one transaction. SQLite has one writer and
// a commit costs far more than the rows it writes, so committing turn by
// turn capped throughput at a few hundred turns per second under load.
//
// There is no writer goroutine: the first caller that finds no commit in
// progress leads; it takes every pending write (its own included), runs
// them in one transaction (see commitGroup for how a failing write fails
// alone), commits, and hands the lead to the next waiting caller, if any.
// Writes that arrive while a commit runs form the next batch, so a lone
// write is never delayed and a busy store commits in large batches. Every
// caller returns only once its write is committed (or failed): the
// promises made on it (queued{}, a response) are kept exactly as before.

// maxGroup bounds the writes of one transaction.
const maxGroup = 256

// errLead tells a waiting caller that it leads the next commit.
var errLead = errors.New("lead the next group commit")

type groupWrite struct {
	ctx  context.Context
	fn   func(ctx context.Context, tx *sql.Tx) error
	done chan error // capacity 1: errLead, then the write's result
}

// group is the pending writes; mu guards pending and leading.
type group struct {
	mu      sync.Mutex
	pending []*groupWrite
	leading bool
}

// inGroup runs fn in a transaction shared with concurrent writes and
// returns once that transaction committed (nil) or fn or the commit failed.
// fn must only write through tx. A write whose ctx is done before its turn
// is not run.
func (d *db) inGroup(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	w := &groupWrite{ctx: ctx, fn: fn, done: make(chan error, 1)}
	g := &d.group
	g.mu.Lock()
	g.pending = append(g.pending, w)
	lead := !g.leading
	g.leading = true
	g.mu.Unlock()
	if !lead {
		if err := <-w.done; err != errLead {
			return err
		}
	}
	g.mu.Lock()
	n := min(len(g.pending), maxGroup)
	batch := g.pending[:n:n]
	g.pending = g.pending[n:]
	g.mu.Unlock()

	d.commitGroup(batch)

	g.mu.Lock()
	if len(g.pending) > 0 {
		g.pending[0].done <- errLead
	} else {
		g.leading = false
	}
	g.mu.Unlock()
	return <-w.done
}

// commitGroup runs batch in one transaction and tells each write its
// result. Writes almost never fail, so they share the transaction without
// savepoints (two statements more per write); when one fails, the
// transaction is rolled back and each write runs again in one of its own,
// so the failing write fails alone and the others commit.
func (d *db) commitGroup(batch []*groupWrite) {
	errs := make([]error, len(batch))
	defer func() {
		for i, w := range batch {
			w.done <- errs[i]
		}
	}()
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if failed := d.commitWrites(batch, errs); !failed || len(batch) == 1 {
		return
	}
	clear(errs)
	for i := range batch {
		d.commitWrites(batch[i:i+1], errs[i:i+1])
	}
}

// commitWrites runs writes in one transaction, stopping at the first that
// fails; it reports whether one did (errs then says which, or why the
// transaction failed).
func (d *db) commitWrites(writes []*groupWrite, errs []error) (failed bool) {
	fail := func(err error) bool {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return true
	}
	// The writes' own contexts are checked before each runs; the
	// transaction must not be cut by one of them. The statements get a
	// context that cannot be cancelled: for a cancellable one the driver
	// starts a watcher goroutine per statement.
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	tx, err := d.sql.BeginTx(ctx, nil)
	if err != nil {
		return fail(fmt.Errorf("begin: %w", err))
	}
	defer tx.Rollback()
	sctx := context.WithoutCancel(ctx)
	ran := false
	for i, w := range writes {
		if err := w.ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		if err := w.fn(sctx, tx); err != nil {
			errs[i] = err
			return true // rolled back: nothing of a failed write is kept
		}
		ran = true
	}
	if !ran {
		return false
	}
	if err := tx.Commit(); err != nil {
		return fail(fmt.Errorf("commit: %w", err))
	}
	return false
}
