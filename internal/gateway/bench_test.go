package gateway

import (
	"bufio"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/agentd/agentd/wire"
)

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// bareEchoServer is a plain gorilla echo server: the floor a WebSocket round
// trip costs on this machine.
func bareEchoServer(b testing.TB) *httptest.Server {
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		for {
			typ, data, err := ws.ReadMessage()
			if err != nil {
				return
			}
			if ws.WriteMessage(typ, data) != nil {
				return
			}
		}
	}))
	b.Cleanup(srv.Close)
	return srv
}

// BenchmarkTurnOverhead: text_final → first delta through the gateway with
// the echo provider, against a bare gorilla echo round trip in the same run.
// The client runs in a child process, as real clients do: in this process
// it would compete with the server's own goroutines (the rest of the reply,
// the database writes) for the 2 cores and measure the scheduler instead.
// Each iteration measures one turn then one echo, so both see the same
// conditions (threads parked after the turn); "ratio" compares those. The
// back-to-back echo, every thread already awake, is reported for reference.
//
// Where a lone turn's first delta spends its time (session 5, timestamps
// at each step inside the server, p50 over ~5,000 turns): frame read to
// decoded ~7 µs; access ~2 µs; handing the run to a runner ~23 µs, nearly
// all of it the futex wake-up of the idle thread that the Go scheduler
// sends for any goroutine made ready (on this VM a cross-CPU wake costs
// that much); session, history and model start ~10 µs; the first delta
// through sink and connection ~7 µs; its write 33–130 µs (the syscall
// that wakes the client). ~85 µs of the ~240 µs the client measures are
// inside the server; the rest is outside its code (waking its reader,
// delivering to the client), where the echo's whole round trip takes
// 50–90 µs.
//
// Session 7, a runtime trace of the server (go test -trace; go tool trace
// -d=parsed) showed why the turn's share is larger: each hand-off to
// another goroutine on the way (reader to runner, runner to the
// connection's new writer) makes the runtime wake the idle processor's
// thread (wakep: a futex, an IPI on this VM), ~20 µs paid by the goroutine
// that hands off, and the woken thread then competes with the client's for
// the two cores while the client wakes. The same binary with GOMAXPROCS=1
// (no idle processor to wake) measured 1.54–1.69× against 2.21–2.45× in
// interleaved runs. Changed: a lone run's first delta is written from the
// run's own goroutine by one non-blocking write (session.DeltaNower,
// conn.writeNow), not handed to a new writer: the server's own time from
// the frame read to the delta's write fell from ~126 to ~78 µs (p50 in
// the trace), the client's first delta ~256 → ~212 µs (ratio 2.44 →
// 2.27, four interleaved pairs). What remains is the reader's hand-off
// to the runner: the reader must go on reading (an interrupt) while the
// run waits on a model, so some goroutine must be made runnable there.
func BenchmarkTurnOverhead(b *testing.B) {
	e := newEnv(b, envOpts{})
	echoSrv := bareEchoServer(b)
	out := runChild(b, "TestHelperTurnClient", "AGENTD_TURN_CLIENT="+e.srv.URL+","+echoSrv.URL+","+strconv.Itoa(b.N))
	var turn, echo, hot float64
	if _, err := fmt.Sscanf(out, "result %g %g %g", &turn, &echo, &hot); err != nil {
		b.Fatalf("child said %q", out)
	}
	b.ReportMetric(turn/1e3, "µs-first-delta-p50")
	b.ReportMetric(echo/1e3, "µs-ws-echo-p50")
	b.ReportMetric(turn/echo, "ratio")
	b.ReportMetric(hot/1e3, "µs-ws-echo-back-to-back-p50")
}

// TestHelperTurnClient is the child process of BenchmarkTurnOverhead.
func TestHelperTurnClient(t *testing.T) {
	spec := os.Getenv("AGENTD_TURN_CLIENT")
	if spec == "" {
		t.Skip("helper process for BenchmarkTurnOverhead")
	}
	parts := strings.Split(spec, ",")
	n, _ := strconv.Atoi(parts[2])
	h := http.Header{}
	h.Set("X-Test-Identity", "alice")
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(parts[0], "http")+"/ws", h)
	if err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, ws: ws}
	c.next() // auth_ok
	bare, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(parts[1], "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte(`{"type":"text_final","text":"hello there","session_id":"bench"}`)
	var turn, echo []time.Duration
	for i := range n + 50 { // the first 50 warm up
		if i%10 == 0 { // bounded history, as a real chat clears or rotates
			c.send(wire.Command{Name: "clear", SessionID: "bench"})
			until[wire.CommandResult](c)
		}
		t0 := time.Now()
		c.sendRaw(msg)
		until[wire.Delta](c)
		d := time.Since(t0)
		until[wire.TurnComplete](c)

		t1 := time.Now()
		if err := bare.WriteMessage(websocket.TextMessage, msg); err != nil {
			t.Fatal(err)
		}
		if _, _, err := bare.ReadMessage(); err != nil {
			t.Fatal(err)
		}
		if i >= 50 {
			turn, echo = append(turn, d), append(echo, time.Since(t1))
		}
	}
	// For reference: the echo back to back, with every thread busy.
	var hot []time.Duration
	for range 2000 {
		t1 := time.Now()
		bare.WriteMessage(websocket.TextMessage, msg)
		if _, _, err := bare.ReadMessage(); err != nil {
			t.Fatal(err)
		}
		hot = append(hot, time.Since(t1))
	}
	fmt.Printf("result %d %d %d\n", percentile(turn, 0.5), percentile(echo, 0.5), percentile(hot, 0.5))
}

