package pairing

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// Approve and deny share one limit of 10 attempts per minute: the 11th
// is refused before the code is even looked at.
func TestDecideRateLimited(t *testing.T) {
	p, _ := open(t)
	mux := http.NewServeMux()
	for _, rt := range Routes(p) {
		mux.Handle(rt.Pattern, rt.Handler)
	}
	for i := range 11 {
		verb := "approve"
		if i%2 == 1 {
			verb = "deny"
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest("POST", "/api/pairing/ZZZZ-ZZZ"+string(Alphabet[i])+"/"+verb, nil))
		want := http.StatusNotFound // unknown code
		if i == 10 {
			want = http.StatusTooManyRequests
		}
		if w.Code != want {
			t.Fatalf("attempt %d: %d %s, want %d", i+1, w.Code, w.Body, want)
		}
	}
}
