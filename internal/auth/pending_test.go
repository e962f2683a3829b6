package auth

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// steppedPending is newPending with a clock that moves past the eviction
// grace at every add, so every older stream may be evicted.
func steppedPending(max, per int) *pending {
	p := newPending(max, per)
	t := time.Unix(0, 0)
	p.now = func() time.Time { t = t.Add(time.Second); return t }
	return p
}

// closeConn records whether it was closed.
type closeConn struct {
	net.Conn
	name   string
	closed bool
}

func (c *closeConn) Close() error { c.closed = true; return nil }

func TestPendingEvictsOldestOfLargestSource(t *testing.T) {
	tests := []struct {
		name       string
		max, per   int
		adds       []string // sources, in accept order
		wantClosed []int    // indexes into adds
	}{
		{"under the bounds", 4, 4, []string{"a", "a", "b"}, nil},
		{"per source: oldest of that source", 10, 2, []string{"a", "b", "a", "a"}, []int{0}},
		{"listener: oldest of the largest source", 3, 3, []string{"b", "a", "a", "a"}, []int{1}},
		{"a flood never pushes out another source", 4, 3, []string{"honest", "x", "x", "x", "x", "x", "x"}, []int{1, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := steppedPending(tt.max, tt.per)
			var cs []*closeConn
			for _, src := range tt.adds {
				c := &closeConn{name: src}
				cs = append(cs, c)
				p.add(c, src, nil)
			}
			want := map[int]bool{}
			for _, i := range tt.wantClosed {
				want[i] = true
			}
			for i, c := range cs {
				if c.closed != want[i] {
					t.Errorf("conn %d (%s): closed = %v, want %v", i, c.name, c.closed, want[i])
				}
			}
			if p.n > tt.max {
				t.Errorf("%d pending over the bound %d", p.n, tt.max)
			}
		})
	}
}

func TestPendingDone(t *testing.T) {
	p := steppedPending(2, 2)
	a, b := &closeConn{}, &closeConn{}
	ea := p.add(a, "s", nil)
	p.done(ea)
	p.done(ea) // twice is harmless
	p.add(b, "s", nil)
	p.add(&closeConn{}, "s", nil)
	if a.closed || b.closed || p.n != 2 {
		t.Fatalf("after done: a %v b %v n %d", a.closed, b.closed, p.n)
	}
}

// A stream that has sent part of its preamble outlives idle ones of its
// source, however much younger they are.
func TestPendingEvictsIdleBeforeProgress(t *testing.T) {
	p := steppedPending(100, 3)
	honest := &closeConn{name: "honest"}
	e := p.add(honest, "s", nil)
	e.got.Store(40)
	var idle []*closeConn
	for i := 0; i < 10; i++ {
		c := &closeConn{name: "idle"}
		idle = append(idle, c)
		p.add(c, "s", nil)
	}
	if honest.closed {
		t.Fatal("the stream with progress was evicted before idle ones")
	}
	for i, c := range idle[:8] {
		if !c.closed {
			t.Errorf("idle stream %d not evicted", i)
		}
	}
}

// Streams younger than the grace are not evicted by the per-source bound
// (only the listener bound reaches them), and an evicted stream frees its
// connection-cap slot at once.
func TestPendingGraceAndRelease(t *testing.T) {
	p := newPending(5, 2)
	base := time.Unix(0, 0)
	p.now = func() time.Time { return base } // all accepted at once
	freed := 0
	var cs []*closeConn
	for i := 0; i < 5; i++ {
		c := &closeConn{}
		cs = append(cs, c)
		p.add(c, "s", func() { freed++ })
	}
	for i, c := range cs {
		if c.closed {
			t.Fatalf("stream %d evicted within the grace", i)
		}
	}
	p.add(&closeConn{}, "s", func() { freed++ }) // over the listener bound
	if !cs[0].closed || freed != 1 {
		t.Fatalf("listener bound: oldest closed %v, slots freed %d", cs[0].closed, freed)
	}
}

func TestRefusalKeyDropsAddresses(t *testing.T) {
	mk := func(port int) error {
		return fmt.Errorf("read preamble length: %w", &net.OpError{Op: "read", Net: "tcp",
			Source: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8765}, Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port},
			Err: os.ErrDeadlineExceeded})
	}
	a, b := refusalKey(mk(40001)), refusalKey(mk(40002))
	if a != b || strings.Contains(a, "40001") {
		t.Fatalf("keys %q and %q", a, b)
	}
	if k := refusalKey(ErrExpired); k != ErrExpired.Error() {
		t.Fatalf("plain error key %q", k)
	}
}
