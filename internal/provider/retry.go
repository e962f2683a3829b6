package provider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Retry defaults. The SDKs' own retry loops are switched off
// (option.WithMaxRetries(0)) so that these are the only retries: the SDKs
// would otherwise retry on their own, doubling up, and could not know whether
// text had already reached the user.
const (
	// DefaultMaxAttempts is the total number of HTTP requests per call
	// (first try included).
	DefaultMaxAttempts = 3
	// DefaultBaseDelay is the first backoff; it doubles on each retry.
	DefaultBaseDelay = 500 * time.Millisecond
	// DefaultMaxDelay caps the exponential backoff.
	DefaultMaxDelay = 8 * time.Second
	// DefaultMaxRetryAfter is the longest Retry-After we are willing to
	// wait; a longer one fails the call at once (with RetryAfter set).
	DefaultMaxRetryAfter = 60 * time.Second
)

// RetryPolicy bounds retries of failed calls. Zero fields take the defaults.
type RetryPolicy struct {
	MaxAttempts   int
	BaseDelay     time.Duration
	MaxDelay      time.Duration
	MaxRetryAfter time.Duration
}

// DefaultRetryPolicy is the policy used when Config.Retry is zero.
var DefaultRetryPolicy = RetryPolicy{
	MaxAttempts:   DefaultMaxAttempts,
	BaseDelay:     DefaultBaseDelay,
	MaxDelay:      DefaultMaxDelay,
	MaxRetryAfter: DefaultMaxRetryAfter,
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = DefaultMaxAttempts
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = DefaultBaseDelay
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = DefaultMaxDelay
	}
	if p.MaxRetryAfter <= 0 {
		p.MaxRetryAfter = DefaultMaxRetryAfter
	}
	return p
}

// backoff is the delay before retry number n (1-based), with ±20% jitter.
func (p RetryPolicy) backoff(n int) time.Duration {
	d := p.BaseDelay << (n - 1)
	if d > p.MaxDelay || d <= 0 {
		d = p.MaxDelay
	}
	jitter := 0.8 + 0.4*rand.Float64()
	return time.Duration(float64(d) * jitter)
}

// attempt is handed to one try of a call.
type attempt struct {
	// emit forwards an event to the caller (and marks the try as having
	// streamed output, which forbids retrying it).
	emit func(Event) error
	// touch records that bytes arrived (resets the idle timer).
	touch func()
}

type attemptFunc func(ctx context.Context, a *attempt) (*Result, error)

// callbackError marks an error returned by the caller's onEvent.
type callbackError struct{ err error }

func (c *callbackError) Error() string { return c.err.Error() }
func (c *callbackError) Unwrap() error { return c.err }

var errIdle = errors.New("idle timeout")

// caller runs attempts with the shared retry / idle-timeout / stream-cut policy.
// stream is the Stream of the SDK providers: req made into the API's
// params (a request the API cannot take fails before any call), sent with
// the caller's retries, and the outcome logged; api names the API in the
// error and the log.
func stream[P any](ctx context.Context, c *caller, api string, req *Request, onEvent func(Event) error,
	params func(*Request) (P, error), once func(context.Context, P, *attempt) (*Result, error)) (*Result, error) {
	p, err := params(req)
	if err != nil {
		return nil, fmt.Errorf("provider %s: %s request: %w", c.id, api, err)
	}
	start := time.Now()
	res, err := c.run(ctx, onEvent, func(ctx context.Context, a *attempt) (*Result, error) {
		return once(ctx, p, a)
	})
	if err == nil {
		c.log.Debug(api+" stream done", "model", req.Model, "finish", res.FinishReason,
			"prompt_tokens", res.Usage.PromptTokens, "completion_tokens", res.Usage.CompletionTokens,
			"tool_calls", len(res.ToolCalls), "elapsed", time.Since(start))
	}
	return res, err
}

type caller struct {
	id     string
	policy RetryPolicy
	idle   time.Duration
	log    *slog.Logger
}

