package mcp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentd/agentd/internal/agent"
	"github.com/agentd/agentd/internal/provider"
)

// Version is what agentd tells MCP servers about itself.
var Version = "1"

// maxToolName is the longest tool name OpenAI accepts (Anthropic: 128).
const maxToolName = 64

// toolNameBad matches what OpenAI and Anthropic refuse in a tool name.
var toolNameBad = regexp.MustCompile(`[^A-Za-z0-9_-]`)

// ToolName is the registry name of a server's tool: <server>__<tool> with
// everything but letters, digits, _ and - replaced by _, and, when that is
// longer than 64 bytes or was changed, cut and suffixed with a digest of the
// original so that two tools never end up with one name.
func ToolName(server, tool string) string {
	clean := toolNameBad.ReplaceAllString(tool, "_")
	name := server + "__" + clean
	if clean == tool && len(name) <= maxToolName {
		return name
	}
	sum := sha256.Sum256([]byte(tool))
	suffix := "_" + hex.EncodeToString(sum[:4])
	if len(name)+len(suffix) > maxToolName {
		name = name[:maxToolName-len(suffix)]
	}
	return name + suffix
}

// emptySchema is offered for tools that declare no input schema: both APIs
// want an object schema.
var emptySchema = json.RawMessage(`{"type":"object","properties":{}}`)

// adapt turns a server's tools into registry tools and their listing.
func adapt(row Server, sess *sdk.ClientSession, remote []*sdk.Tool) ([]agent.Tool, []ToolInfo) {
	timeout, maxBytes := row.Timeout, row.MaxResultBytes
	if timeout <= 0 {
		timeout = DefaultCallTimeout
	}
	if maxBytes <= 0 {
		maxBytes = DefaultMaxResultBytes
	}
	tools := make([]agent.Tool, 0, len(remote))
	infos := make([]ToolInfo, 0, len(remote))
	seen := map[string]bool{}
	for _, t := range remote {
		name := ToolName(row.Name, t.Name)
		if seen[name] {
			continue // the server listed one name twice
		}
		seen[name] = true
		schema := emptySchema
		if t.InputSchema != nil {
			if b, err := json.Marshal(t.InputSchema); err == nil && string(b) != "null" {
				schema = b
			}
		}
		desc := t.Description
		if desc == "" {
			desc = t.Title
		}
		tools = append(tools, &tool{
			spec:   provider.ToolSpec{Name: name, Description: desc, InputSchema: schema},
			remote: t.Name, sess: sess, timeout: timeout, maxBytes: maxBytes,
		})
		infos = append(infos, ToolInfo{MCP: row.Name, Name: t.Name, Registered: name, Description: desc, InputSchema: json.RawMessage(schema)})
	}
	return tools, infos
}

// tool is one MCP tool in the agent's registry, bound to the session it
// was listed on (a reconnect registers new ones).
type tool struct {
	spec     provider.ToolSpec
	remote   string
	sess     *sdk.ClientSession
	timeout  time.Duration
	maxBytes int
}

func (t *tool) Spec() provider.ToolSpec { return t.spec }

// Limits makes the agent apply the row's timeout and result cap.
func (t *tool) Limits() (time.Duration, int) { return t.timeout, t.maxBytes }

// Call runs the tool. Cancelling ctx (an interrupt, the timeout) makes the
// SDK send notifications/cancelled to the server.
func (t *tool) Call(ctx context.Context, args json.RawMessage) (string, error) {
	params := &sdk.CallToolParams{Name: t.remote}
	if len(strings.TrimSpace(string(args))) > 0 {
		if !json.Valid(args) || !strings.HasPrefix(strings.TrimSpace(string(args)), "{") {
			return "", errors.New("arguments must be a JSON object")
		}
		params.Arguments = args
	}
	res, err := t.sess.CallTool(ctx, params)
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("MCP call %s: %w", t.remote, err)
	}
	text := resultText(res)
	if res.IsError {
		if text == "" {
			text = "the tool reported an error without a message"
		}
		return "", errors.New(text)
	}
	return text, nil
}

// resultText renders a tool result as text for the model: text parts as
// they are, other content as a short note, structured content as JSON when
// there is nothing else.
func resultText(res *sdk.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		switch v := c.(type) {
		case *sdk.TextContent:
			parts = append(parts, v.Text)
		case *sdk.ImageContent:
			parts = append(parts, fmt.Sprintf("[image %s, %d bytes]", v.MIMEType, len(v.Data)))
		case *sdk.AudioContent:
			parts = append(parts, fmt.Sprintf("[audio %s, %d bytes]", v.MIMEType, len(v.Data)))
		case *sdk.ResourceLink:
			parts = append(parts, fmt.Sprintf("[resource %s: %s]", v.Name, v.URI))
		case *sdk.EmbeddedResource:
			if r := v.Resource; r != nil && r.Text != "" {
				parts = append(parts, r.Text)
			} else if r != nil {
				parts = append(parts, fmt.Sprintf("[resource %s, %d bytes]", r.URI, len(r.Blob)))
			}
		default:
			if b, err := json.Marshal(c); err == nil {
				parts = append(parts, string(b))
			}
		}
	}
	if len(parts) == 0 && res.StructuredContent != nil {
		if b, err := json.Marshal(res.StructuredContent); err == nil {
			return string(b)
		}
	}
	return strings.Join(parts, "\n")
}
