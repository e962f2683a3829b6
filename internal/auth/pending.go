package auth

import (
	"container/list"
	"net"
	"strconv"
	"sync"
)

// Bounds of the streams one listener holds before their preamble is done.
const (
	// MaxPending bounds the pre-auth streams of one listener.
	MaxPending = 1024
	// MaxPendingPerSource bounds them per source: remote NodeId (iroh),
	// IP (tcp), peer uid (unix).
	MaxPendingPerSource = 64
)

// pending is the set of one listener's streams that are still in their
// handshake. It never makes Accept wait: when a bound is reached, the
// oldest pre-auth stream of the source that holds the most is closed
// (evicted) instead. A flood thus only ever pushes out its own idle
// streams, and an honest client, whose handshake takes a round trip, is
// the youngest stream of its source and is not the one evicted.
type pending struct {
	max, perSource int

	// mu guards bySrc and n.
	mu    sync.Mutex
	bySrc map[string]*list.List // source → *pendingConn, oldest first
	n     int
}

type pendingConn struct {
	c   net.Conn
	src string
	el  *list.Element // nil once removed
}

func newPending(max, perSource int) *pending {
	return &pending{max: max, perSource: perSource, bySrc: map[string]*list.List{}}
}

// add registers c under src and closes the streams it pushes out.
func (p *pending) add(c net.Conn, src string) *pendingConn {
	e := &pendingConn{c: c, src: src}
	var evict []net.Conn
	p.mu.Lock()
	l := p.bySrc[src]
	if l == nil {
		l = list.New()
		p.bySrc[src] = l
	}
	e.el = l.PushBack(e)
	p.n++
	if l.Len() > p.perSource {
		evict = append(evict, p.removeLocked(l.Front().Value.(*pendingConn)))
	}
	for p.n > p.max {
		evict = append(evict, p.removeLocked(p.largestLocked().Front().Value.(*pendingConn)))
	}
	p.mu.Unlock()
	for _, c := range evict {
		c.Close()
	}
	return e
}

// largestLocked returns the source list with the most streams.
func (p *pending) largestLocked() *list.List {
	var best *list.List
	for _, l := range p.bySrc {
		if best == nil || l.Len() > best.Len() {
			best = l
		}
	}
	return best
}

func (p *pending) removeLocked(e *pendingConn) net.Conn {
	if e.el == nil {
		return e.c
	}
	l := p.bySrc[e.src]
	l.Remove(e.el)
	e.el = nil
	p.n--
	if l.Len() == 0 {
		delete(p.bySrc, e.src)
	}
	return e.c
}

// done removes e (a finished handshake); evicted entries are gone already.
func (p *pending) done(e *pendingConn) {
	p.mu.Lock()
	p.removeLocked(e)
	p.mu.Unlock()
}

// source names who is behind c for the per-source bound: the iroh NodeId
// (authenticated by TLS before any byte of the preamble), the remote IP,
// or the peer's uid on a unix socket (SO_PEERCRED).
func source(c net.Conn) string {
	if n, ok := c.(NodeIDer); ok {
		return "node:" + n.RemoteNodeID()
	}
	switch a := c.RemoteAddr().(type) {
	case *net.TCPAddr:
		return "ip:" + a.IP.String()
	}
	if uc, ok := c.(*net.UnixConn); ok {
		if uid, ok := peerUID(uc); ok {
			return "uid:" + strconv.FormatUint(uint64(uid), 10)
		}
	}
	return c.RemoteAddr().Network()
}
