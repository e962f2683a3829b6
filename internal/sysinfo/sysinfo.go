// Package sysinfo samples the host's health (CPU, memory, disk of the agent
// directory) for the gateway's system_snapshot broadcast and for status
// commands, through gopsutil.
package sysinfo

import (
	"context"
	"fmt"
	"sync"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/mem"
)

// Snapshot is one sample, in percent (0–100).
type Snapshot struct {
	CPUPercent  float64 `json:"cpu_percent"`
	RAMPercent  float64 `json:"ram_percent"`
	DiskPercent float64 `json:"disk_percent"`
}

// Sampler measures CPU use between its own calls, so that two samplers (or
// other gopsutil users) do not disturb each other's intervals.
type Sampler struct {
	dir string

	// mu guards last.
	mu   sync.Mutex
	last *cpu.TimesStat
}

// NewSampler samples the disk that holds dir. It takes a first CPU reading
// so the first Sample already covers a real interval.
func NewSampler(dir string) *Sampler {
	s := &Sampler{dir: dir}
	if t, err := cpu.Times(false); err == nil && len(t) > 0 {
		s.last = &t[0]
	}
	return s
}

// Sample reads CPU use since the previous call, memory use and the use of
// the disk holding the directory.
func (s *Sampler) Sample(ctx context.Context) (Snapshot, error) {
	var out Snapshot
	times, err := cpu.TimesWithContext(ctx, false)
	if err != nil || len(times) == 0 {
		return out, fmt.Errorf("read cpu times: %w", err)
	}
	s.mu.Lock()
	if s.last != nil {
		out.CPUPercent = busy(*s.last, times[0])
	}
	s.last = &times[0]
	s.mu.Unlock()

	vm, err := mem.VirtualMemoryWithContext(ctx)
	if err != nil {
		return out, fmt.Errorf("read memory: %w", err)
	}
	out.RAMPercent = vm.UsedPercent
	du, err := disk.UsageWithContext(ctx, s.dir)
	if err != nil {
		return out, fmt.Errorf("read disk usage of %s: %w", s.dir, err)
	}
	out.DiskPercent = du.UsedPercent
	return out, nil
}

// busy is the share of non-idle time between two readings.
func busy(a, b cpu.TimesStat) float64 {
	idle := (b.Idle + b.Iowait) - (a.Idle + a.Iowait)
	total := b.Total() - a.Total()
	if total <= 0 {
		return 0
	}
	p := (total - idle) / total * 100
	return min(max(p, 0), 100)
}