func (c *caller) run(ctx context.Context, onEvent func(Event) error, try attemptFunc) (*Result, error) {
	if onEvent == nil {
		onEvent = func(Event) error { return nil }
	}
	for n := 1; ; n++ {
		res, err, streamed := c.once(ctx, onEvent, try)
		if err == nil {
			return res, nil
		}
		if res == nil {
			res = &Result{}
		}
		var cbErr *callbackError
		if errors.As(err, &cbErr) {
			return res, fmt.Errorf("provider %s: %w", c.id, cbErr.err)
		}
		if ctx.Err() != nil {
			// Cancelled by the caller: not a provider failure.
			return res, fmt.Errorf("provider %s: stream interrupted: %w", c.id, context.Cause(ctx))
		}
		var pe *Error
		if !errors.As(err, &pe) {
			pe = &Error{Kind: ErrUnavailable, Err: err}
		}
		pe.Provider = c.id
		pe.Attempts = n
		if streamed {
			if pe.Kind != ErrUnauthorized && pe.Kind != ErrBadRequest {
				pe.Kind = ErrStreamCut
			}
			pe.Partial = res.Text
			c.log.Warn("provider stream failed after output started; not retrying",
				"attempt", n, "partial_bytes", len(res.Text), "err", pe.Err)
			return res, pe
		}
		retryable := pe.Kind == ErrRateLimited || pe.Kind == ErrServer || pe.Kind == ErrUnavailable || pe.Kind == ErrStalled
		if !retryable || n >= c.policy.MaxAttempts {
			return res, pe
		}
		delay := c.policy.backoff(n)
		if pe.RetryAfter > 0 {
			if pe.RetryAfter > c.policy.MaxRetryAfter {
				c.log.Warn("provider asked to wait longer than we retry for", "retry_after", pe.RetryAfter)
				return res, pe
			}
			delay = pe.RetryAfter
		}
		c.log.Warn("provider call failed; retrying", "attempt", n, "delay", delay, "status", pe.Status, "err", pe)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return res, fmt.Errorf("provider %s: interrupted while waiting to retry: %w", c.id, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// once runs one attempt under an idle timer.
func (c *caller) once(ctx context.Context, onEvent func(Event) error, try attemptFunc) (res *Result, err error, streamed bool) {
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timer := time.AfterFunc(c.idle, func() { cancel(errIdle) })
	defer timer.Stop()
	a := &attempt{
		touch: func() { timer.Reset(c.idle) },
	}
	// Any byte read from the response (SSE keep-alive comments and pings
	// included, which the SDKs swallow) proves the server is alive.
	actx = context.WithValue(actx, touchKey{}, a.touch)
	a.emit = func(ev Event) error {
		if actx.Err() != nil {
			return actx.Err() // no events after cancellation was observed
		}
		streamed = true
		timer.Reset(c.idle)
		if err := onEvent(ev); err != nil {
			return &callbackError{err: err}
		}
		return nil
	}
	res, err = try(actx, a)
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(actx), errIdle) {
		err = &Error{Kind: ErrStalled, Err: fmt.Errorf("nothing received for %s", c.idle)}
	}
	return res, err, streamed
}

// classifyStatus maps an HTTP status to an error kind.
func classifyStatus(status int) error {
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return ErrUnauthorized
	case status == http.StatusTooManyRequests:
		return ErrRateLimited
	case status == http.StatusRequestTimeout || status >= 500:
		return ErrServer
	default:
		return ErrBadRequest
	}
}

// retryAfter reads Retry-After-Ms / Retry-After (seconds or HTTP date).
func retryAfter(h http.Header) time.Duration {
	if h == nil {
		return 0
	}
	if v := strings.TrimSpace(h.Get("Retry-After-Ms")); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}

// httpError builds an *Error from a failed HTTP response.
func httpError(status int, h http.Header, detail string, err error) *Error {
	return &Error{
		Kind:       classifyStatus(status),
		Status:     status,
		RetryAfter: retryAfter(h),
		Detail:     detail,
		Err:        err,
	}
}

// touchKey carries the attempt's touch func in the request context.
type touchKey struct{}

// touchTransport resets the idle timer of the attempt whose request it
// carries whenever response bytes arrive.
type touchTransport struct{ base http.RoundTripper }

func (t touchTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	if touch, ok := req.Context().Value(touchKey{}).(func()); ok && resp.Body != nil {
		touch()
		resp.Body = &touchBody{ReadCloser: resp.Body, touch: touch}
	}
	return resp, nil
}

type touchBody struct {
	io.ReadCloser
	touch func()
}

func (b *touchBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.touch()
	}
	return n, err
}

// withTouchTransport returns a copy of c whose transport feeds the idle timer.
func withTouchTransport(c *http.Client) *http.Client {
	cp := *c
	base := cp.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	cp.Transport = touchTransport{base: base}
	return &cp
}
