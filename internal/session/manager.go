// Package session owns conversations: per-session history in SQLite, one
// active run per run key with a bounded FIFO queue behind it, interrupts,
// slash commands, and delivery of replies to the client's connections (or
// to an outbox when the client is away; for clients that opted into acks,
// kept there until acknowledged, see ack.go). A turn that waits is persisted
// before it is acknowledged with queued{}, one that starts at once 2 ms
// after its start unless it has ended (then its result is stored at once),
// or at once when shutdown cuts it; during shutdown no turn starts, a new
// one is persisted and queued. A restart, even after SIGKILL, runs every
// persisted turn again.
package session

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/agentd/agentd/internal/agent"
	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/catalog"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/hook"
	"github.com/agentd/agentd/internal/metrics"
	"github.com/agentd/agentd/internal/provider"
	"github.com/agentd/agentd/internal/usage"
	"github.com/agentd/agentd/wire"
)

// Sink is one client connection as the manager sees it.
type Sink interface {
	// Send queues m for the connection without blocking. It returns false
	// when the connection is gone or could not take the frame (and was
	// closed for it).
	Send(m wire.Message) bool
	// Stream sends a frame of a running turn (delta, status). It may wait
	// for the client to read (flow control) until ctx ends; false means
	// the frame was not taken.
	Stream(ctx context.Context, m wire.Message) bool
}

// DeltaStreamer is a Sink that takes a delta's text as it is: Stream with
// a wire.Delta{Text: text, SessionID: sessionID}, without the value. A
// model streams a delta per word or token, the most frequent frame.
type DeltaStreamer interface {
	StreamDelta(ctx context.Context, sessionID, text string) bool
}

// DeltaNower is a DeltaStreamer that can also write a delta at once, from
// the caller's goroutine and without blocking, when it is writing nothing
// else (StreamDeltaNow; otherwise it does what StreamDelta does). A run's
// first delta goes this way while the processors are not all busy: handing
// it to a writer goroutine would make the runtime wake an idle thread for
// it, which on a VM costs that delta as much as a whole echo round trip.
type DeltaNower interface {
	StreamDeltaNow(ctx context.Context, sessionID, text string) bool
}

// Client is an authenticated connection: who it is and where its frames go.
type Client struct {
	Identity *auth.Identity
	Sink     Sink

	// mu guards pendingAttach and detached (see Connect).
	mu            sync.Mutex
	pendingAttach func() // registration deferred until the auth frame
	detached      bool
}

// Options configure a Manager.
type Options struct {
	DB     *sql.DB
	Config *config.Watcher
	// Agent runs turns. Required.
	Agent *agent.Agent
	// Providers serve the models. Nil: the manager builds them from the
	// config and rebuilds them on every config change.
	Providers *provider.Registry
	// Catalog, when set, is where models are looked up (config models and
	// those added over REST); nil means the config's models.
	Catalog *catalog.Catalog
	// AgentDir confines the files users may attach; empty refuses them.
	AgentDir string
	// AttachRoots, when set, are the only folders (inside AgentDir) that
	// inbound attachments may come from (the daemon: uploads/, memories/).
	// AgentDir/keys is refused whatever the roots.
	AttachRoots []string
	Log         *slog.Logger
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
	// Bridges maps a bridge session prefix to the bridge's device, for
	// Push; nil means no session is a bridge's.
	Bridges BridgeResolver
	// Budget checks spending before every model call; nil means none.
	Budget Budget
	// Voice transcribes voice turns and speaks their replies; nil means
	// voice messages are answered with "please type".
	Voice Voice
	// Metrics receives turn events; nil means none.
	Metrics TurnMetrics
}

// TurnMetrics is what internal/metrics records of turns.
type TurnMetrics interface {
	TurnStarted(model, source string)
	TurnFinished(metrics.Turn)
}

// Budget is the spending check of internal/usage.
type Budget interface {
	// BeforeCall refuses a model call (a *usage.BudgetError, whose text
	// the user reads) that could pass a budget.
	BeforeCall(ctx context.Context, c usage.Call) error
	// TurnRecorded runs after a turn's usage row is stored (alerts). Its
	// ctx has no deadline: what the check reads, it bounds itself.
	TurnRecorded(ctx context.Context, sessionID, model string)
	// TurnEnded releases what BeforeCall held for the turn (its id); it
	// runs once the turn's usage row is stored, or the turn ended without
	// one.
	TurnEnded(turnID string)
}

