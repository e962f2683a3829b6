package enroll_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/enroll"
	"github.com/agentd/agentd/internal/enroll/enrolltest"
	"github.com/agentd/agentd/internal/iroh"
)

// Benchmarks of the gateway over iroh as a remote device uses it (device
// certificate preamble, auth listener, HTTP/1.1 and WebSocket on the agent
// side) next to the sidecar-pair floor measured in the same run: raw iroh
// streams between the same kind of sidecars, Go on both ends, no auth and
// no HTTP.
//
//	go test ./internal/enroll -run '^$' -bench Gateway -benchtime 2000x
//	go test ./internal/enroll -run '^$' -bench Upload -benchtime 20x

const (
	alpnRawEcho = "agentd/bench-echo/1"
	alpnRawSink = "agentd/bench-sink/1"
	echoSize    = 100
	floorIters  = 2000
	uploadSize  = 1 << 20
)

func rawEcho(c *iroh.Conn) {
	defer c.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func rawSink(c *iroh.Conn) {
	defer c.Close()
	n, _ := io.Copy(io.Discard, c)
	var out [8]byte
	binary.BigEndian.PutUint64(out[:], uint64(n))
	_, _ = c.Write(out[:])
	_ = c.CloseWrite()
}

type benchEnv struct {
	agent  *enrolltest.Agent
	remote *enroll.Remote
	floor  *iroh.Dialer // a second dial sidecar for the raw floor streams
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	a := enrolltest.StartWith(b, enrolltest.Options{Raw: map[string]func(*iroh.Conn){alpnRawEcho: rawEcho, alpnRawSink: rawSink}})
	o := enroll.DeviceOptions{Preset: iroh.PresetMinimal}
	path := filepath.Join(b.TempDir(), "id.json")
	ctx := context.Background()
	if _, _, err := enroll.Enroll(ctx, a.Ticket(b, auth.CapChat, time.Hour), "bench", path, o); err != nil {
		b.Fatal(err)
	}
	r, err := enroll.OpenRemote(ctx, path, "", o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(r.Close)

	dir, err := os.MkdirTemp("", "enrollbench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	sctx, cancel := context.WithCancel(context.Background())
	sc, err := iroh.New(iroh.Config{Mode: iroh.ModeDial, SecretKey: benchKey(b), Relay: iroh.RelayDisabled, Preset: iroh.PresetMinimal,
		DialSocket: filepath.Join(dir, "dial.sock"), BindHost: "127.0.0.1"})
	if err != nil {
		b.Fatal(err)
	}
	if err := sc.Start(sctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cancel(); <-sc.Done() })
	return &benchEnv{agent: a, remote: r, floor: sc.Dialer()}
}

func benchKey(b *testing.B) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	return k
}

func p50(d []time.Duration) float64 {
	slices.Sort(d)
	return float64(d[len(d)/2].Nanoseconds()) / 1e3
}

// floorEcho measures 100-byte round trips on a raw stream.
func (e *benchEnv) floorEcho(b *testing.B) float64 {
	c, err := e.floor.Dial(context.Background(), e.agent.Addr(), alpnRawEcho)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg, buf := make([]byte, echoSize), make([]byte, echoSize)
	lat := make([]time.Duration, 0, floorIters)
	for i := 0; i < floorIters+50; i++ {
		t := time.Now()
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
		if i >= 50 {
			lat = append(lat, time.Since(t))
		}
	}
	return p50(lat)
}

// BenchmarkGatewayEcho: 100-byte WebSocket text round trips on one
// authenticated gateway stream, against raw-stream round trips.
func BenchmarkGatewayEcho(b *testing.B) {
	e := newBenchEnv(b)
	floor := e.floorEcho(b)
	d := websocket.Dialer{NetDialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return e.remote.DialAuth(ctx) }}
	ws, _, err := d.Dial("ws://agentd/ws", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer ws.Close()
	msg := bytes.Repeat([]byte("x"), echoSize)
	rt := func() {
		if err := ws.WriteMessage(websocket.TextMessage, msg); err != nil {
			b.Fatal(err)
		}
		if _, _, err := ws.ReadMessage(); err != nil {
			b.Fatal(err)
		}
	}
	for range 50 {
		rt()
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for b.Loop() {
		t := time.Now()
		rt()
		lat = append(lat, time.Since(t))
	}
	b.StopTimer()
	got := p50(lat)
	b.ReportMetric(got, "p50-µs")
	b.ReportMetric(floor, "floor-p50-µs")
	b.ReportMetric(got/floor, "x-floor")
}

// floorUpload measures one-way bulk throughput on raw streams (MB/s).
func (e *benchEnv) floorUpload(b *testing.B) float64 {
	data := make([]byte, uploadSize)
	var total time.Duration
	const reps = 8
	for range reps {
		t := time.Now()
		c, err := e.floor.DialConn(context.Background(), e.agent.Addr(), alpnRawSink)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(data); err != nil {
			b.Fatal(err)
		}
		_ = c.CloseWrite()
		var out [8]byte
		if _, err := io.ReadFull(c, out[:]); err != nil || binary.BigEndian.Uint64(out[:]) != uploadSize {
			b.Fatalf("raw sink: %v", err)
		}
		c.Close()
		total += time.Since(t)
	}
	return float64(uploadSize) * reps / total.Seconds() / 1e6
}

// BenchmarkGatewayUpload: 1 MiB HTTP POST bodies over authenticated gateway
// streams, against raw one-way streams.
func BenchmarkGatewayUpload(b *testing.B) {
	e := newBenchEnv(b)
	floor := e.floorUpload(b)
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return e.remote.DialAuth(ctx)
	}}}
	data := make([]byte, uploadSize)
	b.SetBytes(uploadSize)
	var total time.Duration
	b.ResetTimer()
	for b.Loop() {
		t := time.Now()
		resp, err := hc.Post("http://agentd/sink", "application/octet-stream", bytes.NewReader(data))
		if err != nil {
			b.Fatal(err)
		}
		var got struct{ Bytes int64 }
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if err != nil || got.Bytes != uploadSize {
			b.Fatalf("sink: %v %d", err, got.Bytes)
		}
		total += time.Since(t)
	}
	b.StopTimer()
	mbs := float64(uploadSize) * float64(b.N) / total.Seconds() / 1e6
	b.ReportMetric(mbs, "MB/s")
	b.ReportMetric(floor, "floor-MB/s")
	b.ReportMetric(mbs/floor, "x-floor")
}
