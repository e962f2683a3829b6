// Package config owns openagent.yaml: its typed sections, loading with
// ${ENV} expansion, validation with errors that name file, line and field,
// and hot reload.
package config

import (
	"fmt"
	"github.com/goccy/go-yaml/ast"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
)

// FileName is the config file's name inside an agent directory.
const FileName = "openagent.yaml"

// Config is the whole of openagent.yaml.
type Config struct {
	Agent     Agent             `yaml:"agent"`
	Listeners Listeners         `yaml:"listeners"`
	Providers []Provider        `yaml:"providers"`
	Models    []Model           `yaml:"models"`
	Bridges   map[string]Bridge `yaml:"bridges"`
	MCPs      map[string]MCP    `yaml:"mcps"`
	Tools     Tools             `yaml:"tools"`
	Voice     Voice             `yaml:"voice"`
	Scheduler Scheduler         `yaml:"scheduler"`
	Alerts    Alerts            `yaml:"alerts"`
	Pairing   Pairing           `yaml:"pairing"`
	Metrics   Metrics           `yaml:"metrics"`
	Limits    Limits            `yaml:"limits"`
}

// Metrics configures the Prometheus endpoint besides GET /api/metrics.
type Metrics struct {
	// Listen, when set, is a loopback host:port where a plain HTTP
	// listener (no certificate: the machine's own scraper) serves /metrics
	// alone. Applies at restart.
	Listen string `yaml:"listen"`
}

// Agent describes the agent itself.
type Agent struct {
	Name         string `yaml:"name"`
	SystemPrompt string `yaml:"system_prompt"`
	// DefaultModel is the model id used by sessions that pin none.
	DefaultModel string `yaml:"default_model"`
}

// Listeners says where the gateway accepts streams. Every listener runs the
// same device-certificate authentication.
type Listeners struct {
	Unix UnixListener `yaml:"unix"`
	TCP  TCPListener  `yaml:"tcp"`
	Iroh IrohListener `yaml:"iroh"`
}

// UnixListener is the local socket DIR/agentd.sock (mode 0600).
type UnixListener struct {
	Enabled bool `yaml:"enabled"`
}

// TCPListener is off by default; for people who put a reverse proxy in front.
type TCPListener struct {
	Enabled bool   `yaml:"enabled"`
	Address string `yaml:"address"`
}

// IrohListener serves the gateway over iroh QUIC through the sidecar.
type IrohListener struct {
	Enabled bool `yaml:"enabled"`
	// Relay is "default" (n0 relays + discovery), "disabled" (direct
	// addresses only) or a relay URL.
	Relay string `yaml:"relay"`
	// BindPort is the UDP port; 0 picks one.
	BindPort int `yaml:"bind_port"`
	// Node is the node binary; empty means "node" on PATH.
	Node string `yaml:"node"`
	// SidecarDir holds the sidecar program; empty means the default beside
	// the agentd binary.
	SidecarDir string `yaml:"sidecar_dir"`
}

// Provider is an LLM API endpoint.
type Provider struct {
	ID      string `yaml:"id"`
	Kind    string `yaml:"kind"` // openai, anthropic, echo
	BaseURL string `yaml:"base_url"`
	APIKey  string `yaml:"api_key"`
}

// Model is a model offered by a provider, with its pricing.
type Model struct {
	ID       string `yaml:"id"`
	Provider string `yaml:"provider"`
	// Name is the provider's name for the model; empty means ID.
	Name               string  `yaml:"name"`
	InputPricePerMTok  float64 `yaml:"input_price_per_mtok"`
	OutputPricePerMTok float64 `yaml:"output_price_per_mtok"`
	Enabled            *bool   `yaml:"enabled"`
}

// IsEnabled reports whether the model is enabled (the default).
func (m Model) IsEnabled() bool { return m.Enabled == nil || *m.Enabled }

// Bridge configures one chat bridge plugin.
type Bridge struct {
	Enabled bool `yaml:"enabled"`
	// Path is the plugin binary; empty means bridge-<name> beside agentd.
	Path string `yaml:"path"`
	// AllowedUsers lists platform user ids allowed to talk to the agent;
	// empty allows nobody.
	AllowedUsers []string `yaml:"allowed_users"`
	// DMPolicy is what a user not in the allowed users gets in a direct
	// chat: pairing (a code the owner approves; default), allowlist (a
	// refusal), open (everybody; needs allowed_users ["*"]) or disabled
	// (no direct chats). docs/pairing.md.
	DMPolicy string `yaml:"dm_policy"`
	// GroupPolicy is open (any group; default) or allowlist (only
	// AllowedGroups); in groups only allowed users who mention the bot
	// are answered, and nobody is ever offered pairing.
	GroupPolicy   string   `yaml:"group_policy"`
	AllowedGroups []string `yaml:"allowed_groups"`
	// Settings are platform-specific (token, …), passed to the plugin.
	Settings map[string]string `yaml:"settings"`
}

