package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentd/agentd/client"
	"github.com/agentd/agentd/devicecert"
	"github.com/agentd/agentd/plugins/bridge/store"
	"github.com/agentd/agentd/wire"
)

// AllowEveryone in RunnerConfig.AllowedUsers lets any platform user talk to
// the agent. It must be spelled out: an empty list allows nobody, so a
// forgotten setting never opens a personal agent to the world.
const AllowEveryone = "*"

// DefaultEditInterval is the minimum time between two messages or edits
// in one chat (Telegram allows about one per second per chat).
const DefaultEditInterval = time.Second

// platformCallTimeout bounds one call into the platform (send, edit, …).
const platformCallTimeout = 30 * time.Second

// RunnerConfig configures a Runner.
type RunnerConfig struct {
	// Dialer reaches the gateway with the bridge's own identity. If nil,
	// one is built from Network, Address and Identity.
	Dialer   *client.Dialer
	Network  string // "unix" or "tcp"
	Address  string
	Identity *devicecert.Identity

	// AllowedUsers are the platform user ids allowed to talk to the agent;
	// AllowEveryone allows all. Others get a polite refusal.
	AllowedUsers []string
	// DMPolicy (DMPairing, DMAllowlist, DMOpen, DMDisabled; "" is
	// DMPairing) says what a stranger in a direct chat gets; GroupPolicy
	// (GroupOpen, GroupAllowlist; "" is GroupOpen) and AllowedGroups which
	// groups are answered.
	DMPolicy      string
	GroupPolicy   string
	AllowedGroups []string
	// Pair asks agentd for a stranger's pairing code (DMPairing); nil:
	// strangers are refused as with DMAllowlist.
	Pair func(ctx context.Context, m Incoming) (PairingAnswer, error)
	// Logger; default slog.Default().
	Logger *slog.Logger
	// OnEvent receives Host.Event calls (operator-visible events); may be nil.
	OnEvent func(kind, text string)
	// OnStatus receives Host SetStatus calls (StatusSetter); may be nil.
	OnStatus func(text string)
	// OnState receives Host ReportState calls (StateReporter); nil: they
	// go to OnStatus (the status text) and OnEvent (kind "state").
	OnState func(state PlatformState, reason string)
	// EditInterval is the minimum time between two messages or edits in
	// one chat (from the end of one call to the start of the next);
	// default DefaultEditInterval.
	EditInterval time.Duration
	// ShowTranscript shows the user what agentd heard in a voice message
	// ("🎤 heard: …"), from the setting show_transcript: "true".
	ShowTranscript bool
	// Store is the bridge's persistent state (send queue, dedup window,
	// chat sessions). If nil, Run opens one in DataDir, or — DataDir ""
	// too — in a temporary directory removed when Run returns, so nothing
	// survives a restart.
	Store   *store.Store
	DataDir string
}

// heardPrefix starts the status agentd sends with a voice turn's transcript.
const heardPrefix = "heard: "

// Runner is the gateway side every bridge shares (the spec's BaseBridge):
// it holds the WebSocket to the gateway, maps platform chats to session ids
// "<prefix>:<chat_id>", forwards user turns and commands, and renders the
// agent's frames back on the platform — streamed edits, splitting, files,
// typing, queue positions.
type Runner struct {
	p           Platform
	dialer      *client.Dialer
	log         *slog.Logger
	onEvent     func(kind, text string)
	onStatus    func(text string)
	onState     func(state PlatformState, reason string)
	allow       atomic.Pointer[allowSet] // replaced by SetAllowedUsers
	norm        UserIDNormalizer         // nil unless the platform has one
	dmPolicy    string
	groupPolicy string
	groups      map[string]bool
	pair        func(ctx context.Context, m Incoming) (PairingAnswer, error)
	editIvl     time.Duration
	prefix      string
	// showHeard: tell the user a voice message's transcript.
	showHeard bool

	editor  MessageEditor
	typer   Typer
	typeIvl time.Duration // how often typing is renewed (TypingRenewer)
	files   FileSender
	voice   VoiceSender
	maxText int

	connected atomic.Bool
	running   atomic.Bool

	strangers strangers // refused users, told once per refusalEvery
	pairTold  counter   // pairing answers, pairingReplies per refusalEvery

	st      *store.Store // set by Run
	cfgSt   *store.Store
	dataDir string
	lim     *limiter

	// mu guards everything below.
	mu        sync.Mutex
	agentName string        // from the gateway's auth_ok, for /start
	conn      *gwConn       // live connection, nil while disconnected
	connCh    chan struct{} // closed and replaced whenever conn changes
	lastErr   string
	sessions  map[string]string // chat id → session id, for chats that moved (/new)
	chats     map[string]string // session id → chat id
	lastTurn  string            // session id of the last text_final sent
	lastCmd   string            // session id of the last command sent
	workers   map[string]*chatWorker
	// unacked: acks that found no connection, sent before the auth of the
	// next one; the value tells a later failure apart.
	unacked  map[ackRef]uint64
	ackSeq   uint64
	runCtx   context.Context
	workerWG sync.WaitGroup
}

