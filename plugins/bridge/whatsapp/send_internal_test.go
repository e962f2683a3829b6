package whatsapp

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"go.mau.fi/whatsmeow"

	"github.com/agentd/agentd/plugins/bridge"
)

func TestClassify(t *testing.T) {
	cases := []struct {
		err      error
		limited  bool
		rejected bool
	}{
		{whatsmeow.ErrIQRateOverLimit, true, false},
		{fmt.Errorf("wrapped: %w", whatsmeow.ErrUnknownServer), false, true},
		{whatsmeow.ErrBroadcastListUnsupported, false, true},
		{os.ErrNotExist, false, true},
		{whatsmeow.ErrNotConnected, false, false},
		{whatsmeow.ErrServerReturnedError, false, false},
		{errors.New("websocket closed"), false, false},
	}
	for _, c := range cases {
		err := classify("send", c.err)
		var rl *bridge.RateLimited
		if got := errors.As(err, &rl); got != c.limited || (got && (rl.RetryAfter <= 0 || rl.Scope != bridge.ScopeBot)) {
			t.Errorf("%v: rate limited %v (%+v), want %v", c.err, got, rl, c.limited)
		}
		if got := errors.Is(err, bridge.ErrRejected); got != c.rejected {
			t.Errorf("%v: rejected %v, want %v", c.err, got, c.rejected)
		}
	}
	if classify("send", nil) != nil {
		t.Error("nil error classified")
	}
}

func TestChatIDRoundTrip(t *testing.T) {
	for _, id := range []string{"391234567", "120363000000000001@g.us"} {
		j, err := chatJID(id)
		if err != nil || ChatID(j) != id {
			t.Errorf("%q → %v, %v → %q", id, j, err, ChatID(j))
		}
	}
	for _, bad := range []string{"", "abc", "1@s.whatsapp.net", "x@g.us@"} {
		if _, err := chatJID(bad); !errors.Is(err, bridge.ErrRejected) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
