package bridge

import (
	"context"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Command is a chat command every bridge understands, described in the
// words a user reads (platforms register them: Telegram's setMyCommands,
// Discord's slash commands).
type Command struct {
	Name string // without the slash
	Args string // e.g. "[name]", shown in /help
	Help string // one line, no protocol terms
}

// Commands are the chat commands, in menu order. /start (Telegram's first
// message) and /help are answered by the bridge itself; the others go to
// the agent.
var Commands = []Command{
	{Name: "new", Help: "start a new conversation (the agent forgets this one)"},
	{Name: "stop", Help: "stop the answer being written and drop your waiting messages"},
	{Name: "clear", Help: "make the agent forget this conversation"},
	{Name: "reset", Help: "forget this conversation and go back to the default model"},
	{Name: "model", Args: "[name]", Help: "show which model answers you, or switch to another one"},
	{Name: "help", Help: "show these commands"},
}

// HelpText lists the commands with their slash, one per line.
func HelpText() string {
	var b strings.Builder
	b.WriteString("Commands:")
	for _, c := range Commands {
		b.WriteString("\n/" + c.Name)
		if c.Args != "" {
			b.WriteString(" " + c.Args)
		}
		b.WriteString(" — " + c.Help)
	}
	return b.String()
}

// WelcomeText is the answer to /start: who answers, how to talk to it, and
// the commands.
func WelcomeText(agentName string) string {
	who := "your personal AI agent"
	if agentName != "" {
		who = agentName + ", " + who
	}
	return "Hello! This is " + who + ". Just write your message; the answer comes here.\n\n" + HelpText()
}

// localCommand answers /start and /help without the agent; ok is false for
// any other text.
func (r *Runner) localCommand(text string) (reply string, ok bool) {
	if !strings.HasPrefix(text, "/") {
		return "", false
	}
	word, _, _ := strings.Cut(text[1:], " ")
	word, _, _ = strings.Cut(word, "@")
	switch strings.ToLower(word) {
	case "start":
		r.mu.Lock()
		name := r.agentName
		r.mu.Unlock()
		return WelcomeText(name), true
	case "help":
		return HelpText(), true
	}
	return "", false
}

// refusalEvery is how often one stranger is told that the agent is
// private: once, then again only after this long.
const refusalEvery = time.Hour

// maxStrangers bounds the refusal memory; past it, it starts over (a
// stranger is then at worst told once more).
const maxStrangers = 10_000

// strangers remembers when each user who is not allowed was last refused.
type strangers struct {
	// mu guards told.
	mu   sync.Mutex
	told map[string]time.Time
}

// due reports whether userID should be told (and logged) now, and if so
// records it.
func (s *strangers) due(userID string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.told[userID]; ok && now.Sub(t) < refusalEvery {
		return false
	}
	if s.told == nil || len(s.told) >= maxStrangers {
		s.told = map[string]time.Time{}
	}
	s.told[userID] = now
	return true
}

// refuse answers a message from a user who is not allowed: the refusal
// and one log line once per user per refusalEvery, silence in between (a
// stranger who keeps writing must not flood the chat, the platform's rate
// limit or the log).
func (r *Runner) refuse(ctx context.Context, m Incoming, text string) {
	if !r.strangers.due(m.UserID, time.Now()) {
		r.log.Debug("message from a user who is not allowed ignored (already told)", "user_id", m.UserID, "chat_id", m.ChatID)
		return
	}
	r.log.Warn("message from a user who is not allowed refused (told once per hour)", "user_id", m.UserID, "user_name", m.UserName, "chat_id", m.ChatID)
	// Through the chat's worker: the platform's rate limits hold for it too.
	r.post(m.ChatID, event{kind: evNotice, text: text})
}

// absPath matches absolute file paths (two or more components).
var absPath = regexp.MustCompile(`(?:^|[\s("'=:])(/[^\s/"'()]+)+/([^\s/"'()]+)`)

// UserText removes server-side absolute paths from text meant for a chat
// user, keeping the file name ("/srv/agent/uploads/report.pdf" becomes
// "report.pdf"): a user has no use for them and should not learn the
// server's layout.
func UserText(text string) string {
	return absPath.ReplaceAllStringFunc(text, func(m string) string {
		lead := ""
		if m != "" && m[0] != '/' {
			lead, m = m[:1], m[1:]
		}
		return lead + filepath.Base(m)
	})
}

// hostLevel is the level of the log records a bridge sends to agentd:
// info unless settings.log_level says otherwise, so debug records (one per
// gateway frame, one per streamed edit) never reach the host by default.
func hostLevel(settings map[string]string) slog.Level {
	switch strings.ToLower(strings.TrimSpace(settings["log_level"])) {
	case "debug":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}
