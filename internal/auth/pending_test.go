package auth

import (
	"net"
	"testing"
)

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
			p := newPending(tt.max, tt.per)
			var cs []*closeConn
			for _, src := range tt.adds {
				c := &closeConn{name: src}
				cs = append(cs, c)
				p.add(c, src)
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
	p := newPending(2, 2)
	a, b := &closeConn{}, &closeConn{}
	ea := p.add(a, "s")
	p.done(ea)
	p.done(ea) // twice is harmless
	p.add(b, "s")
	p.add(&closeConn{}, "s")
	if a.closed || b.closed || p.n != 2 {
		t.Fatalf("after done: a %v b %v n %d", a.closed, b.closed, p.n)
	}
}
