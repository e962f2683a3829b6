package discord

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bwmarrin/discordgo"
	"github.com/gorilla/websocket"

	"github.com/agentd/agentd/plugins/bridge"
)

// Gateway policy.
const (
	// maxResumes: after this many failed reconnects of one session the
	// session is rebuilt (a fresh identify).
	maxResumes = 3
	// reconnectMax bounds the wait between reconnects.
	reconnectMax = 60 * time.Second
	// downAlertAfter: the operator hears of a gateway down this long.
	downAlertAfter = time.Minute
)

// fatalCloses are gateway close codes that retrying cannot fix.
var fatalCloses = map[int]string{
	4004: "Discord refused the bot token (close 4004: authentication failed); set bridges.discord.settings.token",
	4010: "invalid shard (close 4010)",
	4011: "sharding required (close 4011)",
	4012: "invalid gateway API version (close 4012)",
	4013: "invalid intents (close 4013)",
	4014: "enable the Message Content intent in the Developer Portal (close 4014: disallowed intents)",
}

// conn is one discordgo session and what the loop learns of it.
type conn struct {
	s          *discordgo.Session
	down       chan struct{} // a Disconnect (buffered 1)
	identified atomic.Bool   // READY seen: Open resumes from now on
	lastEvent  atomic.Int64  // unix nanos of the last dispatch
}

// Run implements bridge.Platform: it keeps a gateway session up, delivers
// messages and slash commands in order, and reports the connection in the
// platform status: connected, resuming, reconnecting (n), failed: reason.
func (p *Platform) Run(ctx context.Context, host bridge.Host) error {
	if p.client == nil {
		return errors.New("discord: not configured")
	}
	p.mu.Lock()
	p.host = host
	p.mu.Unlock()
	q := newQueue()
	go p.deliverLoop(ctx, host, q)
	defer q.close()

	discordgo.Logger = func(level, _ int, format string, a ...any) {
		if level <= discordgo.LogWarning {
			p.log.Debug("discordgo: " + fmt.Sprintf(format, a...))
		}
	}
	rl := newRelay(p.log)
	defer rl.close()
	l := &link{p: p, host: host, q: q, relay: rl, wait: p.reconnectMin}
	for ctx.Err() == nil && l.once(ctx) {
	}
	if l.c != nil {
		_ = l.c.s.Close()
	}
	return nil
}

// link is Run's state between connection attempts.
type link struct {
	p         *Platform
	host      bridge.Host
	q         *queue
	relay     *relay // discordgo's way to the gateway (see relay.go)
	c         *conn
	wait      time.Duration // before the next attempt
	failures  int           // failed attempts of c since it was last up
	downSince time.Time     // zero while up (and before the first connect)
	alerted   bool          // the operator was told the gateway is down
	reported  bool          // the running state was reported (first connect)
}

// once makes one connection attempt and, if it succeeds, holds the
// connection until it drops. It reports whether to go on.
func (l *link) once(ctx context.Context) bool {
	p := l.p
	if l.c == nil || l.failures >= maxResumes {
		if l.c != nil {
			p.log.Warn("gateway session given up after failed resumes; identifying afresh", "failures", l.failures)
		}
		l.c, l.failures = p.newConn(l.q, l.relay), 0
	}
	switch {
	case l.downSince.IsZero():
	case l.c.identified.Load():
		p.status(l.host, "resuming")
	default:
		p.status(l.host, fmt.Sprintf("reconnecting (%d)", l.failures))
	}
	drain(l.c.down) // Disconnects of the connection before (discordgo emits one per Close)
	err := l.c.s.Open()
	if errors.Is(err, discordgo.ErrWSAlreadyOpen) {
		err = nil // a late Disconnect of an old connection: this one is up
	}
	if err == nil {
		return l.up(ctx)
	}
	if reason, ok := fatal(err); ok {
		_ = l.c.s.Close()
		p.log.Error("Discord refused the bot for good", "err", err)
		// agentd shows it as the bridge's state and alerts; the bridge
		// waits, not reconnecting, until it is restarted.
		p.report(l.host, bridge.PlatformFailed, reason)
		<-ctx.Done()
		return false
	}
	if l.downSince.IsZero() {
		l.downSince = time.Now()
	}
	l.failures++
	p.log.Warn("gateway connect failed", "err", err, "attempt", l.failures, "retry_in", l.wait)
	if !l.alerted && time.Since(l.downSince) > downAlertAfter {
		l.alerted = true
		l.host.Event("status", fmt.Sprintf("Discord unreachable for over a minute: %v", err))
	}
	if !sleep(ctx, l.wait) {
		return false
	}
	l.wait = min(l.wait*2, reconnectMax) // Open resumes the same session if it was identified
	return true
}

