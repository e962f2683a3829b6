package session

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

// A pin is never undone by a read that raced with it: readers that
// queried the session before the pin committed must not cache the old pin
// afterwards (issue 21, item 5).
func TestPinNotUndoneByConcurrentRead(t *testing.T) {
	h := start(t, t.TempDir(), yamlWith("echo", ""))
	d, ctx := h.m.db, context.Background()
	if _, err := d.ensureSession(ctx, "s", alice.ClientID); err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		want := fmt.Sprint("model-", i)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := d.session(ctx, "s"); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		err := d.pin(ctx, "s", want)
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		row, err := d.session(ctx, "s")
		if err != nil {
			t.Fatal(err)
		}
		if row.Pinned != want {
			t.Fatalf("round %d: pin %q reads back as %q: a concurrent read cached the old pin", i, want, row.Pinned)
		}
	}
}
