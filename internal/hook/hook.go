// Package hook is the change hooks of the packages that own resources
// (catalog, vault, mcp, scheduler, workflow, pairing): each notifies its
// hooks after a change, and the daemon registers the gateway's
// resource_event broadcast with the package's OnChange.
package hook

import (
	"slices"
	"sync"
)

// Func is told the resource, the action and the id of a change.
type Func func(resource, action, id string)

// Changes is a list of hooks, safe for concurrent use; the zero value is
// ready.
type Changes struct {
	// mu guards fns.
	mu  sync.Mutex
	fns []Func
}

// Add registers fn; hooks run in the order they were added.
func (c *Changes) Add(fn Func) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fns = append(c.fns, fn)
}

// Notify runs every hook, synchronously and outside the list's lock, so a
// hook may read the resource's owner or add a hook.
func (c *Changes) Notify(resource, action, id string) {
	c.mu.Lock()
	fns := slices.Clone(c.fns)
	c.mu.Unlock()
	for _, fn := range fns {
		fn(resource, action, id)
	}
}
