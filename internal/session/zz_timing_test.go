package session

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/store"
)

func TestZZTiming(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := openDB(ctx, st.DB(), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	d.ensureSession(ctx, "s", "c")
	const n = 2000
	t0 := time.Now()
	for i := 0; i < n; i++ {
		tt := &turn{SessionID: "s", ClientID: "c", RunKey: "k", Text: "hello"}
		d.insertTurn(ctx, tt)
	}
	t.Logf("insertTurn %v", time.Since(t0)/n)
	t0 = time.Now()
	for i := 0; i < n; i++ {
		d.history(ctx, "s")
	}
	t.Logf("history(empty) %v", time.Since(t0)/n)
	t0 = time.Now()
	for i := 0; i < n; i++ {
		d.finishTurn(ctx, &turn{ID: int64(i + 1), SessionID: "s", ClientID: "c", Text: "hello"}, outcome{})
		if i%10 == 9 {
			d.clearHistory(ctx, "s")
		}
	}
	t.Logf("finishTurn %v", time.Since(t0)/n)
	d.finishTurn(ctx, &turn{ID: 99999, SessionID: "s", ClientID: "c", Text: "hello"}, outcome{})
	t0 = time.Now()
	for i := 0; i < n; i++ {
		d.history(ctx, "s")
	}
	t.Logf("history(2) %v", time.Since(t0)/n)
}
