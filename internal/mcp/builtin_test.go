package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestAllowed(t *testing.T) {
	allow := []string{"tg:*", "cli-main", "dc:42"}
	for _, c := range []struct {
		sid  string
		want bool
	}{
		{"tg:155490357", true}, {"tg:", true}, {"cli-main", true}, {"dc:42", true},
		{"dc:43", false}, {"cli-main2", false}, {"wa:1", false}, {"", false}, {"tg", false},
	} {
		if got := Allowed(allow, c.sid); got != c.want {
			t.Errorf("Allowed(%q) = %v", c.sid, got)
		}
	}
	if Allowed([]string{"*"}, "anything") {
		t.Error("a bare * must not allow everything")
	}
}

func TestSessionsSend(t *testing.T) {
	allow := []string{"tg:*"}
	var sent []string
	push := func(_ context.Context, sid, text string) error {
		if sid == "tg:gone" {
			return errors.New("session not found")
		}
		sent = append(sent, sid+"="+text)
		return nil
	}
	tool := SessionsSend(func() []string { return allow }, push)
	if d := tool.Spec().Description; !strings.Contains(d, "tg:*") {
		t.Errorf("description does not name the allowed sessions: %q", d)
	}
	call := func(sid, text string) (string, error) {
		b, _ := json.Marshal(map[string]string{"session_id": sid, "text": text})
		return tool.Call(context.Background(), b)
	}
	if out, err := call("tg:1", "hello"); err != nil || out != "sent to tg:1" {
		t.Errorf("allowed send: %q, %v", out, err)
	}
	if _, err := call("cli", "hello"); err == nil || !strings.Contains(err.Error(), "tools.sessions_send.allow") {
		t.Errorf("refused send: %v", err)
	}
	if _, err := call("tg:1", "  "); err == nil {
		t.Error("empty text accepted")
	}
	if _, err := call("tg:gone", "x"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("push failure not reported: %v", err)
	}
	allow = nil // a reload that empties the list applies at the next call
	if _, err := call("tg:1", "again"); err == nil {
		t.Error("send allowed after the allow list was emptied")
	}
	if strings.Join(sent, ",") != "tg:1=hello" {
		t.Errorf("pushed %v", sent)
	}
	if d := tool.Spec().Description; !strings.Contains(d, "none") {
		t.Errorf("description with no allowed sessions: %q", d)
	}
}
