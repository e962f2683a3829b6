package sysinfo

import (
	"context"
	"testing"
	"time"
)

func TestSample(t *testing.T) {
	s := NewSampler(t.TempDir())
	// Burn a little CPU so the interval is not empty.
	end := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(end) {
	}
	snap, err := s.Sample(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]float64{"cpu": snap.CPUPercent, "ram": snap.RAMPercent, "disk": snap.DiskPercent} {
		if v < 0 || v > 100 {
			t.Errorf("%s = %v, want 0..100", name, v)
		}
	}
	if snap.RAMPercent == 0 || snap.DiskPercent == 0 {
		t.Errorf("ram/disk reported as 0: %+v", snap)
	}
}

func TestSampleMissingDir(t *testing.T) {
	s := NewSampler("/nonexistent/agent/dir")
	if _, err := s.Sample(context.Background()); err == nil {
		t.Fatal("want error for a missing directory")
	}
}
