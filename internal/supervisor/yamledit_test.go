package supervisor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEditBridgeEnabled(t *testing.T) {
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
			name:   "missing key is inserted at the section's indentation",
			in:     "bridges:\n    discord:\n        path: /opt/bridge-discord   # custom\n",
			bridge: "discord", on: true,
			want: "bridges:\n    discord:\n        enabled: true\n        path: /opt/bridge-discord   # custom\n",
		},
		{
			name:   "unicode before the value",
			in:     "agent:\n  name: \"ågent ✓\"\nbridges:\n  wa: {}\n  x:\n    enabled: no\n",
			bridge: "x", on: true,
			want: "agent:\n  name: \"ågent ✓\"\nbridges:\n  wa: {}\n  x:\n    enabled: true\n",
		},
		{
			name: "same value is a no-op edit", in: "bridges:\n  a:\n    enabled: true\n", bridge: "a", on: true,
			want: "bridges:\n  a:\n    enabled: true\n",
		},
		{name: "unknown bridge", in: "bridges:\n  a:\n    enabled: true\n", bridge: "b", wantErr: "no bridges.b section"},
		{name: "no bridges", in: "agent:\n  name: x\n", bridge: "a", wantErr: "no block mapping at bridges"},
		{name: "flow section", in: "bridges:\n  a: {enabled: true}\n", bridge: "a", wantErr: "not a block mapping"},
		{name: "empty section", in: "bridges:\n  a:\n", bridge: "a", wantErr: "not a block mapping"},
		{name: "enabled is a map", in: "bridges:\n  a:\n    enabled:\n      x: 1\n", bridge: "a", wantErr: "not a scalar"},
		{name: "broken yaml", in: "bridges: [\n", bridge: "a", wantErr: "parse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := editBridgeEnabled([]byte(tc.in), tc.bridge, tc.on)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

func TestWriteEnabledKeepsModeAndFileOnError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "openagent.yaml")
	os.WriteFile(p, []byte("bridges:\n  a:\n    enabled: true\n"), 0o640)
	if err := WriteEnabled(p, "a", false); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode().Perm())
	}
	before, _ := os.ReadFile(p)
	if err := WriteEnabled(p, "zzz", true); err == nil {
		t.Fatal("no error for an unknown bridge")
	}
	if after, _ := os.ReadFile(p); string(after) != string(before) {
		t.Errorf("failed edit changed the file:\n%s", after)
	}
}
