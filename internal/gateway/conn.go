package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/agentd/agentd/internal/session"
	"github.com/agentd/agentd/wire"
)

// Close codes the gateway uses besides the standard ones.
const (
	// CloseSlowConsumer: the client did not read fast enough and its write
	// queue overflowed.
	CloseSlowConsumer = 4008
)

// DefaultWriteTimeout bounds one write (a batch of frames, or a control
// frame) and how long a running reply waits for a client to read.
const DefaultWriteTimeout = 10 * time.Second

// closeGrace is how long a client has to answer our close frame.
const closeGrace = 2 * time.Second

// conn is one WebSocket client. Its goroutines: the reader, and a writer
// that only exists while frames are queued, so an idle connection costs one
// goroutine, its read buffer and a timer.
type conn struct {
	g      *Gateway
	ws     *websocket.Conn
	raw    *batchConn
	client *session.Client
	limit  int // write queue bound, in frames

	// mu guards queue, writing, room, closeCode, closeText, closed and audio.
	mu        sync.Mutex
	queue     []frame
	writing   bool          // the writer goroutine, or a direct write (writeNow), runs
	room      chan struct{} // closed when the writer takes a batch; Stream waits on it
	closeCode int           // non-zero: close with this code once queue is written
	closeText string
	closed    bool
	audio     *audioIn // voice input streams; nil until the first chunk

	pingEvery time.Duration
	idle      time.Duration
	writeWait time.Duration
	ping      *time.Timer
}

// frame is a queued frame: encoded, or a delta still open to merging.
type frame struct {
	b       []byte
	delta   bool // an unencoded delta: text of session
	text    []byte
	session string
}

// encodeDelta is the frame of a delta (a Delta always encodes).
func encodeDelta(text, sessionID string) []byte {
	b, _ := wire.Encode(wire.Delta{Text: text, SessionID: sessionID})
	return b
}

// maxMerged bounds a delta that later deltas are merged into: beyond it
// they queue as frames of their own, so a client that stops reading still
// fills its queue (flow control) instead of growing one frame forever.
const maxMerged = 16 << 10

// deltaRoom is the capacity a queued delta starts with: a few words more
// merge into it without growing it.
const deltaRoom = 128

// logger is built on demand: a logger per idle connection costs memory.
func (c *conn) logger() *slog.Logger {
	id := c.client.Identity
	return c.g.log.With("client", id.ClientID, "transport", id.Transport)
}

// Send implements session.Sink.
func (c *conn) Send(m wire.Message) bool {
	b, err := wire.Encode(m)
	if err != nil {
		c.logger().Error("encode frame", "type", m.Type(), "err", err)
		return false
	}
	return c.enqueue(b)
}

// Stream implements session.Sink for a run's frames. It queues the frame,
// waiting (flow control) while the queue is half full: the other half is
// kept for the frames that are never waited for (final replies,
// broadcasts). A client that takes no frame for the write timeout is a
// slow consumer. It never writes to the socket itself: the run calls it
// under the lock its interrupt needs, and a socket write cannot be cut by
// ctx without breaking the connection.
func (c *conn) Stream(ctx context.Context, m wire.Message) bool {
	if d, ok := m.(wire.Delta); ok {
		return c.StreamDelta(ctx, d.SessionID, d.Text)
	}
	b, err := wire.Encode(m)
	if err != nil {
		c.logger().Error("encode frame", "type", m.Type(), "err", err)
		return false
	}
	return c.stream(ctx, frame{b: b}, "", false)
}

// StreamDelta implements session.DeltaStreamer: the text is appended to a
// queued delta of the same session when the writer has not taken it yet
// (mergeLocked), and only copied when it starts a frame of its own.
func (c *conn) StreamDelta(ctx context.Context, sessionID, text string) bool {
	return c.stream(ctx, frame{delta: true, session: sessionID}, text, false)
}

// StreamDeltaNow implements session.DeltaNower: the delta is written at
// once from the caller's goroutine, without blocking, when the connection
// is writing nothing else; otherwise it is StreamDelta.
func (c *conn) StreamDeltaNow(ctx context.Context, sessionID, text string) bool {
	return c.stream(ctx, frame{delta: true, session: sessionID}, text, true)
}

