package integration

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// A scheduled task added with the CLI and run with the CLI delivers its
// reply to a Telegram chat: agentd → the bridge's outbox → the real
// bridge-telegram binary → the fake Bot API. The run is in the history.
func TestTaskReplyReachesTelegram(t *testing.T) {
	e := newBridgeEnv(t, "")
	add := agentd(t, nil, "task", "add", e.dir, "--name", "brief", "--cron", "0 7 * * *", "--tz", "Europe/Berlin",
		"--prompt", "weather report for Berlin", "--deliver", fmt.Sprintf("tg:%d", aliceID))
	if add.code != 0 {
		t.Fatalf("task add: %d %s", add.code, add.stderr)
	}
	m := regexp.MustCompile(`^task ([0-9a-f]+) \(brief\): enabled, next run \d{4}-\d\d-\d\dT07:00:00\+0[12]:00\n$`).FindStringSubmatch(add.stdout)
	if m == nil {
		t.Fatalf("task add printed %q", add.stdout)
	}
	id := m[1]
	if r := agentd(t, nil, "task", "run", e.dir, id); r.code != 0 || !strings.Contains(r.stdout, "run 1 started") {
		t.Fatalf("task run: %d %q %s", r.code, r.stdout, r.stderr)
	}
	got := e.waitReply(20*time.Second, "weather report for Berlin")
	if got.ChatID != aliceID {
		t.Fatalf("reply went to chat %d", got.ChatID)
	}
	var list result
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		list = agentd(t, nil, "task", "list", e.dir)
		if strings.Contains(list.stdout, "success") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !regexp.MustCompile(id + `\s+brief\s+0 7 \* \* \*\s+Europe/Berlin\s+enabled\s+\S+\s+success\s+tg:1001`).MatchString(list.stdout) {
		t.Fatalf("task list:\n%s", list.stdout)
	}
	for _, op := range []string{"disable", "remove"} {
		if r := agentd(t, nil, "task", op, e.dir, id); r.code != 0 {
			t.Fatalf("task %s: %d %s", op, r.code, r.stderr)
		}
	}
	if r := agentd(t, nil, "task", "run", e.dir, id); r.code != 1 || !strings.Contains(r.stderr, "404 not_found") {
		t.Fatalf("run of a removed task: %d %s", r.code, r.stderr)
	}
	if r := agentd(t, nil, "task", "add", e.dir, "--name", "x", "--cron", "0 25 * * *", "--prompt", "p"); r.code != 1 ||
		!strings.Contains(r.stderr, "400 invalid_task: cron_expression \"0 25 * * *\": invalid cron expression") {
		t.Fatalf("bad cron: %d %s", r.code, r.stderr)
	}
}
