package bridge

import (
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/agentd/agentd/wire"
)

func TestSplitText(t *testing.T) {
	tests := []struct {
		name string
		in   string
		max  int
		want []string
	}{
		{"empty", "", 10, nil},
		{"whitespace only", " \n ", 10, nil},
		{"no limit", "abc def", 0, []string{"abc def"}},
		{"fits", "abc", 3, []string{"abc"}},
		{"prefers newline", "aaaa bb\ncc dd", 10, []string{"aaaa bb", "cc dd"}},
		{"prefers space", "aaaa bbbb cccc", 10, []string{"aaaa bbbb", "cccc"}},
		{"hard cut", "abcdefghijkl", 5, []string{"abcde", "fghij", "kl"}},
		{"newline too early", "a\nbcdefghijkl", 6, []string{"a\nbcde", "fghijk", "l"}},
		{"utf16 units", "😀😀😀", 4, []string{"😀😀", "😀"}},
		{"rune wider than max", "😀x", 1, []string{"😀", "x"}},
		{"multibyte not split", "ééééé", 2, []string{"éé", "éé", "é"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := SplitText(tc.in, tc.max)
			if strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
				t.Fatalf("SplitText(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
			}
			for _, p := range got {
				if n := len(utf16.Encode([]rune(p))); tc.max > 1 && n > tc.max {
					t.Fatalf("part %q has %d units > %d", p, n, tc.max)
				}
			}
		})
	}
}

func TestParseCommand(t *testing.T) {
	tests := []struct {
		in   string
		ok   bool
		want wire.Command
	}{
		{"/stop", true, wire.Command{Name: "stop"}},
		{"/STOP", true, wire.Command{Name: "stop"}},
		{"/new@agentd_bot", true, wire.Command{Name: "new"}},
		{"/model gpt-4o ", true, wire.Command{Name: "model", Args: "gpt-4o"}},
		{"/clear", true, wire.Command{Name: "clear"}},
		{"/reset", true, wire.Command{Name: "reset"}},
		{"/start", false, wire.Command{}},
		{"stop", false, wire.Command{}},
		{"/stopp", false, wire.Command{}},
	}
	for _, tc := range tests {
		got, ok := parseCommand(tc.in)
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseCommand(%q) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestBackoff(t *testing.T) {
	lo := func(d time.Duration) time.Duration { return time.Duration(float64(d) * (1 - reconnectJitter)) }
	hi := func(d time.Duration) time.Duration { return time.Duration(float64(d) * (1 + reconnectJitter)) }
	for n := 0; n < 20; n++ {
		want := reconnectMin << n
		if n > 10 || want > reconnectMax {
			want = reconnectMax
		}
		for range 50 {
			if d := backoff(n); d < lo(want) || d > hi(want) {
				t.Fatalf("backoff(%d) = %v, want %v ±%.0f%%", n, d, want, reconnectJitter*100)
			}
		}
	}
}
