package whatsapptest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
)

// Command is one step a test asks of a driven fake (Drive): a file
// <dir>/in/<name>.json holding one Command.
type Command struct {
	Op      string `json:"op"` // dm, group, event, qr, qr_timeout, link
	ID      string `json:"id,omitempty"`
	From    string `json:"from,omitempty"`     // phone number
	Group   string `json:"group,omitempty"`    // group id (op group)
	Mention string `json:"mention,omitempty"`  // JID string mentioned (op group)
	Text    string `json:"text,omitempty"`     // message text; QR code (op qr)
	AgeSec  int    `json:"age_s,omitempty"`    // message age
	Event   string `json:"event,omitempty"`    // op event: logged_out, stream_replaced, disconnected, connected
	DelayMS int    `json:"delay_ms,omitempty"` // op slow_sends
}

// SentLine is one line of <dir>/sent.jsonl, written for every message the
// bridge sends.
type SentLine struct {
	To    string    `json:"to"`
	ID    string    `json:"id"`
	Text  string    `json:"text,omitempty"`
	Voice bool      `json:"voice,omitempty"`
	File  bool      `json:"file,omitempty"`
	At    time.Time `json:"at"`
}

// EmittedLine is one line of <dir>/emitted.jsonl: when a message event
// was handed to the bridge (for latency benchmarks).
type EmittedLine struct {
	ID string    `json:"id"`
	At time.Time `json:"at"`
}

// Driven is a fake whose state lives in dir, for the test-only build of
// bridge-whatsapp that runs under agentd's real supervisor: the test
// writes Commands to dir/in, reads dir/sent.jsonl; "linked" survives a
// restart as the file dir/linked.
func Driven(dir, pn, lid string) (*Client, error) {
	if err := os.MkdirAll(filepath.Join(dir, "in"), 0o700); err != nil {
		return nil, fmt.Errorf("fake whatsapp dir: %w", err)
	}
	_, err := os.Stat(filepath.Join(dir, "linked"))
	c := New(pn, lid, err == nil)
	c.onLink = func() { _ = os.WriteFile(filepath.Join(dir, "linked"), nil, 0o600) }
	c.onSending = func() { appendLine(filepath.Join(dir, "sending.log"), []byte("send")) }
	c.onSend = func(s Sent) {
		l := SentLine{To: s.To.String(), ID: s.ID, Text: s.Msg.GetConversation(),
			Voice: s.Msg.GetAudioMessage().GetPTT(), File: s.Msg.GetDocumentMessage() != nil || s.Msg.GetImageMessage() != nil,
			At: time.Now()}
		b, _ := json.Marshal(l)
		appendLine(filepath.Join(dir, "sent.jsonl"), b)
	}
	return c, nil
}

func appendLine(path string, b []byte) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err == nil {
		_, _ = f.Write(append(b, '\n'))
		_ = f.Close()
	}
}

// Drive runs the commands written to dir/in, in name order, until ctx ends;
// each file is removed once run.
func Drive(ctx context.Context, c *Client, dir string) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		names, _ := filepath.Glob(filepath.Join(dir, "in", "*.json"))
		slices.Sort(names)
		for _, n := range names {
			var cmd Command
			b, err := os.ReadFile(n)
			if err == nil {
				err = json.Unmarshal(b, &cmd)
			}
			_ = os.Remove(n)
			if err == nil {
				err = c.run(dir, cmd)
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "fake whatsapp: %s: %v\n", filepath.Base(n), err)
			}
		}
	}
}

func (c *Client) run(dir string, cmd Command) error {
	ts := time.Now().Add(-time.Duration(cmd.AgeSec) * time.Second)
	switch cmd.Op {
	case "dm":
		b, _ := json.Marshal(EmittedLine{ID: cmd.ID, At: time.Now()})
		appendLine(filepath.Join(dir, "emitted.jsonl"), b)
		c.Emit(DM(cmd.ID, cmd.From, cmd.Text, ts))
	case "group":
		from := types.NewJID(cmd.From, types.DefaultUserServer)
		var mentions []string
		if cmd.Mention != "" {
			mentions = append(mentions, cmd.Mention)
		}
		c.Emit(GroupText(cmd.ID, cmd.Group, from, cmd.Text, ts, "", mentions...))
	case "qr":
		if !c.QR(whatsmeow.QRChannelItem{Event: "code", Code: cmd.Text, Timeout: 20 * time.Second}) {
			return errors.New("no QR channel")
		}
	case "qr_timeout":
		if !c.QR(whatsmeow.QRChannelTimeout) {
			return errors.New("no QR channel")
		}
	case "slow_sends":
		c.SlowSends(time.Duration(cmd.DelayMS) * time.Millisecond)
	case "link":
		c.Link()
	case "event":
		evt, ok := map[string]any{
			"logged_out":      &events.LoggedOut{OnConnect: true, Reason: events.ConnectFailureLoggedOut},
			"stream_replaced": &events.StreamReplaced{}, "disconnected": &events.Disconnected{},
			"connected": &events.Connected{},
		}[cmd.Event]
		if !ok {
			return fmt.Errorf("unknown event %q", cmd.Event)
		}
		if cmd.Event == "logged_out" {
			c.mu.Lock()
			c.loggedIn = false // whatsmeow deletes the session
			c.mu.Unlock()
			_ = os.Remove(filepath.Join(dir, "linked")) // and it stays deleted across a restart
		}
		c.Emit(evt)
	default:
		return fmt.Errorf("unknown op %q", cmd.Op)
	}
	return nil
}
