package gateway

import (
	"context"
	"strings"
	"testing"

	"github.com/agentd/agentd/wire"
)

// Deltas that wait in a connection's queue are merged into the last queued
// delta of their session, up to maxMerged; any other frame, another session
// or a full merged frame starts a new one, so order and text are kept.
func TestQueuedDeltasMerge(t *testing.T) {
	c := &conn{limit: 64, writing: true} // a writer is busy: nothing leaves the queue
	ctx := context.Background()
	big := strings.Repeat("x", maxMerged)
	for _, m := range []wire.Message{
		wire.Delta{Text: "echo:", SessionID: "s1"},
		wire.Delta{Text: " one", SessionID: "s1"},
		wire.Delta{Text: " two", SessionID: "s1"},
		wire.Delta{Text: "other", SessionID: "s2"},
		wire.Delta{Text: " three", SessionID: "s1"},
		wire.Status{Text: "thinking", SessionID: "s1"},
		wire.Delta{Text: " four", SessionID: "s1"},
		wire.Delta{Text: big, SessionID: "s1"},
		wire.Delta{Text: "", SessionID: "s1"},
		wire.Delta{Text: " five", SessionID: "s1"},
	} {
		if !c.Stream(ctx, m) {
			t.Fatalf("Stream(%#v) refused", m)
		}
	}
	var got []string
	for _, f := range c.queue {
		if f.delta {
			got = append(got, f.session+":"+string(f.text))
		} else {
			got = append(got, string(f.b))
		}
	}
	want := []string{
		"s1:echo: one two",
		"s2:other",
		"s1: three",
		`{"type":"status","text":"thinking","session_id":"s1"}`,
		"s1: four",
		"s1:" + big, // full: the next starts a frame of its own
		"s1: five",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("queue\n%.200q\nwant\n%.200q", got, want)
	}
}
