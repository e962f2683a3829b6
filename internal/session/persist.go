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
// nothing. One timer writes the rows of every turn that reached its delay,
// in one group write: a timer and a write per turn, and a reader goroutine
// blocked for the delay, cost more than the row itself under load, where
// every run outlasts the delay; and a goroutine woken for every turn would
// be scheduled ahead of the run, on the path to its first delta.
//
// Who settles a turn is decided once, by its persist state: the timer, or
// a turn queued behind it (persistQueued), claims a pending turn to write
// its row, or the run, when it ends first, claims it to skip the row (or,
// cut by shutdown, to write it itself).
// Shutdown needs no wait of its own: the run of a claimed turn waits for
// its row, and Manager.Wait for the run.
const (
	persistPending int32 = iota
	persistSkipped       // the run ended first
	persistClaimed       // the timer or a queued turn writes its row
)

// persister is the turns waiting for their delay, in start order; mu
// guards due and ctx. timer runs persistDue when the first of them is due.
type persister struct {
	mu    sync.Mutex
	due   []*turn
	ctx   context.Context // the manager's (Start); done: claim nothing
	timer *time.Timer
}

// start says the manager runs until ctx is done.
func (p *persister) start(ctx context.Context) {
	p.mu.Lock()
	p.ctx = ctx
	p.mu.Unlock()
}

// newPersister returns the persister of m, its timer stopped.
func newPersister(m *Manager) *persister {
	p := &persister{}
	p.timer = time.AfterFunc(time.Hour, func() { m.persistDue() })
	p.timer.Stop()
	return p
}

// add schedules the row of t, a turn that started now.
func (p *persister) add(t *turn) {
	t.persistAt = time.Now().Add(persistDelay)
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.due) == 0 {
		p.timer.Reset(persistDelay)
	}
	p.due = append(p.due, t)
}

// takeDue claims the turns whose delay has passed at now, drops those
// that ended, and sets the timer for the next one. During shutdown it
// claims none: their runs settle them (see settle).
func (p *persister) takeDue(now time.Time) (claimed []*turn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx == nil || p.ctx.Err() != nil {
		return nil
	}
	n := 0
	for ; n < len(p.due) && !p.due[n].persistAt.After(now); n++ {
		if t := p.due[n]; t.pstate.CompareAndSwap(persistPending, persistClaimed) {
			claimed = append(claimed, t)
		}
	}
	clear(p.due[:n])
	p.due = p.due[n:]
	if len(p.due) > 0 {
		p.timer.Reset(p.due[0].persistAt.Sub(now))
	}
	return claimed
}

// persistDue writes the rows of the turns that are due.
func (m *Manager) persistDue() {
	if claimed := m.persist.takeDue(time.Now()); len(claimed) > 0 {
		m.writeRunning(claimed)
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
		m.writeRunning([]*turn{t})
		return
	}
	close(t.persisted)
}

// persistQueued writes the row of t, a turn queued in lane l, and returns
// once l's active turn is written too, if it is to be: with t when it is
// still waiting for its delay, or by the timer when that is writing it.
// Otherwise a crash right after queued{} could keep t and lose the turn
// it waited for. (An active run that ended before its delay is storing its
// result instead.)
func (m *Manager) persistQueued(ctx context.Context, l *lane, t *turn) error {
	var a *turn
	if l != nil && l.active != nil && l.active.turn.persisted != nil {
		a = l.active.turn
	}
	if a == nil || !a.pstate.CompareAndSwap(persistPending, persistClaimed) {
		err := m.db.insertTurn(ctx, t)
		if a != nil && a.pstate.Load() == persistClaimed {
			<-a.persisted // the timer's write
		}
		return err
	}
	err := m.db.insertTurns(context.WithoutCancel(ctx), []*turn{a, t})
	if err != nil {
		m.log.Error("persist running turn; it will not survive a restart", "session", a.SessionID, "err", err)
	}
	close(a.persisted)
	return err
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

// persistState is a turn's persist state (pstate: persistPending …) and,
// set by add, when the timer is to write its row (persistAt).
type persistState struct {
	pstate    atomic.Int32
	persistAt time.Time
}
