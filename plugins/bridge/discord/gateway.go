package discord

import (
	"context"
	"errors"
	"fmt"
	"net/http"
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
	wait := p.reconnectMin
	failures := 0
	var downSince time.Time
	alerted := false // the operator was told the gateway is down
	var c *conn
	for ctx.Err() == nil {
		if c == nil || failures >= maxResumes {
			if c != nil {
				p.log.Warn("gateway session given up after failed resumes; identifying afresh", "failures", failures)
			}
			c = p.newConn(q)
			failures = 0
		}
		switch {
		case downSince.IsZero():
		case c.identified.Load():
			p.status(host, "resuming")
		default:
			p.status(host, fmt.Sprintf("reconnecting (%d)", failures))
		}
		drain(c.down) // Disconnects of the connection before (discordgo emits one per Close)
		err := c.s.Open()
		if errors.Is(err, discordgo.ErrWSAlreadyOpen) {
			err = nil // a late Disconnect of an old connection: this one is up
		}
		if err == nil {
			if alerted {
				host.Event("status", "connected to Discord again as @"+p.name())
			}
			alerted = false
			p.status(host, "connected")
			downSince, failures, wait = time.Time{}, 0, p.reconnectMin
			why := p.watch(ctx, c)
			if why != "disconnected" { // discordgo closed it already otherwise
				_ = c.s.Close()
			}
			if ctx.Err() != nil {
				break
			}
			p.log.Info("gateway connection lost; reconnecting", "why", why)
			downSince = time.Now()
			if why == "watchdog" {
				c = nil // nothing came for too long: rebuild the session
			}
			continue
		}
		if reason, ok := fatal(err); ok {
			_ = c.s.Close()
			p.log.Error("Discord refused the bot for good", "err", err)
			p.status(host, "failed: "+reason)
			host.Event("alert", reason)
			<-ctx.Done()
			break
		}
		if downSince.IsZero() {
			downSince = time.Now()
		}
		failures++
		p.log.Warn("gateway connect failed", "err", err, "attempt", failures, "retry_in", wait)
		if !alerted && time.Since(downSince) > downAlertAfter {
			alerted = true
			host.Event("status", fmt.Sprintf("Discord unreachable for over a minute: %v", err))
		}
		if !sleep(ctx, wait) {
			break
		}
		wait = min(wait*2, reconnectMax) // Open resumes the same session if it was identified
	}
	if c != nil {
		_ = c.s.Close()
	}
	return nil
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

// fatal reports whether err is a gateway close that retrying cannot fix.
func fatal(err error) (string, bool) {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		r, ok := fatalCloses[ce.Code]
		return r, ok
	}
	return "", false
}

// newConn builds a discordgo session pointed at api_url.
func (p *Platform) newConn(q *queue) *conn {
	s, _ := discordgo.New("Bot " + p.token) // only fails on a "email:password" token
	s.Client = p.client
	s.Dialer = &websocket.Dialer{Proxy: http.ProxyFromEnvironment, HandshakeTimeout: 15 * time.Second}
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
