package config

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testLookup(name string) (string, bool) {
	if name == "TEST_OPENAI_KEY" {
		return "sk-test", true
	}
	return "", false
}

func TestParseGood(t *testing.T) {
	data, err := os.ReadFile("testdata/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse("good.yaml", data, testLookup)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got := cfg.Providers[0].APIKey; got != "sk-test" {
		t.Errorf("api_key = %q, want expanded env value", got)
	}
	if cfg.Limits.QueueCap != 5 || cfg.Limits.SnapshotInterval.D() != 10*time.Second {
		t.Errorf("limits = %+v", cfg.Limits)
	}
	// Defaults survive for what the file does not set.
	if cfg.Limits.WriteQueue != 256 || !cfg.Listeners.Unix.Enabled {
		t.Errorf("defaults lost: %+v %+v", cfg.Limits, cfg.Listeners)
	}
	if len(cfg.Alerts.DeliverTo) != 2 || cfg.Alerts.After.D() != DefaultAlertsAfter {
		t.Errorf("alerts = %+v", cfg.Alerts)
	}
	if m, ok := cfg.Model("gpt"); !ok || m.Name != "gpt-4o-mini" || !m.IsEnabled() {
		t.Errorf("model gpt = %+v, %v", m, ok)
	}
}

func TestParseEmptyIsRefused(t *testing.T) {
	// An editor that truncates, then writes, leaves these for a moment:
	// applying them as defaults would drop every setting.
	for _, src := range []string{"", "   \n\t\n", "# only a comment\n", "---\n"} {
		_, err := Parse("openagent.yaml", []byte(src), testLookup)
		if err == nil || err.Error() != "openagent.yaml: the file is empty (write at least the agent section)" {
			t.Errorf("Parse(%q) = %v, want the empty-file error", src, err)
		}
	}
}

func TestParseBad(t *testing.T) {
	tests := []struct {
		file string
		want string // the whole error
	}{
		{"bad_yaml.yaml", "bad_yaml.yaml:2:9: sequence end token ']' not found"},
		{"unknown_field.yaml", `unknown_field.yaml:3:3: unknown field "nmae"`},
		{"wrong_type.yaml", "wrong_type.yaml:2:14: limits.queue_cap: want an integer, got String"},
		{"missing_env.yaml", "missing_env.yaml:4:14: providers[0].api_key: environment variable TEST_MISSING_KEY is not set"},
		{"bad_kind.yaml", `bad_kind.yaml:3:11: providers[0].kind: unknown kind "gemini" (want openai, anthropic or echo)`},
		{"bad_default_model.yaml", `bad_default_model.yaml:2:18: agent.default_model: unknown model "nope"`},
		{"bad_alert_target.yaml", `bad_alert_target.yaml:2:24: alerts.deliver_to[1]: "tg:1" is listed twice`},
		{"bad_alert_after.yaml", `bad_alert_after.yaml:3:10: alerts.after: must be between 0s and 24h`},
		{"bad_timezone.yaml", `bad_timezone.yaml:2:13: scheduler.timezone: unknown time zone "Mars/Olympus" (want an IANA name such as Europe/Berlin, or empty for the machine's)`},
		{"bad_dm_open.yaml", `bad_dm_open.yaml:5:16: bridges.telegram.dm_policy: open lets everybody talk to the agent: write allowed_users: ["*"] too`},
		{"bad_dm_policy.yaml", `bad_dm_policy.yaml:5:16: bridges.telegram.dm_policy: "pairng": want one of pairing, allowlist, open, disabled`},
		{"bad_duration.yaml", `bad_duration.yaml:2:22: limits.snapshot_interval: invalid duration "soon" (want e.g. 30s, 5m)`},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse(tt.file, data, testLookup)
			if err == nil {
				t.Fatal("Parse succeeded, want error")
			}
			if err.Error() != tt.want {
				t.Errorf("error = %q\nwant        %q", err, tt.want)
			}
		})
	}
}

func TestWatcherReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	write := func(s string) {
		t.Helper()
		// Write-then-rename, as editors and PUT /api/config do.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write("agent:\n  name: one\n")
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	w := NewWatcher(path, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	changed := make(chan string, 4)
	w.Subscribe(func(old, cur *Config) { changed <- old.Agent.Name + "->" + cur.Agent.Name })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	time.Sleep(50 * time.Millisecond) // let the watch start

	write("agent:\n  name: two\n")
	select {
	case got := <-changed:
		if got != "one->two" {
			t.Errorf("change = %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("good change not applied")
	}

	write("agent:\n  name: three\n  bogus: 1\n")
	deadline := time.Now().Add(5 * time.Second)
	for w.LastError() == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if w.LastError() == nil {
		t.Fatal("bad file not refused")
	}
	if got := w.Current().Agent.Name; got != "two" {
		t.Errorf("config in force = %q after a bad file, want two", got)
	}
	write("  \n")
	deadline = time.Now().Add(5 * time.Second)
	for (w.LastError() == nil || !strings.Contains(w.LastError().Error(), "empty")) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := w.LastError(); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("whitespace-only file not refused: %v", err)
	}
	if got := w.Current().Agent.Name; got != "two" {
		t.Errorf("config in force = %q after an empty file, want two", got)
	}
	select {
	case got := <-changed:
		t.Errorf("subscriber notified of a refused file: %s", got)
	default:
	}
}

func TestTemplateIsValid(t *testing.T) {
	for _, env := range []map[string]string{
		{},
		{"OPENAI_API_KEY": "sk-x"},
		{"ANTHROPIC_API_KEY": "a", "OPENAI_API_KEY": "b"},
	} {
		lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
		out, err := Template("my-agent", lookup)
		if err != nil {
			t.Fatalf("env %v: %v", env, err)
		}
		cfg, err := Parse(FileName, out, lookup)
		if err != nil {
			t.Fatalf("env %v: %v", env, err)
		}
		if cfg.Agent.Name != "my-agent" {
			t.Errorf("name = %q", cfg.Agent.Name)
		}
		if _, has := env["OPENAI_API_KEY"]; has && cfg.Agent.DefaultModel != "gpt-4o-mini" {
			t.Errorf("env %v: default model %q", env, cfg.Agent.DefaultModel)
		}
		if len(env) == 0 && cfg.Agent.DefaultModel != "echo" {
			t.Errorf("no keys: default model %q, want echo", cfg.Agent.DefaultModel)
		}
		if bytes.Contains(out, []byte("sk-x")) {
			t.Error("secret copied into the file")
		}
	}
}
