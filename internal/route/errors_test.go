package route_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/agentd/agentd/internal/route"
)

var (
	errMissing = errors.New("not found")
	errBad     = errors.New("invalid task")
	errTaken   = errors.New("taken")
)

// A typed error that matches its sentinel, as vault's ConflictError does.
type takenError struct{ who string }

func (e *takenError) Error() string        { return e.who + " has it" }
func (e *takenError) Is(target error) bool { return target == errTaken }

func TestErrors(t *testing.T) {
	plain := route.Errors{Codes: []route.Code{
		{Err: errMissing, Status: http.StatusNotFound, Code: "not_found"},
		{Err: errBad, Status: http.StatusBadRequest, Code: "invalid_task", Trim: true},
		{Err: errTaken, Status: http.StatusConflict, Code: "conflict"},
	}}
	hooked := plain
	hooked.Before = func(w http.ResponseWriter, err error) bool {
		var te *takenError
		if errors.As(err, &te) {
			w.Header().Set("X-Who", te.who)
		}
		if errors.Is(err, errMissing) {
			route.JSON(w, http.StatusGone, map[string]any{"gone": true})
			return true
		}
		return false
	}
	hooked.Other = func(w http.ResponseWriter, err error) {
		route.Error(w, http.StatusBadGateway, "upstream", "hidden")
	}
	for _, tc := range []struct {
		name   string
		e      route.Errors
		err    error
		status int
		body   string // the JSON answer, compact
		header string // X-Who
	}{
		{"sentinel", plain, fmt.Errorf("task %q: %w", "x", errMissing), 404, `{"error":{"code":"not_found","message":"task \"x\": not found"}}`, ""},
		{"trimmed", plain, fmt.Errorf("%w: schedule: want a cron line", errBad), 400, `{"error":{"code":"invalid_task","message":"schedule: want a cron line"}}`, ""},
		{"trim keeps a bare sentinel", plain, errBad, 400, `{"error":{"code":"invalid_task","message":"invalid task"}}`, ""},
		{"typed error by its Is", plain, fmt.Errorf("wrapped: %w", &takenError{"bob"}), 409, `{"error":{"code":"conflict","message":"wrapped: bob has it"}}`, ""},
		{"unknown is internal", plain, errors.New("disk full"), 500, `{"error":{"code":"internal","message":"disk full"}}`, ""},
		{"before answers", hooked, errMissing, 410, `{"gone":true}`, ""},
		{"before sets a header, codes answer", hooked, &takenError{"ann"}, 409, `{"error":{"code":"conflict","message":"ann has it"}}`, "ann"},
		{"other answers the unknown", hooked, errors.New("disk full"), 502, `{"error":{"code":"upstream","message":"hidden"}}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			tc.e.Write(w, tc.err)
			if w.Code != tc.status {
				t.Errorf("status %d, want %d", w.Code, tc.status)
			}
			if got := compact(t, w.Body.Bytes()); got != tc.body {
				t.Errorf("body %s, want %s", got, tc.body)
			}
			if got := w.Header().Get("X-Who"); got != tc.header {
				t.Errorf("X-Who %q, want %q", got, tc.header)
			}
		})
	}
}

func TestErrorsReply(t *testing.T) {
	e := route.Errors{Codes: []route.Code{{Err: errMissing, Status: http.StatusNotFound, Code: "not_found"}}}
	w := httptest.NewRecorder()
	e.Reply(w, nil, http.StatusCreated, map[string]any{"ok": true})
	if w.Code != http.StatusCreated || compact(t, w.Body.Bytes()) != `{"ok":true}` || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("success: %d %s %q", w.Code, w.Body, w.Header().Get("Content-Type"))
	}
	w = httptest.NewRecorder()
	e.Reply(w, errMissing, http.StatusCreated, map[string]any{"ok": true})
	if w.Code != http.StatusNotFound || compact(t, w.Body.Bytes()) != `{"error":{"code":"not_found","message":"not found"}}` {
		t.Fatalf("failure: %d %s", w.Code, w.Body)
	}
}

// Logged keeps a failure's text out of the answer and in the log.
func TestLogged(t *testing.T) {
	var logged bytes.Buffer
	e := route.Errors{Other: route.Logged(slog.New(slog.NewTextHandler(&logged, nil)), "store failed", "the store failed; see agentd.log")}
	w := httptest.NewRecorder()
	e.Write(w, errors.New("open /secret/path: permission denied"))
	if w.Code != 500 || compact(t, w.Body.Bytes()) != `{"error":{"code":"internal","message":"the store failed; see agentd.log"}}` {
		t.Fatalf("answer %d %s", w.Code, w.Body)
	}
	if l := logged.String(); !strings.Contains(l, `msg="store failed"`) || !strings.Contains(l, `err="open /secret/path: permission denied"`) {
		t.Fatalf("log %q", l)
	}
}

func compact(t *testing.T, b []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("not JSON: %q", b)
	}
	out, _ := json.Marshal(v)
	return string(out)
}
