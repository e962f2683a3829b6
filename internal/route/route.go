// Package route is the one shape of a REST endpoint: every package that
// serves part of the API returns its routes as []Route, each stating the
// capability it needs beside it, and the gateway mounts them behind that
// check. A route's capability is written once, here and nowhere else.
package route

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/agentd/agentd/internal/auth"
)

// Device is the Cap of a route that any authenticated device may use,
// whatever its capabilities (e.g. renewing its own certificate).
const Device = "device"

// MaxBody bounds the JSON body Decode reads.
const MaxBody = 64 << 10

// Route is one REST endpoint.
type Route struct {
	// Pattern is a net/http ServeMux pattern with its method, e.g.
	// "GET /api/vault/notes/{path...}".
	Pattern string
	// Cap is the capability a request needs: auth.CapChat, auth.CapAdmin,
	// auth.CapBridge, Device, or several joined by Any.
	Cap string
	// Handler runs only for authenticated requests carrying Cap; it reads
	// the identity with auth.FromContext for ownership rules.
	Handler http.Handler
}

// Any is the Cap of a route that any one of caps admits.
func Any(caps ...string) string { return strings.Join(caps, "|") }

// known are the capabilities a Cap may name.
var known = []string{auth.CapChat, auth.CapAdmin, auth.CapBridge, Device}

// Method and Path split the pattern ("GET /api/x" → "GET", "/api/x").
func (r Route) Method() string {
	m, _, _ := strings.Cut(r.Pattern, " ")
	return m
}

// Path is the pattern's path part.
func (r Route) Path() string {
	_, p, _ := strings.Cut(r.Pattern, " ")
	return p
}

// Check reports a route that cannot be mounted safely: no method, no
// capability, or a capability nobody knows (a typo would lock everyone out
// or, worse, look like a check that is not one).
func (r Route) Check() error {
	if r.Method() == "" || !strings.HasPrefix(r.Path(), "/") {
		return fmt.Errorf("route %q: pattern must be \"METHOD /path\"", r.Pattern)
	}
	if r.Handler == nil {
		return fmt.Errorf("route %q: no handler", r.Pattern)
	}
	if r.Cap == "" {
		return fmt.Errorf("route %q: no capability", r.Pattern)
	}
	for _, c := range strings.Split(r.Cap, "|") {
		if !slices.Contains(known, c) {
			return fmt.Errorf("route %q: unknown capability %q", r.Pattern, c)
		}
	}
	return nil
}

// Guarded is Handler behind the authentication and capability check: 401
// without an identity, 403 without the capability.
func (r Route) Guarded() http.Handler {
	caps := strings.Split(r.Cap, "|")
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		id, ok := auth.FromContext(req.Context())
		if !ok {
			Error(w, http.StatusUnauthorized, "unauthorized", "authentication required")
			return
		}
		for _, c := range caps {
			if c == Device || id.Has(c) {
				r.Handler.ServeHTTP(w, req)
				return
			}
		}
		Error(w, http.StatusForbidden, "forbidden", "this device lacks the "+strings.Join(caps, " or ")+" capability")
	})
}

// JSON answers v with status.
func JSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Error answers the error body every route uses:
// {"error":{"code":"snake_case","message":"human text"}}.
func Error(w http.ResponseWriter, status int, code, msg string) {
	auth.WriteError(w, status, code, msg)
}

// Decode reads one JSON object of at most MaxBody bytes into v, refusing
// unknown fields and trailing data. On bad input it has answered 400 (413
// when too large) and returns false.
func Decode(w http.ResponseWriter, r *http.Request, v any) bool {
	return DecodeLimit(w, r, v, MaxBody)
}

// DecodeLimit is Decode for routes whose bodies carry documents (a vault
// note) and may be larger than MaxBody: at most limit bytes.
func DecodeLimit(w http.ResponseWriter, r *http.Request, v any, limit int64) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("unexpected data after the JSON object")
		}
	}
	if err == nil {
		return true
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		Error(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body larger than %d bytes", limit))
		return false
	}
	if errors.Is(err, io.EOF) {
		Error(w, http.StatusBadRequest, "bad_request", "invalid JSON body: empty body (a JSON object is expected)")
		return false
	}
	Error(w, http.StatusBadRequest, "bad_request", "invalid JSON body: "+err.Error())
	return false
}

// Table renders routes as a Markdown table (method, path, capability),
// sorted by path then method: the generated docs/routes.md.
func Table(rs []Route) string {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b Route) int {
		if c := strings.Compare(a.Path(), b.Path()); c != 0 {
			return c
		}
		return strings.Compare(a.Method(), b.Method())
	})
	var b strings.Builder
	b.WriteString("| method | path | capability |\n| --- | --- | --- |\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %s | `%s` | %s |\n", r.Method(), r.Path(), strings.ReplaceAll(r.Cap, "|", " or "))
	}
	return b.String()
}
