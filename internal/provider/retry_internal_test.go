package provider

import (
	"net/http"
	"testing"
	"time"
)

func TestRetryAfterParsing(t *testing.T) {
	future := time.Now().Add(30 * time.Second).UTC().Format(http.TimeFormat)
	cases := []struct {
		name     string
		h        http.Header
		min, max time.Duration
	}{
		{"none", http.Header{}, 0, 0},
		{"seconds", http.Header{"Retry-After": {"2"}}, 2 * time.Second, 2 * time.Second},
		{"fractional seconds", http.Header{"Retry-After": {"0.5"}}, 500 * time.Millisecond, 500 * time.Millisecond},
		{"milliseconds win", http.Header{"Retry-After-Ms": {"250"}, "Retry-After": {"9"}}, 250 * time.Millisecond, 250 * time.Millisecond},
		{"http date", http.Header{"Retry-After": {future}}, 28 * time.Second, 31 * time.Second},
		{"garbage", http.Header{"Retry-After": {"soon"}}, 0, 0},
		{"negative", http.Header{"Retry-After": {"-3"}}, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := retryAfter(c.h); got < c.min || got > c.max {
				t.Errorf("retryAfter = %s, want [%s, %s]", got, c.min, c.max)
			}
		})
	}
}

func TestClassifyStatus(t *testing.T) {
	cases := map[int]error{
		401: ErrUnauthorized, 403: ErrUnauthorized, 429: ErrRateLimited, 408: ErrServer,
		500: ErrServer, 502: ErrServer, 503: ErrServer, 529: ErrServer, 400: ErrBadRequest, 404: ErrBadRequest, 422: ErrBadRequest,
	}
	for status, want := range cases {
		if got := classifyStatus(status); got != want {
			t.Errorf("classifyStatus(%d) = %v, want %v", status, got, want)
		}
	}
}

func TestBackoffIsBounded(t *testing.T) {
	p := DefaultRetryPolicy
	prevMax := time.Duration(0)
	for n := 1; n <= 70; n++ {
		d := p.backoff(n)
		if d <= 0 || d > time.Duration(float64(p.MaxDelay)*1.2) {
			t.Fatalf("backoff(%d) = %s out of bounds", n, d)
		}
		if n <= 3 && d < prevMax/2 {
			t.Errorf("backoff(%d) = %s did not grow", n, d)
		}
		prevMax = d
	}
}
