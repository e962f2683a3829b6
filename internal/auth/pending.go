package auth

import (
	"container/list"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds of the streams one listener holds before their preamble is done.
const (
	// MaxPending bounds the pre-auth streams of one listener.
	MaxPending = 1024
	// MaxPendingPerSource bounds them per source: remote NodeId (iroh),
	// IP (tcp), peer uid (unix). Streams younger than evictGrace do not
	// count against it, so that a client sharing its source with a flood
	// has a round trip's time (and a busy scheduler's) to send its preamble;
	// MaxPending bounds those too.
	MaxPendingPerSource = 64
	evictGrace          = 100 * time.Millisecond
)

// pending is the set of one listener's streams that are still reading
// their preamble. It never makes Accept wait: when a bound is reached, a
// stream of the source that holds the most is closed (evicted) instead —
// the one that has sent the fewest bytes, the oldest of those. A flood thus
// only ever pushes out its own idle streams: an honest client sends its
// whole preamble one round trip after connecting, so it is either the
// youngest idle stream of its source or ahead of every idle one, and it
// leaves the set (no longer evictable) once its preamble is read.
type pending struct {
	max, perSource int
	now            func() time.Time // the clock (tests step it)

	// mu guards bySrc and n.
	mu    sync.Mutex
	bySrc map[string]*list.List // source → *pendingConn, oldest first
	n     int
}

type pendingConn struct {
	c    net.Conn
	src  string
	at   time.Time
	el   *list.Element // nil once removed
	got  atomic.Int64  // preamble bytes received so far
	once sync.Once     // guards calling free
	free func()        // releases the stream's connection-cap slot
}

// release frees the stream's slot in the connection cap (once): when it is
// evicted (its descriptor is closed then, not when its goroutine gets to
// run) or when its handshake ends without handing it on.
func (e *pendingConn) release() {
	e.once.Do(func() {
		if e.free != nil {
			e.free()
		}
	})
}

// Read counts the bytes the handshake reads from the stream.
func (e *pendingConn) Read(b []byte) (int, error) {
	n, err := e.c.Read(b)
	e.got.Add(int64(n))
	return n, err
}

func newPending(max, perSource int) *pending {
	return &pending{max: max, perSource: perSource, now: time.Now, bySrc: map[string]*list.List{}}
}

// add registers c under src and closes the streams it pushes out. free
// releases c's connection-cap slot (see pendingConn.release).
func (p *pending) add(c net.Conn, src string, free func()) *pendingConn {
	now := p.now()
	e := &pendingConn{c: c, src: src, at: now, free: free}
	var evict []*pendingConn
	p.mu.Lock()
	l := p.bySrc[src]
	if l == nil {
		l = list.New()
		p.bySrc[src] = l
	}
	e.el = l.PushBack(e)
	p.n++
	if l.Len() > p.perSource {
		if v := victim(l, now.Add(-evictGrace)); v != nil {
			evict = append(evict, p.removeLocked(v))
		}
	}
	for p.n > p.max {
		evict = append(evict, p.removeLocked(victim(p.largestLocked(), now)))
	}
	p.mu.Unlock()
	for _, v := range evict {
		v.c.Close()
		v.release()
	}
	return e
}

// victim is the stream of l accepted before cutoff that has sent the
// fewest bytes, the oldest of those; nil if all are younger.
func victim(l *list.List, cutoff time.Time) *pendingConn {
	var best *pendingConn
	for el := l.Front(); el != nil; el = el.Next() {
		e := el.Value.(*pendingConn)
		if e.at.After(cutoff) {
			break // the list is in accept order: the rest are younger
		}
		if best == nil || e.got.Load() < best.got.Load() {
			best = e
		}
	}
	return best
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

func (p *pending) removeLocked(e *pendingConn) *pendingConn {
	if e.el == nil {
		return e
	}
	l := p.bySrc[e.src]
	l.Remove(e.el)
	e.el = nil
	p.n--
	if l.Len() == 0 {
		delete(p.bySrc, e.src)
	}
	return e
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
