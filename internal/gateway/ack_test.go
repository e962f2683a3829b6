package gateway

import (
	"testing"
	"time"

	"github.com/agentd/agentd/internal/provider"
	"github.com/agentd/agentd/wire"
)

func (e *env) outboxCount(clientID string) int {
	var n int
	if err := e.store.DB().QueryRow(`SELECT COUNT(*) FROM outbox WHERE client_id = ?`, clientID).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// dialAcking connects as who and opts into acknowledged delivery.
func (e *env) dialAcking(who string) *client {
	e.t.Helper()
	c := e.dial(who)
	c.send(wire.Auth{Acks: true})
	return c
}

// A bridge that dies after the gateway wrote a reply, before it showed it,
// gets the reply again on its next connection, until it acks.
func TestAckedDeliveryOverWebSocket(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.dialAcking("tg")
	until[wire.AuthOK](c)
	c.send(wire.TextFinal{Text: "hello", SessionID: "tg:1"})
	if tf := c.readTurn(); tf.response.Text != provider.EchoReply("hello") {
		t.Fatalf("live reply %q", tf.response.Text)
	}
	waitFor(t, func() bool { return e.outboxCount("7e1e") == 2 })
	c.ws.Close() // SIGKILL: nothing shown, nothing acked

	for range 2 {
		c = e.dialAcking("tg")
		until[wire.AuthOK](c) // the answer to auth: the outbox follows it
		if tf := c.readTurn(); tf.response.Text != provider.EchoReply("hello") || len(tf.deltas) != 0 {
			t.Fatalf("re-sent turn %+v", tf)
		}
		c.ws.Close()
	}
	c = e.dialAcking("tg")
	until[wire.AuthOK](c)
	c.readTurn()
	c.send(wire.Ack{SessionID: "tg:1"})
	c.send(wire.Ping{})
	until[wire.Pong](c)
	if n := e.outboxCount("7e1e"); n != 0 {
		t.Fatalf("%d outbox rows after ack", n)
	}
	c.ws.Close()
	c = e.dialAcking("tg")
	until[wire.AuthOK](c)
	c.send(wire.Ping{})
	if _, skipped := until[wire.Pong](c); len(skipped) != 0 {
		t.Fatalf("sent again after ack: %#v", skipped)
	}
}

// A client that does not opt in sees no change: a reply it took is not
// sent again.
func TestNoAcksNoResend(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.dial("alice")
	c.send(wire.Auth{}) // as client.DialWS does
	until[wire.AuthOK](c)
	c.send(wire.TextFinal{Text: "hello", SessionID: "s1"})
	c.readTurn()
	c.ws.Close()
	c = e.dial("alice")
	c.send(wire.Ping{})
	if _, skipped := until[wire.Pong](c); len(skipped) != 0 {
		t.Fatalf("sent again: %#v", skipped)
	}
	if n := e.outboxCount("a11ce"); n != 0 {
		t.Fatalf("%d outbox rows", n)
	}
}

// An ack that reaches the gateway after its shutdown close frame still
// counts, so the reply is not sent again after the restart.
func TestAckDuringShutdownCounts(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.dialAcking("tg")
	until[wire.AuthOK](c)
	c.send(wire.TextFinal{Text: "hello", SessionID: "tg:1"})
	c.readTurn()
	waitFor(t, func() bool { return e.outboxCount("7e1e") == 2 })
	closed := make(chan struct{})
	go func() { e.gw.Close(); close(closed) }()
	time.Sleep(50 * time.Millisecond) // the close frame is on its way, unread
	c.send(wire.Ack{SessionID: "tg:1"})
	for { // read up to the close frame; gorilla answers it
		if _, err := c.read(5 * time.Second); err != nil {
			break
		}
	}
	<-closed
	if n := e.outboxCount("7e1e"); n != 0 {
		t.Fatalf("%d outbox rows: the ack sent during shutdown was dropped", n)
	}
}
