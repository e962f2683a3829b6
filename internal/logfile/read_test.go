package logfile

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReadFiltersFromTheEnd(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	// agentd.log as the daemon writes it (JSON), big enough for several
	// chunks, with a rotated file behind it.
	var old, cur strings.Builder
	for i := range 3000 {
		lvl, comp := "INFO", "session"
		if i%100 == 0 {
			lvl, comp = "WARN", "gateway"
		}
		w := &cur
		if i < 1000 {
			w = &old
		}
		fmt.Fprintf(w, `{"time":%q,"level":%q,"msg":"line %d","component":%q,"n":%d}`+"\n", t0.Add(time.Duration(i)*time.Second).Format(time.RFC3339Nano), lvl, i, comp, i)
	}
	os.WriteFile(filepath.Join(dir, "agentd.log.1"), []byte(old.String()), 0o600)
	os.WriteFile(filepath.Join(dir, "agentd.log"), []byte(cur.String()), 0o600)
	// A bridge log: slog text records and raw plugin output.
	os.WriteFile(filepath.Join(dir, "bridge-telegram.log"), []byte(
		`time=2026-12-01T10:20:00.000Z level=INFO msg="bridge started" pid=42`+"\n"+
			"panic: something odd\n"+
			`time=2026-12-01T10:30:00.000Z level=ERROR msg="platform refused \"token\"" code=401`+"\n"), 0o600)

	msgs := func(es []Entry) string {
		var out []string
		for _, e := range es {
			out = append(out, fmt.Sprint(e["msg"]))
		}
		return strings.Join(out, "|")
	}
	for _, tc := range []struct {
		name string
		q    Query
		want string
	}{
		{"last lines", Query{Lines: 3, Component: "session"}, "line 2997|line 2998|line 2999"},
		{"level, into the rotated file", Query{Lines: 25, Level: slog.LevelWarn}, "line 600|line 700|line 800|line 900|line 1000|line 1100|line 1200|line 1300|line 1400|line 1500|line 1600|line 1700|line 1800|platform refused \"token\"|line 1900|line 2000|line 2100|line 2200|line 2300|line 2400|line 2500|line 2600|line 2700|line 2800|line 2900"},
		{"component", Query{Lines: 2, Component: "gateway"}, "line 2800|line 2900"},
		{"since", Query{Lines: 100, Component: "gateway", Since: t0.Add(2750 * time.Second)}, "line 2800|line 2900"},
		{"bridge", Query{Lines: 10, Component: "bridge-telegram"}, `bridge started|panic: something odd|platform refused "token"`},
		{"bridge level", Query{Lines: 10, Component: "bridge-telegram", Level: slog.LevelError}, `platform refused "token"`},
	} {
		got, err := Read(dir, tc.q)
		if err != nil {
			t.Fatal(err)
		}
		if msgs(got) != tc.want {
			t.Errorf("%s: %s\nwant %s", tc.name, msgs(got), tc.want)
		}
	}
	got, _ := Read(dir, Query{Lines: 1, Component: "bridge-telegram"})
	if got[0]["code"] != "401" || got[0]["level"] != "ERROR" || got[0]["component"] != "bridge-telegram" {
		t.Errorf("text record fields: %v", got[0])
	}
}
