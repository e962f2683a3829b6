package store

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
)

// migrationName is how a migration file is named: four digits, _, a
// lowercase name, .sql.
var migrationName = regexp.MustCompile(`^([0-9]{4})_[a-z0-9_]+\.sql$`)

// The embedded migrations are numbered 1, 2, 3, … with no number twice and
// none missing, every file in migrations/ is named NNNN_name.sql (a file
// the embed pattern skips, such as 0013_x.SQL, would never be applied),
// and every one of them is embedded. Helpers adding migrations at the same
// time took the same number twice: this names both files.
func TestEmbeddedMigrations(t *testing.T) {
	embedded, err := migrationFS.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	inEmbed := map[string]bool{}
	byNumber := map[int][]string{}
	top := 0
	for _, e := range embedded {
		inEmbed[e.Name()] = true
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			t.Errorf("migration %s: name it NNNN_name.sql (four digits, lowercase name)", e.Name())
			continue
		}
		n, _ := strconv.Atoi(m[1])
		byNumber[n] = append(byNumber[n], e.Name())
		top = max(top, n)
	}
	if top == 0 {
		t.Fatal("no migrations embedded")
	}
	for n := 1; n <= top; n++ {
		switch names := byNumber[n]; {
		case len(names) == 0:
			t.Errorf("migration number %04d is missing (the numbers run to %04d)", n, top)
		case len(names) > 1:
			t.Errorf("migrations %s share number %04d: renumber the newer one to %04d", strings.Join(names, " and "), n, top+1)
		}
	}
	onDisk, err := os.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range onDisk {
		if !inEmbed[e.Name()] {
			t.Errorf("migrations/%s is not embedded (only NNNN_name.sql files are)", e.Name())
		}
	}
	// Open applies exactly what this test read.
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != len(embedded) {
		t.Errorf("Migrations() has %d, the folder embeds %d", len(ms), len(embedded))
	}
}

// readMigrations, which Open uses, refuses two files with one number (also
// when spelled differently) and a name without a number: a colliding
// migration stops the agent instead of being applied or skipped silently.
func TestReadMigrationsRefuses(t *testing.T) {
	sql := &fstest.MapFile{Data: []byte("SELECT 1;")}
	for _, tc := range []struct {
		name  string
		files fstest.MapFS
		want  string // "" = accepted
	}{
		{"in order", fstest.MapFS{"0001_a.sql": sql, "0002_b.sql": sql}, ""},
		{"same number", fstest.MapFS{"0001_a.sql": sql, "0002_b.sql": sql, "0002_c.sql": sql}, "share number 2"},
		{"same number spelled differently", fstest.MapFS{"0002_b.sql": sql, "2_c.sql": sql}, "share number 2"},
		{"no number", fstest.MapFS{"init.sql": sql}, "must start with a positive number"},
		{"number zero", fstest.MapFS{"0000_a.sql": sql}, "must start with a positive number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readMigrations(tc.files)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}
