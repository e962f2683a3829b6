// Package auth authenticates every inbound stream with its device
// certificate (DESIGN.md §3) and scopes requests by capability.
package auth

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
)

// Capabilities a device certificate can carry.
const (
	CapChat   = "chat"   // WebSocket chat and read-only REST
	CapAdmin  = "admin"  // config, providers, MCPs, bridges, devices, restart
	CapBridge = "bridge" // chat on behalf of platform users, own session prefix only
)

// SessionPrefixCap marks the session-id prefix a bridge cert may use:
// "session_prefix:tg" allows session ids "tg:…" only.
const SessionPrefixCap = "session_prefix:"

// Identity is who is on the other end of an authenticated stream.
type Identity struct {
	ClientID     string   // device public key, hex
	Handle       string   // user handle the cert binds
	Capabilities []string // from the cert
	Transport    string   // unix, tcp, iroh
	CertWire     []byte   // the certificate as presented
}

// Has reports whether the identity carries capability c. admin implies chat.
func (id *Identity) Has(c string) bool {
	if id == nil {
		return false
	}
	if slices.Contains(id.Capabilities, c) {
		return true
	}
	return c == CapChat && slices.Contains(id.Capabilities, CapAdmin)
}

// SessionPrefix returns the session-id prefix a bridge identity is confined
// to ("tg"), or "" for identities that are not bridges.
func (id *Identity) SessionPrefix() string {
	if id == nil || !slices.Contains(id.Capabilities, CapBridge) {
		return ""
	}
	for _, c := range id.Capabilities {
		if p, ok := strings.CutPrefix(c, SessionPrefixCap); ok && p != "" {
			return p
		}
	}
	return ""
}

// MaySession reports whether the identity may act on session id sid:
// bridges only on "<prefix>:…", chat/admin devices on anything except a
// bridge prefix that is not theirs is left to the caller's policy.
func (id *Identity) MaySession(sid string) bool {
	if id.Has(CapBridge) {
		p := id.SessionPrefix()
		return p != "" && strings.HasPrefix(sid, p+":")
	}
	return id.Has(CapChat)
}

type ctxKey struct{}

// WithIdentity returns ctx carrying id.
func WithIdentity(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the identity of the request, if authenticated.
func FromContext(ctx context.Context) (*Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(*Identity)
	return id, ok && id != nil
}

// WriteError writes the JSON error body every refusal uses:
// {"error":{"code":"forbidden","message":"…"}}.
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// Require lets requests through only if they are authenticated (else 401)
// and carry capability c (else 403).
func Require(c string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := FromContext(r.Context())
		if !ok {
			WriteError(w, http.StatusUnauthorized, "unauthorized", "authentication required")
			return
		}
		if !id.Has(c) {
			WriteError(w, http.StatusForbidden, "forbidden", "this device lacks the "+c+" capability")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// CloseAnonymous wraps the handler of the listeners: a stream without
// identity (zero-length preamble) gets one answer — /api/health, or a 401 —
// and is then closed, so anonymous keep-alive streams cannot pile up.
func CloseAnonymous(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := FromContext(r.Context()); !ok {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}
