// Package storetest opens real agent databases for tests: a migrated
// SQLite file in a test's folder, closed when the test ends.
package storetest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/agentd/agentd/internal/store"
)

// Open opens (creating and migrating) dir/openagent.db; the test fails if
// it cannot, and the store is closed at the test's cleanup.
func Open(t testing.TB, dir string) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(dir, store.FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
