package mcp

// Benchmarks with a real server-everything (make setup installs it):
//
//	go test -run '^$' -bench . -benchtime 2s ./internal/mcp/

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/agent"
	"github.com/agentd/agentd/internal/provider/providertest"
)

// rawServer is server-everything spoken to by hand: newline-delimited
// JSON-RPC over its stdin/stdout, no SDK; the floor an MCP call can cost.
type rawServer struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
	id  int
}

func startRaw(b *testing.B) *rawServer {
	b.Helper()
	cmd := exec.Command(peerBin(b, "mcp-server-everything"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { in.Close(); syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	r := &rawServer{cmd: cmd, in: in, out: bufio.NewReaderSize(out, 1<<20)}
	r.call(b, "initialize", map[string]any{"protocolVersion": "2025-06-18", "capabilities": map[string]any{},
		"clientInfo": map[string]any{"name": "bench", "version": "1"}})
	fmt.Fprintln(in, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	return r
}

// call sends one request and reads lines until its response.
func (r *rawServer) call(b *testing.B, method string, params any) json.RawMessage {
	r.id++
	req, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": r.id, "method": method, "params": params})
	if _, err := r.in.Write(append(req, '\n')); err != nil {
		b.Fatal(err)
	}
	for {
		line, err := r.out.ReadBytes('\n')
		if err != nil {
			b.Fatal(err)
		}
		var m struct {
			ID     *int            `json:"id"`
			Method string          `json:"method"`
			Result json.RawMessage `json:"result"`
		}
		if json.Unmarshal(line, &m) == nil && m.ID != nil && *m.ID == r.id && m.Method == "" {
			return m.Result
		}
	}
}

// BenchmarkToolCall: one MCP tool call through agentd (registry → tool →
// go-sdk → stdio → server-everything → back) against the same call written
// by hand on a pipe to another server-everything, interleaved in one run.
func BenchmarkToolCall(b *testing.B) {
	raw := startRaw(b)
	f := newFixture(b, nil)
	f.pool.Start(context.Background())
	if _, err := f.pool.Create(context.Background(), Input{Name: "everything", Command: []string{peerBin(b, "mcp-server-everything")}}); err != nil {
		b.Fatal(err)
	}
	f.waitState("everything", StateRunning)
	ctx := context.Background()
	args := json.RawMessage(`{"message":"bench"}`)
	echo := map[string]any{"name": "echo", "arguments": map[string]any{"message": "bench"}}
	for range 20 { // warm both (JIT, connections)
		raw.call(b, "tools/call", echo)
		if _, err := f.reg.Call(ctx, "everything__echo", args); err != nil {
			b.Fatal(err)
		}
	}
	var viaAgentd, direct time.Duration
	for b.Loop() {
		t0 := time.Now()
		raw.call(b, "tools/call", echo)
		t1 := time.Now()
		if _, err := f.reg.Call(ctx, "everything__echo", args); err != nil {
			b.Fatal(err)
		}
		direct += t1.Sub(t0)
		viaAgentd += time.Since(t1)
	}
	n := float64(b.N)
	b.ReportMetric(float64(viaAgentd.Microseconds())/n, "agentd-call-µs")
	b.ReportMetric(float64(direct.Microseconds())/n, "raw-pipe-call-µs")
	b.ReportMetric(float64(viaAgentd)/float64(direct), "agentd/raw")
	b.ReportMetric(float64((viaAgentd-direct).Microseconds())/n, "overhead-µs")
}

// BenchmarkToolTurn: whole agent turns that call everything__echo once
// (model → tool → model) against plain turns with no tool, both with the
// OpenAI-compatible fake, interleaved in one run.
func BenchmarkToolTurn(b *testing.B) {
	f := newFixture(b, nil)
	f.pool.Start(context.Background())
	if _, err := f.pool.Create(context.Background(), Input{Name: "everything", Command: []string{peerBin(b, "mcp-server-everything")}}); err != nil {
		b.Fatal(err)
	}
	f.waitState("everything", StateRunning)
	prov, srv := fakeModel(b)
	a := &agent.Agent{Tools: f.reg}
	call := providertest.Response{ToolCalls: []providertest.ToolCall{{ID: "c", Name: "everything__echo", Arguments: `{"message":"hi"}`}}}
	turn := func() {
		if _, err := a.Run(context.Background(), agent.Turn{Provider: prov, Model: "m", UserText: "go"}); err != nil {
			b.Fatal(err)
		}
	}
	var withTool, plain time.Duration
	for b.Loop() {
		srv.Push(call, providertest.QuoteToolResults(), providertest.Response{Text: []string{"plain"}})
		t0 := time.Now()
		turn()
		t1 := time.Now()
		turn()
		withTool += t1.Sub(t0)
		plain += time.Since(t1)
	}
	b.ReportMetric(float64(b.N)/withTool.Seconds(), "tool-turns/s")
	b.ReportMetric(float64(b.N)/plain.Seconds(), "plain-turns/s")
	b.ReportMetric(float64(withTool)/float64(plain), "tool/plain-turn")
}
