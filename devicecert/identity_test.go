package devicecert

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestIdentitySaveLoad(t *testing.T) {
	ck, dk, c := testKeys(t)
	wire, err := Sign(ck, c)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "owner.identity")
	id := &Identity{Key: dk, Cert: wire}
	if err := id.Save(p); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %#o, want 0600", fi.Mode().Perm())
	}
	got, err := LoadIdentity(p)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Key.Equal(dk) || !bytes.Equal(got.Cert, wire) {
		t.Fatal("loaded identity differs")
	}
	if got.ClientID() != c.ClientID() {
		t.Fatalf("client id %s, want %s", got.ClientID(), c.ClientID())
	}
	pc, err := got.Parsed()
	if err != nil || pc.Handle != "alice" {
		t.Fatalf("parsed %+v, %v", pc, err)
	}
	// No temp files are left beside it.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("%d files in dir after save, want 1", len(ents))
	}

	// An identity without a cert round-trips too (enrolment in progress).
	fresh, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	p2 := filepath.Join(dir, "fresh.identity")
	if err := fresh.Save(p2); err != nil {
		t.Fatal(err)
	}
	got2, err := LoadIdentity(p2)
	if err != nil || got2.Cert != nil || got2.ClientID() != fresh.ClientID() {
		t.Fatalf("fresh identity: %+v, %v", got2, err)
	}
	if _, err := got2.Parsed(); err == nil {
		t.Fatal("Parsed of a cert-less identity succeeded")
	}
}

func TestLoadIdentityRefuses(t *testing.T) {
	ck, dk, c := testKeys(t)
	wire, _ := Sign(ck, c)
	dir := t.TempDir()
	other, _ := NewIdentity()
	cases := map[string]struct {
		body string
		mode os.FileMode
	}{
		"world readable": {`{"version":1,"seed":"` + hexSeed(dk) + `"}`, 0o644},
		"not json":       {`nope`, 0o600},
		"version 2":      {`{"version":2,"seed":"` + hexSeed(dk) + `"}`, 0o600},
		"short seed":     {`{"version":1,"seed":"00ff"}`, 0o600},
		"cert not hex":   {`{"version":1,"seed":"` + hexSeed(dk) + `","cert":"zz"}`, 0o600},
		"cert other key": {`{"version":1,"seed":"` + hexSeed(other.Key) + `","cert":"` + hexOf(wire) + `"}`, 0o600},
		"cert garbage":   {`{"version":1,"seed":"` + hexSeed(dk) + `","cert":"00000001"}`, 0o600},
	}
	for name, tc := range cases {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(tc.body), tc.mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, tc.mode)
		if _, err := LoadIdentity(p); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
	if _, err := LoadIdentity(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file loaded")
	}
}
