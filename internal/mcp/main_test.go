package mcp

import (
	"context"
	"encoding/json"
	"os"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// testServerEnv makes the test binary run testServer instead of the tests:
// a real MCP server (the go-sdk's server side over stdio) whose tool list
// changes at run time, which the npm servers do not do on request.
const testServerEnv = "AGENTD_MCP_TEST_SERVER"

func TestMain(m *testing.M) {
	if os.Getenv(testServerEnv) == "1" {
		testServer()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// testServer serves tool "grow", which adds tool "grown" (the SDK then
// sends notifications/tools/list_changed), and "shrink", which removes it.
func testServer() {
	s := sdk.NewServer(&sdk.Implementation{Name: "agentd-test", Version: "1"}, nil)
	text := func(s string) *sdk.CallToolResult {
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: s}}}
	}
	schema := json.RawMessage(`{"type":"object"}`)
	s.AddTool(&sdk.Tool{Name: "grow", InputSchema: schema}, func(context.Context, *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		s.AddTool(&sdk.Tool{Name: "grown", InputSchema: schema}, func(context.Context, *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
			return text("I was added later"), nil
		})
		return text("grew"), nil
	})
	s.AddTool(&sdk.Tool{Name: "shrink", InputSchema: schema}, func(context.Context, *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		s.RemoveTools("grown")
		return text("shrank"), nil
	})
	_ = s.Run(context.Background(), &sdk.StdioTransport{})
}

func TestToolListChanged(t *testing.T) {
	f := newFixture(t, nil)
	f.pool.Start(context.Background())
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.pool.Create(context.Background(), Input{Name: "dyn", Command: []string{exe}, Env: map[string]string{testServerEnv: "1"}}); err != nil {
		t.Fatal(err)
	}
	f.waitState("dyn", StateRunning)
	if hasTool(f.reg, "dyn__grown") || !hasTool(f.reg, "dyn__grow") {
		t.Fatalf("initial tools: %v", f.reg.List())
	}
	if _, err := f.call(context.Background(), "dyn__grow", map[string]any{}); err != nil {
		t.Fatal(err)
	}
	f.waitTool("dyn__grown", true)
	out, err := f.call(context.Background(), "dyn__grown", map[string]any{})
	if err != nil || out != "I was added later" {
		t.Errorf("new tool: %q, %v", out, err)
	}
	if _, err := f.call(context.Background(), "dyn__shrink", map[string]any{}); err != nil {
		t.Fatal(err)
	}
	f.waitTool("dyn__grown", false)
	if v, _ := f.pool.Get("dyn"); len(v.Tools) != 2 {
		t.Errorf("row tools after shrink: %v", v.Tools)
	}
}
