package vault

import (
	"math/bits"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Snippets are cut in Go rather than with FTS5's snippet(): that function
// re-tokenizes every returned body with the porter tokenizer, three
// quarters of a search's CPU time for 50 results; a scan over the body's
// words costs a fraction of it.

// snippetWords is the length of a snippet in words.
const snippetWords = 16

// queryTerms are the lower-cased words of a query, with prefix marks.
type queryTerm struct {
	word   string
	prefix bool
}

func queryTerms(q string) []queryTerm {
	var out []queryTerm
	for _, f := range strings.Fields(q) {
		prefix := strings.HasSuffix(f, "*")
		for _, w := range words(strings.ToLower(strings.TrimRight(f, "*"))) {
			out = append(out, queryTerm{word: w.text, prefix: prefix})
		}
	}
	return out
}

// isWordRune is the unicode61 idea of a token character.
func isWordRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r)
}

// scanWords calls fn with the byte range of every word of s from offset
// from on, until fn returns false.
func scanWords(s string, from int, fn func(start, end int) bool) {
	start := -1
	for i, r := range s[from:] {
		i += from
		in := isWordRune(r)
		switch {
		case in && start < 0:
			start = i
		case !in && start >= 0:
			if !fn(start, i) {
				return
			}
			start = -1
		}
	}
	if start >= 0 {
		fn(start, len(s))
	}
}

// words splits s into its words (lower-cased by the caller if needed).
func words(s string) []word {
	var out []word
	scanWords(s, 0, func(start, end int) bool {
		out = append(out, word{s[start:end], start, end})
		return true
	})
	return out
}

type word struct {
	text       string
	start, end int
}

// matchTerm is the index of the first term w matches, or -1; w is
// lower-cased only when its first letter could match.
func matchTerm(w string, terms []queryTerm) int {
	r, _ := utf8.DecodeRuneInString(w)
	r = unicode.ToLower(r)
	lw := ""
	for i, t := range terms {
		tr, _ := utf8.DecodeRuneInString(t.word)
		if tr != r {
			continue
		}
		if lw == "" {
			lw = strings.ToLower(w)
		}
		if t.matches(lw) {
			return i
		}
	}
	return -1
}

// matches reports whether a body word is one the query term found.
func (t queryTerm) matches(w string) bool {
	if t.prefix {
		return strings.HasPrefix(w, t.word)
	}
	return sameStem(w, t.word)
}

// suffixes porter strips from English words.
var suffixes = []string{"s", "es", "ed", "d", "ing", "ings", "ly", "er", "ers", "ment", "ments", "ness", "ion", "ions", "ation", "ations", "ies", "ied", "y"}

// sameStem approximates "porter gives both words the same stem": equal, or
// one is the other plus a common suffix (ship, ships, shipping, shipped;
// make, making; party, parties). It only picks which words a snippet
// marks; the match itself was FTS5's.
func sameStem(a, b string) bool {
	if a == b {
		return true
	}
	if len(a) > len(b) {
		a, b = b, a
	}
	if len(a) < 3 {
		return false
	}
	for _, base := range []string{a, strings.TrimSuffix(a, "e"), strings.TrimSuffix(a, "y")} {
		if base == "" || !strings.HasPrefix(b, base) {
			continue
		}
		rest := b[len(base):]
		if slices.Contains(suffixes, rest) {
			return true
		}
		// A doubled last consonant: ship → shipping.
		if len(rest) > 1 && rest[0] == base[len(base)-1] && slices.Contains(suffixes, rest[1:]) {
			return true
		}
	}
	return false
}

// snippet returns the window of the body with the most distinct query
// terms, matches marked **…**, "…" where text was cut. Only the matching
// words are recorded while scanning (a body is thousands of words, a
// snippet sixteen).
func snippet(body string, terms []queryTerm) string {
	type hit struct{ idx, start, term int }
	var hits []hit
	idx := 0
	scanWords(body, 0, func(start, end int) bool {
		if t := matchTerm(body[start:end], terms); t >= 0 {
			hits = append(hits, hit{idx, start, t})
		}
		idx++
		return len(hits) < 64 // enough candidates for a window
	})
	from := 0
	if len(hits) > 0 {
		best, bestScore := 0, 0
		for i, h := range hits {
			seen := 0 // bit set of the terms in the window starting at h
			for _, g := range hits[i:] {
				if g.idx >= h.idx+snippetWords {
					break
				}
				seen |= 1 << (g.term % 63)
			}
			if n := bits.OnesCount(uint(seen)); n > bestScore {
				best, bestScore = i, n
			}
		}
		from = backWords(body, hits[best].start, 3) // a little context before
	}
	var b strings.Builder
	if strings.ContainsFunc(body[:from], isWordRune) {
		b.WriteString("…")
	}
	pos, n, cut := from, 0, false
	scanWords(body, from, func(start, end int) bool {
		if n == snippetWords {
			cut = true
			return false
		}
		b.WriteString(body[pos:start])
		if matchTerm(body[start:end], terms) >= 0 {
			b.WriteString("**" + body[start:end] + "**")
		} else {
			b.WriteString(body[start:end])
		}
		pos, n = end, n+1
		return true
	})
	if cut {
		b.WriteString("…")
	} else {
		b.WriteString(body[pos:]) // the closing punctuation
	}
	return strings.Join(strings.Fields(b.String()), " ")
}

// backWords returns the offset of the start of the n-th word before off
// (or 0).
func backWords(s string, off, n int) int {
	i := off
	for ; n > 0 && i > 0; n-- {
		// Skip the separators, then the word.
		for i > 0 {
			r, size := utf8.DecodeLastRuneInString(s[:i])
			if isWordRune(r) {
				break
			}
			i -= size
		}
		for i > 0 {
			r, size := utf8.DecodeLastRuneInString(s[:i])
			if !isWordRune(r) {
				break
			}
			i -= size
		}
	}
	return i
}
