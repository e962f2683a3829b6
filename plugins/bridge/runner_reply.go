package bridge

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/agentd/agentd/plugins/bridge/store"
	"github.com/agentd/agentd/wire"
)

const (
	// typingEvery is how often a typing indicator is renewed while the
	// agent works (Telegram shows one for about five seconds), unless the
	// platform says otherwise (TypingRenewer).
	typingEvery = 4 * time.Second
	// workerIdle is how long a chat's worker lingers without events.
	workerIdle = 5 * time.Minute
	// lostNote ends a reply cut off by a dropped gateway connection; the
	// final reply, sent again on the next connection, replaces it.
	lostNote = "\n\n(connection to the agent was lost; this reply may be incomplete)"
	// stoppedNote ends a reply whose run was interrupted.
	stoppedNote = "\n\n(stopped)"
	// errorMark starts the notice of a failed turn.
	errorMark = "⚠️ "
)

type evKind int

const (
	evDelta evKind = iota
	evStatus
	evResponse     // a final reply (resp)
	evTurnError    // the error ending a failed turn (text, turn)
	evTurnComplete // end of a turn (turn)
	evQueued
	evNotice
	evTyping
	evDisconnected
	evResume // a reply of the send queue, after a restart (reply)
)

type event struct {
	kind  evKind
	sid   string
	turn  string
	text  string
	pos   int
	resp  wire.Response
	reply *store.Reply
}

// chatWorker shows the agent's frames in one chat, in order. Each chat has
// its own so that a slow or rate-limited chat never delays another. It
// works as a loop: apply every event that arrived (deltas only grow the
// text), then make the one platform call most due — if the rate limits
// and the pacing allow it now, else sleep until they do. So after any
// wait only the latest text is sent.
type chatWorker struct {
	r      *Runner
	chatID string
	wake   chan struct{}

	// mu guards queue and dead.
	mu    sync.Mutex
	queue []event
	dead  bool

	// The rest belongs to the worker goroutine.
	items      []*item                 // what to show, in order: replies and notices
	shown      map[string]*store.Reply // turn id → reply shown whose turn_complete is due
	stream     *stream                 // the reply being streamed; nil if none
	timer      *time.Timer
	lastCall   time.Time // end of the last message call (pacing)
	lastTyping time.Time
}

// item is one thing to show: a final reply of the send queue, or a notice.
type item struct {
	reply  *store.Reply // nil for a notice
	parts  []string     // the text split for the platform
	done   int          // notices: parts posted
	tries  int          // failed attempts of the current step
	retry  time.Time    // not before this after a failure
	failed time.Time    // first failure of the current step
}

// stream is the reply a session is streaming, shown by edits.
type stream struct {
	sid   string
	text  strings.Builder
	parts []store.Part
	// stale: parts were posted by a previous process, which saw deltas
	// this one did not; only the final reply is shown into them.
	stale bool
	dirty bool // text changed since the last flush
	ended bool // the connection dropped: flush once more, then forget
}

// post queues ev for chatID's worker, starting one if needed.
func (r *Runner) post(chatID string, ev event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.workers[chatID]
	if w == nil {
		if r.runCtx == nil || r.runCtx.Err() != nil {
			return
		}
		w = &chatWorker{r: r, chatID: chatID, wake: make(chan struct{}, 1), shown: map[string]*store.Reply{}}
		r.workers[chatID] = w
		r.workerWG.Add(1)
		go w.run(r.runCtx)
	}
	w.enqueue(ev)
}

func (w *chatWorker) enqueue(ev event) {
	w.mu.Lock()
	if w.dead {
		w.mu.Unlock()
		return
	}
	w.queue = append(w.queue, ev)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *chatWorker) take() []event {
	w.mu.Lock()
	defer w.mu.Unlock()
	q := w.queue
	w.queue = nil
	return q
}

// retire removes an idle worker; false if it still has work.
func (w *chatWorker) retire() bool {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) > 0 || len(w.items) > 0 || len(w.shown) > 0 || w.stream != nil {
		return false
	}
	w.dead = true
	delete(w.r.workers, w.chatID)
	return true
}

