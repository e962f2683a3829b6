package whatsapp

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/store/sqlstore"
	"go.mau.fi/whatsmeow/types"
	waLog "go.mau.fi/whatsmeow/util/log"

	// whatsmeow's sqlstore needs a database/sql driver; modernc is pure Go.
	_ "modernc.org/sqlite"
)

// Client is the narrow part of *whatsmeow.Client the bridge uses. No fake
// of WhatsApp's Noise and binary protocol exists, so tests drive the bridge
// through this interface with real events.* values instead.
type Client interface {
	AddEventHandler(h func(evt any))
	IsLoggedIn() bool
	// GetQRChannel must be called before Connect on an unpaired device.
	GetQRChannel(ctx context.Context) (<-chan whatsmeow.QRChannelItem, error)
	Connect() error
	Disconnect()
	// PairPhone asks for a pair code after Connect; phone is digits only.
	PairPhone(ctx context.Context, phone string) (string, error)
	SendMessage(ctx context.Context, to types.JID, msg *waE2E.Message) (whatsmeow.SendResponse, error)
	Upload(ctx context.Context, data []byte, mt whatsmeow.MediaType) (whatsmeow.UploadResponse, error)
	Download(ctx context.Context, msg whatsmeow.DownloadableMessage) ([]byte, error)
	SendChatPresence(ctx context.Context, jid types.JID, state types.ChatPresence, media types.ChatPresenceMedia) error
	MarkRead(ctx context.Context, ids []types.MessageID, ts time.Time, chat, sender types.JID) error
	// OwnID is the linked account's phone JID and LID (empty before login).
	OwnID() (pn, lid types.JID)
	// PNForLID resolves a LID to the phone JID from the session store;
	// an empty JID means the mapping is unknown.
	PNForLID(ctx context.Context, lid types.JID) (types.JID, error)
}

// realClient adapts *whatsmeow.Client to Client.
type realClient struct{ c *whatsmeow.Client }

// sessionFile is the whatsmeow session store inside the bridge's DataDir.
const sessionFile = "session.db"

// openClient opens (creating it 0600) the session store in dir and returns
// a client for its first device, or a new unpaired one.
func openClient(ctx context.Context, dir string, log *slog.Logger) (*realClient, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("whatsapp session dir: %w", err)
	}
	path := filepath.Join(dir, sessionFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("whatsapp session store: %w", err)
	}
	f.Close()
	// The modernc driver registers as "sqlite" and takes pragmas as
	// _pragma=name(value); whatsmeow refuses a store without foreign keys.
	dsn := "file:" + path + "?_pragma=foreign_keys(1)&_pragma=busy_timeout(5000)"
	wl := slogLogger{log.With("module", "whatsmeow")}
	container, err := sqlstore.New(ctx, "sqlite", dsn, wl.Sub("store"))
	if err != nil {
		return nil, fmt.Errorf("whatsapp session store %s: %w", path, err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm", path + "-journal"} {
		_ = os.Chmod(p, 0o600) // the store holds the account's keys
	}
	dev, err := container.GetFirstDevice(ctx)
	if err != nil {
		return nil, fmt.Errorf("whatsapp session store: %w", err)
	}
	c := whatsmeow.NewClient(dev, wl.Sub("client"))
	c.EnableAutoReconnect = true
	return &realClient{c: c}, nil
}

func (r *realClient) AddEventHandler(h func(evt any)) { r.c.AddEventHandler(h) }
func (r *realClient) IsLoggedIn() bool                { return r.c.Store.ID != nil }
func (r *realClient) GetQRChannel(ctx context.Context) (<-chan whatsmeow.QRChannelItem, error) {
	return r.c.GetQRChannel(ctx)
}
func (r *realClient) Connect() error { return r.c.Connect() }
func (r *realClient) Disconnect()    { r.c.Disconnect() }
func (r *realClient) PairPhone(ctx context.Context, phone string) (string, error) {
	return r.c.PairPhone(ctx, phone, true, whatsmeow.PairClientChrome, "Chrome (Linux)")
}
func (r *realClient) SendMessage(ctx context.Context, to types.JID, msg *waE2E.Message) (whatsmeow.SendResponse, error) {
	return r.c.SendMessage(ctx, to, msg)
}
func (r *realClient) Upload(ctx context.Context, data []byte, mt whatsmeow.MediaType) (whatsmeow.UploadResponse, error) {
	return r.c.Upload(ctx, data, mt)
}
func (r *realClient) Download(ctx context.Context, msg whatsmeow.DownloadableMessage) ([]byte, error) {
	return r.c.Download(ctx, msg)
}
func (r *realClient) SendChatPresence(ctx context.Context, jid types.JID, state types.ChatPresence, media types.ChatPresenceMedia) error {
	return r.c.SendChatPresence(ctx, jid, state, media)
}
func (r *realClient) MarkRead(ctx context.Context, ids []types.MessageID, ts time.Time, chat, sender types.JID) error {
	return r.c.MarkRead(ctx, ids, ts, chat, sender)
}
func (r *realClient) OwnID() (pn, lid types.JID) {
	if r.c.Store.ID != nil {
		pn = *r.c.Store.ID
	}
	return pn, r.c.Store.GetLID()
}
func (r *realClient) PNForLID(ctx context.Context, lid types.JID) (types.JID, error) {
	return r.c.Store.LIDs.GetPNForLID(ctx, lid)
}

// slogLogger is whatsmeow's logger interface over slog (whatsmeow ships
// only stdout and zerolog adapters).
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Warnf(msg string, args ...any)  { s.l.Warn(fmt.Sprintf(msg, args...)) }
func (s slogLogger) Errorf(msg string, args ...any) { s.l.Error(fmt.Sprintf(msg, args...)) }
func (s slogLogger) Infof(msg string, args ...any)  { s.l.Info(fmt.Sprintf(msg, args...)) }
func (s slogLogger) Debugf(msg string, args ...any) { s.l.Debug(fmt.Sprintf(msg, args...)) }
func (s slogLogger) Sub(module string) waLog.Logger {
	return slogLogger{s.l.With("sub", module)}
}