// MCP is an MCP tool server. The mcps: section seeds agentd's table of MCP
// servers at the first start only; after that the table is the truth and
// is changed over REST or with `agentd mcp` (docs/mcp.md).
type MCP struct {
	// Enabled defaults to true.
	Enabled *bool `yaml:"enabled"`
	// Command and Args start a stdio server (cwd: the agent directory).
	Command string   `yaml:"command"`
	Args    []string `yaml:"args"`
	// Env is the server's whole environment besides PATH and HOME.
	Env map[string]string `yaml:"env"`
	// URL is a Streamable HTTP server; Headers go with every request.
	URL     string            `yaml:"url"`
	Headers map[string]string `yaml:"headers"`
	// Timeout bounds one tool call (default 60s).
	Timeout Duration `yaml:"timeout"`
	// MaxResultBytes caps a tool result fed to the model (default 256 KiB).
	MaxResultBytes int `yaml:"max_result_bytes"`
}

// IsEnabled reports whether the server is enabled (the default).
func (m MCP) IsEnabled() bool { return m.Enabled == nil || *m.Enabled }

// Tools configures the built-in tools.
type Tools struct {
	SessionsSend SessionsSend `yaml:"sessions_send"`
}

// SessionsSend is the sessions_send tool: the agent may send a message to
// the sessions listed in Allow (exact ids, or a prefix ending in "*" such
// as "tg:*"). Empty allows none.
type SessionsSend struct {
	Allow []string `yaml:"allow"`
}

// Voice configures speech-to-text and text-to-speech (package voice).
type Voice struct {
	Enabled bool `yaml:"enabled"`
	// Provider is the engine of both directions when stt/tts name none:
	// local (espeak-ng, pocketsphinx, ffmpeg; offline) or openai (any
	// OpenAI-compatible audio API). Empty means local.
	Provider string   `yaml:"provider"`
	STT      VoiceSTT `yaml:"stt"`
	TTS      VoiceTTS `yaml:"tts"`
	Language string   `yaml:"language"` // ISO-639-1 hint, e.g. "en", "it"
	// ReplyWithVoice answers a voice turn with speech too (a voice bubble
	// on bridges, audio_* frames on the WebSocket).
	ReplyWithVoice bool     `yaml:"reply_with_voice"`
	MaxBytes       int64    `yaml:"max_bytes"`
	MaxDuration    Duration `yaml:"max_duration"`
	Timeout        Duration `yaml:"timeout"`
}

// VoiceSTT is the speech-to-text engine.
type VoiceSTT struct {
	Engine  string `yaml:"engine"` // local, openai; empty: voice.provider
	Model   string `yaml:"model"`  // openai: whisper-1 by default
	BaseURL string `yaml:"base_url"`
	APIKey  string `yaml:"api_key"`
}

// VoiceTTS is the text-to-speech engine.
type VoiceTTS struct {
	Engine  string `yaml:"engine"` // local, openai; empty: voice.provider
	Voice   string `yaml:"voice"`  // local: an espeak-ng voice; openai: alloy, …
	Model   string `yaml:"model"`  // openai: tts-1 by default
	BaseURL string `yaml:"base_url"`
	APIKey  string `yaml:"api_key"`
	Speed   int    `yaml:"speed"` // local: words per minute (espeak-ng -s)
}

// Scheduler configures cron tasks (docs/scheduler.md).
type Scheduler struct {
	// Enabled lets tasks fire on their schedules; when off they are kept
	// and can still be run by hand.
	Enabled bool `yaml:"enabled"`
	// Timezone is the IANA zone of tasks that set none; empty means the
	// machine's.
	Timezone string `yaml:"timezone"`
}

// Alerts says who hears of operator alerts (a bridge down, logged out or
// refused by its platform, …; see internal/alert).
type Alerts struct {
	// DeliverTo are session ids the alerts are pushed into: a bridge's
	// chat ("tg:155490357") or a CLI/app session. Empty: alerts are only
	// logged.
	DeliverTo []string `yaml:"deliver_to"`
	// After is how long a problem must last before it is reported, so a
	// passing hiccup (a bridge restarted in a second) says nothing.
	After Duration `yaml:"after"`
}

// Pairing tunes chat-user pairing (docs/pairing.md).
type Pairing struct {
	// Expiry is how long a pairing code stays valid (default 1h).
	Expiry Duration `yaml:"expiry"`
}

