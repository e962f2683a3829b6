package vault

import "testing"

func TestSnippet(t *testing.T) {
	long := "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen "
	tests := []struct{ body, q, want string }{
		{"Ship it.", "shipping", "**Ship** it."},
		{"We are shipping the boats, shipped yesterday.", "ship", "We are **shipping** the boats, **shipped** yesterday."},
		{"Kaffee und Kuchen.", "kaffee kuchen", "**Kaffee** und **Kuchen**."},
		{"the inbox and inbound", "inbo*", "the **inbox** and **inbound**"},
		{"a planet, a plan", "plan", "a planet, a **plan**"},
		{"Making parties", "make party", "**Making** **parties**"},
		{long + "target word here", "target", "…sixteen seventeen eighteen **target** word here"},
		{long, "absent", "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen…"},
		{"Über **Café** à Paris", "café", "Über ****Café**** à Paris"},
		{"", "x", ""},
	}
	for _, tc := range tests {
		if got := snippet(tc.body, queryTerms(tc.q)); got != tc.want {
			t.Errorf("snippet(%q, %q) = %q, want %q", tc.body, tc.q, got, tc.want)
		}
	}
}
