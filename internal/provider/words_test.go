package provider

import (
	"strings"
	"testing"
)

func TestCountWords(t *testing.T) {
	for _, s := range []string{"", " ", "one", " one  two\tthree\n", "ünï cödé\u00a0x", "a\u2003b  ", "\u0085x\u0085"} {
		if got, want := countWords(s), len(strings.Fields(s)); got != want {
			t.Errorf("countWords(%q) = %d, want %d", s, got, want)
		}
	}
}
