package telegram

import (
	"errors"
	"net/http"
	"time"

	"github.com/agentd/agentd/plugins/bridge"
)

// ConflictStatus is the platform status while Telegram answers getUpdates
// with 409 Conflict: another process polls with the same bot token (a
// second agentd, a copy of the bot elsewhere), and each poll ends the
// other's. Retrying does not fix it; stopping the other instance does.
const ConflictStatus = "conflict: another instance polls this bot"

// conflictEventEvery bounds the operator events for a conflict: two
// pollers take turns, so the conflict comes and goes with every message.
const conflictEventEvery = time.Hour

// conflict follows the 409 state of the poll loop.
type conflict struct {
	on        bool
	lastEvent time.Time
	n         int // 409s in a row, for the backoff
}

func isConflict(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Code == http.StatusConflict
}

// failed handles a poll error if it is a 409 and returns the wait before
// the next poll; ok is false for any other error.
func (c *conflict) failed(p *Platform, host bridge.Host, err error) (wait time.Duration, ok bool) {
	if !isConflict(err) {
		return 0, false
	}
	setStatus(host, ConflictStatus)
	if !c.on {
		c.on = true
		if time.Since(c.lastEvent) >= conflictEventEvery {
			c.lastEvent = time.Now()
			host.Event("status", ConflictStatus)
			p.log.Warn("Telegram reports another instance polling this bot (409 Conflict); stop the other one", "err", err)
		} else {
			p.log.Debug("poll conflict again", "err", err)
		}
	}
	wait = p.pollBackoff(c.n, err)
	c.n++
	return wait, true
}

// polled is called after every successful poll: a conflict is over.
func (c *conflict) polled(p *Platform, host bridge.Host) {
	c.n = 0
	if !c.on {
		return
	}
	c.on = false
	setStatus(host, "connected to Telegram as @"+p.botUser.Username)
	p.log.Info("no other instance polls this bot any more")
}

// setStatus changes the platform status without an operator event, where
// the host can.
func setStatus(host bridge.Host, text string) {
	if s, ok := host.(bridge.StatusSetter); ok {
		s.SetStatus(text)
	}
}