// stream queues f, or for a delta f with the text deltaText, waiting for
// room (flow control) until ctx ends. With now, a delta is written at once
// if nothing else is being written (StreamDeltaNow).
func (c *conn) stream(ctx context.Context, f frame, deltaText string, now bool) bool {
	for {
		c.mu.Lock()
		switch {
		case c.closed || c.closeCode != 0:
			c.mu.Unlock()
			return false
		case c.mergeLocked(f, deltaText):
			c.mu.Unlock()
			return true
		case now && c.directLocked():
			c.mu.Unlock()
			c.writeNow(encodeDelta(deltaText, f.session))
			return true
		case len(c.queue) < c.limit/2:
			if f.delta {
				// Room for the words that may follow before the writer
				// takes it (merged up to maxMerged).
				f.text = append(make([]byte, 0, max(len(deltaText), deltaRoom)), deltaText...)
			}
			c.queue = append(c.queue, f)
			c.startWriterLocked()
			c.mu.Unlock()
			return true
		}
		c.mu.Unlock()
		if !c.waitRoom(ctx) {
			return false
		}
	}
}

// mergeLocked appends text, of delta f, to the last queued frame when
// that is a delta of the same session the writer has not taken yet: a
// model that streams faster than the client reads sends fewer, larger
// deltas, and the client's text is the same. The writer is running
// whenever the queue is not empty.
func (c *conn) mergeLocked(f frame, text string) bool {
	if !f.delta || len(c.queue) == 0 {
		return false
	}
	last := &c.queue[len(c.queue)-1]
	if !last.delta || last.session != f.session || len(last.text)+len(text) > maxMerged {
		return false
	}
	last.text = append(last.text, text...)
	return true
}

// waitRoom waits until the queue is below half its bound; false if ctx
// ended or the connection closed, or was closed as a slow consumer
// because the client took nothing for the write timeout.
func (c *conn) waitRoom(ctx context.Context) bool {
	var timer *time.Timer // only once it must wait: most calls find room
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		c.mu.Lock()
		if c.closed || c.closeCode != 0 {
			c.mu.Unlock()
			return false
		}
		if len(c.queue) < c.limit/2 {
			c.mu.Unlock()
			return true
		}
		if c.room == nil {
			c.room = make(chan struct{})
		}
		room := c.room
		c.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(c.writeWait)
		}
		select {
		case <-room:
		case <-ctx.Done():
			return false
		case <-timer.C:
			c.slowConsumer()
			return false
		}
	}
}

func (c *conn) slowConsumer() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.slowConsumerLocked()
}

func (c *conn) slowConsumerLocked() {
	if c.closed || c.closeCode != 0 {
		return
	}
	c.queue = nil
	c.closeCode, c.closeText = CloseSlowConsumer, "slow consumer"
	c.logger().Warn("closing slow consumer", "queued_frames", c.limit)
	c.g.slowClosed.Add(1)
	c.startWriterLocked()
}

// enqueue queues one encoded frame. A full queue means the client reads
// too slowly: its frames are dropped and it is closed with 4008, instead of
// letting the queue grow.
func (c *conn) enqueue(b []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.closeCode != 0 {
		return false
	}
	if len(c.queue) >= c.limit {
		c.slowConsumerLocked()
		return false
	}
	c.queue = append(c.queue, frame{b: b})
	c.startWriterLocked()
	return true
}

// directLocked takes the write role for a frame that can go out at once:
// no writer runs, nothing is queued, and the socket takes non-blocking
// writes. Handing the frame to a writer goroutine instead makes it
// runnable, and while the other processor idles the Go runtime then wakes
// a thread for it, a futex and an IPI that on a VM cost the frame about
// as much as the whole round trip of an echo (BenchmarkTurnOverhead).
func (c *conn) directLocked() bool {
	if c.writing || c.closed || c.closeCode != 0 || len(c.queue) > 0 || !c.raw.direct() {
		return false
	}
	c.writing = true
	return true
}

// writeNow writes one encoded frame from the caller's goroutine without
// blocking (the caller may hold a run's lock): what the socket does not
// take at once is left to a writer goroutine, which also writes whatever
// was queued meanwhile. The caller took the write role (directLocked).
func (c *conn) writeNow(b []byte) {
	c.raw.begin()
	if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		c.raw.end()
		c.writeFailed(err)
		return
	}
	done, err := c.raw.tryFlush()
	if err != nil {
		c.writeFailed(err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if done && len(c.queue) == 0 && c.closeCode == 0 {
		c.writing = false
		return
	}
	go c.write() // keeps the write role: the rest of b first, then the queue
}

// writeFailed ends a connection whose socket write failed and gives up
// the write role.
func (c *conn) writeFailed(err error) {
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		c.slowConsumer() // counted; no close frame can follow a cut write
	}
	c.logger().Debug("write failed", "err", err)
	c.shutdown()
	c.mu.Lock()
	c.writing = false
	c.mu.Unlock()
}

