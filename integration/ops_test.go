package integration

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentd/agentd/client"
	"github.com/agentd/agentd/devicecert"
	"github.com/agentd/agentd/internal/coordinator"
	"github.com/agentd/agentd/internal/provider/providertest"
	"github.com/agentd/agentd/internal/store"
)

// issueDevice has the agent's own coordinator issue a real certificate with
// caps for a new device key (before agentd serves, as `agentd invite` +
// enroll would), and returns a client for it.
func issueDevice(t *testing.T, dir, handle string, caps ...string) *client.Dialer {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(dir, store.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := coordinator.Open(ctx, dir, st)
	if err != nil {
		t.Fatal(err)
	}
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	wire, err := c.Issue(ctx, pub, handle, handle, caps)
	if err != nil {
		t.Fatal(err)
	}
	d := client.Unix(filepath.Join(dir, "agentd.sock"), &devicecert.Identity{Key: key, Cert: wire})
	t.Cleanup(d.CloseIdle)
	return d
}

func ownerClient(t *testing.T, dir string) *client.Dialer {
	t.Helper()
	id, err := devicecert.LoadIdentity(filepath.Join(dir, "keys", "owner.identity"))
	if err != nil {
		t.Fatal(err)
	}
	d := client.Unix(filepath.Join(dir, "agentd.sock"), id)
	t.Cleanup(d.CloseIdle)
	return d
}

func ctx30(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// lastSystemPrompt is the system message of the fake's latest request.
func lastSystemPrompt(t *testing.T, fake *providertest.Server) string {
	t.Helper()
	reqs := fake.Requests()
	if len(reqs) == 0 {
		t.Fatal("the provider saw no request")
	}
	for _, m := range reqs[len(reqs)-1].OpenAI(t).Messages {
		if m.Role == "system" {
			return m.Text()
		}
	}
	return ""
}

// TestConfigREST: GET masks secrets; a PATCH changes one line of the file
// (comments intact) and the next turn uses it; an invalid PATCH is 422 with
// the file byte-identical; an empty file written by hand is refused.
func TestConfigREST(t *testing.T) {
	fake := providertest.NewOpenAI(t)
	dir := newAgent(t, false)
	useFakeOpenAI(t, dir, fake)
	chat := issueDevice(t, dir, "phone", "chat")
	d := startServe(t, dir)
	owner := ownerClient(t, dir)
	ctx := ctx30(t)
	path := filepath.Join(dir, "openagent.yaml")

	for _, m := range []string{"GET /api/config", "PUT /api/config", "PATCH /api/config/agent"} {
		method, p, _ := strings.Cut(m, " ")
		if err := chat.DoJSON(ctx, method, p, map[string]any{}, nil); !client.IsStatus(err, 403) {
			t.Errorf("chat cert %s: %v, want 403", m, err)
		}
	}

	var view map[string]any
	if err := owner.GetJSON(ctx, "/api/config", &view); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(view)
	if strings.Contains(string(b), fake.APIKey) {
		t.Errorf("GET /api/config shows the provider key in clear: %s", b)
	}
	if !strings.Contains(string(b), `"api_key":"***","api_key_set":true`) {
		t.Errorf("masked key not marked as set: %s", b)
	}

	before, _ := os.ReadFile(path)
	var res struct {
		OK              bool `json:"ok"`
		RestartRequired bool `json:"restart_required"`
	}
	if err := owner.DoJSON(ctx, "PATCH", "/api/config/agent", map[string]any{"system_prompt": "You are terse."}, &res); err != nil || !res.OK || res.RestartRequired {
		t.Fatalf("PATCH agent: %v %+v", err, res)
	}
	after, _ := os.ReadFile(path)
	wantFile := strings.Replace(string(before), `  system_prompt: "You are a helpful personal assistant."`, "  system_prompt: You are terse.", 1)
	if string(after) != wantFile {
		t.Fatalf("PATCH changed more than the one line:\n%s", after)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("config mode %v after PATCH", fi.Mode().Perm())
	}
	fake.Push(providertest.Response{Text: []string{"ok"}})
	wsTurn(t, ownerWS(t, dir), "cfg", "hello")
	if got := lastSystemPrompt(t, fake); got != "You are terse." {
		t.Errorf("next turn's system prompt = %q", got)
	}

	err := owner.DoJSON(ctx, "PATCH", "/api/config/agent", map[string]any{"default_model": "no-such-model"}, nil)
	if !client.IsStatus(err, 422) || !strings.Contains(err.Error(), `agent.default_model: unknown model "no-such-model"`) {
		t.Errorf("invalid PATCH: %v, want 422 naming the field", err)
	}
	if now, _ := os.ReadFile(path); string(now) != string(after) {
		t.Errorf("refused PATCH changed the file:\n%s", now)
	}

	// An editor truncated the file: refused, the old config stays in force.
	if err := os.WriteFile(path, []byte("\n  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(d.stderr.String(), "the file is empty") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(d.stderr.String(), "config reload refused") {
		t.Fatalf("empty file not refused:\n%s", d.stderr.String())
	}
	fake.Push(providertest.Response{Text: []string{"still"}})
	wsTurn(t, ownerWS(t, dir), "cfg", "again")
	if got := lastSystemPrompt(t, fake); got != "You are terse." {
		t.Errorf("after the empty file the system prompt is %q (defaults applied?)", got)
	}
}
