package discord

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/bwmarrin/discordgo"

	"github.com/agentd/agentd/plugins/bridge"
	"github.com/agentd/agentd/wire"
)

// lookupTimeout bounds the REST look-ups made while handling an event
// (a thread's parent, the bot's roles); they are cached.
const lookupTimeout = 5 * time.Second

// contentIntentNote is the operator event for guild messages without
// content: the privileged intent is off in the Developer Portal.
const contentIntentNote = "guild messages arrive without their text: enable the Message Content intent in the Developer Portal (Bot → Privileged Gateway Intents); until then the bot answers in DMs and when mentioned"

// onMessage turns a MESSAGE_CREATE the bot should answer into an Incoming.
// It runs on discordgo's event goroutine, so it only looks things up and
// queues.
func (p *Platform) onMessage(s *discordgo.Session, q *queue, m *discordgo.Message) {
	p.mu.Lock()
	botID := p.botID
	p.mu.Unlock()
	p.log.Debug("message", "channel_id", m.ChannelID, "guild_id", m.GuildID, "id", m.ID)
	if m.Author == nil || m.Author.ID == botID || m.Author.Bot {
		return // own messages and other bots
	}
	text := m.Content
	if m.GuildID != "" {
		var ok bool
		if text, ok = p.guildText(s, m, botID); !ok {
			return
		}
	}
	in := bridge.Incoming{ChatID: m.ChannelID, MessageID: m.ID, UserID: m.Author.ID, UserName: m.Author.Username, Text: text, Group: m.GuildID != ""}
	if len(m.Attachments) > 0 {
		atts, err := p.download(m.Attachments)
		in.Attachments = atts
		if err != nil {
			p.log.Warn("attachment download failed", "chat_id", m.ChannelID, "err", err)
			if h := p.hostOf(); h != nil {
				h.Notify(m.ChannelID, "Your file could not be received: "+err.Error())
			}
		}
	}
	if strings.TrimSpace(in.Text) == "" && len(in.Attachments) == 0 {
		return
	}
	q.push(in)
}

func (p *Platform) hostOf() bridge.Host {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.host
}

// guildText applies the guild rules: allowed guilds, dm_only, and answer
// only when mentioned (the bot, its role, or a reply to it) or in a listen
// channel (a thread counts as its parent). It returns the text without the
// mention.
func (p *Platform) guildText(s *discordgo.Session, m *discordgo.Message, botID string) (string, bool) {
	if p.dmOnly || (len(p.allowedGuilds) > 0 && !p.allowedGuilds[m.GuildID]) {
		return "", false
	}
	mentioned := slices.ContainsFunc(m.Mentions, func(u *discordgo.User) bool { return u.ID == botID })
	roles := []string{}
	if len(m.MentionRoles) > 0 {
		roles = p.roles(s, m.GuildID, botID)
		for _, r := range m.MentionRoles {
			mentioned = mentioned || slices.Contains(roles, r)
		}
	}
	if ref := m.ReferencedMessage; ref != nil && ref.Author != nil && ref.Author.ID == botID {
		mentioned = true
	}
	if !mentioned && !p.listening(s, m.ChannelID) {
		return "", false
	}
	if m.Content == "" && len(m.Attachments) == 0 {
		p.mu.Lock()
		warn := !p.contentWarn
		p.contentWarn = true
		p.mu.Unlock()
		if h := p.hostOf(); warn && h != nil {
			h.Event("alert", contentIntentNote)
		}
		return "", false
	}
	text := strings.NewReplacer("<@"+botID+">", "", "<@!"+botID+">", "").Replace(m.Content)
	for _, r := range roles {
		text = strings.ReplaceAll(text, "<@&"+r+">", "")
	}
	return strings.TrimSpace(text), true
}

// listening reports whether channelID (or, for a thread, its parent) is
// one of listen_channels.
func (p *Platform) listening(s *discordgo.Session, channelID string) bool {
	if len(p.listenChannels) == 0 {
		return false
	}
	if p.listenChannels[channelID] {
		return true
	}
	ch, err := s.State.Channel(channelID)
	if err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
		defer cancel()
		if ch, err = s.Channel(channelID, discordgo.WithContext(ctx)); err != nil {
			p.log.Warn("channel look-up failed", "channel_id", channelID, "err", err)
			return false
		}
		_ = s.State.ChannelAdd(ch)
	}
	return ch.IsThread() && p.listenChannels[ch.ParentID]
}

