// Package whatsapptest is a test double of the whatsmeow client behind
// whatsapp.Client. No fake of WhatsApp's Noise and binary protocol exists,
// so tests feed the bridge the real events.* values (messages with real
// waE2E protobufs, LoggedOut, StreamReplaced, QR channel items) that
// whatsmeow would emit, and read back what the bridge sent.
package whatsapptest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
)

// Sent is one message the bridge sent.
type Sent struct {
	To  types.JID
	ID  string
	Msg *waE2E.Message
}

// Presence is one chat presence the bridge sent.
type Presence struct {
	To    types.JID
	State types.ChatPresence
}

// Read is one mark-read call.
type Read struct {
	IDs  []types.MessageID
	Chat types.JID
}

// Client is the fake. The zero value is not usable: call New.
type Client struct {
	// mu guards everything below.
	mu        sync.Mutex
	handlers  []func(any)
	pn, lid   types.JID
	loggedIn  bool
	connected bool
	connects  int
	qr        chan whatsmeow.QRChannelItem
	lids      map[types.JID]types.JID
	media     map[string][]byte // by direct path
	sent      []Sent
	presences []Presence
	reads     []Read
	uploads   [][]byte
	pairCode  string
	paired    string // the phone PairPhone was called with
	sendErr   []error
	changed   chan struct{} // closed and replaced on every change
	onSend    func(Sent)
	onLink    func()
	delay     time.Duration // before each send (SlowSends)
	onSending func()        // when a send starts
	nextID    int
}

// New returns a fake linked as phone pn (and LID lid) when loggedIn.
func New(pn, lid string, loggedIn bool) *Client {
	return &Client{
		pn: types.NewJID(pn, types.DefaultUserServer), lid: types.NewJID(lid, types.HiddenUserServer),
		loggedIn: loggedIn, lids: map[types.JID]types.JID{}, media: map[string][]byte{},
		changed: make(chan struct{}), pairCode: "ABCD-1234",
	}
}

func (c *Client) bump() { close(c.changed); c.changed = make(chan struct{}) }

// AddEventHandler implements whatsapp.Client.
func (c *Client) AddEventHandler(h func(evt any)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.handlers = append(c.handlers, h)
	c.bump()
}

// Emit hands evt to the handlers, as whatsmeow's event loop does: one at
// a time, returning when they have.
func (c *Client) Emit(evt any) {
	c.mu.Lock()
	hs := append([]func(any){}, c.handlers...)
	c.mu.Unlock()
	for _, h := range hs {
		h(evt)
	}
}

// IsLoggedIn implements whatsapp.Client.
func (c *Client) IsLoggedIn() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.loggedIn
}

// GetQRChannel implements whatsapp.Client; QR feeds the channel.
func (c *Client) GetQRChannel(context.Context) (<-chan whatsmeow.QRChannelItem, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.loggedIn {
		return nil, whatsmeow.ErrQRStoreContainsID
	}
	if c.connected {
		return nil, whatsmeow.ErrQRAlreadyConnected
	}
	c.qr = make(chan whatsmeow.QRChannelItem, 16)
	c.bump()
	return c.qr, nil
}

// QR sends a QR channel item (whatsmeow.QRChannelTimeout, a code, …);
// false when no channel was asked for.
func (c *Client) QR(it whatsmeow.QRChannelItem) bool {
	c.mu.Lock()
	q := c.qr
	c.mu.Unlock()
	if q == nil {
		return false
	}
	q <- it
	return true
}

// Link completes a login as whatsmeow does: success on the QR channel
// (when there is one), PairSuccess, then Connected.
func (c *Client) Link() {
	c.mu.Lock()
	c.loggedIn = true
	q, hook := c.qr, c.onLink
	c.mu.Unlock()
	if hook != nil {
		hook()
	}
	if q != nil {
		q <- whatsmeow.QRChannelSuccess
	}
	c.Emit(&events.PairSuccess{ID: c.pn, LID: c.lid})
	c.Emit(&events.Connected{})
}

// Connect implements whatsapp.Client: a linked device reports Connected.
func (c *Client) Connect() error {
	c.mu.Lock()
	c.connected = true
	c.connects++
	in := c.loggedIn
	c.bump()
	c.mu.Unlock()
	if in {
		go c.Emit(&events.Connected{})
	}
	return nil
}

// Connects is how often Connect was called.
func (c *Client) Connects() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connects
}

// Disconnect implements whatsapp.Client.
func (c *Client) Disconnect() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.connected = false
	c.bump()
}

