package integration

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/agentd/agentd/client"
	"github.com/agentd/agentd/devicecert"
	"github.com/agentd/agentd/internal/coordinator"
	"github.com/agentd/agentd/internal/provider/providertest"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/wire"
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
	if got := lastSystemPrompt(t, fake); !strings.HasPrefix(got, "You are terse.") {
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
	checkLogs(t, owner, "component=config&level=error&lines=5", "config", "config reload refused")
	if err := chat.GetJSON(ctx, "/api/logs", nil); !client.IsStatus(err, 403) {
		t.Errorf("chat cert GET /api/logs: %v, want 403", err)
	}
	fake.Push(providertest.Response{Text: []string{"still"}})
	wsTurn(t, ownerWS(t, dir), "cfg", "again")
	if got := lastSystemPrompt(t, fake); !strings.HasPrefix(got, "You are terse.") {
		t.Errorf("after the empty file the system prompt is %q (defaults applied?)", got)
	}
}

// turnFrames sends text on c and returns the frames up to turn_complete,
// broadcasts left out.
func turnFrames(t *testing.T, c *client.Conn, sid, text string) []wire.Message {
	t.Helper()
	if err := c.Send(wire.TextFinal{Text: text, SessionID: sid}); err != nil {
		t.Fatal(err)
	}
	var out []wire.Message
	recvUntil(t, c, 20*time.Second, func(m wire.Message) bool {
		switch m.(type) {
		case wire.ResourceEvent, wire.SystemSnapshot:
		default:
			out = append(out, m)
		}
		_, done := m.(wire.TurnComplete)
		return done
	})
	return out
}