// roles returns the bot's roles in a guild (cached).
func (p *Platform) roles(s *discordgo.Session, guildID, botID string) []string {
	p.mu.Lock()
	r, ok := p.botRoles[guildID]
	p.mu.Unlock()
	if ok {
		return r
	}
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	mem, err := s.GuildMember(guildID, botID, discordgo.WithContext(ctx))
	if err != nil {
		p.log.Warn("bot role look-up failed", "guild_id", guildID, "err", err)
		return nil
	}
	p.mu.Lock()
	p.botRoles[guildID] = mem.Roles
	p.mu.Unlock()
	return mem.Roles
}

// onInteraction answers a slash command within Discord's 3 s by deferring
// it; the command then goes to the agent like a typed one, and the first
// message the SDK sends to that channel becomes the deferred response.
func (p *Platform) onInteraction(s *discordgo.Session, q *queue, i *discordgo.Interaction) {
	if i.Type != discordgo.InteractionApplicationCommand {
		return
	}
	u := i.User
	if i.Member != nil && i.Member.User != nil {
		u = i.Member.User
	}
	if u == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	err := s.InteractionRespond(i, &discordgo.InteractionResponse{Type: discordgo.InteractionResponseDeferredChannelMessageWithSource}, discordgo.WithContext(ctx))
	if err != nil {
		p.log.Warn("deferring a slash command failed", "err", err)
		return
	}
	d := i.ApplicationCommandData()
	text := "/" + d.Name
	for _, o := range d.Options {
		if o.Type == discordgo.ApplicationCommandOptionString {
			text += " " + o.StringValue()
		}
	}
	p.mu.Lock()
	p.pending[i.ChannelID] = append(p.pending[i.ChannelID], i)
	p.mu.Unlock()
	time.AfterFunc(p.slashDone, func() { p.settle(i) })
	q.push(bridge.Incoming{ChatID: i.ChannelID, MessageID: "i" + i.ID, UserID: u.ID, UserName: u.Username, Text: text})
}

// settle ends a deferred slash command nothing answered within
// slash_done_after (agentd slow or unreachable, or a command carried out
// without a word): Discord would show "thinking…" for 15 minutes and then
// "the application did not respond". An answer that comes later is posted
// as a message of its own, never lost: editing this response instead
// could put a later turn's reply on an old command.
func (p *Platform) settle(i *discordgo.Interaction) {
	s, err := p.session()
	if !p.dropInteraction(i) || err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	done := "Done."
	if _, err := s.InteractionResponseEdit(i, &discordgo.WebhookEdit{Content: &done, AllowedMentions: noMentions()}, discordgo.WithContext(ctx)); err != nil {
		p.log.Warn("settling an unanswered slash command failed", "err", err)
	}
}

// download fetches the attachments into uploads/discord, each capped at
// max_download_mb: a larger one (as Discord declares it, or as it turns
// out while downloading) is refused and leaves nothing behind.
func (p *Platform) download(atts []*discordgo.MessageAttachment) ([]wire.Attachment, error) {
	var out []wire.Attachment
	for _, a := range atts {
		if int64(a.Size) > p.maxDownload {
			return out, fmt.Errorf("%s is larger than the bridge's %d MiB limit", a.Filename, p.maxDownload>>20)
		}
		path, err := p.fetch(a.URL, a.Filename)
		if err != nil {
			return out, err
		}
		out = append(out, wire.Attachment{Kind: kindOf(a.ContentType), Path: path, Filename: a.Filename})
	}
	return out, nil
}

func kindOf(contentType string) string {
	switch {
	case strings.HasPrefix(contentType, "image/"):
		return "image"
	case strings.HasPrefix(contentType, "video/"):
		return "video"
	case strings.HasPrefix(contentType, "audio/ogg"):
		return "voice"
	}
	return "file"
}

func (p *Platform) fetch(url, name string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", fmt.Errorf("download %s: %w", name, err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("download %s: %w", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("download %s: HTTP %d", name, resp.StatusCode)
	}
	dst, err := bridge.SaveUpload(p.cfg.UploadsDir, "discord", name, resp.Body, p.maxDownload)
	if err != nil {
		return "", fmt.Errorf("%s could not be downloaded: %w", name, err)
	}
	return dst, nil
}
