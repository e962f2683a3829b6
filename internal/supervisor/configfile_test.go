package supervisor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteEnabled(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		bridge   string
		on       bool
		want     string // "" with wantErr
		wantErr  string
	}{
		{
			name:   "flip keeps comments and env references",
			in:     "# head\nbridges:\n  # tg\n  telegram:\n    enabled: true # on\n    settings:\n      token: ${TG_TOKEN} # secret\n# tail\n",
			bridge: "telegram", on: false,
			want: "# head\nbridges:\n  # tg\n  telegram:\n    enabled: false # on\n    settings:\n      token: ${TG_TOKEN} # secret\n# tail\n",
		},
		{
			name:   "only the named bridge",
			in:     "bridges:\n  a:\n    enabled: false\n  b:\n    enabled: false\n",
			bridge: "b", on: true,
			want: "bridges:\n  a:\n    enabled: false\n  b:\n    enabled: true\n",
		},
		{
			name:   "missing key is added at the section's indentation",
			in:     "bridges:\n    discord:\n        path: /opt/bridge-discord   # custom\n",
			bridge: "discord", on: true,
			want: "bridges:\n    discord:\n        path: /opt/bridge-discord   # custom\n        enabled: true\n",
		},
		{
			name:   "unicode before the value",
			in:     "agent:\n  name: \"ågent ✓\"\nbridges:\n  wa: {}\n  x:\n    enabled: no\n",
			bridge: "x", on: true,
			want: "agent:\n  name: \"ågent ✓\"\nbridges:\n  wa: {}\n  x:\n    enabled: true\n",
		},
		{
			name: "flow section becomes a block", in: "agent:\n  name: a\nbridges:\n  a: {enabled: true}\n", bridge: "a", on: false,
			want: "agent:\n  name: a\nbridges:\n  a:\n    enabled: false\n",
		},
		{
			name: "same value leaves the file as it was", in: "bridges:\n  a:\n    enabled: true\n", bridge: "a", on: true,
			want: "bridges:\n  a:\n    enabled: true\n",
		},
		{name: "unknown bridge", in: "bridges:\n  a:\n    enabled: true\n", bridge: "b", wantErr: "no bridges.b section"},
		{name: "no bridges", in: "agent:\n  name: x\n", bridge: "a", wantErr: "no bridges.a section"},
		{name: "empty section", in: "bridges:\n  a:\n", bridge: "a", wantErr: "no bridges.a section"},
		{name: "enabled is a map", in: "bridges:\n  a:\n    enabled:\n      x: 1\n", bridge: "a", on: true,
			want: "bridges:\n  a:\n    enabled: true\n"},
		{name: "broken yaml", in: "bridges: [\n", bridge: "a", wantErr: "not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "openagent.yaml")
			os.WriteFile(p, []byte(tc.in), 0o640)
			err := WriteEnabled(p, tc.bridge, tc.on)
			got, _ := os.ReadFile(p)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if string(got) != tc.in {
					t.Errorf("failed edit changed the file:\n%s", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
			}
			if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 && string(got) != tc.in {
				t.Errorf("mode %v, want 0600", fi.Mode().Perm())
			}
		})
	}
}