// gwConn is one live gateway connection and what was said on it.
type gwConn struct {
	c *client.Conn
	// opened is touched only under Runner.mu: sessions that got a
	// session_open on this connection.
	opened map[string]bool
}

// NewRunner returns a Runner for p. It panics on a nil platform only;
// configuration errors surface from Run.
func NewRunner(p Platform, cfg RunnerConfig) *Runner {
	if p == nil {
		panic("bridge: NewRunner with nil Platform")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("bridge", p.Name())
	d := cfg.Dialer
	if d == nil {
		d = &client.Dialer{Network: cfg.Network, Address: cfg.Address, Identity: cfg.Identity}
	}
	r := &Runner{
		p:           p,
		dialer:      d,
		log:         log,
		onEvent:     cfg.OnEvent,
		onStatus:    cfg.OnStatus,
		onState:     cfg.OnState,
		dmPolicy:    cfg.DMPolicy,
		groupPolicy: cfg.GroupPolicy,
		groups:      map[string]bool{},
		pair:        cfg.Pair,
		pairTold:    counter{n: pairingReplies},
		editIvl:     cfg.EditInterval,
		showHeard:   cfg.ShowTranscript,
		prefix:      p.SessionPrefix(),
		connCh:      make(chan struct{}),
		sessions:    map[string]string{},
		chats:       map[string]string{},
		workers:     map[string]*chatWorker{},
		unacked:     map[ackRef]uint64{},
		cfgSt:       cfg.Store,
		dataDir:     cfg.DataDir,
		lim:         newLimiter(nil),
	}
	if r.editIvl <= 0 {
		r.editIvl = DefaultEditInterval
	}
	r.norm, _ = p.(UserIDNormalizer)
	r.allow.Store(newAllowSet(cfg.AllowedUsers, r.norm))
	if r.dmPolicy == "" {
		r.dmPolicy = DMPairing
	}
	for _, g := range cfg.AllowedGroups {
		r.groups[strings.TrimSpace(g)] = true
	}
	r.editor, _ = p.(MessageEditor)
	r.typer, _ = p.(Typer)
	r.typeIvl = typingEvery
	if t, ok := p.(TypingRenewer); ok && t.TypingEvery() > 0 {
		r.typeIvl = t.TypingEvery()
	}
	r.files, _ = p.(FileSender)
	r.voice, _ = p.(VoiceSender)
	if m, ok := p.(MaxTextLen); ok {
		r.maxText = m.MaxTextLen()
	}
	return r
}

// Connected reports whether the gateway connection is up (for Health).
func (r *Runner) Connected() bool { return r.connected.Load() }

// LastError is the last gateway connection error, "" if none since the
// last successful connect.
func (r *Runner) LastError() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastErr
}

// Run connects to the gateway (reconnecting as needed) and runs the
// platform until ctx ends or the platform fails. It returns the platform's
// error, or nil after ctx ended.
func (r *Runner) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("bridge: Runner.Run called twice")
	}
	if r.prefix == "" || strings.Contains(r.prefix, ":") {
		return fmt.Errorf("bridge %s: invalid session prefix %q", r.p.Name(), r.prefix)
	}
	if a := r.allow.Load(); !a.all && len(a.users) == 0 && r.dmPolicy != DMPairing {
		r.log.Warn("no allowed users configured: every platform user will be refused (use \"*\" to allow everyone)")
	}
	// Not cancelled: a platform is run (and stopped) even when ctx ended
	// while the store opened.
	st, closeStore, err := r.openStore(context.WithoutCancel(ctx))
	if err != nil {
		return fmt.Errorf("bridge %s: %w", r.p.Name(), err)
	}
	defer closeStore()
	r.st = st
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.mu.Lock()
	r.runCtx = ctx
	r.mu.Unlock()
	if err := r.resume(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("bridge %s: %w", r.p.Name(), err)
	}

	gwDone := make(chan struct{})
	go func() {
		defer close(gwDone)
		r.gatewayLoop(ctx)
	}()
	err = r.p.Run(ctx, (*host)(r))
	cancel()
	<-gwDone
	r.workerWG.Wait()
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("bridge %s: %w", r.p.Name(), err)
	}
	return nil
}

