package bridge

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/agentd/agentd/plugins/bridge/store"
	"github.com/agentd/agentd/wire"
)

// Retries of a failed platform call that is neither rate limited nor
// rejected (the platform unreachable, a 5xx): backoff from retryMin to
// retryMax, for at most giveUpAfter, after which the step is dropped.
const (
	retryMin    = time.Second
	retryMax    = 5 * time.Minute
	giveUpAfter = 24 * time.Hour
)

var errNoFiles = fmt.Errorf("this platform cannot send files: %w", ErrRejected)

// act makes the platform call most due, if the platform's limits and the
// chat's pacing allow it now. It reports whether it made one (or moved on
// without one); otherwise how long until something is due (0: nothing is,
// until the next event).
func (w *chatWorker) act(ctx context.Context) (bool, time.Duration) {
	s := w.stream
	if len(w.items) == 0 && (s == nil || !s.dirty) {
		if s != nil && s.ended {
			w.stream = nil
		}
		return false, 0
	}
	if len(w.items) > 0 && w.stepFree(w.items[0]) {
		// Moving on without a call (a shown part, the end of a reply)
		// needs no wait.
		return true, 0
	}
	if d := w.r.lim.wait(w.chatID); d > 0 {
		return false, d
	}
	if d := w.r.editIvl - time.Since(w.lastCall); d > 0 {
		return false, d
	}
	if len(w.items) > 0 {
		it := w.items[0]
		if d := time.Until(it.retry); d > 0 {
			return false, d
		}
		w.step(ctx, it)
		return true, 0
	}
	w.flushStream(ctx)
	return true, 0
}

// stepFree advances it past what needs no call: parts already shown, and
// the end of a reply. It reports whether it advanced.
func (w *chatWorker) stepFree(it *item) bool {
	if it.reply == nil {
		return false
	}
	rep := it.reply
	for i, part := range it.parts {
		if i >= len(rep.Parts) || rep.Parts[i].Shown != part {
			return false
		}
	}
	if rep.FilesSent < len(rep.Attachments) {
		return false
	}
	w.items = w.items[1:]
	if rep.Complete {
		w.finish(w.r.runCtx, rep)
	} else {
		w.shown[rep.TurnID] = rep
	}
	return true
}

// step makes the next call of item it.
func (w *chatWorker) step(ctx context.Context, it *item) {
	r := w.r
	if it.reply == nil {
		_, err := w.call(ctx, func(cctx context.Context) error {
			_, err := r.p.SendText(cctx, w.chatID, it.parts[it.done])
			return err
		})
		if err == nil || w.failed(it, "notice", err) {
			it.done++
			if it.done == len(it.parts) {
				w.items = w.items[1:]
			}
		}
		return
	}
	rep := it.reply
	for i, part := range it.parts {
		var cur store.Part
		if i < len(rep.Parts) {
			cur = rep.Parts[i]
		}
		if cur.Shown == part {
			continue
		}
		if cur.MsgID != "" && r.editor != nil {
			_, err := w.call(ctx, func(cctx context.Context) error { return r.editor.EditText(cctx, w.chatID, cur.MsgID, part) })
			if err == nil {
				w.setPart(ctx, it, i, store.Part{MsgID: cur.MsgID, Shown: part})
				return
			}
			if !w.failed(it, "edit of reply", err) {
				return
			}
			// The message cannot be edited (deleted, too old): the part
			// goes out as a new message below, on the next step.
			w.setPart(ctx, it, i, store.Part{})
			return
		}
		var id string
		_, err := w.call(ctx, func(cctx context.Context) error {
			var err error
			id, err = r.p.SendText(cctx, w.chatID, part)
			return err
		})
		if err == nil {
			w.setPart(ctx, it, i, store.Part{MsgID: id, Shown: part})
		} else if w.failed(it, "reply part", err) {
			w.setPart(ctx, it, i, store.Part{Shown: part}) // given up
		}
		return
	}
	a := rep.Attachments[rep.FilesSent]
	_, err := w.call(ctx, func(cctx context.Context) error { return w.sendFile(cctx, a) })
	if err != nil && !w.failed(it, "attachment", err) {
		return
	}
	if err != nil {
		name := a.Filename
		if name == "" {
			name = filepath.Base(a.Path)
		}
		// Told right after the reply, before anything else.
		note := &item{parts: r.split(UserText(fmt.Sprintf("(attachment %s could not be sent: %v)", name, err)))}
		w.items = append([]*item{w.items[0], note}, w.items[1:]...)
	}
	rep.FilesSent++
	if rep.ID != 0 {
		if err := r.st.SetFilesSent(ctx, rep.ID, rep.FilesSent); err != nil {
			r.log.Error("bridge store", "err", err)
		}
	}
	it.tries, it.failed = 0, time.Time{}
}

