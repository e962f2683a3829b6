package bridge

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/agentd/agentd/wire"
)

const (
	// typingEvery is how often a typing indicator is renewed while the
	// agent works (Telegram shows one for about five seconds).
	typingEvery = 4 * time.Second
	// workerIdle is how long a chat's worker lingers without events.
	workerIdle = 5 * time.Minute
	// lostNote ends a reply cut off by a dropped gateway connection.
	lostNote = "\n\n(connection to the agent was lost; this reply may be incomplete)"
	// stoppedNote ends a reply whose run was interrupted.
	stoppedNote = "\n\n(stopped)"
)

type evKind int

const (
	evDelta evKind = iota
	evStatus
	evResponse
	evTurnComplete
	evQueued
	evNotice
	evTyping
	evDisconnected
)

type event struct {
	kind evKind
	text string
	pos  int
	resp wire.Response
	sid  string // evTurnComplete: the session to ack
}

// chatWorker renders the agent's frames into one chat, in order. Each chat
// has its own so that a slow or rate-limited chat never delays another.
type chatWorker struct {
	r      *Runner
	chatID string
	wake   chan struct{}

	// mu guards queue and dead.
	mu    sync.Mutex
	queue []event
	dead  bool

	// The rest belongs to the worker goroutine.
	text       strings.Builder // the reply streamed so far in this turn
	msgs       []string        // platform ids of the messages showing it
	shown      []string        // what each of msgs currently shows
	lastFlush  time.Time
	flushT     *time.Timer
	lastTyping time.Time
	// unshown is set when a reply part, attachment or notice could not be
	// posted since the last ack: the turn is then not acked, so the
	// gateway keeps it (to send again on a reconnect) until a later turn
	// of the chat is shown and acked.
	unshown bool
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
		w = &chatWorker{r: r, chatID: chatID, wake: make(chan struct{}, 1)}
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

// retire removes an idle worker; false if events arrived meanwhile.
func (w *chatWorker) retire() bool {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) > 0 || w.streaming() {
		return false
	}
	w.dead = true
	delete(w.r.workers, w.chatID)
	return true
}

func (w *chatWorker) streaming() bool { return w.text.Len() > 0 || len(w.msgs) > 0 }

func (w *chatWorker) run(ctx context.Context) {
	defer w.r.workerWG.Done()
	w.flushT = time.NewTimer(time.Hour)
	w.flushT.Stop()
	defer w.flushT.Stop()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
			for _, ev := range w.take() {
				w.handle(ctx, ev)
			}
			idle.Reset(workerIdle)
		case <-w.flushT.C:
			w.flush(ctx, false)
		case <-idle.C:
			if w.retire() {
				return
			}
			idle.Reset(workerIdle)
		}
	}
}

func (w *chatWorker) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, platformCallTimeout)
}

func (w *chatWorker) handle(ctx context.Context, ev event) {
	r := w.r
	switch ev.kind {
	case evDelta:
		w.text.WriteString(ev.text)
		if r.editor == nil {
			return // shown whole with the response
		}
		wait := r.editIvl - time.Since(w.lastFlush)
		if wait <= 0 {
			w.flush(ctx, false)
		} else {
			// Reset (not a new timer) keeps at most one pending flush.
			w.flushT.Reset(wait)
		}
	case evStatus, evTyping:
		if ev.kind == evStatus && r.showHeard && strings.HasPrefix(ev.text, heardPrefix) {
			w.notice(ctx, "🎤 "+ev.text)
		}
		w.typing(ctx)
	case evResponse:
		w.flushT.Stop()
		text := ev.resp.Text
		if ev.resp.Interrupted {
			text += stoppedNote
		}
		w.text.Reset()
		w.text.WriteString(text)
		if !w.flush(ctx, true) {
			w.unshown = true
		}
		w.reset()
		w.sendAttachments(ctx, ev.resp.Attachments)
	case evTurnComplete:
		if w.streaming() { // a turn that ended without a response frame
			w.flushT.Stop()
			w.flush(ctx, true)
			w.reset()
		}
		// Every turn ends with turn_complete, after its response (text and
		// attachments, handled above in order) or its error notice: the
		// turn is now shown, so the gateway may forget it. Acking here
		// rather than at the response also covers failed turns.
		if ev.sid != "" && !w.unshown && ctx.Err() == nil {
			r.ack(ev.sid)
		}
		w.unshown = false
	case evDisconnected:
		if w.streaming() {
			w.flushT.Stop()
			w.text.WriteString(lostNote)
			w.flush(ctx, true)
			w.reset()
		}
	case evQueued:
		w.notice(ctx, fmt.Sprintf("queued #%d", ev.pos))
	case evNotice:
		w.notice(ctx, ev.text)
	}
}

func (w *chatWorker) reset() {
	w.text.Reset()
	w.msgs, w.shown = nil, nil
}

