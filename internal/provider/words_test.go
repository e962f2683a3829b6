package provider

import (
	"strings"
	"testing"
)

func TestCountWords(t *testing.T) {
	for _, s := range []string{"", " ", "one", " one  two\tthree\n", "ünï cödé\u00a0x", "a\u2003b  ", "\u0085x\u0085",
		"ab ü", "ab ü cd", "abü", "ab\u00a0", "x\u00a0y", "\v\f\r x", "\x00 \x7f", "ab\xffcd ef", "\xff"} {
		if got, want := countWords(s), len(strings.Fields(s)); got != want {
			t.Errorf("countWords(%q) = %d, want %d", s, got, want)
		}
	}
}

func FuzzCountWords(f *testing.F) {
	for _, s := range []string{"", "one two", "ünï cödé\u00a0x", "a\u2003b", "ab\xffcd"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := countWords(s), len(strings.Fields(s)); got != want {
			t.Errorf("countWords(%q) = %d, want %d", s, got, want)
		}
	})
}

func BenchmarkCountWords(b *testing.B) {
	s := strings.Repeat("echo: hello there "+EchoNotice+" ", 20)
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		countWords(s)
	}
}
