package integration

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"image/png"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/agentd/agentd/internal/provider/providertest"
)

// browser starts Debian's chromium (never a downloaded one) headless with
// the flags this machine needs, and returns a chromedp context.
func browser(t testing.TB) context.Context {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium missing: make setup installs Debian's chromium")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin), chromedp.Headless, chromedp.Flag("no-sandbox", true), chromedp.Flag("disable-gpu", true),
		chromedp.Flag("no-first-run", true), chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900),
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	// confirm() dialogs (delete, revoke) are accepted, as a user would.
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	return ctx
}

func run(t testing.TB, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func eval[T any](t testing.TB, ctx context.Context, expr string, opts ...chromedp.EvaluateOption) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, opts...))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitText waits until the element sel contains want.
func waitText(t testing.TB, ctx context.Context, sel, want string) string {
	t.Helper()
	var got string
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		got, _ = chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`Array.from(document.querySelectorAll(%q)).map(e=>e.textContent).join("\n")`, sel)))
		if strings.Contains(got, want) {
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s never showed %q; it shows:\n%s", sel, want, got)
	return ""
}

// screenshot saves a full-page PNG of the current page as a test artefact
// (under $AGENTD_ARTIFACTS or the temp dir, never the repo) and checks it
// is not blank.
func screenshot(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := os.Getenv("AGENTD_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "agentd-web-screenshots")
	}
	os.MkdirAll(dir, 0o755)
	path := filepath.Join(dir, name+".png")
	os.WriteFile(path, buf, 0o644)
	img, err := png.Decode(bytes.NewReader(buf))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	colors := map[uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 4 {
		for x := b.Min.X; x < b.Max.X; x += 4 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colors[r>>12<<8|g>>12<<4|bl>>12] = true
		}
	}
	if len(colors) < 4 {
		t.Fatalf("screenshot %s is blank (%d colours)", name, len(colors))
	}
	t.Logf("screenshot %s: %s (%d colours)", name, path, len(colors))
}

