package route_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/route"
)

var ok = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		r    route.Route
		want string // "" means valid
	}{
		{route.Route{Pattern: "GET /api/x", Cap: auth.CapChat, Handler: ok}, ""},
		{route.Route{Pattern: "GET /api/x", Cap: route.Any(auth.CapChat, auth.CapBridge), Handler: ok}, ""},
		{route.Route{Pattern: "POST /api/x", Cap: route.Device, Handler: ok}, ""},
		{route.Route{Pattern: "GET /api/x", Handler: ok}, "no capability"},
		{route.Route{Pattern: "GET /api/x", Cap: "admn", Handler: ok}, `unknown capability "admn"`},
		{route.Route{Pattern: "GET /api/x", Cap: "chat|", Handler: ok}, `unknown capability ""`},
		{route.Route{Pattern: "/api/x", Cap: auth.CapChat, Handler: ok}, "pattern must be"},
		{route.Route{Pattern: "GET /api/x", Cap: auth.CapChat}, "no handler"},
	} {
		err := tc.r.Check()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v", tc.r, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: error %v, want %q", tc.r, err, tc.want)
		}
	}
}

func TestGuarded(t *testing.T) {
	chat := &auth.Identity{Capabilities: []string{auth.CapChat}}
	admin := &auth.Identity{Capabilities: []string{auth.CapAdmin}}
	bridge := &auth.Identity{Capabilities: []string{auth.CapBridge, auth.SessionPrefixCap + "tg"}}
	none := &auth.Identity{}
	for _, tc := range []struct {
		cap  string
		id   *auth.Identity
		want int
	}{
		{auth.CapAdmin, nil, 401},
		{auth.CapAdmin, chat, 403},
		{auth.CapAdmin, bridge, 403},
		{auth.CapAdmin, admin, 204},
		{auth.CapChat, admin, 204}, // admin implies chat
		{auth.CapChat, bridge, 403},
		{route.Any(auth.CapChat, auth.CapBridge), bridge, 204},
		{route.Any(auth.CapChat, auth.CapBridge), none, 403},
		{route.Device, none, 204},
		{route.Device, nil, 401},
	} {
		r := route.Route{Pattern: "GET /x", Cap: tc.cap, Handler: ok}
		req := httptest.NewRequest("GET", "/x", nil)
		if tc.id != nil {
			req = req.WithContext(auth.WithIdentity(req.Context(), tc.id))
		}
		rec := httptest.NewRecorder()
		r.Guarded().ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("cap %q, identity %+v: %d, want %d", tc.cap, tc.id, rec.Code, tc.want)
		}
		if tc.want >= 400 && !strings.Contains(rec.Body.String(), `"error"`) {
			t.Errorf("cap %q: refusal is not a JSON error: %s", tc.cap, rec.Body)
		}
	}
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		body string
		ok   bool
		code int
	}{
		{`{"name":"a"}`, true, 0},
		{``, false, 400},
		{`{"name":"a","x":1}`, false, 400},
		{`{"name":"a"} {}`, false, 400},
		{`{"name":"` + strings.Repeat("a", route.MaxBody) + `"}`, false, 413},
	} {
		var v struct{ Name string }
		rec := httptest.NewRecorder()
		got := route.Decode(rec, httptest.NewRequest("POST", "/", strings.NewReader(tc.body)), &v)
		if got != tc.ok || (!got && rec.Code != tc.code) {
			t.Errorf("%.40q: ok %v status %d, want %v %d", tc.body, got, rec.Code, tc.ok, tc.code)
		}
	}
}
