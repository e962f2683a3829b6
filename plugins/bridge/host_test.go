package bridge

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	bridgev1 "github.com/agentd/agentd/proto/bridge/v1"
)

// A full host queue drops debug and info records (counted) but never a
// warning or an error: those go to stderr, which agentd logs as well.
func TestHostLogNeverDropsWarnings(t *testing.T) {
	var stderr bytes.Buffer
	old := hostStderr
	hostStderr = &stderr
	t.Cleanup(func() { hostStderr = old })
	h := &hostConn{queue: make(chan *hostCall, 1)} // no sender: the queue stays full
	rec := func(l slog.Level, msg string) *bridgev1.LogRequest {
		return &bridgev1.LogRequest{Level: int32(l), Msg: msg, Attrs: []*bridgev1.Attr{{Key: "chat_id", Value: "7"}}}
	}
	h.log(rec(slog.LevelInfo, "fills the queue"))
	h.log(rec(slog.LevelDebug, "delta"))
	h.log(rec(slog.LevelInfo, "edit"))
	h.log(rec(slog.LevelWarn, "reply part not sent"))
	h.log(rec(slog.LevelError, "bridge stopped with an error"))
	if n := h.dropped.Load(); n != 2 {
		t.Errorf("dropped %d, want 2 (debug and info)", n)
	}
	got := stderr.String()
	for _, want := range []string{`level=WARN msg="reply part not sent" chat_id="7"`, `level=ERROR msg="bridge stopped with an error"`} {
		if !strings.Contains(got, want) {
			t.Errorf("stderr %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "delta") {
		t.Errorf("stderr got a debug record: %q", got)
	}
}

func TestHostLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{"": slog.LevelInfo, "debug": slog.LevelDebug, "WARN": slog.LevelWarn, "error": slog.LevelError, "bogus": slog.LevelInfo} {
		if got := hostLevel(map[string]string{"log_level": in}); got != want {
			t.Errorf("hostLevel(%q) = %v, want %v", in, got, want)
		}
	}
}