// openStore returns the store to use and how to close it.
func (r *Runner) openStore(ctx context.Context) (*store.Store, func(), error) {
	if r.cfgSt != nil {
		return r.cfgSt, func() {}, nil
	}
	dir, tmp := r.dataDir, ""
	if dir == "" {
		var err error
		if tmp, err = os.MkdirTemp("", "bridge-"+r.p.Name()+"-"); err != nil {
			return nil, nil, err
		}
		dir = tmp
		r.log.Warn("no data directory: the bridge's state will not survive a restart")
	}
	st, err := store.Open(ctx, dir)
	if err != nil {
		if tmp != "" {
			os.RemoveAll(tmp)
		}
		return nil, nil, err
	}
	return st, func() {
		st.Close()
		if tmp != "" {
			os.RemoveAll(tmp)
		}
	}, nil
}

// waitKey prefixes the store values that keep the platform's waits.
const waitKey = "bridge/wait/"

// resume loads the chats' sessions and the send queue a previous process
// left: replies still to show go to their chats, acks still to send wait
// for the next connection.
func (r *Runner) resume(ctx context.Context) error {
	moved, err := r.st.ChatSessions(ctx)
	if err != nil {
		return err
	}
	pending, err := r.st.Pending(ctx)
	if err != nil {
		return err
	}
	// The platform's waits a previous process was told of still hold.
	waits, err := r.st.Values(ctx, waitKey)
	if err != nil {
		return err
	}
	for k, v := range waits {
		if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
			r.lim.hold(strings.TrimPrefix(k, waitKey), time.UnixMilli(ms))
		}
	}
	r.lim.save = func(key string, until time.Time) {
		if err := r.st.SetValue(context.Background(), waitKey+key, strconv.FormatInt(until.UnixMilli(), 10)); err != nil {
			r.log.Error("bridge store", "err", err)
		}
	}
	r.mu.Lock()
	for chat, sid := range moved {
		r.sessions[chat] = sid
		r.chats[sid] = chat
	}
	for _, rep := range pending {
		r.chats[rep.SessionID] = rep.ChatID
		if rep.State == store.Acking {
			r.ackSeq++
			r.unacked[ackRef{sid: rep.SessionID, turn: rep.TurnID, id: rep.ID}] = r.ackSeq
		}
	}
	r.mu.Unlock()
	n := 0
	for _, rep := range pending {
		if rep.State == store.Sending {
			rep := rep
			r.post(rep.ChatID, event{kind: evResume, reply: &rep})
			n++
		}
	}
	if n > 0 {
		r.log.Info("resuming replies not yet shown", "replies", n)
	}
	return nil
}

// host is the Host the platform sees.
type host Runner

func (h *host) Deliver(ctx context.Context, m Incoming) error { return (*Runner)(h).Deliver(ctx, m) }
func (h *host) Logger() *slog.Logger                          { return h.log }
func (h *host) Notify(chatID, text string)                    { (*Runner)(h).Notify(chatID, text) }
func (h *host) Allowed(userID string) bool                    { return (*Runner)(h).isAllowed(userID) }
func (h *host) Event(kind, text string) {
	if kind == "logged_out" { // the older spelling of a needs_login state
		h.ReportState(PlatformNeedsLogin, text)
		return
	}
	h.log.Info("bridge event", "kind", kind, "text", text)
	if h.onEvent != nil {
		h.onEvent(kind, text)
	}
}

// Refusal is what a user who is not allowed gets told.
const Refusal = "Sorry, this agent is private and you are not on its list of allowed users. (Your user id: %s)"

