package provider

import (
	"fmt"
	"sort"
	"sync"
)

// Registry holds the configured providers by id. It is safe for concurrent
// use; Replace swaps the whole set atomically (config hot reload).
type Registry struct {
	mu   sync.RWMutex
	byID map[string]Provider
}

// NewRegistry builds every provider in cfgs. Ids must be unique.
func NewRegistry(cfgs []Config) (*Registry, error) {
	r := &Registry{}
	if err := r.Replace(cfgs); err != nil {
		return nil, err
	}
	return r, nil
}

// Replace rebuilds the registry from cfgs; on error the old set is kept.
func (r *Registry) Replace(cfgs []Config) error {
	byID := make(map[string]Provider, len(cfgs))
	for _, c := range cfgs {
		p, err := New(c)
		if err != nil {
			return err
		}
		if _, dup := byID[p.Name()]; dup {
			return fmt.Errorf("provider %q: configured twice", p.Name())
		}
		byID[p.Name()] = p
	}
	r.mu.Lock()
	r.byID = byID
	r.mu.Unlock()
	return nil
}

// Set adds or replaces one provider.
func (r *Registry) Set(p Provider) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byID == nil {
		r.byID = map[string]Provider{}
	}
	r.byID[p.Name()] = p
}

// Remove drops a provider.
func (r *Registry) Remove(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.byID, id)
}

// Get returns the provider with this id.
func (r *Registry) Get(id string) (Provider, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	p, ok := r.byID[id]
	return p, ok
}

// IDs lists the provider ids, sorted.
func (r *Registry) IDs() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	ids := make([]string, 0, len(r.byID))
	for id := range r.byID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}
