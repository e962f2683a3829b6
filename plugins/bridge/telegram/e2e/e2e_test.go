// Package e2e runs the Telegram bridge against agentd's real gateway: the
// auth listener on a unix socket (nonce handshake), the gateway, the
// session manager and the echo provider, with the fake Bot API in front.
// It lives apart from the telegram package so that the SDK's own tests do
// not depend on agentd internals.
package e2e_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-telegram/bot/models"

	"github.com/agentd/agentd/client"
	"github.com/agentd/agentd/devicecert"
	"github.com/agentd/agentd/internal/agent"
	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/gateway"
	"github.com/agentd/agentd/internal/session"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/plugins/bridge"
	"github.com/agentd/agentd/plugins/bridge/bridgetest"
	"github.com/agentd/agentd/plugins/bridge/telegram"
	"github.com/agentd/agentd/plugins/bridge/telegram/telegramtest"
)

const networkID = "net-e2e"

// registry is the coordinator's view the authenticator needs.
type registry struct {
	pub ed25519.PublicKey
	// mu guards active.
	mu     sync.Mutex
	active map[string]bool
}

func (r *registry) NetworkID() string                 { return networkID }
func (r *registry) CoordinatorPub() ed25519.PublicKey { return r.pub }
func (r *registry) Active(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.active[id]
}
func (r *registry) MarkSeen(string, time.Time)     {}
func (r *registry) OnRevoke(func(clientID string)) {}

// agentd is the real gateway stack on a unix socket, restartable on the
// same agent directory, socket and coordinator, like the daemon.
type agentd struct {
	t    *testing.T
	dir  string
	sock string
	id   *devicecert.Identity
	reg  *registry
	stop func()
}

