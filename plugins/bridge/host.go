package bridge

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	bridgev1 "github.com/agentd/agentd/proto/bridge/v1"
)

// Host callback limits. Logging must never block a platform, so records go
// through a bounded queue and are dropped (and counted) when agentd is slow;
// events matter more (a QR code lost is a failed pairing), so they wait a
// little for room before being dropped.
const (
	hostQueueLen   = 512
	hostEventWait  = time.Second
	hostRPCTimeout = 5 * time.Second
)

// hostConn is the plugin's client of agentd's BridgeHost service.
type hostConn struct {
	rpc     bridgev1.BridgeHostClient
	conn    *grpc.ClientConn
	queue   chan *hostCall
	dropped atomic.Int64
	done    chan struct{}
}

// hostCall is one queued Log or Event call; exactly one field is set.
type hostCall struct {
	log   *bridgev1.LogRequest
	event *bridgev1.EventRequest
}

// dialHost connects to the BridgeHost served by agentd on broker stream id
// and starts the sender, which runs until ctx is done.
func dialHost(ctx context.Context, broker *plugin.GRPCBroker, id uint32) (*hostConn, error) {
	conn, err := broker.Dial(id)
	if err != nil {
		return nil, fmt.Errorf("dial bridge host (broker stream %d): %w", id, err)
	}
	h := &hostConn{
		rpc:   bridgev1.NewBridgeHostClient(conn),
		conn:  conn,
		queue: make(chan *hostCall, hostQueueLen),
		done:  make(chan struct{}),
	}
	go h.send(ctx)
	return h, nil
}

// send delivers queued calls in order until ctx is done, then closes the
// connection.
func (h *hostConn) send(ctx context.Context) {
	defer close(h.done)
	defer h.conn.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-h.queue:
			if n := h.dropped.Swap(0); n > 0 {
				h.call(ctx, &hostCall{log: &bridgev1.LogRequest{
					Level: int32(slog.LevelWarn),
					Msg:   fmt.Sprintf("bridge host queue full: dropped %d log records", n),
				}})
			}
			h.call(ctx, c)
		}
	}
}

func (h *hostConn) call(ctx context.Context, c *hostCall) {
	ctx, cancel := context.WithTimeout(ctx, hostRPCTimeout)
	defer cancel()
	var err error
	if c.log != nil {
		_, err = h.rpc.Log(ctx, c.log)
	} else {
		_, err = h.rpc.Event(ctx, c.event)
	}
	if err != nil && ctx.Err() == nil {
		// stderr is captured into the same bridge log by agentd, so the
		// record is not lost, only less structured.
		fmt.Fprintf(os.Stderr, "bridge host call failed: %v\n", err)
	}
}

// RequestPairing asks agentd for a stranger's pairing code. It is a direct
// call, not queued: the user's answer depends on it.
func (h *hostConn) RequestPairing(ctx context.Context, m Incoming) (PairingAnswer, error) {
	ctx, cancel := context.WithTimeout(ctx, hostRPCTimeout)
	defer cancel()
	resp, err := h.rpc.RequestPairing(ctx, &bridgev1.PairingRequest{UserId: m.UserID, UserName: m.UserName, ChatId: m.ChatID})
	if err != nil {
		return PairingAnswer{}, fmt.Errorf("pairing request: %w", err)
	}
	switch resp.Outcome {
	case bridgev1.PairingOutcome_PAIRING_OUTCOME_PENDING:
		return PairingAnswer{Outcome: PairingPending, Code: resp.Code}, nil
	case bridgev1.PairingOutcome_PAIRING_OUTCOME_FULL:
		return PairingAnswer{Outcome: PairingFull}, nil
	case bridgev1.PairingOutcome_PAIRING_OUTCOME_ALLOWED:
		return PairingAnswer{Outcome: PairingAllowed}, nil
	default:
		return PairingAnswer{Outcome: PairingRefused}, nil
	}
}

// Event queues an operator event, waiting up to hostEventWait for room.
func (h *hostConn) Event(kind bridgev1.EventKind, text string) {
	h.queueEvent(&bridgev1.EventRequest{Kind: kind, Text: text})
}