// up holds a connected session until it drops, ctx ends or the watchdog
// fires.
func (l *link) up(ctx context.Context) bool {
	p := l.p
	if l.alerted {
		l.host.Event("status", "connected to Discord again as @"+p.name())
	}
	if l.reported {
		p.status(l.host, "connected")
	} else { // the first connect of this run: clears a failed state of the last
		p.report(l.host, bridge.PlatformRunning, "connected")
		l.reported = true
	}
	l.downSince, l.failures, l.wait, l.alerted = time.Time{}, 0, p.reconnectMin, false
	why := p.watch(ctx, l.c)
	if why != "disconnected" { // discordgo closed it already otherwise
		_ = l.c.s.Close()
	}
	if ctx.Err() != nil {
		return false
	}
	p.log.Info("gateway connection lost; reconnecting", "why", why)
	l.downSince = time.Now()
	if why == "watchdog" {
		l.c = nil // nothing came for too long: rebuild the session
	}
	return true
}

func (p *Platform) name() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.botName
}

func (p *Platform) status(host bridge.Host, text string) {
	if ss, ok := host.(bridge.StatusSetter); ok {
		ss.SetStatus(text)
	}
}

// report reports a platform state (agentd shows it as the bridge's).
func (p *Platform) report(host bridge.Host, state bridge.PlatformState, reason string) {
	if sr, ok := host.(bridge.StateReporter); ok {
		sr.ReportState(state, reason)
		return
	}
	p.status(host, bridge.StateStatus(state, reason))
}

// fatal reports whether err is a gateway close that retrying cannot fix.
func fatal(err error) (string, bool) {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		r, ok := fatalCloses[ce.Code]
		return r, ok
	}
	return "", false
}

// newConn builds a discordgo session pointed at api_url, its gateway
// connections through rl.
func (p *Platform) newConn(q *queue, rl *relay) *conn {
	s, _ := discordgo.New("Bot " + p.token) // only fails on a "email:password" token
	s.Client = p.client
	s.Dialer = rl.dialer()
	s.Compress = false                // plain JSON frames, which the relay reads for op 9
	s.ShouldReconnectOnError = false  // Run reconnects, and knows fatal closes
	s.ShouldRetryOnRateLimit = false  // the SDK waits, shared by every chat
	s.SyncEvents = true               // handlers in order; they only queue
	s.LogLevel = discordgo.LogWarning // debug would log the identify payload, token included
	s.Identify.Intents = discordgo.IntentsGuilds | discordgo.IntentsGuildMessages |
		discordgo.IntentsDirectMessages | discordgo.IntentMessageContent
	c := &conn{s: s, down: make(chan struct{}, 1)}
	c.lastEvent.Store(time.Now().UnixNano())
	s.AddHandler(func(_ *discordgo.Session, _ *discordgo.Disconnect) {
		select {
		case c.down <- struct{}{}:
		default:
		}
	})
	s.AddHandler(func(_ *discordgo.Session, _ any) { c.lastEvent.Store(time.Now().UnixNano()) })
	s.AddHandler(func(s *discordgo.Session, r *discordgo.Ready) {
		c.identified.Store(true)
		p.ready(s, r)
	})
	s.AddHandler(func(s *discordgo.Session, m *discordgo.MessageCreate) { p.onMessage(s, q, m.Message) })
	s.AddHandler(func(s *discordgo.Session, i *discordgo.InteractionCreate) { p.onInteraction(s, q, i.Interaction) })
	p.mu.Lock()
	p.s = s
	p.mu.Unlock()
	return c
}