// Errors returned by the REST-facing methods; the gateway maps them to HTTP
// statuses.
var (
	ErrNotFound     = errors.New("session not found")
	ErrForbidden    = errors.New("forbidden")
	ErrInvalid      = errors.New("invalid request")
	ErrUnknownModel = errors.New("unknown model")
)

// errInterrupted is the cancel cause of a run stopped by its user.
var errInterrupted = errors.New("interrupted by the user")

// Manager runs turns. Create it with New, then call Start once.
type Manager struct {
	db          *db
	cfg         *config.Watcher
	agent       *agent.Agent
	providers   *provider.Registry
	catalog     *catalog.Catalog
	agentDir    string
	attachRoots []string // AttachRoots
	log         *slog.Logger
	bridges     BridgeResolver
	budget      Budget
	metrics     TurnMetrics
	voice       Voice
	// voiceModes are the sessions answered with speech (command voice on).
	voiceModes voiceModes

	// ctx is the manager's lifetime, set by Start; runs derive from it.
	ctx context.Context
	wg  sync.WaitGroup

	// persist writes the rows of runs that outlast persistDelay.
	persist *persister
	// idle hands a lane to a runner waiting for one (runner).
	idle chan laneJob

	// running counts the runs executing now (firstDeltaNow).
	running atomic.Int64

	// mu guards lanes and pending. It is held across the insert of a
	// queued turn so that queue order equals persisted order.
	mu      sync.Mutex
	seq     int64 // last turn seq handed out
	lanes   map[string]*lane
	pending map[string][]wire.Attachment // session id → attachments for its next turn

	// sinkMu guards sinks.
	sinkMu sync.RWMutex
	// sinks is client id → open connections. A slice is never changed
	// once stored (register and detach store a new one), so sinksOf hands
	// it out without a copy: it is read for every frame of every turn.
	sinks map[string][]Sink

	// ackMu guards ackers: the clients in ack mode (ack.go), loaded at New.
	ackMu  sync.RWMutex
	ackers map[string]bool

	changes hook.Changes

	// out orders, per client, "no connection took the reply → outbox"
	// against "a connection registered → flush the outbox", so no reply is
	// stranded; per client, because a flush may wait for a slow reader.
	out keyedMutex
}

// lane is the run queue of one run key.
type lane struct {
	key    string
	active *run
	queue  []*turn
}

// run is a turn being executed.
type run struct {
	turn   *turn
	cancel context.CancelCauseFunc

	// mu guards stopped and firstDelta; a delta is delivered only while
	// holding it with stopped false, so nothing streams after Interrupt
	// returns.
	mu         sync.Mutex
	stopped    bool
	firstDelta time.Time // when the first reply text went out (metrics)
}

// QueueDepth is the number of turns waiting behind a running one.
func (m *Manager) QueueDepth() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, l := range m.lanes {
		n += len(l.queue)
	}
	return n
}