// TestUsageAndBudgets: usage after three turns with a priced fake model is
// the sum of the turns; a $0.01 budget stops the next call before the
// provider sees it, over WS and through the Telegram bridge, raises its
// alert once, and still holds after a restart.
func TestUsageAndBudgets(t *testing.T) {
	used := &providertest.Usage{PromptTokens: 1000, CompletionTokens: 2000} // $0.001 + $0.004 at 1/2 $ per M
	fake := providertest.NewOpenAI(t,
		providertest.Response{Text: []string{"one"}, Usage: used},
		providertest.Response{Text: []string{"two"}, Usage: used},
		providertest.Response{Text: []string{"three"}, Usage: used})
	var chat *client.Dialer
	e := newBridgeEnvEditing(t, fmt.Sprint(aliceID), "", func(dir string) {
		useFakeOpenAI(t, dir, fake)
		chat = issueDevice(t, dir, "phone", "chat")
	})
	ctx := ctx30(t)
	ws := ownerWS(t, e.dir)
	var sum float64
	for _, text := range []string{"a", "b", "c"} {
		for _, m := range turnFrames(t, ws, "usage", text) {
			if tc, ok := m.(wire.TurnComplete); ok {
				sum += tc.Usage.CostUSD
			}
		}
	}
	if math.Abs(sum-0.015) > 1e-9 {
		t.Fatalf("three turns cost %v by turn_complete, want 0.015", sum)
	}
	var month struct {
		MonthlySpend float64            `json:"monthly_spend"`
		ByModel      map[string]float64 `json:"by_model"`
		BySource     map[string]float64 `json:"by_source"`
	}
	if err := chat.GetJSON(ctx, "/api/usage", &month); err != nil {
		t.Fatal(err)
	}
	if math.Abs(month.MonthlySpend-sum) > 1e-9 || math.Abs(month.ByModel["fake-model"]-sum) > 1e-9 || math.Abs(month.BySource["cli"]-sum) > 1e-9 {
		t.Errorf("GET /api/usage = %+v, want %v in all", month, sum)
	}
	var daily struct {
		Entries []struct {
			Model        string `json:"model"`
			InputTokens  int    `json:"input_tokens"`
			OutputTokens int    `json:"output_tokens"`
			RequestCount int    `json:"request_count"`
		} `json:"entries"`
	}
	if err := chat.GetJSON(ctx, "/api/usage/daily?days=1", &daily); err != nil {
		t.Fatal(err)
	}
	if len(daily.Entries) != 1 || daily.Entries[0].InputTokens != 3000 || daily.Entries[0].OutputTokens != 6000 || daily.Entries[0].RequestCount != 3 {
		t.Errorf("daily = %+v", daily)
	}

	budget := map[string]any{"id": "cap", "scope": "all", "window": "month", "limit_usd": 0.01, "alert_at": []float64{0.5}}
	if err := chat.PostJSON(ctx, "/api/budgets", budget, nil); !client.IsStatus(err, 403) {
		t.Errorf("chat cert POST /api/budgets: %v, want 403", err)
	}
	events := watchEvents(ownerWS(t, e.dir))
	if err := e.owner.PostJSON(ctx, "/api/budgets", budget, nil); err != nil {
		t.Fatal(err)
	}
	events.waitFor(t, "budget", "created", "cap")

	calls := len(fake.Requests())
	frames := turnFrames(t, ws, "usage", "d")
	ef, ok := frames[0].(wire.Error)
	const reached = `budget reached: the monthly budget "cap" (all usage) of $0.01 has $0.015 spent and this call could cost up to $`
	if len(frames) != 2 || !ok || !strings.HasPrefix(ef.Text, reached) {
		t.Fatalf("over budget over WS: %v, want error{budget reached} + turn_complete", frames)
	}
	if n := len(fake.Requests()); n != calls {
		t.Errorf("the provider saw %d more requests after the budget was reached", n-calls)
	}
	events.waitFor(t, "budget", "alert", "cap")

	e.tg.Text(aliceChat, alice, "hello bot")
	defer func() {
		if t.Failed() {
			t.Logf("chat: %+v", e.tg.Messages(aliceID))
		}
	}()
	e.tg.Wait(20*time.Second, "the budget notice in the chat", func() bool {
		for _, m := range e.tg.Messages(aliceID) {
			// The same sentence (its worst-case estimate is the bridge
			// session's own prompt).
			if strings.HasPrefix(m.Text, "⚠️ "+reached) {
				return true
			}
		}
		return false
	})
	if n := len(fake.Requests()); n != calls {
		t.Errorf("the provider saw a request from the bridge after the budget was reached")
	}
	if n := strings.Count(e.d.stderr.String(), "budget alert"); n != 1 {
		t.Errorf("%d budget alert lines, want 1 (once per window)", n)
	}

	checkLogs(t, e.owner, "component=bridge-telegram", "bridge-telegram", "")
	r := agentd(t, nil, "usage", e.dir)
	if r.code != 0 || !strings.Contains(r.stdout, "fake-model") || !regexpLine(r.stdout, `^\s+cap\s+all\s+month\s+\$0\.0100\s+\$0\.0150\s+\$0\.0000`) {
		t.Errorf("agentd usage: %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// The budget's state is in the database: it still holds after a restart.
	if _, err := e.d.stop(); err != nil {
		t.Fatal(err)
	}
	startServe(t, e.dir)
	frames = turnFrames(t, ownerWS(t, e.dir), "usage", "e")
	if ef, ok := frames[0].(wire.Error); !ok || !strings.HasPrefix(ef.Text, "budget reached:") {
		t.Errorf("after a restart: %v", frames)
	}
	if n := len(fake.Requests()); n != calls {
		t.Errorf("the provider saw a request after the restart")
	}
}

// uploadFile streams size bytes (from body) as the multipart field "file"
// named name to POST /api/upload and returns the status and the answer.
func uploadFile(t *testing.T, d *client.Dialer, name string, body io.Reader) (int, map[string]any) {
	t.Helper()
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		fw, err := mw.CreateFormFile("file", name)
		if err == nil {
			_, err = io.Copy(fw, body)
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	req, err := http.NewRequestWithContext(ctx30(t), "POST", client.BaseURL+"/api/upload", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := d.HTTPClient().Do(req)
	if err != nil {
		t.Fatalf("POST /api/upload: %v", err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	pr.CloseWithError(io.ErrClosedPipe) // a refused upload stops being sent
	return resp.StatusCode, out
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestUpload: a 60 MiB upload is refused (413) with nothing left on disk;
// "../../x" is stored under uploads/<month>/ and its path works as a
// text_final attachment.
func TestUpload(t *testing.T) {
	fake := providertest.NewOpenAI(t, providertest.Response{Text: []string{"got it"}})
	dir := newAgent(t, false)
	useFakeOpenAI(t, dir, fake)
	startServe(t, dir)
	owner := ownerClient(t, dir)
	uploads := filepath.Join(dir, "uploads")
	count := func() int {
		n := 0
		filepath.WalkDir(uploads, func(_ string, e fs.DirEntry, err error) error {
			if err == nil && !e.IsDir() {
				n++
			}
			return nil
		})
		return n
	}

	code, out := uploadFile(t, owner, "big.bin", io.LimitReader(zeroReader{}, 60<<20))
	if code != 413 {
		t.Fatalf("60 MiB upload: %d %v, want 413", code, out)
	}
	if n := count(); n != 0 {
		t.Errorf("%d files left after the refused upload", n)
	}

	code, out = uploadFile(t, owner, "../../x", strings.NewReader("hello, notes\n"))
	if code != 201 {
		t.Fatalf("upload: %d %v", code, out)
	}
	path, _ := out["path"].(string)
	month := time.Now().UTC().Format("2006-01")
	if filepath.Dir(path) != filepath.Join(uploads, month) || !strings.HasSuffix(path, "-x") || out["filename"] != "x" ||
		out["size"] != float64(13) || out["mime"] != "text/plain; charset=utf-8" {
		t.Fatalf("answer %v", out)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("stored file: %v %v", fi, err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "x")); !os.IsNotExist(err) {
		t.Errorf("../../x escaped the uploads directory: %v", err)
	}

	ws := ownerWS(t, dir)
	if err := ws.Send(wire.TextFinal{Text: "read this", SessionID: "up", Attachments: []wire.Attachment{{Kind: "file", Path: path, Filename: "x"}}}); err != nil {
		t.Fatal(err)
	}
	recvUntil(t, ws, 20*time.Second, func(m wire.Message) bool {
		if e, ok := m.(wire.Error); ok {
			t.Fatalf("attachment refused: %s", e.Text)
		}
		_, done := m.(wire.TurnComplete)
		return done
	})
	msgs := fake.Requests()[0].OpenAI(t).Messages
	if last := msgs[len(msgs)-1].Text(); !strings.Contains(last, path) {
		t.Errorf("the model was not told about the attachment: %q", last)
	}
}

// TestRestart: POST /api/restart is admin-only; `agentd restart` makes the
// daemon exit 75 after a clean shutdown, and the queued turn runs after the
// next start.
func TestRestart(t *testing.T) {
	slow := providertest.Response{Text: strings.Split(strings.Repeat("slow ", 50), " "), Delay: 100 * time.Millisecond}
	fake := providertest.NewOpenAI(t, slow)
	dir := newAgent(t, false)
	useFakeOpenAI(t, dir, fake)
	chat := issueDevice(t, dir, "phone", "chat")
	d := startServe(t, dir)
	if err := chat.PostJSON(ctx30(t), "/api/restart", nil, nil); !client.IsStatus(err, 403) {
		t.Fatalf("chat cert POST /api/restart: %v, want 403", err)
	}
	c := ownerWS(t, dir)
	for _, text := range []string{"one", "two"} {
		if err := c.Send(wire.TextFinal{Text: text, SessionID: "r"}); err != nil {
			t.Fatal(err)
		}
	}
	recvUntil(t, c, 10*time.Second, func(m wire.Message) bool { _, ok := m.(wire.Queued); return ok })
	recvUntil(t, c, 10*time.Second, func(m wire.Message) bool { _, ok := m.(wire.Delta); return ok })

	r := agentd(t, nil, "restart", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "stopped for a restart (exit status 75)") {
		t.Fatalf("agentd restart: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var err error
	select {
	case err = <-d.done:
		d.done <- nil // cleanup: already stopped
	case <-time.After(10 * time.Second):
		t.Fatal("agentd did not exit after the restart request")
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 75 {
		t.Fatalf("exit after restart: %v, want status 75\n%s", err, d.stderr.String())
	}
	if !strings.Contains(d.stderr.String(), "stopped for a restart") {
		t.Errorf("no clean-stop line in the log:\n%s", d.stderr.String())
	}

	before := len(fake.Requests())
	fake.Push(providertest.Response{Text: []string{"reply ", "A"}}, providertest.Response{Text: []string{"reply ", "B"}})
	startServe(t, dir)
	var replies []string
	recvUntil(t, ownerWS(t, dir), 30*time.Second, func(m wire.Message) bool {
		if r, ok := m.(wire.Response); ok && r.SessionID == "r" {
			replies = append(replies, r.Text)
		}
		return len(replies) == 2
	})
	var asked []string
	for _, r := range fake.Requests()[before:] {
		msgs := r.OpenAI(t).Messages
		asked = append(asked, msgs[len(msgs)-1].Text())
	}
	if strings.Join(asked, ",") != "one,two" || strings.Join(replies, "|") != "reply A|reply B" {
		t.Errorf("after the restart the model was asked %v and replied %v; want one,two", asked, replies)
	}
}

// logEntries is GET /api/logs?query as d.
func logEntries(t *testing.T, d *client.Dialer, query string) []map[string]any {
	t.Helper()
	var out struct {
		Entries []map[string]any `json:"entries"`
	}
	if err := d.GetJSON(ctx30(t), "/api/logs?"+query, &out); err != nil {
		t.Fatalf("GET /api/logs?%s: %v", query, err)
	}
	return out.Entries
}

// checkLogs asserts that the component's entries (at least one) all carry it.
func checkLogs(t *testing.T, d *client.Dialer, query, component, wantMsg string) {
	t.Helper()
	es := logEntries(t, d, query)
	found := false
	for _, e := range es {
		if e["component"] != component {
			t.Errorf("GET /api/logs?%s returned %v", query, e)
		}
		found = found || strings.Contains(fmt.Sprint(e["msg"]), wantMsg)
	}
	if !found {
		t.Errorf("GET /api/logs?%s: no %q among %v", query, wantMsg, es)
	}
}

// freeTCPAddr is a loopback address nobody listens on (for metrics.listen).
func freeTCPAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// scrape parses a Prometheus text answer with the real parser.
func scrape(t *testing.T, body io.Reader) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(body)
	if err != nil {
		t.Fatalf("parse metrics: %v", err)
	}
	return fams
}

// value is the sum of the family's samples whose labels include want.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	var v float64
	f := fams[name]
	if f == nil {
		return -1
	}
	for _, m := range f.GetMetric() {
		ok := true
		for k, w := range want {
			found := false
			for _, l := range m.GetLabel() {
				found = found || (l.GetName() == k && l.GetValue() == w)
			}
			ok = ok && found
		}
		if !ok {
			continue
		}
		switch {
		case m.Counter != nil:
			v += m.GetCounter().GetValue()
		case m.Gauge != nil:
			v += m.GetGauge().GetValue()
		case m.Histogram != nil:
			v += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return v
}

// TestMetrics: /api/metrics is admin-only; the loopback metrics.listen
// serves /metrics alone; values move after a turn; no label holds a user,
// session or device id.
func TestMetrics(t *testing.T) {
	fake := providertest.NewOpenAI(t, providertest.Response{Text: []string{"hel", "lo"}, Usage: &providertest.Usage{PromptTokens: 10, CompletionTokens: 20}})
	dir := newAgent(t, false)
	useFakeOpenAI(t, dir, fake)
	addr := freeTCPAddr(t)
	p := filepath.Join(dir, "openagent.yaml")
	b, _ := os.ReadFile(p)
	os.WriteFile(p, []byte(strings.Replace(string(b), "metrics:\n  listen: \"\"", "metrics:\n  listen: "+addr, 1)), 0o600)
	chat := issueDevice(t, dir, "phone", "chat")
	startServe(t, dir)
	owner := ownerClient(t, dir)
	if err := chat.GetJSON(ctx30(t), "/api/metrics", nil); !client.IsStatus(err, 403) {
		t.Fatalf("chat cert GET /api/metrics: %v, want 403", err)
	}
	local := func(path string) (*http.Response, error) { return http.Get("http://" + addr + path) }
	get := func() map[string]*dto.MetricFamily {
		resp, err := local("/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return scrape(t, resp.Body)
	}
	if resp, err := local("/api/agent-info"); err != nil || resp.StatusCode != 404 {
		t.Errorf("metrics listener serves more than /metrics: %v %v", resp, err)
	}
	ok := map[string]string{"model": "fake-model", "source": "cli", "status": "ok"}
	before := get()
	if v := value(before, "agentd_turns_finished_total", ok); v > 0 {
		t.Fatalf("turns finished before any turn: %v", v)
	}
	ws := ownerWS(t, dir)
	turnFrames(t, ws, "metrics-session", "hello")

	// The same registry over the authenticated route.
	req, _ := http.NewRequestWithContext(ctx30(t), "GET", client.BaseURL+"/api/metrics", nil)
	resp, err := owner.HTTPClient().Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /api/metrics: %v %v", resp, err)
	}
	after := scrape(t, resp.Body)
	resp.Body.Close()
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"agentd_turns_started_total", map[string]string{"model": "fake-model", "source": "cli"}, 1},
		{"agentd_turns_finished_total", ok, 1},
		{"agentd_turn_duration_seconds", map[string]string{"model": "fake-model"}, 1},
		{"agentd_turn_first_delta_seconds", map[string]string{"model": "fake-model"}, 1},
		{"agentd_tokens_total", map[string]string{"model": "fake-model", "kind": "completion"}, 20},
		{"agentd_store_write_seconds", nil, 1},
		{"agentd_queue_depth", nil, 0},
		{"agentd_iroh_sidecar_restarts_total", nil, 0},
	} {
		if got := value(after, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if got := value(after, "agentd_cost_usd_total", map[string]string{"model": "fake-model"}); math.Abs(got-0.00005) > 1e-12 {
		t.Errorf("cost = %v, want 0.00005", got)
	}
	if got := value(after, "agentd_connections", map[string]string{"transport": "unix"}); got < 1 {
		t.Errorf("unix connections = %v with a WebSocket open", got)
	}
	ownerID := ownerIdentityID(t, dir)
	for name, f := range after {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if v := l.GetValue(); v == "metrics-session" || v == ownerID || strings.Contains(v, "metrics-session") {
					t.Errorf("%s has label %s=%q: an id", name, l.GetName(), v)
				}
			}
		}
	}
}

func ownerIdentityID(t *testing.T, dir string) string {
	id, err := devicecert.LoadIdentity(filepath.Join(dir, "keys", "owner.identity"))
	if err != nil {
		t.Fatal(err)
	}
	return id.ClientID()
}

// TestServeInitAndJSON: the README's first command works the first time and
// every time after (serve --init); status and bridge list speak JSON.
func TestServeInitAndJSON(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "fresh", "my-agent")
	env := []string{"OPENAI_API_KEY=", "ANTHROPIC_API_KEY="}
	d := startServeArgs(t, dir, []string{"--init"}, env...)
	if !strings.Contains(d.stderr.String(), "created agent \"my-agent\"") {
		t.Errorf("serve --init did not say it created the agent:\n%s", d.stderr.String())
	}
	var status struct {
		AgentInfo map[string]any `json:"agent_info"`
		Sessions  struct {
			Sessions []any `json:"sessions"`
		} `json:"sessions"`
		Bridges map[string]any `json:"bridges"`
	}
	r := agentd(t, nil, "status", dir, "--json")
	if err := json.Unmarshal([]byte(r.stdout), &status); r.code != 0 || err != nil || status.AgentInfo["name"] != "my-agent" || status.Bridges["bridges"] == nil {
		t.Errorf("status --json: %d %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	r = agentd(t, nil, "bridge", "list", dir, "--json")
	var bridges struct {
		Bridges []any `json:"bridges"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &bridges); r.code != 0 || err != nil || bridges.Bridges == nil {
		t.Errorf("bridge list --json: %d %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	if _, err := d.stop(); err != nil {
		t.Fatal(err)
	}
	// The second time the same command serves the agent already there.
	d = startServeArgs(t, dir, []string{"--init"}, env...)
	if strings.Contains(d.stderr.String(), "created agent") {
		t.Errorf("serve --init created the agent again:\n%s", d.stderr.String())
	}
}