// Deliver hands one platform message to the agent. It returns nil once the
// message is handled: written on a live gateway connection, or refused by
// policy (the user was told). While the gateway is unreachable it waits and
// retries; it returns an error only when ctx ends first, in which case the
// platform must not treat the message as delivered.
func (r *Runner) Deliver(ctx context.Context, m Incoming) error {
	if m.ChatID == "" {
		return errors.New("bridge: Incoming without ChatID")
	}
	if !r.admit(ctx, m) {
		return nil
	}
	text := strings.TrimSpace(m.Text)
	if text == "" && len(m.Attachments) == 0 {
		return nil
	}
	if reply, ok := r.localCommand(text); ok && len(m.Attachments) == 0 {
		r.post(m.ChatID, event{kind: evNotice, text: reply})
		return nil
	}
	if m.MessageID != "" {
		seen, err := r.st.Handled(ctx, m.ChatID, m.MessageID)
		if err != nil {
			r.log.Error("bridge store", "err", err)
		}
		if seen {
			r.log.Info("message delivered again by the platform; already handled", "chat_id", m.ChatID, "message_id", m.MessageID)
			return nil
		}
	}
	sid := r.sessionFor(m.ChatID)
	var frame wire.Message
	if cmd, ok := parseCommand(text); ok && len(m.Attachments) == 0 {
		cmd.SessionID = sid
		frame = cmd
	} else {
		frame = wire.TextFinal{Text: m.Text, SessionID: sid, Attachments: m.Attachments}
	}
	if _, ok := frame.(wire.TextFinal); ok {
		// Before the write: queued after the turn's first frames (a fast
		// agent answers before send returns), typing would show after
		// the reply.
		r.post(m.ChatID, event{kind: evTyping})
	}
	if err := r.send(ctx, sid, frame); err != nil {
		return err
	}
	if m.MessageID != "" {
		// After the write: a crash in between answers the message twice
		// rather than never.
		if err := r.st.MarkHandled(context.WithoutCancel(ctx), m.ChatID, m.MessageID); err != nil {
			r.log.Error("bridge store", "err", err)
		}
	}
	return nil
}

// Commands that map to command frames. The platform passes them as text
// ("/stop", or "/stop@botname" in Telegram groups).
var commands = []string{"stop", "new", "clear", "reset", "model", "help"}

func parseCommand(text string) (wire.Command, bool) {
	if !strings.HasPrefix(text, "/") {
		return wire.Command{}, false
	}
	word, args, _ := strings.Cut(text[1:], " ")
	word, _, _ = strings.Cut(word, "@")
	word = strings.ToLower(word)
	if !slices.Contains(commands, word) {
		return wire.Command{}, false
	}
	return wire.Command{Name: word, Args: strings.TrimSpace(args)}, true
}

// sessionFor returns the session id of a chat and remembers the reverse.
func (r *Runner) sessionFor(chatID string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	sid, ok := r.sessions[chatID]
	if !ok {
		sid = r.prefix + ":" + chatID
	}
	r.chats[sid] = chatID
	return sid
}

// chatFor maps a session id from the gateway back to a chat.
func (r *Runner) chatFor(sid string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.chats[sid]; ok {
		return c, true
	}
	if c, ok := strings.CutPrefix(sid, r.prefix+":"); ok && c != "" {
		return c, true
	}
	return "", false
}

// send writes frame for session sid on a live connection, opening the
// session on that connection first. It waits for a connection and retries
// on a failed write until ctx ends.
func (r *Runner) send(ctx context.Context, sid string, frame wire.Message) error {
	for {
		r.mu.Lock()
		gc, ch := r.conn, r.connCh
		r.mu.Unlock()
		if gc == nil {
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return fmt.Errorf("deliver to gateway: %w", ctx.Err())
			}
		}
		err := r.sendOn(gc, sid, frame)
		if err == nil {
			return nil
		}
		r.log.Warn("write to gateway failed; waiting for a new connection", "err", err)
		r.dropConn(gc, err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("deliver to gateway: %w", ctx.Err())
		default:
		}
	}
}

func (r *Runner) sendOn(gc *gwConn, sid string, frame wire.Message) error {
	r.mu.Lock()
	needOpen := !gc.opened[sid]
	r.mu.Unlock()
	if needOpen {
		if err := gc.c.Send(wire.SessionOpen{SessionID: sid}); err != nil {
			return err
		}
		r.mu.Lock()
		gc.opened[sid] = true
		r.mu.Unlock()
	}
	// Remembered before the write: the gateway's answer (queued, or a
	// command_result without session_id) can arrive before Send returns.
	r.mu.Lock()
	switch frame.(type) {
	case wire.TextFinal:
		r.lastTurn = sid
	case wire.Command:
		r.lastCmd = sid
	}
	r.mu.Unlock()
	return gc.c.Send(frame)
}

// SendText lets a platform-independent caller (and tests) send a notice to
// a chat through the platform, honouring MaxTextLen.
func (r *Runner) SendText(ctx context.Context, chatID, text string) error {
	for _, part := range r.split(text) {
		if _, err := r.p.SendText(ctx, chatID, part); err != nil {
			return err
		}
	}
	return nil
}