// closeWith queues a close frame after the frames already queued.
func (c *conn) closeWith(code int, text string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.closeCode != 0 {
		return
	}
	c.closeCode, c.closeText = code, text
	c.startWriterLocked()
}

func (c *conn) startWriterLocked() {
	if c.writing || c.closed {
		return
	}
	c.writing = true
	go c.write()
}

// write drains the queue, several frames per syscall, then exits.
func (c *conn) write() {
	if c.raw.pending() {
		if err := c.raw.flush(time.Now().Add(2 * c.writeWait)); err != nil {
			c.writeFailed(err)
			return
		}
	}
	for {
		c.mu.Lock()
		batch, code, text := c.queue, c.closeCode, c.closeText
		c.queue = nil
		if c.room != nil {
			close(c.room)
			c.room = nil
		}
		if len(batch) == 0 && code == 0 {
			c.writing = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()

		if err := c.writeBatch(batch); err != nil {
			c.writeFailed(err)
			return
		}
		if code != 0 {
			// Close handshake: the reader ends when the client answers;
			// the timer ends a client that never does. Closing at once
			// could reset the connection before the client read the
			// frames and the close reason.
			c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(c.writeWait))
			time.AfterFunc(closeGrace, c.shutdown)
			c.mu.Lock()
			c.writing = false
			c.mu.Unlock()
			return
		}
	}
}

func (c *conn) writeBatch(batch []frame) error {
	if len(batch) == 0 {
		return nil
	}
	c.raw.begin()
	for _, f := range batch {
		b := f.b
		if f.delta {
			b = encodeDelta(string(f.text), f.session)
		}
		if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
			c.raw.end()
			return err
		}
	}
	// Twice the write timeout: a client that stalls is first declared a
	// slow consumer (Stream's wait, or a full queue), and the close frame
	// can still follow these frames if it reads again in time.
	return c.raw.flush(time.Now().Add(2 * c.writeWait))
}

// shutdown closes the socket; the reader then unregisters the connection.
func (c *conn) shutdown() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.queue = nil
	if c.room != nil {
		close(c.room)
		c.room = nil
	}
	c.mu.Unlock()
	c.ping.Stop()
	c.ws.Close()
}

// sendPing runs on the ping timer; a failed ping closes the connection.
func (c *conn) sendPing() {
	if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.writeWait)); err != nil {
		c.shutdown()
		return
	}
	c.mu.Lock()
	if !c.closed {
		c.ping.Reset(c.pingEvery)
	}
	c.mu.Unlock()
}

// read runs the connection until the client goes, the idle timeout passes
// or ctx (the gateway's lifetime) ends.
func (c *conn) read(ctx context.Context, maxFrame int) {
	defer c.shutdown()
	defer func() {
		c.mu.Lock()
		a := c.audio
		c.mu.Unlock()
		if a != nil {
			a.stop()
		}
	}()
	c.ws.SetReadDeadline(time.Now().Add(c.idle))
	c.ws.SetPongHandler(func(string) error {
		return c.ws.SetReadDeadline(time.Now().Add(c.idle))
	})
	for {
		typ, r, err := c.ws.NextReader()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) && !websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway) {
				c.logger().Debug("connection ended", "err", err)
			}
			return
		}
		c.ws.SetReadDeadline(time.Now().Add(c.idle))
		buf, err := readFrame(r, maxFrame)
		if errors.Is(err, errTooBig) {
			// Keep reading (gorilla discards the rest of the frame) until
			// the client answers the close, so it sees the error first.
			c.Send(wire.Error{Text: fmt.Sprintf("frame larger than %d bytes refused; closing the connection", maxFrame)})
			c.closeWith(websocket.CloseMessageTooBig, "frame too big")
			continue
		}
		if err != nil {
			c.logger().Debug("read frame", "err", err)
			return
		}
		var msg wire.Message
		if typ == websocket.TextMessage {
			msg, err = wire.Decode(buf.Bytes(), wire.ClientToServer)
		}
		putFrame(buf)
		// Input flow control: a client that does not read its replies
		// stops being read, instead of making the server queue them. Acks
		// never wait: one read as the connection is closed (a shutdown, a
		// slow consumer) must still count, or the reply is sent again.
		if _, ack := msg.(wire.Ack); !ack {
			c.waitRoom(ctx)
		}
		if typ != websocket.TextMessage {
			c.Send(wire.Error{Text: "binary frames are not part of the protocol; send JSON text frames"})
			continue
		}
		if err != nil {
			c.Send(wire.Error{Text: err.Error()})
			continue
		}
		// A frame that was read is handled even once the wait failed or
		// our close frame is queued: the client's write succeeded, so
		// dropping it would lose it unseen. The handling outlives the
		// gateway's ctx; its answers are dropped if they can no longer go
		// out.
		c.g.dispatch(context.WithoutCancel(ctx), c, msg)
	}
}

