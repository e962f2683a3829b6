package auth

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/agentd/agentd/devicecert"
	"github.com/agentd/agentd/internal/logfile"
)

// Mode says how a listener's streams prove the device key.
type Mode int

const (
	// ModeNonce (unix, tcp): the server sends a nonce, the client signs it.
	ModeNonce Mode = iota
	// ModeIroh: the transport authenticated the peer's NodeId, which must
	// equal the cert's device key; inner conns implement RemoteNodeID.
	ModeIroh
)

// PreambleTimeout bounds a stream's handshake: a client that has not
// finished its preamble by then is dropped. An honest client needs one
// round trip.
const PreambleTimeout = 3 * time.Second

// verifySlots bounds the signature checks of pre-auth streams running at
// once to half the CPUs (at least one), so that a flood of well-formed but
// bogus preambles never takes the CPU from authenticated streams.
var verifySlots = make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2))

// NodeIDer is implemented by iroh streams.
type NodeIDer interface{ RemoteNodeID() string }

// Conn is an accepted stream that passed the preamble. Identity is nil for
// an anonymous stream.
type Conn struct {
	net.Conn
	id        *Identity
	a         *Authenticator
	transport string // unix, tcp, iroh
	once      sync.Once
	release   func() // frees the stream's slot in the connection cap

	// mu guards expiry, which the timer's own goroutine may race to read.
	mu     sync.Mutex
	expiry *time.Timer
}

// Identity returns the stream's authenticated identity, nil if anonymous.
func (c *Conn) Identity() *Identity { return c.id }

// Close closes the stream and forgets it.
func (c *Conn) Close() error {
	c.once.Do(func() {
		if c.id != nil {
			c.a.untrack(c)
		}
		c.mu.Lock()
		if c.expiry != nil {
			c.expiry.Stop()
		}
		c.mu.Unlock()
		c.release()
	})
	return c.Conn.Close()
}

// CloseWrite half-closes the stream when the inner conn supports it.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("close write: not supported by this transport")
}

// ConnContext is for http.Server.ConnContext: it puts the stream's
// identity into every request's context, so handlers use FromContext.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if ac, ok := c.(*Conn); ok && ac.id != nil {
		return WithIdentity(ctx, ac.id)
	}
	return ctx
}

type listener struct {
	inner     net.Listener
	mode      Mode
	a         *Authenticator
	log       *slog.Logger
	transport string
	// refusals logs "stream refused" once per reason per window, so a
	// flood of bad handshakes cannot fill the disk.
	refusals *logfile.Repeats

	ready chan *Conn
	// ctx ends when the listener closes; it aborts handshakes in flight.
	ctx     context.Context
	cancel  context.CancelFunc
	pending *pending
	once    sync.Once
	wg      sync.WaitGroup

	// mu guards err.
	mu  sync.Mutex
	err error // the inner listener's terminal error
}

// NewListener wraps inner so that Accept returns only streams whose
// preamble passed (or anonymous ones, without identity). Handshakes run
// concurrently with a deadline (PreambleTimeout), bounded per listener and
// per source (see pending); accepting never waits for them. Refused
// streams get a 401 and are closed. Close stops the accept loop and every
// handshake in flight.
func NewListener(inner net.Listener, mode Mode, a *Authenticator, log *slog.Logger) net.Listener {
	if a == nil {
		panic("auth.NewListener: nil Authenticator (there is no unauthenticated mode)")
	}
	if log == nil {
		log = slog.Default()
	}
	l := &listener{
		inner: inner, mode: mode, a: a, log: log,
		ready: make(chan *Conn), pending: newPending(MaxPending, MaxPendingPerSource),
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.transport = inner.Addr().Network()
	if mode == ModeIroh {
		l.transport = "iroh"
	}
	l.refusals = logfile.NewRepeats(log, 0)
	l.wg.Add(2)
	go l.loop()
	go l.flushRefusals()
	return l
}

// flushRefusals writes the counts of suppressed refusals every window and
// when the listener closes.
func (l *listener) flushRefusals() {
	defer l.wg.Done()
	t := time.NewTicker(logfile.RepeatWindow)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			l.refusals.Tick()
		case <-l.ctx.Done():
			l.refusals.Flush()
			return
		}
	}
}

