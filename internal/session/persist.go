package session

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// A turn that starts at once is persisted persistDelay after its start,
// unless it has ended by then (its result is then stored in one
// transaction, no row needed), so that a SIGKILL during a long run loses
// nothing. One goroutine (persistLoop) writes the rows of every turn that
// reached its delay, in one group write: a timer and a write per turn, and
// a reader goroutine blocked for the delay, cost more than the row itself
// under load, where every run outlasts the delay.
//
// Who settles a turn is decided once, by its persist state: the loop
// claims a pending turn to write its row, or the run, when it ends first,
// claims it to skip the row (or, cut by shutdown, to write it itself).
const (
	persistPending int32 = iota
	persistSkipped       // the run ended first
	persistClaimed       // the loop writes its row
)

// persister is the turns waiting for their delay, in start order; mu
// guards due.
type persister struct {
	mu   sync.Mutex
	due  []*turn
	wake chan struct{} // capacity 1: due was empty and is not
}

// add schedules the row of t, a turn that started now.
func (p *persister) add(t *turn) {
	t.persistAt = time.Now().Add(persistDelay)
	p.mu.Lock()
	first := len(p.due) == 0
	p.due = append(p.due, t)
	p.mu.Unlock()
	if first {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// takeDue claims the turns whose delay has passed at now, drops those
// that ended, and returns how long until the next is due (0: none).
func (p *persister) takeDue(now time.Time) (claimed []*turn, next time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for ; n < len(p.due) && !p.due[n].persistAt.After(now); n++ {
		if t := p.due[n]; t.pstate.CompareAndSwap(persistPending, persistClaimed) {
			claimed = append(claimed, t)
		}
	}
	clear(p.due[:n])
	p.due = p.due[n:]
	if len(p.due) > 0 {
		next = p.due[0].persistAt.Sub(now)
	}
	return claimed, next
}

// persistLoop writes the due turns' rows until ctx is done. A turn still
// pending then is settled by its run (see settle).
func (m *Manager) persistLoop(ctx context.Context) {
	defer m.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		claimed, next := m.persist.takeDue(time.Now())
		if len(claimed) > 0 {
			m.writeRunning(claimed)
		}
		if next == 0 {
			next = time.Hour // until add wakes it
		}
		timer.Reset(next)
		select {
		case <-ctx.Done():
			return
		case <-m.persist.wake:
		case <-timer.C:
		}
	}
}

// writeRunning writes the rows of running turns ts in one group write and
// releases their runs.
func (m *Manager) writeRunning(ts []*turn) {
	if err := m.db.insertTurns(context.Background(), ts); err != nil {
		m.log.Error("persist running turns; they will not survive a restart", "turns", len(ts), "err", err)
	}
	for _, t := range ts {
		close(t.persisted)
	}
}

// settle ends a run's wait for its turn's row: it returns once the row is
// written (ID valid) or known not to be needed. A turn cut by shutdown
// that was not written yet is written now: it must run again after the
// restart. Calling it again returns at once.
func (m *Manager) settle(t *turn) {
	if t.persisted == nil {
		return // queued or resumed turns were written at accept; server turns never are
	}
	if !t.pstate.CompareAndSwap(persistPending, persistSkipped) {
		<-t.persisted
		return
	}
	if t.cut.Load() {
		if err := m.db.insertTurns(context.Background(), []*turn{t}); err != nil {
			m.log.Error("persist cut turn; it will not survive a restart", "session", t.SessionID, "err", err)
		}
	}
	close(t.persisted)
}

// insertTurns writes the rows of ts in one group write and sets their IDs.
func (d *db) insertTurns(ctx context.Context, ts []*turn) error {
	atts := make([]string, len(ts))
	for i, t := range ts {
		atts[i] = attachmentsJSON(t.Attachments)
	}
	ids := make([]int64, len(ts))
	err := d.inGroup(ctx, func(ctx context.Context, tx *sql.Tx) error {
		ins := tx.StmtContext(ctx, d.insTurn)
		now := d.ms()
		for i, t := range ts {
			res, err := ins.ExecContext(ctx, t.Seq, t.SessionID, t.ClientID, t.RunKey, t.Text, atts[i], now)
			if err != nil {
				return err
			}
			if ids[i], err = res.LastInsertId(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("persist turn: %w", err)
	}
	for i, t := range ts {
		t.ID = ids[i]
	}
	return nil
}

// pstate is a turn's persist state (persistPending …); persistAt, set by
// add, is when the loop writes its row.
type persistState struct {
	pstate    atomic.Int32
	persistAt time.Time
}
