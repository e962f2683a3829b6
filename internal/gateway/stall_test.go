package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/provider/providertest"
	"github.com/agentd/agentd/wire"
)

// An interrupt is not held up by another connection of the device that
// stopped reading: the run never waits on a socket write while holding
// the lock its interrupt needs (issue 21, item 9). The interrupted reply
// reaches the reading connection long before the stuck one is closed as a
// slow consumer (10 s).
func TestInterruptNotStalledBySlowConnection(t *testing.T) {
	// Far more than the stuck connection can absorb: its socket buffers
	// (~4 MB on loopback) plus half its queue (128 frames of 32 KiB).
	big := make([]string, 800)
	for i := range big {
		big[i] = strings.Repeat("x", 32<<10)
	}
	fake := providertest.NewOpenAI(t, providertest.Response{Text: big})
	e := newEnv(t, envOpts{openAI: fake.BaseURL(), model: "gpt"})
	e.dial("alice") // never read again: its socket fills up
	c := e.dial("alice")
	c.send(wire.TextFinal{Text: "a long answer", SessionID: "s1"})
	// Read deltas until they stop coming: the run now waits for the stuck
	// connection (flow control).
	deltas := 0
	for {
		m, err := c.read(time.Second)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := m.(wire.Delta); !ok {
			t.Fatalf("unexpected %#v", m)
		}
		deltas++
	}
	if deltas == len(big) {
		t.Fatal("the whole reply went through: the stuck connection never filled up")
	}
	// The read timed out, which breaks a gorilla connection for reading:
	// interrupt from a third connection of the device.
	c2 := e.dial("alice")
	c2.send(wire.Interrupt{SessionID: "s1"})
	resp, _ := until[wire.Response](c2)
	if !resp.Interrupted {
		t.Fatalf("response %#v, want interrupted", resp)
	}
	if n := e.gw.SlowConsumersClosed(); n != 0 {
		t.Fatalf("the interrupt waited until the stuck connection was closed as a slow consumer (%d closed)", n)
	}
}

// closing reports whether a close frame is queued or sent.
func (c *conn) closing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed || c.closeCode != 0
}

// connOf returns the server side of the only connection of clientID.
func (e *env) connOf(clientID string) *conn {
	e.t.Helper()
	e.gw.mu.RLock()
	defer e.gw.mu.RUnlock()
	var found *conn
	for c := range e.gw.conns {
		if c.client.Identity.ClientID == clientID {
			if found != nil {
				e.t.Fatalf("several connections of %s", clientID)
			}
			found = c
		}
	}
	if found == nil {
		e.t.Fatalf("no connection of %s", clientID)
	}
	return found
}

// An ack read while the connection's queue is full is applied, whatever
// ends the connection next: a shutdown or a slow-consumer close (issue 21,
// item 3). Before, the reader waited for write room first, and that wait
// failing threw the ack away: the reply was sent again on reconnect.
func TestAckReadBehindFullQueueCounts(t *testing.T) {
	for _, end := range []string{"shutdown", "slow consumer"} {
		t.Run(end, func(t *testing.T) {
			e := newEnv(t, envOpts{yaml: "limits:\n  write_queue: 8\n", writeTimeout: 500 * time.Millisecond})
			c := e.dialAcking("tg")
			until[wire.AuthOK](c)
			c.send(wire.TextFinal{Text: "hello", SessionID: "tg:1"})
			c.readTurn()
			waitFor(t, func() bool { return e.outboxCount("7e1e") == 2 })
			// The client stops reading; broadcasts fill its socket, then
			// half its queue, so the reader waits for room (flow control).
			sc := e.connOf("7e1e")
			queued := func() int { sc.mu.Lock(); defer sc.mu.Unlock(); return len(sc.queue) }
			huge := strings.Repeat("z", 1<<20)
			for queued() < sc.limit/2 {
				e.gw.ResourceEvent("test", "filler", huge)
				time.Sleep(time.Millisecond)
			}
			c.send(wire.Ack{SessionID: "tg:1"})
			waitFor(t, func() bool {
				sc.mu.Lock()
				defer sc.mu.Unlock()
				return sc.room != nil || e.outboxCount("7e1e") == 0 // waiting, or already applied
			})
			if end == "shutdown" {
				e.gw.Close()
			} else {
				for !sc.closing() {
					e.gw.ResourceEvent("test", "filler", "x") // overflows the queue: 4008
				}
				waitFor(t, func() bool { return e.gw.ClientsConnected() == 0 })
			}
			if n := e.outboxCount("7e1e"); n != 0 {
				t.Fatalf("%d outbox rows after the %s: the ack read behind a full queue was dropped", n, end)
			}
		})
	}
}

// A delta written at once (StreamDeltaNow, a run's first delta) never
// blocks its caller, which may hold the run's lock: when the socket takes
// only part of the frame, or nothing, the rest goes to the writer, and the
// client still reads every frame whole, in order. The client here stops
// reading until its socket is full.
func TestStreamDeltaNowNeverBlocks(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.dial("alice")
	want := fillNow(t, e.connOf("a11ce"))
	var got strings.Builder
	for got.Len() < len(want) {
		m, err := c.read(10 * time.Second)
		if err != nil {
			t.Fatalf("after %d of %d bytes: %v", got.Len(), len(want), err)
		}
		d, ok := m.(wire.Delta)
		if !ok || d.SessionID != "s1" {
			t.Fatalf("unexpected %#v", m)
		}
		got.WriteString(d.Text)
	}
	if got.String() != want {
		t.Fatal("the deltas arrived changed or out of order")
	}
}

// The rest of a write left to the writer is bounded like any write: a
// client that never reads it is closed as a slow consumer and counted.
func TestStreamDeltaNowRestTimesOut(t *testing.T) {
	e := newEnv(t, envOpts{writeTimeout: 200 * time.Millisecond})
	e.dial("alice") // never read
	sc := e.connOf("a11ce")
	fillNow(t, sc)
	waitFor(t, func() bool { return e.gw.ClientsConnected() == 0 })
	if n := e.gw.SlowConsumersClosed(); n != 1 {
		t.Fatalf("%d slow consumers counted, want 1", n)
	}
}

// fillNow writes deltas of session s1 "now" into sc, whose client does not
// read, until one is left partly or wholly to the writer, then one more
// (queued behind it); none may block. It returns their text.
func fillNow(t *testing.T, sc *conn) string {
	t.Helper()
	var want strings.Builder
	partial := false
	for i := 0; ; i++ {
		if i == 10_000 {
			t.Fatal("the socket never filled: no write was left to the writer")
		}
		text := fmt.Sprintf("%d:%s ", i, strings.Repeat("w", 48<<10))
		done := make(chan bool)
		go func() { done <- sc.StreamDeltaNow(context.Background(), "s1", text) }()
		select {
		case ok := <-done:
			if !ok {
				t.Fatalf("delta %d not taken", i)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("StreamDeltaNow blocked on delta %d with the client not reading", i)
		}
		want.WriteString(text)
		if partial {
			return want.String()
		}
		// The socket took part of it, or nothing: a writer has the rest.
		// (Not raw.pending: a writer's flush holds its lock while the
		// socket is full.)
		sc.mu.Lock()
		partial = sc.writing
		sc.mu.Unlock()
	}
}
