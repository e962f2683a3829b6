package bridge

import (
	"strings"
	"testing"
)

func TestNegotiateAPIVersion(t *testing.T) {
	for _, tc := range []struct {
		name          string
		ours, theirs  []string
		want, wantErr string
	}{
		{"same", []string{"v1"}, []string{"v1"}, "v1", ""},
		{"our preference wins", []string{"v2", "v1"}, []string{"v1", "v2"}, "v2", ""},
		{"older plugin", []string{"v2", "v1"}, []string{"v1"}, "v1", ""},
		{"newer plugin", []string{"v1"}, []string{"v3", "v1"}, "v1", ""},
		{"nothing in common", []string{"v1"}, []string{"v2"}, "", "agentd speaks v1, the plugin speaks v2"},
		{"plugin reports none", []string{"v1"}, nil, "", "the plugin speaks none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NegotiateAPIVersion(tc.ours, tc.theirs)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestEventKindRoundTrip(t *testing.T) {
	for _, k := range []string{"qr", "logged_out", "alert", "status"} {
		if got := EventKindName(EventKind(k)); got != k {
			t.Errorf("%s → %s", k, got)
		}
	}
	if got := EventKindName(EventKind("something new")); got != "alert" {
		t.Errorf("unknown kind → %s, want alert", got)
	}
}
