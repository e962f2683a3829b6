package integration

// Shutdown loses nothing and is not held up by clients (issue 21 items 1,
// 2, 4 and 6): the order is stop starting turns, persist what was
// accepted, close the connections, then the bridges.

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-telegram/bot/models"
	"github.com/gorilla/websocket"

	"github.com/agentd/agentd/client"
	"github.com/agentd/agentd/devicecert"
	"github.com/agentd/agentd/internal/provider/providertest"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/plugins/bridge/telegram/telegramtest"
	"github.com/agentd/agentd/wire"
)

// queuedTurns lists the text of the turns persisted in dir's database
// (agentd must have exited).
func queuedTurns(t *testing.T, dir string) []string {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(dir, store.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rows, err := st.DB().QueryContext(ctx, `SELECT text FROM turns ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// swapFake points the agent's fake provider at another fake server.
func swapFake(t *testing.T, dir string, from, to *providertest.Server) {
	t.Helper()
	p := filepath.Join(dir, "openagent.yaml")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), from.BaseURL(), to.BaseURL(), 1)
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestTurnCutByShutdownRunsAfterRestart: a turn SIGTERM cuts right after
// it started (within the 2 ms before a started turn is persisted, or
// before it started at all) is persisted and runs once after the restart.
func TestTurnCutByShutdownRunsAfterRestart(t *testing.T) {
	for round := range 3 {
		hang := providertest.NewOpenAI(t, providertest.Response{Hang: true})
		dir := newAgent(t, false)
		useFakeOpenAI(t, dir, hang)
		d := startServe(t, dir)
		c := ownerWS(t, dir)
		text := fmt.Sprint("cut by shutdown ", round)
		if err := c.Send(wire.TextFinal{Text: text, SessionID: "s"}); err != nil {
			t.Fatal(err)
		}
		if _, err := d.stop(); err != nil {
			t.Fatal(err)
		}
		if got := queuedTurns(t, dir); len(got) != 1 || got[0] != text {
			t.Fatalf("round %d: persisted turns after SIGTERM = %q, want [%q]", round, got, text)
		}

		reply := providertest.NewOpenAI(t, providertest.Response{Text: []string{"after ", "restart"}})
		swapFake(t, dir, hang, reply)
		startServe(t, dir)
		c2 := ownerWS(t, dir)
		got := recvUntil(t, c2, 30*time.Second, func(m wire.Message) bool {
			r, ok := m.(wire.Response)
			return ok && r.SessionID == "s"
		})
		if r := got[len(got)-1].(wire.Response); r.Text != "after restart" {
			t.Fatalf("round %d: reply after the restart %+v", round, r)
		}
		if reqs := reply.Requests(); len(reqs) != 1 {
			t.Fatalf("round %d: %d model calls after the restart, want 1", round, len(reqs))
		} else if msgs := reqs[0].OpenAI(t).Messages; msgs[len(msgs)-1].Text() != text {
			t.Fatalf("round %d: the turn run after the restart is %q, want %q", round, msgs[len(msgs)-1].Text(), text)
		}
	}
}

// TestFrameWrittenDuringShutdownIsKept: a client writes a message after
// agentd began to shut down (its close frame is on the way, unread). The
// write succeeded, so the message must not vanish: it is persisted and
// runs once after the restart.
func TestFrameWrittenDuringShutdownIsKept(t *testing.T) {
	dir := newAgent(t, false)
	d := startServe(t, dir)
	ws := rawWS(t, dir)
	if _, _, err := ws.ReadMessage(); err != nil { // auth_ok
		t.Fatal(err)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(200 * time.Millisecond) // shutdown under way; nothing read from here
	const text = "written during shutdown"
	b, _ := wire.Encode(wire.TextFinal{Text: text, SessionID: "late"})
	if err := ws.WriteMessage(websocket.TextMessage, b); err != nil {
		t.Fatalf("write during shutdown: %v", err)
	}
	for { // read up to the close frame; gorilla answers it
		if _, _, err := ws.ReadMessage(); err != nil {
			break
		}
	}
	if _, err := d.stop(); err != nil {
		t.Fatal(err)
	}
	if got := queuedTurns(t, dir); len(got) != 1 || got[0] != text {
		t.Fatalf("persisted turns after the shutdown = %q, want [%q]", got, text)
	}
	startServe(t, dir)
	c := ownerWS(t, dir)
	got := recvUntil(t, c, 30*time.Second, func(m wire.Message) bool {
		r, ok := m.(wire.Response)
		return ok && r.SessionID == "late"
	})
	if r := got[len(got)-1].(wire.Response); !strings.HasPrefix(r.Text, "echo: "+text) {
		t.Fatalf("reply after the restart %+v", r)
	}
	if got := queuedTurns(t, dir); len(got) != 0 {
		t.Fatalf("turns still queued after they ran: %q", got)
	}
}

// rawWS is a WebSocket of the owner on dir's socket that the test reads
// (or does not read) itself.
func rawWS(t *testing.T, dir string) *websocket.Conn {
	t.Helper()
	id, err := devicecert.LoadIdentity(filepath.Join(dir, "keys", "owner.identity"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := client.Unix(filepath.Join(dir, "agentd.sock"), id).DialAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ws, _, err := websocket.NewClient(nc, &url.URL{Scheme: "ws", Host: "agentd", Path: "/ws"}, nil, 1024, 1024)
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}

// TestBridgeMessagesDuringShutdownNotLost: messages keep arriving in
// Telegram while agentd is stopped with SIGTERM and started again. Every
// one of them is answered, and each ran exactly once: a message the bridge
// handed over during the shutdown was persisted (or refused in a way that
// keeps it in Telegram), never dropped.
func TestBridgeMessagesDuringShutdownNotLost(t *testing.T) {
	e := newBridgeEnvAllowing(t, "*", "")
	users := make([]telegramMember, 6)
	for i := range users {
		u := telegramtest.User(int64(2001+i), fmt.Sprint("user", i))
		users[i] = telegramMember{u, telegramtest.PrivateChat(u)}
	}
	// A burst of messages; SIGTERM as soon as the bridge has fetched the
	// first of them, so it hands them over while agentd shuts down.
	const total = 40
	sent := map[int64][]string{} // chat → texts
	var first int64
	for i := range total {
		m := users[i%len(users)]
		text := fmt.Sprint("during shutdown ", i)
		id := e.tg.Text(m.chat, m.user, text)
		if i == 0 {
			first = id
		}
		sent[m.chat.ID] = append(sent[m.chat.ID], text)
	}
	e.tg.Wait(10*time.Second, "the bridge to fetch the burst", func() bool { return e.tg.Fetched(first) >= 1 })
	if _, err := e.d.stop(); err != nil {
		t.Fatal(err)
	}
	e.d = startServe(t, e.dir)
	e.waitBridge("telegram", 20*time.Second, "running and connected again", func(b bridgeState) bool {
		return b.State == "running" && b.GatewayConnected
	})
	e.tg.Wait(60*time.Second, "every message answered and every update confirmed", func() bool {
		if len(e.tg.Unconfirmed()) != 0 {
			return false
		}
		for chat, texts := range sent {
			for _, text := range texts {
				if !answered(e.tg.Messages(chat), text) {
					return false
				}
			}
		}
		return true
	})
	// Each turn ran once: a user message and the echo per message sent.
	var out struct {
		Sessions []struct {
			ID       string `json:"id"`
			Messages int    `json:"messages"`
		} `json:"sessions"`
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.owner.GetJSON(ctx, "/api/sessions", &out); err != nil {
		t.Fatal(err)
	}
	stored := map[string]int{}
	for _, s := range out.Sessions {
		stored[s.ID] = s.Messages
	}
	for chat, texts := range sent {
		if sid := fmt.Sprint("tg:", chat); stored[sid] != 2*len(texts) {
			t.Errorf("session %s holds %d messages, want %d (%d turns, each run once)", sid, stored[sid], 2*len(texts), len(texts))
		}
	}
}

type telegramMember struct {
	user models.User
	chat models.Chat
}

// answered reports whether the bot's messages include the echo of text.
func answered(msgs []telegramtest.Msg, text string) bool {
	for _, m := range msgs {
		if isEchoOf(m, text) {
			return true
		}
	}
	return false
}

// TestShutdownNotHeldByStuckClient: a WebSocket client that stopped
// reading (its socket full of a reply) does not hold agentd's shutdown: it
// is cut, and agentd exits in about 2 s. (The bound asserted is a generous
// liveness check; it took ~20 s before.)
func TestShutdownNotHeldByStuckClient(t *testing.T) {
	big := make([]string, 400)
	for i := range big {
		big[i] = strings.Repeat("y", 64<<10)
	}
	fake := providertest.NewOpenAI(t, providertest.Response{Text: big})
	dir := newAgent(t, false)
	useFakeOpenAI(t, dir, fake)
	d := startServe(t, dir)
	ws := rawWS(t, dir)
	b, _ := wire.Encode(wire.TextFinal{Text: "a very long answer please", SessionID: "stuck"})
	if err := ws.WriteMessage(websocket.TextMessage, b); err != nil {
		t.Fatal(err)
	}
	// From now on nothing is read: the reply fills the socket.
	time.Sleep(time.Second)
	took, err := d.stop()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("SIGTERM → exit with a stuck client: %v", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Fatalf("agentd took %v to stop with a client that stopped reading, want about 2 s", took)
	}
}

// TestBridgeRestartDuringShutdown: a restart request that is still
// stopping the old process when agentd gets SIGTERM does not launch the
// bridge again: no plugin is started after the supervisor closed, and none
// outlives agentd.
func TestBridgeRestartDuringShutdown(t *testing.T) {
	slow := testPluginBinary(t, "slowstop", "")
	e := newBridgeEnv(t, testPluginYAML("slowstop", slow, "hang_stop"))
	e.waitBridge("slowstop", 20*time.Second, "running", func(b bridgeState) bool { return b.State == "running" })
	logPath := filepath.Join(e.dir, "logs", "bridge-slowstop.log")
	launches := func() int {
		b, _ := os.ReadFile(logPath)
		return strings.Count(string(b), "testplugin configured")
	}
	before := launches()
	res := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var st bridgeState
		res <- e.owner.PostJSON(ctx, "/api/bridges/slowstop/restart", nil, &st)
	}()
	// The plugin ignores Stop: the restart waits for the stop timeout (5 s)
	// before it kills the old process; SIGTERM comes meanwhile.
	time.Sleep(500 * time.Millisecond)
	if _, err := e.d.stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-res:
		if err == nil {
			t.Error("the restart cut by the shutdown answered success")
		}
	case <-time.After(10 * time.Second):
		t.Error("the restart request got no answer")
	}
	if n := launches(); n != before {
		t.Errorf("the bridge was launched %d more time(s) after SIGTERM", n-before)
	}
	if pids := processesOf(slow); len(pids) != 0 {
		t.Errorf("bridge processes %v outlived agentd", pids)
	}
}

// processesOf returns the pids of running processes of executable path.
func processesOf(path string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && exe == path {
			out = append(out, pid)
		}
	}
	return out
}