func (w *chatWorker) sendFile(ctx context.Context, a wire.Attachment) error {
	r := w.r
	switch {
	case a.Kind == "voice" && r.voice != nil:
		return r.voice.SendVoice(ctx, w.chatID, a)
	case r.files != nil:
		return r.files.SendFile(ctx, w.chatID, a)
	}
	return errNoFiles
}

// setPart records part i of it's reply, in memory and in the store.
func (w *chatWorker) setPart(ctx context.Context, it *item, i int, p store.Part) {
	rep := it.reply
	for len(rep.Parts) <= i {
		rep.Parts = append(rep.Parts, store.Part{})
	}
	rep.Parts[i] = p
	it.tries, it.failed = 0, time.Time{}
	if rep.ID == 0 {
		return
	}
	if err := w.r.st.SetPart(ctx, rep.ID, i, p); err != nil {
		w.r.log.Error("bridge store", "err", err)
	}
}

// call runs one platform call that posts or changes a message, bounded by
// platformCallTimeout, and notes when it ended for the pacing.
func (w *chatWorker) call(ctx context.Context, f func(context.Context) error) (time.Duration, error) {
	cctx, cancel := context.WithTimeout(ctx, platformCallTimeout)
	defer cancel()
	start := time.Now()
	err := f(cctx)
	w.lastCall = time.Now()
	return w.lastCall.Sub(start), err
}

// failed handles a failed call of it. It reports whether the step is to be
// given up (the platform rejected it, or it kept failing for giveUpAfter);
// otherwise the step is made again: after the platform's wait for a rate
// limit, or after a backoff.
func (w *chatWorker) failed(it *item, what string, err error) bool {
	r := w.r
	if rl, ok := r.lim.note(w.chatID, err); ok {
		r.log.Info("platform rate limit; waiting", "what", what, "chat_id", w.chatID, "scope", rl.Scope.String(), "retry_after", rl.RetryAfter)
		return false
	}
	if errors.Is(err, ErrRejected) {
		r.log.Warn(what+" refused by the platform; given up", "chat_id", w.chatID, "err", err)
		return true
	}
	now := time.Now()
	if it.failed.IsZero() {
		it.failed = now
	}
	if now.Sub(it.failed) > giveUpAfter {
		r.log.Error(what+" kept failing; given up", "chat_id", w.chatID, "since", it.failed, "err", err)
		return true
	}
	d := retryMin << min(it.tries, 10)
	it.tries++
	it.retry = now.Add(min(d, retryMax))
	r.log.Warn(what+" not sent; retrying", "chat_id", w.chatID, "retry_in", min(d, retryMax), "err", err)
	return false
}

// flushStream shows the streamed text so far: one edit of a part that
// changed, or one new message for a part beyond those posted.
func (w *chatWorker) flushStream(ctx context.Context) {
	r, s := w.r, w.stream
	parts := r.split(s.text.String())
	for i, part := range parts {
		if i < len(s.parts) && s.parts[i].Shown == part {
			continue
		}
		var id string
		_, err := w.call(ctx, func(cctx context.Context) error {
			if i < len(s.parts) {
				id = s.parts[i].MsgID
				return r.editor.EditText(cctx, w.chatID, id, part)
			}
			var err error
			id, err = r.p.SendText(cctx, w.chatID, part)
			return err
		})
		if err != nil {
			if rl, ok := r.lim.note(w.chatID, err); ok {
				r.log.Info("platform rate limit; waiting", "what", "streamed reply", "chat_id", w.chatID, "scope", rl.Scope.String(), "retry_after", rl.RetryAfter)
				return
			}
			// Not retried: the next delta, or the final reply, shows it.
			r.log.Debug("streamed reply not updated", "chat_id", w.chatID, "err", err)
			s.dirty = false
			return
		}
		p := store.Part{MsgID: id, Shown: part}
		if i < len(s.parts) {
			s.parts[i] = p
		} else {
			s.parts = append(s.parts, p)
		}
		if err := r.st.SetStreamPart(ctx, s.sid, w.chatID, i, p); err != nil {
			r.log.Error("bridge store", "err", err)
		}
		return
	}
	s.dirty = false
}