func (l *listener) loop() {
	defer l.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		c, err := l.inner.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			select {
			case <-l.ctx.Done():
				return
			default:
			}
			// EMFILE and friends pass (as in net/http); a closed listener
			// does not.
			if !errors.Is(err, net.ErrClosed) {
				l.log.Warn("accept", "err", err, "retry_in", backoff)
				select {
				case <-time.After(backoff):
				case <-l.ctx.Done():
					return
				}
				backoff = min(2*backoff, time.Second)
				continue
			}
			l.mu.Lock()
			l.err = err
			l.mu.Unlock()
			l.shut()
			return
		}
		backoff = 5 * time.Millisecond
		if !l.a.cap.acquire() {
			c.Close()
			continue
		}
		// Registered here, in accept order, so that eviction is oldest first.
		p := l.pending.add(c, source(c), l.a.cap.release)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.serve(c, p)
		}()
	}
}

// serve runs one handshake and hands the stream to Accept. It holds the
// stream's slot in the connection cap until Accept has it.
func (l *listener) serve(c net.Conn, p *pendingConn) {
	handed := false
	defer func() {
		if !handed {
			p.release()
		}
	}()
	// Closing the listener must also stop a handshake stuck in a read.
	stop := context.AfterFunc(l.ctx, func() { c.Close() })
	defer stop()
	deadline := time.Now().Add(PreambleTimeout)
	c.SetDeadline(deadline)
	id, cert, err := l.handshake(c, p, deadline)
	l.pending.done(p) // after a failed read; a read preamble left already
	if err != nil {
		l.refusals.Info(refusalKey(err), "stream refused", "transport", l.transport, "remote", c.RemoteAddr().String(), "err", err)
		refuse(c, err)
		return
	}
	// From here the stream belongs to whoever Accepts it; if the listener
	// closed meanwhile, AfterFunc has already closed it.
	if !stop() {
		return
	}
	c.SetDeadline(time.Time{})
	handed = true
	ac := &Conn{Conn: c, id: id, a: l.a, transport: l.transport, release: p.release}
	if id != nil {
		if !l.a.track(ac) {
			refuse(c, ErrRevoked)
			ac.Close()
			return
		}
		now := l.a.Now()
		l.a.reg.MarkSeen(id.ClientID, now)
		// A cert that expires while its stream is open ends the stream.
		ac.mu.Lock()
		ac.expiry = time.AfterFunc(cert.ExpiresAt.Sub(now), func() { ac.Close() })
		ac.mu.Unlock()
	}
	select {
	case l.ready <- ac:
	case <-l.ctx.Done():
		ac.Close()
	}
}

// handshake reads the preamble through p (which counts its bytes; nil:
// read c directly), takes c out of the pending set once it is read, and
// checks it.
func (l *listener) handshake(c net.Conn, p *pendingConn, deadline time.Time) (*Identity, *devicecert.Cert, error) {
	var r io.Reader = c
	if p != nil {
		r = p
	}
	var nonce []byte
	if l.mode == ModeNonce {
		nonce = make([]byte, devicecert.NonceSize)
		if _, err := rand.Read(nonce); err != nil {
			return nil, nil, fmt.Errorf("nonce: %w", err)
		}
		if _, err := c.Write(nonce); err != nil {
			return nil, nil, fmt.Errorf("send nonce: %w", err)
		}
	}
	wire, err := devicecert.ReadPreamble(r)
	if err != nil {
		return nil, nil, err
	}
	if len(wire) == 0 {
		return nil, nil, nil // anonymous: handlers' Require answers 401
	}
	var sig []byte
	if l.mode == ModeNonce {
		sig = make([]byte, devicecert.SignatureSize)
		if _, err := io.ReadFull(r, sig); err != nil {
			return nil, nil, fmt.Errorf("read challenge signature: %w", err)
		}
	}
	if p != nil {
		l.pending.done(p) // read in full: no longer idle, not evictable
	}
	select {
	case verifySlots <- struct{}{}:
	case <-time.After(time.Until(deadline)):
		return nil, nil, errors.New("preamble not checked in time (server busy)")
	case <-l.ctx.Done():
		return nil, nil, net.ErrClosed
	}
	id, cert, err := l.verifyProof(c, wire, nonce, sig)
	<-verifySlots
	return id, cert, err
}