var errTooBig = errors.New("frame too big")

// readFrame reads one message of at most max bytes into a buffer from
// readPool; a longer one is not read further. The caller puts the buffer
// back once it is done with the bytes.
func readFrame(r io.Reader, max int) (*bytes.Buffer, error) {
	buf := readPool.Get().(*bytes.Buffer)
	buf.Reset()
	n, err := buf.ReadFrom(io.LimitReader(r, int64(max)+1))
	if err == nil && n > int64(max) {
		err = errTooBig
	}
	if err != nil {
		putFrame(buf)
		return nil, err
	}
	return buf, nil
}

// readPool holds the buffers frames are read into: every frame needs one
// only until it is decoded (the decoded message copies what it keeps).
var readPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// putFrame returns buf to readPool, unless a rare large frame grew it.
func putFrame(buf *bytes.Buffer) {
	if buf.Cap() <= 64<<10 {
		readPool.Put(buf)
	}
}

// batchConn lets the writer put several frames into one syscall: between
// begin and flush, writes (the writer's frames, and control frames from
// other goroutines) are buffered; otherwise they go straight through.
type batchConn struct {
	net.Conn

	// mu guards batching and buf, and serialises flushes with direct writes
	// so frames never interleave.
	mu       sync.Mutex
	batching bool
	buf      *bytes.Buffer
}

// direct reports whether the connection is a socket, which takes
// non-blocking writes (tryFlush).
func (b *batchConn) direct() bool {
	_, ok := b.Conn.(syscall.Conn)
	return ok
}

// pending reports whether bytes a tryFlush could not write wait for flush.
func (b *batchConn) pending() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.batching
}

// tryFlush writes the buffered frames with one non-blocking write. When
// the socket takes them all it leaves batch mode (done); otherwise the
// rest stays buffered, in batch mode, for flush.
func (b *batchConn) tryFlush() (done bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	// Not kept per connection: an idle one costs as little as it can.
	rc, err := b.Conn.(syscall.Conn).SyscallConn()
	if err != nil {
		return false, err
	}
	var n int
	var werr error
	if err := rc.Write(func(fd uintptr) bool {
		n, werr = syscall.Write(int(fd), b.buf.Bytes())
		return true // one attempt: never wait for the socket
	}); err != nil {
		return false, err
	}
	switch {
	case werr == syscall.EAGAIN || werr == syscall.EINTR:
		return false, nil
	case werr != nil:
		b.release()
		return false, werr
	}
	b.buf.Next(n)
	if b.buf.Len() > 0 {
		return false, nil
	}
	b.release()
	return true, nil
}

var batchPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.batching {
		return b.buf.Write(p)
	}
	return b.Conn.Write(p)
}

func (b *batchConn) begin() {
	b.mu.Lock()
	if b.batching { // the rest of a tryFlush, written first
		b.mu.Unlock()
		return
	}
	b.batching = true
	b.buf = batchPool.Get().(*bytes.Buffer)
	b.mu.Unlock()
}

// end leaves batch mode, discarding what was buffered.
func (b *batchConn) end() {
	b.mu.Lock()
	b.release()
	b.mu.Unlock()
}

func (b *batchConn) release() {
	b.batching = false
	if b.buf.Cap() <= 64<<10 {
		b.buf.Reset()
		batchPool.Put(b.buf)
	}
	b.buf = nil
}

// flush writes the buffered frames in one write and leaves batch mode.
func (b *batchConn) flush(deadline time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.Conn.SetWriteDeadline(deadline)
	_, err := b.Conn.Write(b.buf.Bytes())
	b.release()
	return err
}
