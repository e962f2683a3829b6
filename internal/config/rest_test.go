package config

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const restFile = `# my agent
agent:
  name: a # shown in auth_ok
  # the prompt
  system_prompt: "old"
  default_model: echo
providers:
  - id: openai
    kind: openai
    api_key: ${TEST_OPENAI_KEY}
  - id: anth
    kind: anthropic
    api_key: sk-literal-secret
  - id: echo
    kind: echo
# trailing comment
`

func restWatcher(t *testing.T) (*Watcher, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), FileName)
	if err := os.WriteFile(path, []byte(restFile), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(path, []byte(restFile), testLookup)
	if err != nil {
		t.Fatal(err)
	}
	w := NewWatcher(path, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	w.lookup = testLookup
	return w, path
}

func call(t *testing.T, w *Watcher, method, target, body string) (int, map[string]any) {
	t.Helper()
	mux := http.NewServeMux()
	for _, r := range Routes(w) {
		mux.Handle(r.Pattern, r.Handler)
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(method, target, strings.NewReader(body)))
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("%s %s: %d %s", method, target, rec.Code, rec.Body)
	}
	return rec.Code, out
}

func TestGetConfigMasksSecrets(t *testing.T) {
	w, _ := restWatcher(t)
	code, out := call(t, w, "GET", "/api/config", "")
	if code != 200 {
		t.Fatalf("GET %d %v", code, out)
	}
	b, _ := json.Marshal(out)
	if bytes.Contains(b, []byte("sk-literal-secret")) || bytes.Contains(b, []byte("sk-test")) {
		t.Fatalf("a secret in clear: %s", b)
	}
	ps := out["providers"].([]any)
	if p := ps[0].(map[string]any); p["api_key"] != "${TEST_OPENAI_KEY}" || p["api_key_set"] != true {
		t.Errorf("env reference shown as %v", p)
	}
	if p := ps[1].(map[string]any); p["api_key"] != Masked || p["api_key_set"] != true {
		t.Errorf("literal secret shown as %v", p)
	}
	if p := ps[2].(map[string]any); p["api_key"] != "" || p["api_key_set"] != false {
		t.Errorf("unset secret shown as %v", p)
	}
	if l := out["limits"].(map[string]any); l["queue_cap"] != float64(20) {
		t.Errorf("defaults missing: %v", l)
	}
}

func TestPatchConfigChangesOneLine(t *testing.T) {
	w, path := restWatcher(t)
	code, out := call(t, w, "PATCH", "/api/config/agent", `{"system_prompt":"Be brief."}`)
	if code != 200 || out["ok"] != true || out["restart_required"] != false {
		t.Fatalf("PATCH %d %v", code, out)
	}
	got, _ := os.ReadFile(path)
	want := strings.Replace(restFile, `system_prompt: "old"`, `system_prompt: Be brief.`, 1)
	if string(got) != want {
		t.Errorf("file:\n%s\nwant:\n%s", got, want)
	}
	if w.Current().Agent.SystemPrompt != "Be brief." {
		t.Errorf("not applied: %q", w.Current().Agent.SystemPrompt)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
}

func TestPutConfigRoundTripKeepsFile(t *testing.T) {
	w, path := restWatcher(t)
	_, view := call(t, w, "GET", "/api/config", "")
	b, _ := json.Marshal(view)
	code, out := call(t, w, "PUT", "/api/config", string(b))
	if code != 200 {
		t.Fatalf("PUT %d %v", code, out)
	}
	if got, _ := os.ReadFile(path); string(got) != restFile {
		t.Errorf("PUT of GET's answer changed the file:\n%s", got)
	}
	// A secret sent back as *** stays; a changed one is written.
	view["providers"].([]any)[1].(map[string]any)["api_key"] = "sk-new"
	b, _ = json.Marshal(view)
	if code, out := call(t, w, "PUT", "/api/config", string(b)); code != 200 {
		t.Fatalf("PUT %d %v", code, out)
	}
	if got, _ := os.ReadFile(path); !strings.Contains(string(got), "    api_key: sk-new\n") || !strings.Contains(string(got), "${TEST_OPENAI_KEY}") {
		t.Errorf("file:\n%s", got)
	}
}

func TestPatchConfigInvalidWritesNothing(t *testing.T) {
	for _, tc := range []struct{ target, body, want string }{
		{"/api/config/agent", `{"default_model":"nope"}`, `agent.default_model: unknown model "nope"`},
		{"/api/config/limits", `{"queue_cap":0}`, "limits.queue_cap: must be at least 1"},
		{"/api/config/limits", `{"snapshot_interval":"soon"}`, `limits.snapshot_interval: invalid duration "soon"`},
		{"/api/config/bogus", `{"x":1}`, "bogus: unknown config section"},
		{"/api/config/agent", `{"nmae":"x"}`, `unknown field "nmae"`},
		{"/api/config/voice", `{"api_key":"***"}`, `voice.api_key: "***" keeps the current value, but there is none`},
	} {
		w, path := restWatcher(t)
		code, out := call(t, w, "PATCH", tc.target, tc.body)
		e, _ := out["error"].(map[string]any)
		if code != 422 || e["code"] != "invalid_config" || !strings.Contains(e["message"].(string), tc.want) {
			t.Errorf("PATCH %s %s = %d %v, want 422 with %q", tc.target, tc.body, code, out, tc.want)
		}
		if got, _ := os.ReadFile(path); string(got) != restFile {
			t.Errorf("refused PATCH changed the file:\n%s", got)
		}
	}
}

func TestPatchConfigMergeSemantics(t *testing.T) {
	w, path := restWatcher(t)
	// null deletes a key; a section not named is never touched.
	if code, out := call(t, w, "PATCH", "/api/config/agent", `{"system_prompt":null}`); code != 200 {
		t.Fatalf("%d %v", code, out)
	}
	got, _ := os.ReadFile(path)
	if strings.Contains(string(got), "system_prompt") || !strings.Contains(string(got), "api_key: sk-literal-secret") {
		t.Errorf("file:\n%s", got)
	}
	code, out := call(t, w, "PATCH", "/api/config/listeners", `{"tcp":{"enabled":true}}`)
	if code != 200 || out["restart_required"] != true {
		t.Errorf("listener change: %d %v", code, out)
	}
	got, _ = os.ReadFile(path)
	if !strings.HasSuffix(string(got), "    kind: echo\nlisteners:\n  tcp:\n    enabled: true\n# trailing comment\n") {
		t.Errorf("file:\n%s", got)
	}
}