// New returns a manager over the session tables of db.
func New(opts Options) (*Manager, error) {
	if opts.DB == nil || opts.Config == nil || opts.Agent == nil {
		return nil, errors.New("session: DB, Config and Agent are required")
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	d, err := openDB(context.Background(), opts.DB, opts.Now)
	if err != nil {
		return nil, err
	}
	ackers, err := d.ackClients(context.Background())
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	m := &Manager{
		db:          d,
		ackers:      ackers,
		cfg:         opts.Config,
		agent:       opts.Agent,
		providers:   opts.Providers,
		catalog:     opts.Catalog,
		agentDir:    opts.AgentDir,
		attachRoots: opts.AttachRoots,
		log:         opts.Log,
		bridges:     opts.Bridges,
		budget:      opts.Budget,
		metrics:     opts.Metrics,
		lanes:       map[string]*lane{},
		pending:     map[string][]wire.Attachment{},
		idle:        make(chan laneJob),
		sinks:       map[string][]Sink{},
		voice:       opts.Voice,
	}
	m.persist = newPersister(m)
	if m.providers == nil {
		reg, err := provider.NewRegistry(providerConfigs(opts.Config.Current()))
		if err != nil {
			return nil, fmt.Errorf("session: build providers: %w", err)
		}
		m.providers = reg
		opts.Config.Subscribe(func(_, cur *config.Config) {
			if err := reg.Replace(providerConfigs(cur)); err != nil {
				m.log.Error("providers not rebuilt after config change; keeping the old ones", "err", err)
			}
		})
	}
	return m, nil
}

// storeTimeout bounds the writes that must happen even during shutdown.
const storeTimeout = 10 * time.Second

// persistDelay is how long a turn that started at once runs before it is
// persisted: most echo-fast turns never need the write, and the write never
// competes with the first delta.
const persistDelay = 2 * time.Millisecond

// Start resumes every persisted turn (acceptance order per run key) and
// runs turns until ctx is done. A turn cut by shutdown (ctx done) stays
// persisted, and one accepted after it is persisted without running: both
// run after the next Start. Wait returns once the cut runs have persisted
// their turns.
func (m *Manager) Start(ctx context.Context) error {
	// mu is held throughout so no new turn slips in before the resumed ones.
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx != nil {
		return errors.New("session: manager already started")
	}
	turns, err := m.db.pendingTurns(ctx)
	if err != nil {
		return err
	}
	m.ctx = ctx
	m.persist.start(ctx)
	for _, t := range turns {
		m.seq = max(m.seq, t.Seq)
		m.enqueueLocked(t)
	}
	if len(turns) > 0 {
		m.log.Info("resuming queued turns", "turns", len(turns))
	}
	return nil
}

// Wait blocks until every run goroutine has returned (after Start's ctx is
// done).
func (m *Manager) Wait() { m.wg.Wait() }

// enqueueLocked appends t to its lane and starts the lane if idle. It
// returns t's queue position, 0 when it starts at once.
func (m *Manager) enqueueLocked(t *turn) int {
	l := m.lanes[t.RunKey]
	if l == nil {
		l = &lane{key: t.RunKey}
		m.lanes[t.RunKey] = l
	}
	if l.active == nil {
		m.startLocked(l, t)
		return 0
	}
	l.queue = append(l.queue, t)
	return len(l.queue)
}

func (m *Manager) startLocked(l *lane, t *turn) {
	ctx, cancel := context.WithCancelCause(m.ctx)
	r := &run{turn: t, cancel: cancel}
	l.active = r
	job := laneJob{ctx, l, r}
	select {
	case m.idle <- job: // a runner that drained a lane is waiting for one
	default:
		m.wg.Add(1)
		go m.runner(job)
	}
}

// laneJob is a lane to drain, starting with run r.
type laneJob struct {
	ctx context.Context
	l   *lane
	r   *run
}

// runnerIdle is how long a runner waits for another lane before it ends.
const runnerIdle = time.Second

// runner drains lanes: the one it was started for, then each handed to it
// within runnerIdle of the last. A new goroutine per run would grow its
// stack, from the runtime's small start to what a turn needs (the
// agent, the SQLite driver), again on every turn.
func (m *Manager) runner(job laneJob) {
	defer m.wg.Done()
	idle := time.NewTimer(runnerIdle)
	defer idle.Stop()
	for {
		m.drain(job.ctx, job.l, job.r)
		if m.ctx.Err() != nil {
			return
		}
		idle.Reset(runnerIdle)
		select {
		case job = <-m.idle:
		case <-idle.C:
			return
		case <-m.ctx.Done():
			return
		}
	}
}

// drain executes the lane's runs one after the other until its queue is
// empty.
func (m *Manager) drain(ctx context.Context, l *lane, r *run) {
	for r != nil {
		final := m.execute(ctx, r)
		r.cancel(nil)
		ctx, r = m.finishRun(l, r.turn, final)
	}
}

// finishRun delivers t's final frames and, in the same step under mu,
// hands the lane to its next queued run or frees it: a client that read
// turn_complete and sends again finds the lane free (its message is not
// queued{} behind a turn that is over), and no later turn of the lane can
// send a frame before these. It returns the next run, or nil once the
// lane is free or the manager is shutting down (the remaining turns stay
// persisted). The outbox rows are written after mu, under the client's
// outbox lock (or, stored with the turn's result, corrected: storeFinal).
func (m *Manager) finishRun(l *lane, t *turn, final []wire.Message) (context.Context, *run) {
	var to string
	var ackMode bool
	if len(final) > 0 {
		to = t.to // boxFor's choice, whose rows may be stored already
		defer m.out.lock(to)()
		ackMode = m.ackMode(to)
	}
	m.mu.Lock()
	took := m.sendFinal(to, final)
	ctx, next := m.nextRunLocked(l)
	m.mu.Unlock()
	m.storeFinal(t, to, ackMode, final, took)
	return ctx, next
}

// nextRunLocked takes the lane's next queued run, or frees the lane.
func (m *Manager) nextRunLocked(l *lane) (context.Context, *run) {
	if m.ctx.Err() != nil {
		return nil, nil
	}
	if len(l.queue) == 0 {
		l.active = nil
		delete(m.lanes, l.key)
		return nil, nil
	}
	r := &run{turn: l.queue[0]}
	l.queue = l.queue[1:]
	ctx, cancel := context.WithCancelCause(m.ctx)
	r.cancel = cancel
	l.active = r
	return ctx, r
}

// Connect registers a client connection and sends it the replies that were
// produced while it was away. Call the returned function when it closes.
//
// For a client in ack mode both wait for the connection's auth frame
// (SetAcks), or at most authWait: a client sends the acks it could not
// send on its previous connection before its auth, and they must be
// applied before the outbox is sent again, or it would get the replies it
// already showed a second time.
func (m *Manager) Connect(c *Client) (disconnect func()) {
	if !m.ackMode(c.Identity.ClientID) {
		m.register(c)
		return func() { m.detach(c) }
	}
	var once sync.Once
	attach := func() { once.Do(func() { m.register(c) }) }
	c.mu.Lock()
	c.pendingAttach = attach
	c.mu.Unlock()
	timer := time.AfterFunc(authWait, attach)
	return func() {
		timer.Stop()
		m.detach(c)
	}
}

// authWait bounds how long Connect waits for the auth frame of a client in
// ack mode (one that never sends it still gets its outbox).
const authWait = 2 * time.Second

// register registers c's connection, then flushes its outbox; never after
// detach (a late deferred attach would leak the connection).
func (m *Manager) register(c *Client) {
	id := c.Identity.ClientID
	c.mu.Lock()
	if c.detached {
		c.mu.Unlock()
		return
	}
	m.sinkMu.Lock()
	if set := m.sinks[id]; !slices.Contains(set, c.Sink) {
		m.sinks[id] = append(slices.Clip(set), c.Sink)
	}
	m.sinkMu.Unlock()
	c.mu.Unlock()
	m.adoptBridgeSessions(c.Identity)
	m.flushOutbox(c, "")
}

func (m *Manager) detach(c *Client) {
	id := c.Identity.ClientID
	c.mu.Lock()
	c.detached = true
	c.pendingAttach = nil
	m.sinkMu.Lock()
	if set := slices.DeleteFunc(slices.Clone(m.sinks[id]), func(s Sink) bool { return s == c.Sink }); len(set) > 0 {
		m.sinks[id] = set
	} else {
		delete(m.sinks, id)
	}
	m.sinkMu.Unlock()
	c.mu.Unlock()
}

// sinksOf returns the open connections of clientID.
func (m *Manager) sinksOf(clientID string) []Sink {
	m.sinkMu.RLock()
	defer m.sinkMu.RUnlock()
	return m.sinks[clientID] // never changed in place: see sinks
}

// deliver sends m to every connection of clientID; false if none took it.
func (m *Manager) deliver(clientID string, msg wire.Message) bool {
	ok := false
	for _, s := range m.sinksOf(clientID) {
		if s.Send(msg) {
			ok = true
		}
	}
	return ok
}

// stream sends a running turn's frame to every connection of clientID,
// waiting for slow readers (outside any manager lock) until ctx ends.
func (m *Manager) stream(ctx context.Context, clientID string, msg wire.Message) {
	for _, s := range m.sinksOf(clientID) {
		s.Stream(ctx, msg)
	}
}

// streamDelta is stream for a delta: a connection that takes its text
// directly (DeltaStreamer) is spared a wire.Delta made for every word.
func (m *Manager) streamDelta(ctx context.Context, clientID, sessionID, text string, now bool) {
	for _, s := range m.sinksOf(clientID) {
		if now { // a run's first delta only: the others skip the assertion
			if dn, ok := s.(DeltaNower); ok {
				dn.StreamDeltaNow(ctx, sessionID, text)
				continue
			}
		}
		if ds, ok := s.(DeltaStreamer); ok {
			ds.StreamDelta(ctx, sessionID, text)
		} else {
			s.Stream(ctx, wire.Delta{Text: text, SessionID: sessionID})
		}
	}
}

// deliverFinal sends the frames that end a pushed message (push.go); if no
// connection of the client takes them they go to the outbox. For a client
// in ack mode they are in the outbox already (boxed, stored with the
// message) and stay there until the client acks them (ack.go).
func (m *Manager) deliverFinal(t *turn, msgs ...wire.Message) {
	to := t.to // set by boxFor
	defer m.out.lock(to)()
	ackMode := m.ackMode(to)
	m.storeFinal(t, to, ackMode, msgs, m.sendFinal(to, msgs))
}

// sendFinal hands msgs to the connections of client to, without waiting,
// and says which a connection took.
func (m *Manager) sendFinal(to string, msgs []wire.Message) []bool {
	took := make([]bool, len(msgs))
	for i, msg := range msgs {
		if lo, ok := msg.(liveOnly); ok {
			m.deliver(to, lo.Message)
			took[i] = true // never stored
			continue
		}
		took[i] = m.deliver(to, msg)
	}
	return took
}

// storeFinal writes to the outbox the frames of msgs that no connection
// took, and for a client in ack mode the final ones it took, marked sent.
// Rows already stored with the turn's result (t.box) are only corrected
// where delivery went otherwise than assumed (settleBoxed).
func (m *Manager) storeFinal(t *turn, to string, ackMode bool, msgs []wire.Message, took []bool) {
	if t.box != nil {
		m.settleBoxed(t.box, took)
		return
	}
	var keep []outboxRow
	for i, msg := range msgs {
		if took[i] && !(ackMode && isFinal(msg)) {
			continue
		}
		if b, ok := m.outboxBytes(msg); ok {
			keep = append(keep, outboxRow{Frame: b, Sent: took[i]})
		}
	}
	if len(keep) == 0 {
		return
	}
	// The outbox must survive even if the manager is shutting down.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(m.ctx), storeTimeout)
	defer cancel()
	dropped, err := m.db.addOutbox(ctx, to, t.SessionID, t.TurnID, keep, ackMode)
	if err != nil {
		m.log.Error("reply not stored for (re)delivery: outbox write failed", "session", t.SessionID, "ack_mode", ackMode, "err", err)
		return
	}
	m.logDropped(to, dropped)
}

// recipient is the client that gets t's final frames: its own, or for a
// bridge's turn the key that holds the bridge's prefix now — one re-keyed
// while the turn ran (a revoke) has adopted its sessions already and would
// never see a reply stored for the old key.
func (m *Manager) recipient(t *turn) string {
	if !t.bridge || m.bridges == nil {
		return t.ClientID
	}
	p, _, _ := strings.Cut(t.SessionID, ":")
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	holder, ok, err := m.bridges(ctx, p)
	if err != nil || !ok || holder == "" {
		return t.ClientID
	}
	return holder
}

// flushOutbox sends c the stored frames of its client (of one session if
// sessionID is set). Sent frames are deleted, except for a client in ack
// mode: they are kept, marked sent, until its ack. Such a client gets all
// its rows on connect (sessionID ""), but on session_open only the rows no
// connection took yet: the others reached this connection live or in its
// connect flush.
func (m *Manager) flushOutbox(c *Client, sessionID string) {
	id := c.Identity.ClientID
	defer m.out.lock(id)()
	ctx, cancel := context.WithTimeout(context.Background(), 3*storeTimeout)
	defer cancel()
	ackMode := m.ackMode(id)
	if ackMode && sessionID == "" {
		// Expired rows are dropped here too, so a client that comes back
		// after a long absence is not sent day-old replies.
		dropped, err := m.db.pruneAwaiting(ctx, id)
		if err != nil {
			m.log.Error("flush outbox", "client", id, "err", err)
		}
		m.logDropped(id, dropped)
	}
	frames, err := m.db.outbox(ctx, id, sessionID, ackMode && sessionID != "")
	if err != nil {
		m.log.Error("flush outbox", "client", id, "err", err)
		return
	}
	var sent []int64
	for _, f := range frames {
		msg, err := wire.Decode(f.Frame, wire.ServerToClient)
		if err != nil {
			m.log.Error("outbox frame unreadable, dropped", "id", f.ID, "err", err)
			if err := m.db.deleteOutbox(ctx, []int64{f.ID}); err != nil {
				m.log.Error("flush outbox", "client", id, "err", err)
			}
			continue
		}
		// Stream, not Send: a long outbox must wait for the client to
		// read instead of overflowing its queue.
		if !c.Sink.Stream(ctx, msg) {
			break
		}
		sent = append(sent, f.ID)
	}
	if ackMode {
		err = m.db.markSent(ctx, sent)
	} else {
		err = m.db.deleteOutbox(ctx, sent)
	}
	if err != nil {
		m.log.Error("flush outbox", "client", id, "err", err)
	}
}

// OnChange registers fn, called with ("session", action, id) after every
// change of a session: created, pinned, cleared, reset; meant to be
// broadcast as resource_event.
func (m *Manager) OnChange(fn func(resource, action, id string)) { m.changes.Add(fn) }

func (m *Manager) notify(action, id string) { m.changes.Notify("session", action, id) }

// keyedMutex is a mutex per key, kept only while in use.
type keyedMutex struct {
	// mu guards locks.
	mu    sync.Mutex
	locks map[string]*refMutex
}

type refMutex struct {
	sync.Mutex
	refs int
}

// lock locks key and returns its unlock.
func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*refMutex{}
	}
	l := k.locks[key]
	if l == nil {
		l = &refMutex{}
		k.locks[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}

// runKey is what serialises turns: the device for chat/admin clients, the
// session for bridges, whose platform users share one client id.
func runKey(id *auth.Identity, sessionID string) string {
	if id.Has(auth.CapBridge) {
		return "s:" + sessionID
	}
	return "c:" + id.ClientID
}

// checkSessionID refuses ids no client should invent.
func checkSessionID(sid string) error {
	if sid == "" {
		return fmt.Errorf("%w: session_id must not be empty", ErrInvalid)
	}
	if len(sid) > 128 {
		return fmt.Errorf("%w: session_id longer than 128 bytes", ErrInvalid)
	}
	if strings.IndexFunc(sid, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return fmt.Errorf("%w: session_id must not contain spaces or control characters", ErrInvalid)
	}
	return nil
}

// access checks that id may act on session sid and returns its row,
// creating the session (owned by id) when create is set. admin lets REST
// callers act on anybody's session.
func (m *Manager) access(ctx context.Context, id *auth.Identity, sid string, create, admin bool) (sessionRow, error) {
	if err := checkSessionID(sid); err != nil {
		return sessionRow{}, err
	}
	if id.Has(auth.CapBridge) && !id.MaySession(sid) {
		return sessionRow{}, fmt.Errorf("%w: this bridge may only use session ids starting with %q", ErrForbidden, id.SessionPrefix()+":")
	}
	bridge := id.Has(auth.CapBridge)
	if !bridge && !(admin && id.Has(auth.CapAdmin)) {
		if err := m.reserved(ctx, sid); err != nil {
			return sessionRow{}, err
		}
	}
	var row sessionRow
	var err error
	if create {
		row, err = m.db.ensureSession(ctx, sid, id.ClientID)
	} else {
		row, err = m.db.session(ctx, sid)
	}
	if errors.Is(err, errNoSession) {
		return row, fmt.Errorf("%w: %s", ErrNotFound, sid)
	}
	if err != nil {
		return row, err
	}
	// A bridge's sessions belong to its prefix, not to one key: a bridge
	// re-keyed after a revoke, or one whose id a chat device took before
	// prefixes were reserved, keeps its platform users' sessions.
	if row.Owner != id.ClientID && !(admin && id.Has(auth.CapAdmin)) && !bridge {
		return row, fmt.Errorf("%w: session %s belongs to another device", ErrForbidden, sid)
	}
	return row, nil
}

// builtinBridgePrefixes are reserved even before their bridge first ran.
var builtinBridgePrefixes = []string{"tg", "dc", "wa"}

// reserved refuses a session id under a bridge's prefix (the built-in ones
// and any a bridge certificate was issued for): only that bridge may open
// it, or an admin over REST. Otherwise a chat device could claim
// "tg:424242" first and lock that Telegram user out.
func (m *Manager) reserved(ctx context.Context, sid string) error {
	p, _, ok := strings.Cut(sid, ":")
	if !ok {
		return nil
	}
	held := slices.Contains(builtinBridgePrefixes, p)
	if !held && m.bridges != nil {
		_, found, err := m.bridges(ctx, p)
		if err != nil {
			return err
		}
		held = found
	}
	if held {
		return fmt.Errorf("%w: session ids starting with %q are reserved for that bridge", ErrForbidden, p+":")
	}
	return nil
}

// newSessionID returns a fresh random id, with the bridge prefix if any.
func newSessionID(id *auth.Identity) string {
	var b [8]byte
	rand.Read(b[:])
	s := hex.EncodeToString(b[:])
	if p := id.SessionPrefix(); p != "" {
		return p + ":" + s
	}
	return s
}
