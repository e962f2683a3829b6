package gateway

import (
	"errors"
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
	big := make([]string, 200)
	for i := range big {
		big[i] = strings.Repeat("x", 128<<10)
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
