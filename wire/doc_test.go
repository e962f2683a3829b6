package wire

import (
	"os"
	"strings"
	"testing"
)

// Every frame type must have its own section in docs/protocol.md.
func TestProtocolDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []Direction{ClientToServer, ServerToClient} {
		for _, typ := range Types(d) {
			if !strings.Contains(string(doc), "\n#### `"+typ+"`\n") {
				t.Errorf("frame type %q has no \"#### `%s`\" section in docs/protocol.md", typ, typ)
			}
			for _, f := range Required(typ) {
				if !strings.Contains(string(doc), f) {
					t.Errorf("field %q of %q is not documented", f, typ)
				}
			}
		}
	}
}