func logger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// newAgentd prepares an agent directory and a bridge identity for prefix
// "tg", and starts the stack.
func newAgentd(t *testing.T) *agentd {
	dir := t.TempDir()
	sockDir, err := os.MkdirTemp("", "e2e") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	yaml := "agent:\n  name: e2e-agent\n  system_prompt: \"test\"\n  default_model: echo\nproviders:\n  - id: echo\n    kind: echo\nmodels:\n  - id: echo\n    provider: echo\n"
	if err := os.WriteFile(filepath.Join(dir, config.FileName), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	coordPub, coordKey, _ := ed25519.GenerateKey(rand.Reader)
	id, err := devicecert.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	id.Cert, err = devicecert.Sign(coordKey, devicecert.Cert{
		Handle: "tg-bridge", DevicePub: id.Public(), NetworkID: networkID,
		IssuedAt: time.Now().Add(-time.Minute), ExpiresAt: time.Now().Add(time.Hour),
		Capabilities: []string{auth.CapBridge, auth.SessionPrefixCap + "tg"},
	})
	if err != nil {
		t.Fatal(err)
	}
	a := &agentd{t: t, dir: dir, sock: filepath.Join(sockDir, "agentd.sock"), id: id,
		reg: &registry{pub: coordPub, active: map[string]bool{id.ClientID(): true}}}
	a.start()
	t.Cleanup(func() {
		if a.stop != nil {
			a.stop()
		}
	})
	return a
}

func (a *agentd) start() {
	t := a.t
	cfgPath := filepath.Join(a.dir, config.FileName)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	log := logger(t)
	w := config.NewWatcher(cfgPath, cfg, log)
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.Open(ctx, filepath.Join(a.dir, store.FileName))
	if err != nil {
		t.Fatal(err)
	}
	sm, err := session.New(session.Options{DB: st.DB(), Config: w, Agent: &agent.Agent{AllowedRoots: []string{a.dir}, Logger: log}, AgentDir: a.dir, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := sm.Start(ctx); err != nil {
		t.Fatal(err)
	}
	gw := gateway.New(gateway.Options{Config: w, Sessions: sm, AgentDir: a.dir, Version: "e2e", Log: log})
	go gw.Run(ctx)
	os.Remove(a.sock)
	inner, err := net.Listen("unix", a.sock)
	if err != nil {
		t.Fatal(err)
	}
	ln := auth.NewListener(inner, auth.ModeNonce, auth.NewAuthenticator(a.reg), log)
	srv := &http.Server{Handler: gw, ConnContext: auth.ConnContext}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		srv.Serve(ln)
	}()
	a.stop = func() {
		srv.Close()
		<-stopped
		gw.Close()
		cancel()
		// As the daemon does: the runs end (a finished turn's final frames
		// stored for redelivery, a cut one persisted) before the store
		// closes. Closing it under them lost a reply whose frames were
		// being stored (the next reply was then edited into its message).
		sm.Wait()
		st.Close()
		a.stop = nil
	}
}

// startBridge runs the Telegram platform and the runner against a and tg.
func startBridge(t *testing.T, a *agentd, tg *telegramtest.Server) *bridge.Runner {
	p := telegram.New()
	if err := p.Configure(bridge.PlatformConfig{
		Settings:     map[string]string{"token": tg.Token, "api_url": tg.URL(), "poll_timeout": "1"},
		AllowedUsers: []string{"1001"},
		UploadsDir:   filepath.Join(a.dir, "uploads"),
		Logger:       logger(t),
	}); err != nil {
		t.Fatal(err)
	}
	r := bridge.NewRunner(p, bridge.RunnerConfig{
		Dialer:       client.Unix(a.sock, a.id),
		AllowedUsers: []string{"1001"},
		Logger:       logger(t),
	})
	bridgetest.Start(t, r)
	return r
}

// echoed reports whether m is the echo provider's complete reply to text.
func echoed(m telegramtest.Msg, text string) bool {
	return strings.HasPrefix(m.Text, "echo: "+text) && strings.HasSuffix(m.Text, "real answers)")
}

func TestTelegramAgainstRealGateway(t *testing.T) {
	a := newAgentd(t)
	tg := telegramtest.New(t)
	r := startBridge(t, a, tg)

	alice := telegramtest.User(1001, "Alice")
	tg.Text(telegramtest.PrivateChat(alice), alice, "hello from telegram")
	var got []telegramtest.Msg
	tg.Wait(15*time.Second, "the echo reply", func() bool {
		got = tg.Messages(1001)
		return len(got) == 1 && echoed(got[0], "hello from telegram")
	})
	if !r.Connected() {
		t.Fatal("runner not connected")
	}

	// A photo goes through the uploads dir and is accepted by the session
	// manager as an attachment inside the agent directory.
	fid := tg.AddFile("cat.jpg", []byte("JPEGDATA"))
	tg.Push(models.Message{Chat: telegramtest.PrivateChat(alice), From: &alice, Caption: "see photo",
		Photo: []models.PhotoSize{{FileID: fid, Width: 9, Height: 9, FileSize: 8}}})
	// The streamed reply can show its whole text while its turn is still
	// being stored; a photo sent at once is then queued behind it, and the
	// chat gets agentd's "queued #1" first (1 in ~20 runs).
	tg.Wait(15*time.Second, "the reply to the photo", func() bool {
		got = tg.Messages(1001)
		if len(got) == 3 && got[1].Text == "queued #1" {
			got = []telegramtest.Msg{got[0], got[2]}
		}
		return len(got) == 2 && echoed(got[1], "see photo [user attached image")
	})
	tg.Wait(5*time.Second, "updates confirmed", func() bool { return len(tg.Unconfirmed()) == 0 })
}

func TestRealGatewayRestart(t *testing.T) {
	a := newAgentd(t)
	tg := telegramtest.New(t)
	r := startBridge(t, a, tg)
	t.Cleanup(func() {
		if t.Failed() {
			for _, m := range tg.Messages(1001) {
				t.Logf("message %d (%d edits): %q", m.ID, m.Edits, m.Text)
			}
		}
	})
	alice := telegramtest.User(1001, "Alice")
	chat := telegramtest.PrivateChat(alice)
	tg.Text(chat, alice, "before")
	tg.Wait(15*time.Second, "the first reply", func() bool {
		got := tg.Messages(1001)
		return len(got) == 1 && echoed(got[0], "before")
	})

	a.stop()
	tg.Wait(10*time.Second, "the runner to notice", func() bool { return !r.Connected() })
	id := tg.Text(chat, alice, "during")
	time.Sleep(time.Second)
	if u := tg.Unconfirmed(); len(u) != 1 || u[0] != id {
		t.Fatalf("unconfirmed while agentd is down = %v, want [%d]", u, id)
	}
	a.start()
	tg.Wait(15*time.Second, "the reply after the restart", func() bool {
		got := tg.Messages(1001)
		return len(got) == 2 && echoed(got[1], "during")
	})
	tg.Wait(5*time.Second, "updates confirmed", func() bool { return len(tg.Unconfirmed()) == 0 })
}