// State queues a platform state report, in order with the events.
func (h *hostConn) State(state PlatformState, reason string) {
	h.queueEvent(&bridgev1.EventRequest{Kind: bridgev1.EventKind_EVENT_KIND_STATE, Text: reason, PlatformState: stateWire(state)})
}

func (h *hostConn) queueEvent(ev *bridgev1.EventRequest) {
	t := time.NewTimer(hostEventWait)
	defer t.Stop()
	select {
	case h.queue <- &hostCall{event: ev}:
	case <-h.done:
	case <-t.C:
		h.dropped.Add(1)
	}
}

// log queues a record without blocking. When the queue is full, debug and
// info records are dropped (and counted), but warnings and errors go to
// stderr, which agentd writes to the same bridge log: they are never lost.
func (h *hostConn) log(r *bridgev1.LogRequest) {
	select {
	case h.queue <- &hostCall{log: r}:
		return
	default:
	}
	if slog.Level(r.Level) < slog.LevelWarn {
		h.dropped.Add(1)
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "level=%s msg=%q", slog.Level(r.Level), r.Msg)
	for _, a := range r.Attrs {
		fmt.Fprintf(&b, " %s=%q", a.Key, a.Value)
	}
	fmt.Fprintln(hostStderr, b.String())
}

// hostStderr is where records that do not fit the queue go (tests swap it).
var hostStderr io.Writer = os.Stderr

// EventKind maps the Host.Event kind strings to the wire enum; unknown kinds
// are sent as alerts so that nothing meant for the operator vanishes.
func EventKind(kind string) bridgev1.EventKind {
	switch kind {
	case "qr":
		return bridgev1.EventKind_EVENT_KIND_QR
	case "logged_out":
		return bridgev1.EventKind_EVENT_KIND_LOGGED_OUT
	case "status":
		return bridgev1.EventKind_EVENT_KIND_STATUS
	case "state":
		return bridgev1.EventKind_EVENT_KIND_STATE
	default:
		return bridgev1.EventKind_EVENT_KIND_ALERT
	}
}

// EventKindName is the inverse of EventKind: "qr", "logged_out", "alert",
// "status", "state".
func EventKindName(k bridgev1.EventKind) string {
	switch k {
	case bridgev1.EventKind_EVENT_KIND_QR:
		return "qr"
	case bridgev1.EventKind_EVENT_KIND_LOGGED_OUT:
		return "logged_out"
	case bridgev1.EventKind_EVENT_KIND_STATUS:
		return "status"
	case bridgev1.EventKind_EVENT_KIND_STATE:
		return "state"
	default:
		return "alert"
	}
}

// hostHandler is a slog.Handler that forwards records to agentd's bridge
// log through BridgeHost.Log.
type hostHandler struct {
	h      *hostConn
	level  slog.Leveler
	attrs  []*bridgev1.Attr
	prefix string // open groups, "a.b."
}

func newHostLogger(h *hostConn, level slog.Leveler) *slog.Logger {
	return slog.New(&hostHandler{h: h, level: level})
}

func (hh *hostHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= hh.level.Level()
}

func (hh *hostHandler) Handle(_ context.Context, r slog.Record) error {
	attrs := slices.Clone(hh.attrs)
	r.Attrs(func(a slog.Attr) bool {
		attrs = appendAttr(attrs, hh.prefix, a)
		return true
	})
	hh.h.log(&bridgev1.LogRequest{Level: int32(r.Level), Msg: r.Message, Attrs: attrs})
	return nil
}

func (hh *hostHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *hh
	n.attrs = slices.Clone(hh.attrs)
	for _, a := range as {
		n.attrs = appendAttr(n.attrs, hh.prefix, a)
	}
	return &n
}

func (hh *hostHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return hh
	}
	n := *hh
	n.prefix = hh.prefix + name + "."
	return &n
}

// appendAttr flattens a (possibly grouped) attribute into key/value pairs
// with dotted keys, the shape agentd writes to the log file.
func appendAttr(dst []*bridgev1.Attr, prefix string, a slog.Attr) []*bridgev1.Attr {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return dst
	}
	if a.Value.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p = prefix + a.Key + "."
		}
		for _, g := range a.Value.Group() {
			dst = appendAttr(dst, p, g)
		}
		return dst
	}
	return append(dst, &bridgev1.Attr{Key: prefix + a.Key, Value: strings.TrimSpace(a.Value.String())})
}
