package provider

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors; test with errors.Is against an error returned by Stream or
// ListModels.
var (
	// ErrUnauthorized: the backend refused the credentials (401/403). Final.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrRateLimited: 429 that was still failing after the retries.
	ErrRateLimited = errors.New("rate limited")
	// ErrServer: 5xx / overloaded, still failing after the retries.
	ErrServer = errors.New("server error")
	// ErrUnavailable: the backend could not be reached (connection refused,
	// reset before any output, …), still failing after the retries.
	ErrUnavailable = errors.New("unavailable")
	// ErrStalled: no data within the idle timeout.
	ErrStalled = errors.New("stalled")
	// ErrStreamCut: the reply stream broke after output had started. The
	// partial text is in Error.Partial and in the returned Result. Never
	// retried (the caller already showed the partial text).
	ErrStreamCut = errors.New("stream cut mid-way")
	// ErrBadRequest: the backend rejected the request (4xx other than
	// 401/403/429). Final.
	ErrBadRequest = errors.New("bad request")
)

// Error is the error type returned by the network providers.
type Error struct {
	// Provider is the configured provider id.
	Provider string
	// Kind is one of the sentinel errors above.
	Kind error
	// Status is the HTTP status, when there was one.
	Status int
	// RetryAfter is the delay the server asked for (429/503), if any.
	RetryAfter time.Duration
	// Attempts is how many HTTP requests were made.
	Attempts int
	// Partial is the reply text streamed before the failure.
	Partial string
	// Detail is the server's error message, if it sent one.
	Detail string
	// Err is the underlying error.
	Err error
}

func (e *Error) Error() string {
	msg := "provider " + e.Provider + ": "
	switch e.Kind {
	case ErrUnauthorized:
		msg += fmt.Sprintf("unauthorized (%d): check the API key", e.Status)
	case ErrRateLimited:
		msg += fmt.Sprintf("rate limited (429) after %d attempts", e.Attempts)
		if e.RetryAfter > 0 {
			msg += fmt.Sprintf(", server asked to wait %s", e.RetryAfter)
		}
	case ErrServer:
		msg += fmt.Sprintf("server error (%d) after %d attempts", e.Status, e.Attempts)
	case ErrUnavailable:
		msg += fmt.Sprintf("unreachable after %d attempts", e.Attempts)
	case ErrStalled:
		msg += "no data received within the idle timeout"
	case ErrStreamCut:
		msg += fmt.Sprintf("stream cut mid-way after %d bytes of reply text", len(e.Partial))
	case ErrBadRequest:
		msg += fmt.Sprintf("request rejected (%d)", e.Status)
	default:
		msg += "request failed"
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	// An HTTP failure is fully described by status + detail; the SDK error
	// (kept for errors.As) would only repeat it.
	if e.Err != nil && (e.Status == 0 || e.Detail == "") {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Is matches the sentinel kind, so errors.Is(err, ErrStreamCut) works.
func (e *Error) Is(target error) bool { return target != nil && target == e.Kind }

// PartialText returns the reply text received before err happened, if err
// carries any (a *Error with Partial set).
func PartialText(err error) string {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Partial
	}
	return ""
}
