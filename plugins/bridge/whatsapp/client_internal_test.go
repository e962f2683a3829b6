package whatsapp

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// The real whatsmeow session store opens on modernc SQLite (driver
// "sqlite", foreign keys on), mode 0600, and a new device is not linked.
func TestSessionStoreOnModernc(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bridges", "whatsapp")
	c, err := openClient(context.Background(), dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if c.IsLoggedIn() {
		t.Error("a new store is logged in")
	}
	if pn, lid := c.OwnID(); !pn.IsEmpty() || !lid.IsEmpty() {
		t.Errorf("own id %v %v", pn, lid)
	}
	fi, err := os.Stat(filepath.Join(dir, sessionFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("session store mode %v", fi.Mode().Perm())
	}
	// Opening again (a restart) finds the same store.
	if _, err := openClient(context.Background(), dir, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
}
