// Package routetest serves a package's routes over real HTTP for its
// tests, behind the same capability checks the gateway applies. Each
// request says which capability its device has; an empty one is
// anonymous, as a stream without a certificate would be.
package routetest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/route"
)

// Client calls the routes of one test server.
type Client struct {
	t   testing.TB
	srv *httptest.Server
}

// Serve mounts routes (guarded) on a test server closed at cleanup.
func Serve(t testing.TB, routes []route.Route) *Client {
	mux := http.NewServeMux()
	for _, r := range routes {
		mux.Handle(r.Pattern, r.Guarded())
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c := r.Header.Get("X-Test-Cap"); c != "" {
			r = r.WithContext(auth.WithIdentity(r.Context(), &auth.Identity{ClientID: "dev", Capabilities: []string{c}}))
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return &Client{t: t, srv: srv}
}

// Do sends one request from a device with capability and returns the
// status and the decoded JSON object answered.
func (c *Client) Do(capability, method, path, body string) (int, map[string]any) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.srv.URL+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("X-Test-Cap", capability)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		c.t.Fatalf("%s %s: %d %q", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode, out
}

// ErrorText is "code: message" of an error answer.
func ErrorText(out map[string]any) string {
	e, _ := out["error"].(map[string]any)
	code, _ := e["code"].(string)
	msg, _ := e["message"].(string)
	return code + ": " + msg
}