func (w *chatWorker) run(ctx context.Context) {
	defer w.r.workerWG.Done()
	w.timer = time.NewTimer(time.Hour)
	w.timer.Stop()
	defer w.timer.Stop()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		coalesce := false
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		case <-w.timer.C:
			coalesce = true
		case <-idle.C:
			if w.retire() {
				return
			}
		}
		w.work(ctx, coalesce)
		idle.Reset(workerIdle)
	}
}

// work applies the queued events and makes calls until nothing is due.
// Events are taken one at a time, each followed by the call it makes due
// (the first delta of a reply goes out at once), except after a wait
// (coalesce): then everything that arrived meanwhile is applied first, so
// only the latest text is sent.
func (w *chatWorker) work(ctx context.Context, coalesce bool) {
	for ctx.Err() == nil {
		evs := w.take()
		for i, ev := range evs {
			w.apply(ctx, ev)
			if coalesce || i == len(evs)-1 {
				continue
			}
			if called, _ := w.act(ctx); called {
				w.drain(ctx)
			}
		}
		coalesce = false
		called, wait := w.act(ctx)
		if !called {
			if wait > 0 {
				w.timer.Reset(wait)
			}
			return
		}
	}
}

// drain makes the calls that need no wait (moving past shown parts).
func (w *chatWorker) drain(ctx context.Context) {
	for ctx.Err() == nil {
		if called, _ := w.act(ctx); !called {
			return
		}
	}
}

// apply updates the worker's state for one event; it makes no platform
// call except the typing indicator.
func (w *chatWorker) apply(ctx context.Context, ev event) {
	switch ev.kind {
	case evDelta:
		s := w.streamOf(ctx, ev.sid)
		s.text.WriteString(ev.text)
		s.dirty = !s.stale && w.r.editor != nil
	case evStatus, evTyping:
		if ev.kind == evStatus && w.r.showHeard && strings.HasPrefix(ev.text, heardPrefix) {
			w.notice("🎤 " + ev.text)
		}
		w.typing(ctx)
	case evResponse:
		text := ev.resp.Text
		if ev.resp.Interrupted {
			text += stoppedNote
		}
		w.addReply(ctx, store.Reply{SessionID: ev.sid, TurnID: ev.turn, ChatID: w.chatID, Text: text, Attachments: ev.resp.Attachments})
	case evTurnError:
		w.addReply(ctx, store.Reply{SessionID: ev.sid, TurnID: ev.turn, ChatID: w.chatID, Text: errorMark + ev.text})
	case evTurnComplete:
		w.turnComplete(ctx, ev.sid, ev.turn)
	case evDisconnected:
		if s := w.stream; s != nil {
			// Shown as far as it got, with a note; the final reply, sent
			// again on the next connection, is edited in (or, without
			// edits, follows).
			if s.stale || s.text.Len() == 0 || len(s.parts) == 0 && w.r.editor != nil {
				w.stream = nil // nothing shown yet, or not ours to edit
			} else {
				s.text.WriteString(lostNote)
				s.dirty, s.ended = true, true
			}
		}
	case evQueued:
		w.notice(fmt.Sprintf("queued #%d", ev.pos))
	case evNotice:
		w.notice(ev.text)
	case evResume:
		if !w.has(ev.reply.ID) {
			w.items = append(w.items, &item{reply: ev.reply, parts: w.r.split(ev.reply.Text)})
		}
	}
}

func (w *chatWorker) notice(text string) {
	if parts := w.r.split(text); len(parts) > 0 {
		w.items = append(w.items, &item{parts: parts})
	}
}

// streamOf returns the stream of session sid, starting one if needed. A
// new stream adopts what the store has for sid: messages a previous
// process posted.
func (w *chatWorker) streamOf(ctx context.Context, sid string) *stream {
	if w.stream != nil && w.stream.sid == sid {
		return w.stream
	}
	s := &stream{sid: sid}
	if parts, err := w.r.st.Stream(ctx, sid); err != nil {
		w.r.log.Error("bridge store", "err", err)
	} else if len(parts) > 0 {
		s.parts, s.stale = parts, true
	}
	w.stream = s
	return s
}

