package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/agentd/agentd/internal/logfile"
	"github.com/agentd/agentd/plugins/bridge"
	bridgev1 "github.com/agentd/agentd/proto/bridge/v1"
)

func openBridgeLog(dir, name string) (*logfile.File, error) {
	l, err := logfile.Open(LogPath(dir, name), logfile.MaxBytes, logfile.Backups)
	if err != nil {
		return nil, fmt.Errorf("open bridge %s log: %w", name, err)
	}
	return l, nil
}

// LogPath is a bridge's log file.
func LogPath(dir, name string) string {
	return filepath.Join(dir, "logs", "bridge-"+name+".log")
}

// hostServer is agentd's BridgeHost for one bridge: Log goes to the
// bridge's log file, Event to its status.
type hostServer struct {
	bridgev1.UnimplementedBridgeHostServer
	s   *Supervisor
	e   *entry
	gen uint64 // the launch it serves
	log *slog.Logger
}

func (h *hostServer) Log(ctx context.Context, r *bridgev1.LogRequest) (*bridgev1.LogResponse, error) {
	args := make([]any, 0, len(r.Attrs))
	for _, a := range r.Attrs {
		args = append(args, slog.String(a.Key, a.Value))
	}
	h.log.Log(ctx, slog.Level(r.Level), r.Msg, args...)
	return &bridgev1.LogResponse{}, nil
}

func (h *hostServer) Event(_ context.Context, r *bridgev1.EventRequest) (*bridgev1.EventResponse, error) {
	kind := bridge.EventKindName(r.Kind)
	text := r.Text
	if len(text) > 4096 {
		text = text[:4096] // a QR payload is far shorter; this bounds a misbehaving bridge
	}
	h.log.Info("bridge event", "kind", kind, "text", text)
	state := bridge.StateName(r.PlatformState)
	if kind == "logged_out" { // an older bridge's needs_login
		kind, state = "state", bridge.PlatformNeedsLogin
	}
	if kind == "alert" && strings.HasPrefix(text, bridge.CertRefused) {
		// The supervisor can fix this itself (and says so); not an
		// operator alert unless that fails.
		go h.s.certRefused(h.e, text)
		return &bridgev1.EventResponse{}, nil
	}
	if kind == "state" {
		text = bridge.StateStatus(state, text)
	}
	h.s.mu.Lock()
	st := &h.e.status
	st.Events = append(st.Events, Event{Time: time.Now(), Kind: kind, Text: text})
	if n := len(st.Events); n > maxEvents {
		st.Events = append(st.Events[:0:0], st.Events[n-maxEvents:]...)
	}
	switch kind {
	case "qr":
		st.LoginQR = text
	case "status", "state":
		st.PlatformStatus, st.LoginQR = text, ""
	}
	prefix := st.SessionPrefix
	h.s.mu.Unlock()
	if kind == "state" {
		h.s.platformState(h.e, h.gen, state, r.Text)
	}
	h.s.reportEvent(h.e.name, prefix, kind, text)
	h.s.notify(h.e.name, ActionEvent)
	return &bridgev1.EventResponse{}, nil
}
