package whatsapp

import (
	"fmt"

	"go.mau.fi/whatsmeow/types/events"

	"github.com/agentd/agentd/plugins/bridge"
)

// handle is whatsmeow's event handler. whatsmeow calls it from its event
// loop, one event at a time and in order, so messages are delivered in
// order and a slow gateway holds the rest back.
func (p *Platform) handle(evt any) {
	switch e := evt.(type) {
	case *events.Message:
		p.message(p.ctx, e)
	case *events.Connected, *events.KeepAliveRestored:
		p.connected()
	case *events.PairSuccess:
		p.host.Event("status", "linked as +"+e.ID.User)
	case *events.Disconnected:
		p.setState("disconnected: reconnecting")
	case *events.KeepAliveTimeout:
		p.setState(fmt.Sprintf("degraded: keepalive timeout (%d in a row)", e.ErrorCount))
	case *events.LoggedOut:
		p.loggedOut(e)
	case *events.StreamReplaced:
		p.report(bridge.PlatformFailed, StreamReplaced+": this bridge stopped and will not fight it; stop the other one, then `agentd bridge restart "+p.agentDir()+" whatsapp`")
		p.halt()
	case *events.TemporaryBan:
		p.report(bridge.PlatformFailed, "banned: WhatsApp temporarily banned this account ("+e.Code.String()+"); the ban expires in "+e.Expire.String())
		p.halt()
	case *events.ClientOutdated:
		p.report(bridge.PlatformFailed, "client outdated: WhatsApp refuses this client as outdated; update agentd")
		p.halt()
	case *events.ConnectFailure:
		p.setState("connect failure: " + e.Reason.String())
		p.host.Event("alert", "WhatsApp refused the connection: "+e.Reason.String()+" "+e.Message)
	}
}

// connected reports the link, once per change.
func (p *Platform) connected() {
	pn, _ := p.ownJIDs()
	s := "connected as +" + pn.User
	p.mu.Lock()
	was := p.state
	p.mu.Unlock()
	if was == s {
		return
	}
	// Every change to connected is an operator event (the first
	// connect, a recovery) and clears a needs_login state.
	p.report(bridge.PlatformRunning, s)
}

// loggedOut: the phone unlinked the device (or WhatsApp did, 401/403/406).
// whatsmeow has deleted the session; reconnecting cannot help.
func (p *Platform) loggedOut(e *events.LoggedOut) {
	reason := "unlinked from the phone"
	if e.OnConnect {
		reason = e.Reason.String()
	}
	p.report(bridge.PlatformNeedsLogin, "WhatsApp was logged out ("+reason+"); run `agentd bridge login "+p.agentDir()+" whatsapp`")
	p.halt()
}