// addReply puts a final reply in the send queue (adopting the messages its
// stream posted) and in this chat's items. A reply the store already
// has — the gateway sent it again — is shown on from where it was, or if
// it was shown, acked again at its turn_complete.
func (w *chatWorker) addReply(ctx context.Context, r store.Reply) {
	if r.TurnID == "" { // a gateway without turn ids: nothing to recognise
		r.TurnID = "local-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	if w.stream != nil && w.stream.sid == r.SessionID {
		w.stream = nil // its parts are in the store, adopted below
	}
	rep, existing, err := w.r.st.AddReply(ctx, r)
	if err != nil {
		// Shown anyway; only a restart before it is shown loses it (the
		// gateway then still has it: it is not acked).
		w.r.log.Error("reply not queued in the bridge store", "session_id", r.SessionID, "err", err)
		rep = r
	}
	if existing {
		switch {
		case rep.State != store.Sending:
			w.r.log.Info("reply received again; already shown", "session_id", rep.SessionID, "turn_id", rep.TurnID)
			w.shown[rep.TurnID] = &rep
			return
		case w.has(rep.ID):
			return
		}
	}
	w.items = append(w.items, &item{reply: &rep, parts: w.r.split(rep.Text)})
}

func (w *chatWorker) has(id int64) bool {
	for _, it := range w.items {
		if it.reply != nil && it.reply.ID == id && id != 0 {
			return true
		}
	}
	return false
}

// turnComplete: the turn's frames are all here. Its reply is acked once
// it is shown — now, if it already is.
func (w *chatWorker) turnComplete(ctx context.Context, sid, turn string) {
	if turn == "" {
		// A gateway without turn ids: the old session-wide ack, once
		// everything before it is shown.
		w.items = append(w.items, &item{reply: &store.Reply{SessionID: sid, Complete: true}})
		return
	}
	if rep := w.shown[turn]; rep != nil {
		delete(w.shown, turn)
		w.finish(ctx, rep)
		return
	}
	for _, it := range w.items {
		if it.reply != nil && it.reply.SessionID == sid && it.reply.TurnID == turn {
			it.reply.Complete = true
			if it.reply.ID != 0 {
				if err := w.r.st.SetComplete(ctx, it.reply.ID); err != nil {
					w.r.log.Error("bridge store", "err", err)
				}
			}
			return
		}
	}
	// A turn without a final reply: forget its stream, ack the turn.
	if w.stream != nil && w.stream.sid == sid {
		w.stream = nil
	}
	if err := w.r.st.DropStream(ctx, sid); err != nil {
		w.r.log.Error("bridge store", "err", err)
	}
	w.r.ack(ackRef{sid: sid, turn: turn})
}

// finish acks a reply that is shown and whose turn is complete.
func (w *chatWorker) finish(ctx context.Context, rep *store.Reply) {
	if rep.ID != 0 && rep.State == store.Sending {
		if err := w.r.st.SetState(ctx, rep.ID, store.Acking); err != nil {
			w.r.log.Error("bridge store", "err", err)
		}
	}
	w.r.ack(ackRef{sid: rep.SessionID, turn: rep.TurnID, id: rep.ID})
}

func (w *chatWorker) typing(ctx context.Context) {
	r := w.r
	if r.typer == nil || time.Since(w.lastTyping) < r.typeIvl || r.lim.wait(w.chatID) > 0 {
		return
	}
	w.lastTyping = time.Now()
	cctx, cancel := context.WithTimeout(ctx, platformCallTimeout)
	defer cancel()
	if err := r.typer.SendTyping(cctx, w.chatID); err != nil {
		r.lim.note(w.chatID, err)
		r.log.Debug("typing indicator failed", "chat_id", w.chatID, "err", err)
	}
}