// Connected says whether the client is connected.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connected
}

// PairPhone implements whatsapp.Client.
func (c *Client) PairPhone(_ context.Context, phone string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.connected {
		return "", errors.New("pair phone: websocket not connected")
	}
	c.paired = phone
	c.bump()
	return c.pairCode, nil
}

// PairedPhone is the phone PairPhone was called with.
func (c *Client) PairedPhone() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.paired
}

// SlowSends makes every send take d before WhatsApp "accepts" it.
func (c *Client) SlowSends(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.delay = d
}

// FailSends makes the next sends fail with errs, in order.
func (c *Client) FailSends(errs ...error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sendErr = append(c.sendErr, errs...)
}

// SendMessage implements whatsapp.Client.
func (c *Client) SendMessage(ctx context.Context, to types.JID, msg *waE2E.Message) (whatsmeow.SendResponse, error) {
	c.mu.Lock()
	delay, hook := c.delay, c.onSending
	c.mu.Unlock()
	if hook != nil {
		hook()
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return whatsmeow.SendResponse{}, ctx.Err()
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.sendErr) > 0 {
		err := c.sendErr[0]
		c.sendErr = c.sendErr[1:]
		return whatsmeow.SendResponse{}, err
	}
	c.nextID++
	id := fmt.Sprintf("3EB0%08d", c.nextID)
	c.sent = append(c.sent, Sent{To: to, ID: id, Msg: msg})
	c.bump()
	if c.onSend != nil {
		c.onSend(Sent{To: to, ID: id, Msg: msg})
	}
	return whatsmeow.SendResponse{ID: id, Timestamp: time.Now()}, nil
}

// Upload implements whatsapp.Client.
func (c *Client) Upload(_ context.Context, data []byte, _ whatsmeow.MediaType) (whatsmeow.UploadResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.uploads = append(c.uploads, data)
	path := fmt.Sprintf("/v/t62/up-%d", len(c.uploads))
	c.media[path] = data
	return whatsmeow.UploadResponse{URL: "https://mmg.whatsapp.net" + path, DirectPath: path,
		MediaKey: []byte("key"), FileLength: uint64(len(data))}, nil
}

// Uploads are the uploaded files' contents.
func (c *Client) Uploads() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte{}, c.uploads...)
}

// AddMedia makes data downloadable at directPath.
func (c *Client) AddMedia(directPath string, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.media[directPath] = data
}

// Download implements whatsapp.Client.
func (c *Client) Download(_ context.Context, msg whatsmeow.DownloadableMessage) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.media[msg.GetDirectPath()]
	if !ok {
		return nil, whatsmeow.ErrMediaDownloadFailedWith404
	}
	return d, nil
}

// SendChatPresence implements whatsapp.Client.
func (c *Client) SendChatPresence(_ context.Context, jid types.JID, st types.ChatPresence, _ types.ChatPresenceMedia) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.presences = append(c.presences, Presence{To: jid, State: st})
	c.bump()
	return nil
}

// MarkRead implements whatsapp.Client.
func (c *Client) MarkRead(_ context.Context, ids []types.MessageID, _ time.Time, chat, _ types.JID) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads = append(c.reads, Read{IDs: ids, Chat: chat})
	c.bump()
	return nil
}

// OwnID implements whatsapp.Client.
func (c *Client) OwnID() (pn, lid types.JID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.loggedIn {
		return types.JID{}, types.JID{}
	}
	return c.pn, c.lid
}

// MapLID records a LID → phone mapping, as the session store learns them.
func (c *Client) MapLID(lid, pn string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lids[types.NewJID(lid, types.HiddenUserServer)] = types.NewJID(pn, types.DefaultUserServer)
}

// PNForLID implements whatsapp.Client.
func (c *Client) PNForLID(_ context.Context, lid types.JID) (types.JID, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lids[lid], nil
}

// Sent is everything sent so far.
func (c *Client) Sent() []Sent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Sent{}, c.sent...)
}

// Presences is every chat presence sent so far.
func (c *Client) Presences() []Presence {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Presence{}, c.presences...)
}

// Reads is every mark-read call so far.
func (c *Client) Reads() []Read {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Read{}, c.reads...)
}

// Wait blocks until cond holds (checked on every change) or ctx ends.
func (c *Client) Wait(ctx context.Context, cond func(*Client) bool) error {
	for {
		c.mu.Lock()
		ch := c.changed
		c.mu.Unlock()
		if cond(c) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Handlers is how many event handlers are registered.
func (c *Client) Handlers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.handlers)
}