// The web app in real Chromium, through the real `agentd proxy` over iroh
// to the real daemon, with a scripted OpenAI-compatible model.
func TestWebApp(t *testing.T) {
	words := make([]string, 80)
	for i := range words {
		words[i] = "slow "
	}
	fake := providertest.NewOpenAI(t,
		providertest.Response{Text: []string{"Hello ", "from the **fake** model. ", "<script>window.pwned=1</script> <img src=x onerror=\"window.pwned=2\"> ", "`code`"}},
		providertest.Response{Text: words, Delay: 100 * time.Millisecond},
		providertest.Response{Text: []string{"second ", "answer"}},
		providertest.Response{Text: []string{"got your file"}},
	)
	a := startIrohAgentEditing(t, func(dir string) {
		useFakeOpenAI(t, dir, fake)
		setBridges(t, dir, whatsappYAML(t, "+"+waAlice))
		whatsappFake(t, dir, false)
		os.WriteFile(filepath.Join(dir, "memories", "Alpha.md"), []byte("# Alpha\n\nSee [[Beta]] for more; zebracorn.\n"), 0o600)
		os.WriteFile(filepath.Join(dir, "memories", "Beta.md"), []byte("Beta body text.\n"), 0o600)
	})
	admin := enrollDevice(t, a.invite(t, "--role", "admin"))
	base := startProxy(t, admin)
	ctx := browser(t)

	// Chat: a streamed reply rendered as Markdown, model HTML shown as text.
	run(t, ctx, "open the app", chromedp.Navigate(base+"/#/chat"), chromedp.WaitVisible(chromedp.CSS(`body[data-ready=chat]`)))
	waitText(t, ctx, "#conn", "connected")
	run(t, ctx, "send", chromedp.SendKeys(chromedp.CSS(`textarea`), "hello web"), chromedp.Click(chromedp.CSS(`#send`)))
	waitText(t, ctx, ".msg.assistant", "Hello from the fake model.")
	pwned := eval[bool](t, ctx, `window.pwned !== undefined`)
	bold := eval[int](t, ctx, `document.querySelectorAll(".msg.assistant strong").length`)
	imgs := eval[int](t, ctx, `document.querySelectorAll(".log img").length`)
	got := waitText(t, ctx, ".msg.assistant", "<script>window.pwned=1</script>")
	if pwned || imgs != 0 || bold != 1 || !strings.Contains(got, `<img src=x onerror=`) {
		t.Fatalf("model HTML was not rendered as text: pwned %v, imgs %d, bold %d, text %q", pwned, imgs, bold, got)
	}
	screenshot(t, ctx, "chat")

	// Queue two, see queued #1, interrupt the first; the second then runs.
	run(t, ctx, "send two", chromedp.SendKeys(chromedp.CSS(`textarea`), "slow one"), chromedp.Click(chromedp.CSS(`#send`)))
	waitText(t, ctx, ".msg.assistant", "slow slow")
	run(t, ctx, "send second", chromedp.SendKeys(chromedp.CSS(`textarea`), "queued one"), chromedp.Click(chromedp.CSS(`#send`)))
	waitText(t, ctx, ".msg.note", "queued #1")
	run(t, ctx, "interrupt", chromedp.Click(chromedp.CSS(`#stop`)))
	waitText(t, ctx, ".msg.assistant", "(stopped)")
	waitText(t, ctx, ".msg.assistant", "second answer")

	// Upload a file and send it attached.
	file := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(file, []byte("some notes"), 0o600)
	run(t, ctx, "upload", chromedp.SetUploadFiles(chromedp.CSS(`input[type=file]`), []string{file}))
	waitText(t, ctx, ".chips", "notes.txt")
	run(t, ctx, "send with file", chromedp.SendKeys(chromedp.CSS(`textarea`), "see attached"), chromedp.Click(chromedp.CSS(`#send`)))
	waitText(t, ctx, ".msg.user", "notes.txt")
	waitText(t, ctx, ".msg.assistant", "got your file")
	if n := len(fake.Requests()); n < 4 {
		t.Fatalf("the model saw %d requests", n)
	}

	// Vault: search, open, follow a wikilink, see its backlink.
	run(t, ctx, "vault", chromedp.Navigate(base+"/#/vault"), chromedp.WaitVisible(chromedp.CSS(`body[data-ready=vault]`)),
		chromedp.SendKeys(chromedp.CSS(`input[type=search]`), "zebracorn\r"))
	waitText(t, ctx, ".notes", "Alpha")
	// Clicked from the page itself: the list may be redrawn (search results
	// replace the first listing) between finding a node and clicking it.
	waitText(t, ctx, ".notes .mut", "zebracorn")
	eval[bool](t, ctx, `(document.querySelector('.notes a').click(), true)`)
	waitText(t, ctx, ".note", "See Beta for more")
	eval[bool](t, ctx, `(document.querySelector('.note a.wikilink').click(), true)`)
	waitText(t, ctx, ".note h2", "Beta")
	waitText(t, ctx, ".note ul", "Alpha")
	screenshot(t, ctx, "vault")

	// Devices: revoke a chat device from the page.
	victim := enrollDevice(t, a.invite(t, "--role", "chat"))
	run(t, ctx, "devices", chromedp.Navigate(base+"/#/devices"), chromedp.WaitVisible(chromedp.CSS(`body[data-ready=devices]`)))
	vid := fmt.Sprintf("%x", victim.id.Public())[:12]
	waitText(t, ctx, "table", vid)
	screenshot(t, ctx, "devices")
	run(t, ctx, "revoke", chromedp.Click(chromedp.Search(fmt.Sprintf(`//tr[td[contains(., %q)]]//button[.="Revoke"]`, vid))))
	waitText(t, ctx, "table", "revoked")
	if r := agentd(t, victim.env, "chat", "--remote", "enrolled", "-m", "still here?"); r.code == 0 {
		t.Fatalf("revoked device still chats: %s", r.stdout)
	}

	run(t, ctx, "pairing", chromedp.Navigate(base+"/#/pairing"), chromedp.WaitVisible(chromedp.CSS(`body[data-ready=pairing]`)))
	waitText(t, ctx, "main", "Approved users")

	// Bridges: the unlinked WhatsApp bridge is needs_login, its reason said
	// once (whatsapp_remote_test checks the QR code drawn there).
	run(t, ctx, "bridges", chromedp.Navigate(base+"/#/bridges"), chromedp.WaitVisible(chromedp.CSS(`body[data-ready=bridges]`)))
	waitText(t, ctx, "table", "needs_login")
	row := eval[string](t, ctx, `[...document.querySelectorAll('tr')].find(r => r.textContent.includes('whatsapp')).textContent`)
	if strings.Count(row, "not linked to a WhatsApp account") != 1 {
		t.Errorf("bridges row %q: want needs_login and its reason once", row)
	}
	screenshot(t, ctx, "bridges")

	run(t, ctx, "usage", chromedp.Navigate(base+"/#/usage"), chromedp.WaitVisible(chromedp.CSS(`body[data-ready=usage]`)))
	waitText(t, ctx, "main", "By model")
	screenshot(t, ctx, "usage")

	// CSP: the page can reach nothing but its own origin.
	blocked := eval[string](t, ctx, `new Promise(ok => {
		document.addEventListener('securitypolicyviolation', e => ok('violation ' + e.violatedDirective), {once: true});
		fetch('http://127.0.0.2:9/steal').then(() => ok('fetched'), () => {});
	})`, chromedp.EvalAwaitPromise)
	if !strings.HasPrefix(blocked, "violation connect-src") {
		t.Fatalf("cross-origin fetch: %s", blocked)
	}
	res, err := http.Get(base + "/")
	if err != nil || !strings.Contains(res.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("no CSP on the page: %v %v", err, res.Header)
	}
	res.Body.Close()

	// A chat-role proxy shows no admin pages and its admin calls get 403.
	chat := enrollDevice(t, a.invite(t, "--role", "chat"))
	cbase := startProxy(t, chat)
	cctx := browser(t)
	run(t, cctx, "chat app", chromedp.Navigate(cbase+"/#/devices"), chromedp.WaitVisible(chromedp.CSS(`body[data-ready=chat]`)))
	hidden := eval[bool](t, cctx, `document.querySelector('nav a[data-page=devices]').hidden && document.querySelector('nav a[data-page=bridges]').hidden && document.querySelector('nav a[data-page=pairing]').hidden`)
	status := eval[int](t, cctx, `fetch('/api/devices').then(r => r.status)`, chromedp.EvalAwaitPromise)
	if !hidden || status != 403 {
		t.Fatalf("chat device: admin links hidden %v, GET /api/devices %d", hidden, status)
	}
}