func (w *chatWorker) typing(ctx context.Context) {
	if w.r.typer == nil || time.Since(w.lastTyping) < typingEvery {
		return
	}
	w.lastTyping = time.Now()
	cctx, cancel := w.call(ctx)
	defer cancel()
	if err := w.r.typer.SendTyping(cctx, w.chatID); err != nil {
		w.r.log.Debug("typing indicator failed", "chat_id", w.chatID, "err", err)
	}
}

func (w *chatWorker) notice(ctx context.Context, text string) {
	cctx, cancel := w.call(ctx)
	defer cancel()
	if err := w.r.SendText(cctx, w.chatID, text); err != nil {
		w.unshown = true
		w.r.log.Warn("notice not sent", "chat_id", w.chatID, "err", err)
	}
}

// flush shows the reply so far: it edits the messages already sent where
// their part changed and sends new messages for parts beyond them. A final
// flush falls back to a new message when an edit fails, so the user always
// gets the complete reply. It reports whether every part is shown.
func (w *chatWorker) flush(ctx context.Context, final bool) bool {
	r := w.r
	w.lastFlush = time.Now()
	parts := r.split(w.text.String())
	ok := true
	for i, part := range parts {
		cctx, cancel := w.call(ctx)
		if i < len(w.msgs) {
			if w.shown[i] == part {
				cancel()
				continue
			}
			var err error
			if r.editor != nil {
				err = r.editor.EditText(cctx, w.chatID, w.msgs[i], part)
			} else {
				err = errors.New("platform cannot edit messages")
			}
			if err == nil {
				w.shown[i] = part
				cancel()
				continue
			}
			r.log.Warn("edit of streamed reply failed", "chat_id", w.chatID, "final", final, "err", err)
			if !final {
				ok = false
				cancel()
				continue
			}
			// Fall through: send the final part as a new message.
			if id, err := r.p.SendText(cctx, w.chatID, part); err != nil {
				ok = false
				r.log.Warn("reply part not sent", "chat_id", w.chatID, "err", err)
			} else {
				w.msgs[i], w.shown[i] = id, part
			}
			cancel()
			continue
		}
		id, err := r.p.SendText(cctx, w.chatID, part)
		cancel()
		if err != nil {
			// Not recorded: the next flush sends it again.
			r.log.Warn("reply part not sent", "chat_id", w.chatID, "err", err)
			return false
		}
		w.msgs = append(w.msgs, id)
		w.shown = append(w.shown, part)
	}
	return ok
}

var errNoFiles = errors.New("this platform cannot send files")

func (w *chatWorker) sendAttachments(ctx context.Context, atts []wire.Attachment) {
	r := w.r
	for _, a := range atts {
		cctx, cancel := w.call(ctx)
		var err error
		switch {
		case a.Kind == "voice" && r.voice != nil:
			err = r.voice.SendVoice(cctx, w.chatID, a)
		case r.files != nil:
			err = r.files.SendFile(cctx, w.chatID, a)
		default:
			err = errNoFiles
		}
		cancel()
		if err != nil {
			// Sending again cannot help a platform without files; the
			// notice below is all the user can get.
			if err != errNoFiles {
				w.unshown = true
			}
			r.log.Warn("attachment not sent", "chat_id", w.chatID, "path", a.Path, "err", err)
			name := a.Filename
			if name == "" {
				name = filepath.Base(a.Path)
			}
			w.notice(ctx, UserText(fmt.Sprintf("(attachment %s could not be sent: %v)", name, err)))
		}
	}
}

// SplitText cuts s into parts of at most max UTF-16 code units (the unit
// Telegram counts; never fewer than runes, so also safe for platforms that
// count code points). It prefers to cut after a newline, then after a
// space, in the second half of a part. max <= 0 means no limit.
// Whitespace-only text yields no parts.
func SplitText(s string, max int) []string {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	if max <= 0 {
		return []string{s}
	}
	var out []string
	for s != "" {
		units, cut := 0, len(s)
		for i, r := range s {
			n := utf16.RuneLen(r)
			if n < 1 {
				n = 1 // invalid runes are sent as U+FFFD, one unit
			}
			if units+n > max {
				cut = i
				break
			}
			units += n
		}
		if cut == len(s) {
			if strings.TrimSpace(s) != "" {
				out = append(out, s)
			}
			break
		}
		if cut == 0 { // one rune wider than max: send it alone rather than loop
			_, size := utf8.DecodeRuneInString(s)
			cut = size
		}
		chunk := s[:cut]
		if j := strings.LastIndexByte(chunk, '\n'); j >= len(chunk)/2 {
			cut = j + 1
		} else if j := strings.LastIndexByte(chunk, ' '); j >= len(chunk)/2 {
			cut = j + 1
		}
		if part := strings.TrimRight(s[:cut], " \n"); part != "" {
			out = append(out, part)
		}
		s = s[cut:]
	}
	return out
}