// runChild runs one helper test of this binary in a child process and
// returns its last "result" line.
func runChild(b *testing.B, test string, env ...string) string {
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("child %s: %v\n%s", test, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "result ") {
			return line
		}
	}
	b.Fatalf("child %s printed no result:\n%s", test, out)
	return ""
}

// BenchmarkDeltaThroughput: streamed words per second to one client (the
// gateway merges deltas that queue up, so frames are fewer than words).
func BenchmarkDeltaThroughput(b *testing.B) {
	e := newEnv(b, envOpts{})
	c := e.dial("alice")
	text := strings.Repeat("w ", 20000)
	words, frames := 0, 0
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		c.send(wire.TextFinal{Text: text, SessionID: "bench"})
		tf := c.readTurn()
		if tf.response.Text == "" {
			b.Fatalf("no reply: %+v", tf.errFrame)
		}
		frames += len(tf.deltas)
		var streamed strings.Builder
		for _, d := range tf.deltas {
			streamed.WriteString(d.Text)
		}
		if streamed.String() != tf.response.Text {
			b.Fatal("the deltas do not add up to the reply")
		}
		words += len(strings.Fields(streamed.String()))
		b.StopTimer()
		c.send(wire.Command{Name: "clear", SessionID: "bench"})
		until[wire.CommandResult](c)
		b.StartTimer()
	}
	el := time.Since(start)
	b.ReportMetric(float64(words)/el.Seconds(), "words/s")
	b.ReportMetric(float64(frames)/el.Seconds(), "frames/s")
	if n := e.gw.SlowConsumersClosed(); n != 0 {
		b.Fatalf("%d slow consumers", n)
	}
}

// BenchmarkIdleConnMemory: heap+stack and RSS per idle connection, with
// the clients in a child process so only the server side is measured.
func BenchmarkIdleConnMemory(b *testing.B) {
	n := 10000
	if s := os.Getenv("AGENTD_BENCH_CONNS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	for i := 0; i < b.N; i++ {
		e := newEnv(b, envOpts{})
		before, rssBefore := memNow()
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperIdleClients$", "-test.v")
		cmd.Env = append(os.Environ(), "AGENTD_IDLE_CLIENTS="+e.srv.URL+","+strconv.Itoa(n))
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		ready := false
		for sc.Scan() {
			if sc.Text() == "ready" {
				ready = true
				break
			}
		}
		if !ready {
			cmd.Wait()
			b.Fatal("child did not connect")
		}
		waitFor(b, func() bool { return e.gw.ClientsConnected() == n })
		time.Sleep(200 * time.Millisecond)
		after, rssAfter := memNow()
		b.ReportMetric(float64(after-before)/float64(n), "heap+stack-B/conn")
		b.ReportMetric(float64(rssAfter-rssBefore)/float64(n), "rss-B/conn")
		b.ReportMetric(float64(runtime.NumGoroutine())/float64(n), "goroutines/conn")
		stdin.Close()
		cmd.Wait()
	}
}

func memNow() (uint64, uint64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse, rss()
}

func rss() uint64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}

// TestHelperIdleClients is the child process of BenchmarkIdleConnMemory.
func TestHelperIdleClients(t *testing.T) {
	spec := os.Getenv("AGENTD_IDLE_CLIENTS")
	if spec == "" {
		t.Skip("helper process for BenchmarkIdleConnMemory")
	}
	url, count, _ := strings.Cut(spec, ",")
	n, _ := strconv.Atoi(count)
	d := websocket.Dialer{ReadBufferSize: 256, WriteBufferSize: 256}
	conns := make([]*websocket.Conn, 0, n)
	h := http.Header{}
	h.Set("X-Test-Identity", "alice")
	for range n {
		ws, _, err := d.Dial("ws"+strings.TrimPrefix(url, "http")+"/ws", h)
		if err != nil {
			t.Fatalf("dial %d: %v", len(conns), err)
		}
		if _, _, err := ws.ReadMessage(); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, ws)
	}
	fmt.Println("ready")
	bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes stdin
	for _, ws := range conns {
		ws.Close()
	}
}
