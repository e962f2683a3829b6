package session

import (
	"fmt"
	"os"
	"slices"
	"sync"
	"time"
)

var (
	ttMu    sync.Mutex
	ttStart time.Time
	ttSeen  = map[string]bool{}
	ttD     = map[string][]time.Duration{}
	ttOrder []string
)

func TT(s string) {
	ttMu.Lock()
	defer ttMu.Unlock()
	now := time.Now()
	if s == "read" {
		ttStart = now
		ttSeen = map[string]bool{}
	}
	if ttSeen[s] {
		return
	}
	ttSeen[s] = true
	if _, ok := ttD[s]; !ok {
		ttOrder = append(ttOrder, s)
	}
	ttD[s] = append(ttD[s], now.Sub(ttStart))
}

func TTDump() {
	if os.Getenv("TT") == "" {
		return
	}
	for _, k := range ttOrder {
		d := slices.Clone(ttD[k])
		slices.Sort(d)
		fmt.Fprintf(os.Stderr, "%-15s p50 %v\n", k, d[len(d)/2])
	}
}
