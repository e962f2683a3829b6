package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 64 << 10

// APIError is a non-2xx answer of the gateway's REST API. Code and Message
// come from the body {"error":{"code","message"}}; a body of another shape
// ends up, shortened, in Message.
type APIError struct {
	Status  int    // HTTP status code
	Code    string // e.g. "unauthorized", "forbidden", "not_found"
	Message string
}

func (e *APIError) Error() string {
	switch {
	case e.Code != "" && e.Message != "":
		return fmt.Sprintf("gateway: %d %s: %s", e.Status, e.Code, e.Message)
	case e.Message != "":
		return fmt.Sprintf("gateway: %d: %s", e.Status, e.Message)
	}
	return fmt.Sprintf("gateway: %d %s", e.Status, http.StatusText(e.Status))
}

// GetJSON GETs path (e.g. "/api/health") and decodes the JSON answer into
// out (which may be nil).
func (d *Dialer) GetJSON(ctx context.Context, path string, out any) error {
	return d.DoJSON(ctx, http.MethodGet, path, nil, out)
}

// PostJSON POSTs in as JSON to path and decodes the answer into out.
func (d *Dialer) PostJSON(ctx context.Context, path string, in, out any) error {
	return d.DoJSON(ctx, http.MethodPost, path, in, out)
}

// DoJSON sends one REST request with an optional JSON body (in == nil: no
// body) and decodes a 2xx answer into out (nil: discarded). Other statuses
// return an *APIError.
func (d *Dialer) DoJSON(ctx context.Context, method, path string, in, out any) error {
	return doJSON(ctx, d.HTTPClient(), BaseURL, method, path, in, out)
}

// Loopback is a REST client of a plain HTTP base URL that authenticates
// for its callers: `agentd proxy` (http://127.0.0.1:PORT), which presents
// its device's certificate on every request it forwards. Its methods
// behave as the Dialer's.
type Loopback struct {
	// BaseURL is scheme://host:port, without a trailing slash.
	BaseURL string
	// HTTP is the client used; nil means http.DefaultClient.
	HTTP *http.Client
}

// GetJSON is Dialer.GetJSON through the loopback URL.
func (l *Loopback) GetJSON(ctx context.Context, path string, out any) error {
	return l.DoJSON(ctx, http.MethodGet, path, nil, out)
}

// PostJSON is Dialer.PostJSON through the loopback URL.
func (l *Loopback) PostJSON(ctx context.Context, path string, in, out any) error {
	return l.DoJSON(ctx, http.MethodPost, path, in, out)
}

// DoJSON is Dialer.DoJSON through the loopback URL.
func (l *Loopback) DoJSON(ctx context.Context, method, path string, in, out any) error {
	hc := l.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	return doJSON(ctx, hc, strings.TrimSuffix(l.BaseURL, "/"), method, path, in, out)
}

// doJSON sends one request to base+path with hc; see Dialer.DoJSON.
func doJSON(ctx context.Context, hc *http.Client, base, method, path string, in, out any) error {
	if !strings.HasPrefix(path, "/") {
		return fmt.Errorf("%s %q: path must start with /", method, path)
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: encode request: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s %s: %w", method, path, ReadAPIError(resp))
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode response: %w", method, path, err)
	}
	return nil
}

// ReadAPIError turns a non-2xx response into an *APIError, reading (a
// bounded part of) its body. The caller still closes the body.
func ReadAPIError(resp *http.Response) *APIError {
	e := &APIError{Status: resp.StatusCode}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var env struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(raw, &env) == nil && env.Error != nil {
		e.Code, e.Message = env.Error.Code, env.Error.Message
		return e
	}
	e.Message = strings.TrimSpace(string(raw))
	if len(e.Message) > 200 {
		e.Message = e.Message[:200] + "…"
	}
	return e
}

// IsStatus reports whether err is an *APIError with the given HTTP status.
func IsStatus(err error, status int) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == status
}