// verifyProof runs the certificate checks, then the proof of key, and
// only then the revocation check (see Authenticator.verify).
func (l *listener) verifyProof(c net.Conn, wire, nonce, sig []byte) (*Identity, *devicecert.Cert, error) {
	id, cert, err := l.a.verify(wire, l.transport)
	if err != nil {
		return nil, nil, err
	}
	switch l.mode {
	case ModeNonce:
		if !devicecert.VerifyChallenge(cert.DevicePub, nonce, wire, sig) {
			return nil, nil, fmt.Errorf("%w: challenge signature does not verify", ErrProof)
		}
	case ModeIroh:
		n, ok := c.(NodeIDer)
		if !ok {
			return nil, nil, fmt.Errorf("%w: iroh stream without a node id", ErrProof)
		}
		if !strings.EqualFold(n.RemoteNodeID(), id.ClientID) {
			return nil, nil, fmt.Errorf("%w: iroh node id %.16s… is not the cert's device key %.16s…", ErrProof, n.RemoteNodeID(), id.ClientID)
		}
	default:
		return nil, nil, fmt.Errorf("unknown listener mode %d", l.mode)
	}
	if !l.a.reg.Active(id.ClientID) {
		return nil, nil, ErrRevoked
	}
	return id, cert, nil
}

// refusalKey is what identical refusals share in the log's repeat count:
// the error without the addresses a network error names (each tcp stream
// has its own port, so the raw text would make every refusal distinct).
func refusalKey(err error) string {
	s := err.Error()
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		s = strings.Replace(s, oe.Error(), oe.Op+" "+oe.Net+": "+oe.Err.Error(), 1)
	}
	return s
}

// deniedMessage is the one answer to a revoked device and to a stream that
// did not prove its key, so that the 401 does not tell them apart.
const deniedMessage = "device revoked, not registered, or did not prove its key"

// refuse answers a failed handshake with a 401 and closes the stream.
func refuse(c net.Conn, reason error) {
	msg := reason.Error()
	if errors.Is(reason, ErrRevoked) || errors.Is(reason, ErrProof) {
		msg = deniedMessage
	}
	body, _ := json.Marshal(map[string]any{"error": map[string]string{"code": "unauthorized", "message": msg}})
	c.SetDeadline(time.Now().Add(time.Second))
	fmt.Fprintf(c, "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	// Half-close and drain briefly so TCP does not reset the response
	// away under a request the client already sent.
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		io.Copy(io.Discard, io.LimitReader(c, 64<<10))
	}
	c.Close()
}

// Accept returns the next authenticated (or anonymous) stream.
func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.ctx.Done():
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.err != nil && !errors.Is(l.err, net.ErrClosed) {
			return nil, l.err
		}
		return nil, net.ErrClosed
	}
}

// Close stops accepting, aborts handshakes in flight and waits for their
// goroutines. Streams already returned by Accept stay open (http.Server
// owns them).
func (l *listener) Close() error {
	err := l.shut()
	l.wg.Wait()
	return err
}

func (l *listener) shut() error {
	var err error
	l.once.Do(func() {
		l.cancel()
		err = l.inner.Close()
	})
	return err
}

func (l *listener) Addr() net.Addr { return l.inner.Addr() }
