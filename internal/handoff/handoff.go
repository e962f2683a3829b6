// Package handoff is a net.Listener fed with connections that something
// else accepted. It lets one accept loop (e.g. the iroh listener, which
// splits streams by ALPN) serve several consumers such as http.Server.
package handoff

import (
	"net"
	"sync"
)

// Listener hands connections passed to Put to Accept.
type Listener struct {
	addr net.Addr
	ch   chan net.Conn
	// once guards closing done.
	once sync.Once
	done chan struct{}
}

// New returns a listener reporting addr as its address.
func New(addr net.Addr) *Listener {
	return &Listener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// Put waits until Accept takes c and reports true, or, once the listener is
// closed, closes c and reports false.
func (l *Listener) Put(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		c.Close()
		return false
	}
}

// Accept returns the next connection passed to Put.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close makes Accept and Put return; it is safe to call more than once.
func (l *Listener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr returns the address given to New.
func (l *Listener) Addr() net.Addr { return l.addr }
