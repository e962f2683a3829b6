// Package bridge is the public SDK for agentd chat bridges. A bridge is a
// separate process that agentd launches as a hashicorp/go-plugin plugin and
// controls over gRPC (configure, start, stop, health); its chat traffic goes
// to the gateway over the ordinary WebSocket protocol with the bridge's own
// device certificate.
//
// A new platform implements Platform (plus any optional capability
// interfaces it supports) and calls Serve from its main:
//
//	func main() { bridge.Serve(telegram.New()) }
package bridge

import (
	"context"
	"log/slog"
	"time"

	"github.com/agentd/agentd/plugins/bridge/store"
	"github.com/agentd/agentd/wire"
)

// Platform is a chat platform. The SDK owns the gateway connection, session
// mapping, streaming and retries; the platform only moves messages.
type Platform interface {
	// Name is the bridge's name, e.g. "telegram".
	Name() string
	// SessionPrefix is the session-id prefix, e.g. "tg" for "tg:<chat_id>".
	SessionPrefix() string
	// Configure receives the platform settings before Run.
	Configure(cfg PlatformConfig) error
	// Run connects to the platform and delivers incoming messages to host
	// until ctx is done or a fatal error occurs.
	Run(ctx context.Context, host Host) error
	// SendText sends a message to a chat and returns its platform id.
	SendText(ctx context.Context, chatID, text string) (msgID string, err error)
}

// PlatformConfig is what agentd passes to a platform.
type PlatformConfig struct {
	Settings     map[string]string // platform-specific: token, …
	AllowedUsers []string          // platform user ids allowed to talk to the agent
	DataDir      string            // the bridge's own state directory
	UploadsDir   string            // where incoming files are stored
	Logger       *slog.Logger
	// Store is the bridge's persistent state in DataDir, shared with the
	// SDK; a platform keeps its own values there (Store.Value, SetValue).
	// Nil when there is no DataDir.
	Store *store.Store
}

// Host is what a platform calls back into.
type Host interface {
	// Deliver hands a platform message to the agent. It returns nil once
	// the message is handled — the turn was written on a live gateway
	// connection, or the user is not allowed and was told so — so a
	// platform advances its own cursor (Telegram's update offset) only
	// after a nil return. While the gateway is unreachable Deliver waits
	// and retries; a non-nil error means ctx ended first and the message
	// was not delivered: the platform must fetch it again later.
	//
	// Text starting with /stop, /new, /clear, /reset, /model or /help
	// (optionally /cmd@botname) becomes a command frame.
	Deliver(ctx context.Context, m Incoming) error
	// Event reports something the operator should see (pairing QR code,
	// logged out, alert, status text).
	Event(kind, text string)
	// Notify queues a notice to a chat (a welcome, "could not download
	// your file"). It goes out in order with the chat's replies, through
	// the same rate limits; it is not persisted.
	Notify(chatID, text string)
	// Logger logs to agentd's bridge log.
	Logger() *slog.Logger
	// Allowed reports whether a platform user is allowed to talk to the
	// agent right now (the list changes when the owner approves a
	// pairing); a platform uses it to skip work for strangers, such as
	// downloading their files.
	Allowed(userID string) bool
}

// Incoming is one message from a platform user.
type Incoming struct {
	ChatID string // the conversation; the session id is "<prefix>:<ChatID>"
	// MessageID is the platform's id of the message (unique in its chat;
	// for an album, of the album). The SDK hands a message id to the agent
	// once: a platform that delivers it again (a redelivery after a
	// restart) is answered only once. "" skips the check.
	MessageID string
	UserID    string // checked against the allowed users
	UserName  string // for logs and the owner's pairing list
	// Group is set for a message in a group chat (one the bot was
	// addressed in); strangers there never start a pairing.
	Group bool
	Text  string
	// Attachments are files the platform already stored in the uploads
	// directory (the gateway refuses paths outside the agent directory).
	Attachments []wire.Attachment
}

// Optional capabilities. The SDK type-asserts a Platform for these.

// MessageEditor edits a sent message; used to stream replies.
type MessageEditor interface {
	EditText(ctx context.Context, chatID, msgID, text string) error
}

// Typer shows a typing indicator.
type Typer interface {
	SendTyping(ctx context.Context, chatID string) error
}

// TypingRenewer is implemented by platforms whose typing indicator lasts
// longer or shorter than Telegram's five seconds: TypingEvery is how often
// the SDK renews it while the agent works (Discord's lasts ten: every 8 s).
type TypingRenewer interface {
	TypingEvery() time.Duration
}

// FileSender sends attachments (images, documents, video).
type FileSender interface {
	SendFile(ctx context.Context, chatID string, a wire.Attachment) error
}

// VoiceSender sends voice notes.
type VoiceSender interface {
	SendVoice(ctx context.Context, chatID string, a wire.Attachment) error
}

// MaxTextLen is implemented by platforms with a message length limit; the
// SDK splits longer replies (see SplitText). The limit is counted in UTF-16
// code units, as Telegram counts; that is never less than the number of
// code points, so it is also safe for platforms that count those.
type MaxTextLen interface {
	MaxTextLen() int
}

// UserIDNormalizer is implemented by platforms whose allowed users may be
// written in several forms (WhatsApp's "+39 123 4567" for the id
// "391234567"); the runner compares Incoming.UserID with the normalised
// entries.
type UserIDNormalizer interface {
	NormalizeUserID(configured string) string
}
