package telegram

import (
	"context"

	"github.com/go-telegram/bot/models"
)

// VoiceNotYet is what a user who sends a voice note (or a round video
// note) hears until agentd understands speech: the agent would otherwise get
// an audio file it cannot listen to, and answer about a file path.
const VoiceNotYet = "Voice notes are not understood yet; please type your message."

// voiceNote answers a voice or video note from an allowed user with
// VoiceNotYet and reports true: the message is then handled (not
// delivered, nothing downloaded). A failed answer is only logged: the
// update must not be fetched again and again for it.
func (p *Platform) voiceNote(ctx context.Context, m *models.Message, chatID string) bool {
	if m.Voice == nil && m.VideoNote == nil {
		return false
	}
	if _, err := p.SendText(ctx, chatID, VoiceNotYet); err != nil {
		p.log.Warn("could not tell the user that voice notes are not understood", "chat_id", chatID, "err", err)
	}
	p.log.Info("voice note answered with a request to type", "chat_id", chatID)
	return true
}