// BenchmarkWebApp loads the app through the loopback proxy over iroh: time
// to first contentful paint and to an interactive chat (the page's ready
// mark and a connected WebSocket), against loading a bare JSON route
// through the same proxy in the same run; and the JS+CSS bytes shipped,
// gzipped, against the 150 KB budget.
func BenchmarkWebApp(b *testing.B) {
	a := startIrohAgent(b)
	base := startProxy(b, enrollDevice(b, a.invite(b, "--role", "admin")))
	ctx := browser(b)
	var bare, paint, ready time.Duration
	for i := 0; i < b.N; i++ {
		start := time.Now()
		run(b, ctx, "bare", chromedp.Navigate(base+"/api/agent-info"), chromedp.WaitReady(chromedp.CSS("body")))
		bare += time.Since(start)
		start = time.Now()
		run(b, ctx, "app", chromedp.Navigate(base+"/#/chat"), chromedp.WaitVisible(chromedp.CSS("body[data-ready=chat]")))
		waitText(b, ctx, "#conn", "connected")
		ready += time.Since(start)
		fcp := eval[float64](b, ctx, `(performance.getEntriesByName('first-contentful-paint')[0] || {startTime: 0}).startTime`)
		paint += time.Duration(fcp * float64(time.Millisecond))
	}
	n := time.Duration(b.N)
	b.ReportMetric(float64((bare/n).Microseconds())/1000, "ms-bare-json")
	b.ReportMetric(float64((paint/n).Microseconds())/1000, "ms-first-paint")
	b.ReportMetric(float64((ready/n).Microseconds())/1000, "ms-interactive")
	b.ReportMetric(float64(ready)/float64(bare), "x-bare")
	size := 0
	for _, f := range []string{"app.js", "md.js", "style.css", "index.html"} {
		data, err := os.ReadFile(filepath.Join(repoRoot(), "internal", "web", "static", f))
		if err != nil {
			b.Fatal(err)
		}
		var gz bytes.Buffer
		w := gzip.NewWriter(&gz)
		w.Write(data)
		w.Close()
		size += gz.Len()
	}
	b.ReportMetric(float64(size)/1024, "KB-gzipped")
	b.ReportMetric(float64(size)/(150*1024), "x-budget")
}
