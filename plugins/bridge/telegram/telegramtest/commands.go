package telegramtest

import (
	"encoding/json"
	"regexp"
	"slices"

	"github.com/go-telegram/bot/models"
)

// commandRe is what Telegram accepts as a command name.
var commandRe = regexp.MustCompile(`^[a-z0-9_]{1,32}$`)

// setMyCommands replaces the bot's command menu, validated as the Bot API
// does: at most 100 commands, names of 1-32 lowercase letters, digits and
// underscores, descriptions of 1-256 characters.
func (s *Server) setMyCommands(p map[string]string) (any, *apiError) {
	var cmds []models.BotCommand
	if err := json.Unmarshal([]byte(p["commands"]), &cmds); err != nil {
		return nil, badRequest("can't parse commands JSON object")
	}
	if len(cmds) > 100 {
		return nil, badRequest("too much commands specified")
	}
	for _, c := range cmds {
		if !commandRe.MatchString(c.Command) {
			return nil, badRequest("BOT_COMMAND_INVALID")
		}
		if n := len([]rune(c.Description)); n < 1 || n > 256 {
			return nil, badRequest("BOT_COMMAND_DESCRIPTION_INVALID")
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.commands = cmds
	s.bump()
	return true, nil
}

// Commands returns the bot's command menu as last set with setMyCommands.
func (s *Server) Commands() []models.BotCommand {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.commands)
}
