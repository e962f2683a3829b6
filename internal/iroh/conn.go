package iroh

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"
)

const (
	// DefaultHeaderTimeout bounds the wait for a stream's header line.
	DefaultHeaderTimeout = 10 * time.Second
	// maxHeaderLine is the largest header/reply line accepted.
	maxHeaderLine = 4096
	// acceptQueue is how many header-read streams may wait for Accept.
	acceptQueue = 64
)

// Addr is the remote address of an iroh stream: the peer's NodeId.
type Addr struct{ NodeID string }

// Network returns "iroh".
func (Addr) Network() string { return "iroh" }

// String returns the NodeId (hex).
func (a Addr) String() string { return a.NodeID }

// Conn is one iroh bi-stream, seen through the sidecar's unix socket. It
// implements net.Conn; CloseWrite sends FIN (the peer reads EOF and may still
// answer).
type Conn struct {
	uc     *net.UnixConn
	br     *bufio.Reader // bytes read past the header line; nil once drained
	remote string
	alpn   string
}

// RemoteNodeID is the peer's NodeId (hex), authenticated by iroh's TLS.
func (c *Conn) RemoteNodeID() string { return c.remote }

// ALPN is the stream's application protocol.
func (c *Conn) ALPN() string { return c.alpn }

func (c *Conn) Read(p []byte) (int, error) {
	if c.br != nil {
		if c.br.Buffered() > 0 {
			return c.br.Read(p)
		}
		c.br = nil
	}
	return c.uc.Read(p)
}

func (c *Conn) Write(p []byte) (int, error)        { return c.uc.Write(p) }
func (c *Conn) Close() error                       { return c.uc.Close() }
func (c *Conn) CloseWrite() error                  { return c.uc.CloseWrite() }
func (c *Conn) CloseRead() error                   { return c.uc.CloseRead() }
func (c *Conn) LocalAddr() net.Addr                { return c.uc.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr               { return Addr{NodeID: c.remote} }
func (c *Conn) SetDeadline(t time.Time) error      { return c.uc.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.uc.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.uc.SetWriteDeadline(t) }

// readLine reads one '\n'-terminated JSON line from br into v.
func readLine(br *bufio.Reader, v any) error {
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return fmt.Errorf("line longer than %d bytes", maxHeaderLine)
	}
	if err != nil {
		return err
	}
	return json.Unmarshal(line, v)
}

// streamHeader is the first line the sidecar writes on an accepted stream.
type streamHeader struct {
	RemoteNodeID string `json:"remote_node_id"`
	ALPN         string `json:"alpn"`
}

// Listener accepts the streams a serve-mode sidecar forwards to its unix
// socket. Accept returns *Conn values (as net.Conn).
type Listener struct {
	ln            *net.UnixListener
	path          string
	log           *slog.Logger
	headerTimeout time.Duration
	ctx           context.Context
	cancel        context.CancelFunc
	conns         chan *Conn
	wg            sync.WaitGroup // wg counts the accept loop and header readers
	closeOnce     sync.Once
}

// ListenConfig configures a Listener.
type ListenConfig struct {
	Path          string // socket path
	Logger        *slog.Logger
	HeaderTimeout time.Duration // default DefaultHeaderTimeout
}

// Listen creates the accept socket at path (mode 0600; a stale socket file is
// replaced) and serves it until ctx ends or Close is called.
func Listen(ctx context.Context, path string, logger *slog.Logger) (*Listener, error) {
	return ListenConfig{Path: path, Logger: logger}.Listen(ctx)
}

// Listen is the package-level Listen with all options.
func (lc ListenConfig) Listen(ctx context.Context) (*Listener, error) {
	path, logger := lc.Path, lc.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if lc.HeaderTimeout <= 0 {
		lc.HeaderTimeout = DefaultHeaderTimeout
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("listen on iroh accept socket: %s exists and is not a socket", path)
		}
		_ = os.Remove(path)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on iroh accept socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("listen on iroh accept socket: %w", err)
	}
	lctx, cancel := context.WithCancel(ctx)
	l := &Listener{
		ln:            ln,
		path:          path,
		log:           logger.With("component", "iroh-listener"),
		headerTimeout: lc.HeaderTimeout,
		ctx:           lctx,
		cancel:        cancel,
		conns:         make(chan *Conn, acceptQueue),
	}
	l.wg.Add(1)
	go l.acceptLoop()
	context.AfterFunc(lctx, func() { _ = l.Close() })
	return l, nil
}

// Path is the socket path to give the sidecar as AcceptSocket.
func (l *Listener) Path() string { return l.path }

func (l *Listener) acceptLoop() {
	defer l.wg.Done()
	for {
		uc, err := l.ln.AcceptUnix()
		if err != nil {
			if l.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			l.log.Warn("accept on iroh socket failed", "err", err)
			select {
			case <-time.After(50 * time.Millisecond):
			case <-l.ctx.Done():
				return
			}
			continue
		}
		l.wg.Add(1)
		go l.acceptStream(uc)
	}
}

// readHeader parses a stream's header line: the remote NodeId must be 64
// lowercase hex characters (agentd compares it with certificate keys, and
// limits pre-auth streams per NodeId) and the ALPN one of at most 255 bytes
// (QUIC's limit).
func readHeader(br *bufio.Reader) (streamHeader, error) {
	var h streamHeader
	if err := readLine(br, &h); err != nil {
		return h, err
	}
	if !isNodeID(h.RemoteNodeID) {
		return h, fmt.Errorf("header: remote_node_id %.80q is not 64 lowercase hex characters", h.RemoteNodeID)
	}
	if h.ALPN == "" || len(h.ALPN) > 255 {
		return h, fmt.Errorf("header: alpn must be 1 to 255 bytes, got %d", len(h.ALPN))
	}
	return h, nil
}

func isNodeID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// acceptStream reads the stream header with a deadline and queues the Conn.
func (l *Listener) acceptStream(uc *net.UnixConn) {
	defer l.wg.Done()
	stop := context.AfterFunc(l.ctx, func() { _ = uc.Close() })
	defer stop()
	_ = uc.SetReadDeadline(time.Now().Add(l.headerTimeout))
	br := bufio.NewReaderSize(uc, maxHeaderLine)
	h, err := readHeader(br)
	if err != nil {
		l.log.Warn("dropping iroh stream with a bad header", "err", err)
		_ = uc.Close()
		return
	}
	_ = uc.SetReadDeadline(time.Time{})
	c := &Conn{uc: uc, br: br, remote: h.RemoteNodeID, alpn: h.ALPN}
	select {
	case l.conns <- c:
	case <-l.ctx.Done():
		_ = uc.Close()
	}
}

// Accept waits for the next stream; it returns a *Conn.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.AcceptConn()
	if err != nil {
		return nil, err
	}
	return c, nil
}

// AcceptConn is Accept with the concrete type.
func (l *Listener) AcceptConn() (*Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.ctx.Done():
		return nil, net.ErrClosed
	}
}

// Close stops accepting, closes queued streams and removes the socket file.
func (l *Listener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		l.cancel()
		err = l.ln.Close()
		l.wg.Wait()
		for {
			select {
			case c := <-l.conns:
				_ = c.Close()
			default:
				return
			}
		}
	})
	return err
}

// Addr returns the unix socket address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }
