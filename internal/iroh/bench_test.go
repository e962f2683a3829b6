package iroh

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// Benchmarks of the full path Go -> unix -> dial sidecar -> iroh -> serve
// sidecar -> unix -> Go on loopback, next to the sidecar-pair floor (pure
// Node, two processes, no unix sockets) measured in the same run:
//
//	go test ./internal/iroh -run '^$' -bench . -benchtime 2000x

// floorResult is the JSON line of sidecar/iroh/bench/floor.mjs.
type floorResult struct {
	ConnectMS float64 `json:"connect_ms"`
	EchoP50US float64 `json:"echo_p50_us"`
	EchoP99US float64 `json:"echo_p99_us"`
	BulkMBs   float64 `json:"bulk_mb_s"`
}

var (
	floorOnce sync.Once
	floor     floorResult
	floorErr  error
)

func measureFloor(b *testing.B) floorResult {
	b.Helper()
	floorOnce.Do(func() {
		node, err := FindNode("")
		if err != nil {
			floorErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, node, filepath.Join("bench", "floor.mjs"), "2000", "8388608", "100")
		cmd.Dir = DefaultDir()
		cmd.Env = append(os.Environ(), "RUST_BACKTRACE=0")
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			floorErr = err
			return
		}
		floorErr = json.Unmarshal(out, &floor)
	})
	if floorErr != nil {
		b.Fatalf("floor: %v", floorErr)
	}
	return floor
}

// benchHandler: the first byte picks the mode. 'e': echo until EOF.
// 's': sink, read to EOF then answer the byte count (8 bytes, big endian).
func benchHandler(c *Conn) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 64<<10)
	mode, err := br.ReadByte()
	if err != nil {
		return
	}
	switch mode {
	case 'e':
		buf := make([]byte, 64<<10)
		for {
			n, err := br.Read(buf)
			if n > 0 {
				if _, err := c.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				_ = c.CloseWrite()
				return
			}
		}
	case 's':
		n, _ := io.Copy(io.Discard, br)
		var out [8]byte
		binary.BigEndian.PutUint64(out[:], uint64(n))
		_, _ = c.Write(out[:])
		_ = c.CloseWrite()
	}
}

func percentile(d []time.Duration, p float64) float64 {
	slices.Sort(d)
	return float64(d[int(float64(len(d)-1)*p)].Microseconds())
}

// BenchmarkEcho: 100-byte round trips on one established stream.
func BenchmarkEcho(b *testing.B) {
	fl := measureFloor(b)
	p := startPair(b, benchHandler)
	c := dialT(b, p, ALPNGateway)
	defer c.Close()
	msg := make([]byte, 100)
	buf := make([]byte, 100)
	msg[0] = 'e'
	if _, err := c.Write(msg[:1]); err != nil {
		b.Fatal(err)
	}
	for range 50 { // warm up
		_, _ = c.Write(msg)
		_, _ = io.ReadFull(c, buf)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for b.Loop() {
		t := time.Now()
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t))
	}
	b.StopTimer()
	p50 := percentile(lat, 0.5)
	b.ReportMetric(p50, "p50-µs")
	b.ReportMetric(percentile(lat, 0.99), "p99-µs")
	b.ReportMetric(fl.EchoP50US, "floor-p50-µs")
	b.ReportMetric(p50/fl.EchoP50US, "x-floor")
}

// BenchmarkStreamOpen: a new stream per op on the cached connection (dial
// request, liveness probe, bi-stream open, header to the listener) plus one
// 100-byte echo.
func BenchmarkStreamOpen(b *testing.B) {
	p := startPair(b, benchHandler)
	msg := make([]byte, 101)
	msg[0] = 'e'
	buf := make([]byte, 100)
	c := dialT(b, p, ALPNGateway) // establishes the connection
	_ = c.Close()
	lat := make([]time.Duration, 0, b.N)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		t := time.Now()
		c, err := p.dialer.DialConn(ctx, p.addr(), ALPNGateway)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t))
		_ = c.Close()
	}
	b.StopTimer()
	b.ReportMetric(percentile(lat, 0.5), "p50-µs")
}

// BenchmarkBulk: 1 MiB one way per op (own stream each), acknowledged by
// the receiver's byte count.
func BenchmarkBulk(b *testing.B) {
	fl := measureFloor(b)
	p := startPair(b, benchHandler)
	const size = 1 << 20
	data := make([]byte, size)
	b.SetBytes(size)
	ctx := context.Background()
	var total time.Duration
	b.ResetTimer()
	for b.Loop() {
		t := time.Now()
		c, err := p.dialer.DialConn(ctx, p.addr(), ALPNGateway)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write([]byte{'s'}); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(data); err != nil {
			b.Fatal(err)
		}
		_ = c.CloseWrite()
		var out [8]byte
		if _, err := io.ReadFull(c, out[:]); err != nil {
			b.Fatal(err)
		}
		if n := binary.BigEndian.Uint64(out[:]); n != size {
			b.Fatalf("sink got %d bytes", n)
		}
		_ = c.Close()
		total += time.Since(t)
	}
	b.StopTimer()
	mbs := float64(size) * float64(b.N) / total.Seconds() / 1e6
	b.ReportMetric(fl.BulkMBs, "floor-MB/s")
	b.ReportMetric(mbs/fl.BulkMBs, "x-floor")
}

// BenchmarkFloor only reports the pure-Node sidecar-pair floor.
func BenchmarkFloor(b *testing.B) {
	fl := measureFloor(b)
	for b.Loop() {
	}
	b.ReportMetric(fl.ConnectMS*1000, "connect-µs")
	b.ReportMetric(fl.EchoP50US, "echo-p50-µs")
	b.ReportMetric(fl.EchoP99US, "echo-p99-µs")
	b.ReportMetric(fl.BulkMBs, "bulk-MB/s")
}
