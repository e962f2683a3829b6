package hook

import (
	"fmt"
	"sync"
	"testing"
)

func TestChanges(t *testing.T) {
	var c Changes
	c.Notify("task", "created", "none yet") // no hooks: nothing to run
	var got []string
	c.Add(func(r, a, id string) { got = append(got, "1:"+r+"/"+a+"/"+id) })
	c.Add(func(r, a, id string) {
		got = append(got, "2:"+r+"/"+a+"/"+id)
		// A hook may add a hook: it runs from the next change on.
		if id == "a" {
			c.Add(func(r, a, id string) { got = append(got, "3:"+id) })
		}
	})
	c.Notify("task", "created", "a")
	c.Notify("task", "deleted", "b")
	want := fmt.Sprint([]string{"1:task/created/a", "2:task/created/a", "1:task/deleted/b", "2:task/deleted/b", "3:b"})
	if fmt.Sprint(got) != want {
		t.Fatalf("ran %v, want %v", got, want)
	}
}

// Adding and notifying from many goroutines at once is safe (go test -race).
func TestChangesConcurrent(t *testing.T) {
	var c Changes
	var mu sync.Mutex
	n := 0
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			c.Add(func(string, string, string) { mu.Lock(); n++; mu.Unlock() })
		}()
		go func() { defer wg.Done(); c.Notify("r", "a", "id") }()
	}
	wg.Wait()
	n = 0
	c.Notify("r", "a", "id")
	if n != 8 {
		t.Fatalf("%d hooks ran, want 8", n)
	}
}