// DefaultPairingExpiry is pairing.expiry when the file does not set it.
const DefaultPairingExpiry = time.Hour

// DM and group policies of a bridge (Bridge.DMPolicy, Bridge.GroupPolicy).
var (
	DMPolicies    = []string{"pairing", "allowlist", "open", "disabled"}
	GroupPolicies = []string{"open", "allowlist"}
)

func (b Bridge) validate(path string) error {
	fe := func(path, format string, a ...any) error {
		return &FieldError{Path: path, Msg: fmt.Sprintf(format, a...)}
	}
	if b.DMPolicy != "" && !slices.Contains(DMPolicies, b.DMPolicy) {
		return fe(path+".dm_policy", "%q: want one of %s", b.DMPolicy, strings.Join(DMPolicies, ", "))
	}
	if b.GroupPolicy != "" && !slices.Contains(GroupPolicies, b.GroupPolicy) {
		return fe(path+".group_policy", "%q: want one of %s", b.GroupPolicy, strings.Join(GroupPolicies, ", "))
	}
	if b.DMPolicy == "open" && !slices.Contains(b.AllowedUsers, "*") {
		return fe(path+".dm_policy", `open lets everybody talk to the agent: write allowed_users: ["*"] too`)
	}
	return nil
}

// DefaultAlertsAfter is alerts.after when the file does not set it.
const DefaultAlertsAfter = 60 * time.Second

// Limits bound what clients can make the daemon do.
type Limits struct {
	MaxFrameBytes    int      `yaml:"max_frame_bytes"`
	WriteQueue       int      `yaml:"write_queue"`
	QueueCap         int      `yaml:"queue_cap"`
	SnapshotInterval Duration `yaml:"snapshot_interval"`
	IdleTimeout      Duration `yaml:"idle_timeout"`
	PingInterval     Duration `yaml:"ping_interval"`
	UploadMaxBytes   int64    `yaml:"upload_max_bytes"`
	// MaxConnections caps the streams open at once on all listeners.
	MaxConnections int `yaml:"max_connections"`
	// MaxToolRounds bounds model → tools → model rounds in one turn.
	MaxToolRounds int `yaml:"max_tool_rounds"`
}

// Duration is a time.Duration written as "30s", "5m".
type Duration time.Duration

// UnmarshalYAML parses "30s"; errors carry the node so they can name the line.
func (d *Duration) UnmarshalYAML(n ast.Node) error {
	s, ok := n.(*ast.StringNode)
	if !ok {
		return &nodeError{node: n, msg: fmt.Sprintf("want a duration such as 30s, got %s", n.Type())}
	}
	v, err := time.ParseDuration(s.Value)
	if err != nil {
		return &nodeError{node: n, msg: fmt.Sprintf("invalid duration %q (want e.g. 30s, 5m)", s.Value)}
	}
	*d = Duration(v)
	return nil
}

// nodeError is a decoding error located at a YAML node.
type nodeError struct {
	node ast.Node
	msg  string
}

func (e *nodeError) Error() string { return e.msg }

// MarshalText renders the duration.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Default returns the configuration that an empty file means.
func Default() *Config {
	return &Config{
		Agent: Agent{Name: "agentd", DefaultModel: "echo"},
		Listeners: Listeners{
			Unix: UnixListener{Enabled: true},
			TCP:  TCPListener{Address: "127.0.0.1:8765"},
			Iroh: IrohListener{Enabled: true, Relay: "default"},
		},
		Providers: []Provider{{ID: "echo", Kind: "echo"}},
		Models:    []Model{{ID: "echo", Provider: "echo"}},
		Bridges:   map[string]Bridge{},
		MCPs:      map[string]MCP{},
		Alerts:    Alerts{After: Duration(DefaultAlertsAfter)},
		Pairing:   Pairing{Expiry: Duration(DefaultPairingExpiry)},
		Voice: Voice{
			Enabled: true, ReplyWithVoice: true,
			MaxBytes: 25 << 20, MaxDuration: Duration(10 * time.Minute), Timeout: Duration(2 * time.Minute),
		},
		Scheduler: Scheduler{Enabled: true},
		Limits: Limits{
			MaxFrameBytes:    1 << 20,
			WriteQueue:       256,
			QueueCap:         20,
			SnapshotInterval: Duration(30 * time.Second),
			IdleTimeout:      Duration(90 * time.Second),
			PingInterval:     Duration(30 * time.Second),
			UploadMaxBytes:   50 << 20,
			MaxConnections:   4096,
			MaxToolRounds:    16,
		},
	}
}

var idRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// MCPNameRe is what an MCP server name must look like (besides having no
// "__"): it prefixes the server's tool names, which OpenAI and Anthropic
// restrict to letters, digits, _ and -.
var MCPNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$`)

// FieldError is a validation error on one field.
type FieldError struct {
	Path string // e.g. providers[0].kind
	Msg  string
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Msg }

// Validate checks what the YAML types cannot.
func (c *Config) Validate() error {
	fe := func(path, format string, a ...any) error {
		return &FieldError{Path: path, Msg: fmt.Sprintf(format, a...)}
	}
	if strings.TrimSpace(c.Agent.Name) == "" {
		return fe("agent.name", "must not be empty")
	}
	providers := map[string]bool{}
	for i, p := range c.Providers {
		path := fmt.Sprintf("providers[%d]", i)
		if !idRe.MatchString(p.ID) {
			return fe(path+".id", "%q is not a valid id (lowercase letters, digits, . _ -)", p.ID)
		}
		if providers[p.ID] {
			return fe(path+".id", "duplicate provider id %q", p.ID)
		}
		providers[p.ID] = true
		switch p.Kind {
		case "openai", "anthropic":
			if p.BaseURL != "" {
				if u, err := url.Parse(p.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") {
					return fe(path+".base_url", "%q is not an http(s) URL", p.BaseURL)
				}
			}
		case "echo":
		default:
			return fe(path+".kind", "unknown kind %q (want openai, anthropic or echo)", p.Kind)
		}
	}
	models := map[string]bool{}
	for i, m := range c.Models {
		path := fmt.Sprintf("models[%d]", i)
		if m.ID == "" || strings.ContainsAny(m.ID, " \t\n/") {
			return fe(path+".id", "%q is not a valid model id", m.ID)
		}
		if models[m.ID] {
			return fe(path+".id", "duplicate model id %q", m.ID)
		}
		models[m.ID] = true
		if !providers[m.Provider] {
			return fe(path+".provider", "unknown provider %q", m.Provider)
		}
		if m.InputPricePerMTok < 0 || m.OutputPricePerMTok < 0 {
			return fe(path, "prices must not be negative")
		}
	}
	if c.Agent.DefaultModel != "" && !models[c.Agent.DefaultModel] {
		return fe("agent.default_model", "unknown model %q", c.Agent.DefaultModel)
	}
	if c.Listeners.TCP.Enabled && c.Listeners.TCP.Address == "" {
		return fe("listeners.tcp.address", "must be set when the tcp listener is enabled")
	}
	switch r := c.Listeners.Iroh.Relay; {
	case r == "default", r == "disabled":
	case strings.HasPrefix(r, "https://"), strings.HasPrefix(r, "http://"):
	default:
		return fe("listeners.iroh.relay", "%q: want default, disabled or a relay URL", r)
	}
	for name, b := range c.Bridges {
		if !idRe.MatchString(name) {
			return fe("bridges."+name, "invalid bridge name")
		}
		if err := b.validate("bridges." + name); err != nil {
			return err
		}
	}
	if c.Pairing.Expiry < 0 {
		return fe("pairing.expiry", "must not be negative")
	}
	for name, m := range c.MCPs {
		path := "mcps." + name
		switch {
		case !MCPNameRe.MatchString(name) || strings.Contains(name, "__"):
			return fe(path, "invalid MCP server name (1-32 of letters, digits, _ and -, starting with a letter or digit, no __)")
		case (m.Command == "") == (m.URL == ""):
			return fe(path, "set exactly one of command or url")
		case m.URL != "" && (len(m.Args) > 0 || len(m.Env) > 0):
			return fe(path, "args and env are for command servers; an url server takes headers")
		case m.Command != "" && len(m.Headers) > 0:
			return fe(path, "headers are for url servers")
		case m.Timeout < 0 || m.MaxResultBytes < 0:
			return fe(path, "timeout and max_result_bytes must not be negative")
		}
		if m.URL != "" {
			if u, err := url.Parse(m.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fe(path+".url", "%q is not an http(s) URL", m.URL)
			}
		}
	}
	for i, a := range c.Tools.SessionsSend.Allow {
		if a == "" || a == "*" || strings.ContainsAny(strings.TrimSuffix(a, "*"), "* \t\n") {
			return fe(fmt.Sprintf("tools.sessions_send.allow[%d]", i), "%q: want a session id or a prefix ending in * (e.g. tg:*), not everything", a)
		}
	}
	if err := c.Alerts.validate(); err != nil {
		return err
	}
	if err := c.Voice.validate(); err != nil {
		return err
	}
	if tz := c.Scheduler.Timezone; tz != "" {
		if _, err := time.LoadLocation(tz); err != nil || tz == "Local" {
			return fe("scheduler.timezone", "unknown time zone %q (want an IANA name such as Europe/Berlin, or empty for the machine's)", tz)
		}
	}
	if a := c.Metrics.Listen; a != "" {
		host, port, err := net.SplitHostPort(a)
		ip := net.ParseIP(host)
		if err != nil || port == "" || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
			return fe("metrics.listen", "%q: want a loopback address such as 127.0.0.1:9464 (it has no authentication)", a)
		}
	}
	l := c.Limits
	switch {
	case l.MaxFrameBytes < 1024:
		return fe("limits.max_frame_bytes", "must be at least 1024")
	case l.WriteQueue < 8:
		return fe("limits.write_queue", "must be at least 8")
	case l.QueueCap < 1:
		return fe("limits.queue_cap", "must be at least 1")
	case l.UploadMaxBytes < 1:
		return fe("limits.upload_max_bytes", "must be at least 1")
	case l.MaxConnections < 16:
		return fe("limits.max_connections", "must be at least 16")
	case l.SnapshotInterval.D() < time.Second:
		return fe("limits.snapshot_interval", "must be at least 1s")
	case l.IdleTimeout.D() < time.Second:
		return fe("limits.idle_timeout", "must be at least 1s")
	case l.PingInterval.D() < 100*time.Millisecond || l.PingInterval >= l.IdleTimeout:
		return fe("limits.ping_interval", "must be at least 100ms and below idle_timeout")
	case l.MaxToolRounds < 1 || l.MaxToolRounds > 100:
		return fe("limits.max_tool_rounds", "must be between 1 and 100")
	}
	return nil
}

// Model returns the model with id, if configured.
func (c *Config) Model(id string) (Model, bool) {
	for _, m := range c.Models {
		if m.ID == id {
			return m, true
		}
	}
	return Model{}, false
}

// Provider returns the provider with id, if configured.
func (c *Config) Provider(id string) (Provider, bool) {
	for _, p := range c.Providers {
		if p.ID == id {
			return p, true
		}
	}
	return Provider{}, false
}

func (a Alerts) validate() error {
	seen := map[string]bool{}
	for i, sid := range a.DeliverTo {
		path := fmt.Sprintf("alerts.deliver_to[%d]", i)
		switch {
		case sid == "" || len(sid) > 128:
			return &FieldError{Path: path, Msg: fmt.Sprintf("%q is not a session id (1-128 bytes, e.g. \"tg:155490357\")", sid)}
		case strings.IndexFunc(sid, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
			return &FieldError{Path: path, Msg: fmt.Sprintf("%q: a session id has no spaces or control characters", sid)}
		case seen[sid]:
			return &FieldError{Path: path, Msg: fmt.Sprintf("%q is listed twice", sid)}
		}
		seen[sid] = true
	}
	if a.After.D() < 0 || a.After.D() > 24*time.Hour {
		return &FieldError{Path: "alerts.after", Msg: "must be between 0s and 24h"}
	}
	return nil
}

func (v Voice) validate() error {
	fe := func(path, format string, a ...any) error {
		return &FieldError{Path: "voice." + path, Msg: fmt.Sprintf(format, a...)}
	}
	engines := map[string]string{"provider": v.Provider, "stt.engine": v.STT.Engine, "tts.engine": v.TTS.Engine}
	for path, e := range engines {
		if e != "" && e != "local" && e != "openai" {
			return fe(path, "unknown engine %q (want local or openai)", e)
		}
	}
	for path, u := range map[string]string{"stt.base_url": v.STT.BaseURL, "tts.base_url": v.TTS.BaseURL} {
		if pu, err := url.Parse(u); u != "" && (err != nil || (pu.Scheme != "http" && pu.Scheme != "https")) {
			return fe(path, "%q is not an http(s) URL", u)
		}
	}
	if v.Language != "" && !langRe.MatchString(v.Language) {
		return fe("language", "%q is not an ISO-639-1 code such as en or it", v.Language)
	}
	switch {
	case v.MaxBytes < 1024:
		return fe("max_bytes", "must be at least 1024")
	case v.MaxDuration.D() < time.Second:
		return fe("max_duration", "must be at least 1s")
	case v.Timeout.D() < time.Second:
		return fe("timeout", "must be at least 1s")
	case v.TTS.Speed < 0 || v.TTS.Speed > 500:
		return fe("tts.speed", "must be between 80 and 500 words per minute (0: the default)")
	}
	return nil
}

var langRe = regexp.MustCompile(`^[a-z]{2}$`)