// watch waits until the connection drops, ctx ends, or nothing (no
// dispatch, no heartbeat ACK) arrived for the watchdog's time.
func (p *Platform) watch(ctx context.Context, c *conn) string {
	tick := time.NewTicker(max(p.watchdog/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return "stopping"
		case <-c.down:
			return "disconnected"
		case <-tick.C:
			last := time.Unix(0, c.lastEvent.Load())
			c.s.RLock()
			ack := c.s.LastHeartbeatAck
			c.s.RUnlock()
			if ack.After(last) {
				last = ack
			}
			if time.Since(last) > p.watchdog {
				p.log.Warn("gateway silent; rebuilding the session", "silent_for", time.Since(last).Round(time.Second))
				return "watchdog"
			}
		}
	}
}

// ready learns who the bot is and registers the slash commands.
func (p *Platform) ready(s *discordgo.Session, r *discordgo.Ready) {
	p.mu.Lock()
	p.botID, p.botName = r.User.ID, r.User.Username
	if r.Application != nil {
		p.appID = r.Application.ID
	}
	appID := p.appID
	p.mu.Unlock()
	p.log.Info("connected to Discord", "bot", r.User.Username, "session", r.SessionID)
	go p.registerCommands(s, appID)
}

// registerCommands bulk-overwrites the slash commands: per allowed guild
// when allowed_guilds is set (they show at once), else globally. Best
// effort: typed commands work without them.
func (p *Platform) registerCommands(s *discordgo.Session, appID string) {
	if appID == "" {
		return
	}
	var cmds []*discordgo.ApplicationCommand
	for _, c := range bridge.Commands {
		ac := &discordgo.ApplicationCommand{Name: c.Name, Description: c.Help, Type: discordgo.ChatApplicationCommand}
		if c.Args != "" {
			ac.Options = []*discordgo.ApplicationCommandOption{{Type: discordgo.ApplicationCommandOptionString, Name: "name", Description: "the model's name"}}
		}
		cmds = append(cmds, ac)
	}
	guilds := []string{""}
	if len(p.allowedGuilds) > 0 {
		guilds = guilds[:0]
		for g := range p.allowedGuilds {
			guilds = append(guilds, g)
		}
	}
	for _, g := range guilds {
		if _, err := s.ApplicationCommandBulkOverwrite(appID, g, cmds); err != nil {
			p.log.Warn("registering slash commands failed; typed commands still work", "guild", g, "err", err)
		}
	}
}

func drain(ch chan struct{}) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// queue is the ordered hand-over from discordgo's event goroutine (which
// must keep reading the gateway) to the delivery loop (which may wait for
// agentd).
type queue struct {
	mu     sync.Mutex // guards items, closed
	items  []bridge.Incoming
	closed bool
	more   chan struct{}
}

func newQueue() *queue { return &queue{more: make(chan struct{}, 1)} }

func (q *queue) push(m bridge.Incoming) {
	q.mu.Lock()
	if !q.closed {
		q.items = append(q.items, m)
	}
	q.mu.Unlock()
	select {
	case q.more <- struct{}{}:
	default:
	}
}

func (q *queue) pop() (bridge.Incoming, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return bridge.Incoming{}, false
	}
	m := q.items[0]
	q.items = q.items[1:]
	return m, true
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
}

func (p *Platform) deliverLoop(ctx context.Context, host bridge.Host, q *queue) {
	for {
		m, ok := q.pop()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-q.more:
			}
			continue
		}
		if err := host.Deliver(ctx, m); err != nil {
			return // ctx ended
		}
	}
}
