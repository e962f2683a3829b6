package catalog

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/agentd/agentd/internal/provider"
)

// AvailableModel is one model a provider's model-list API offers.
type AvailableModel struct {
	// ID is the upstream name (what a catalog model's "name" must be).
	ID          string    `json:"id"`
	DisplayName string    `json:"display_name,omitempty"`
	OwnedBy     string    `json:"owned_by,omitempty"`
	Created     time.Time `json:"created,omitzero"`
	// ConfiguredAs lists the catalog models of this provider that use this
	// upstream name.
	ConfiguredAs []string `json:"configured_as,omitempty"`
}

// ListError says why a provider's model list could not be fetched.
type ListError struct {
	// Code: unauthorized, rate_limited, server_error, unavailable, timeout,
	// bad_request, not_built or error.
	Code    string `json:"code"`
	Message string `json:"message"`
}

// ProviderModels is the answer of one provider.
type ProviderModels struct {
	Provider  string           `json:"provider"`
	Kind      string           `json:"kind"`
	OK        bool             `json:"ok"`
	Models    []AvailableModel `json:"models"`
	Error     *ListError       `json:"error,omitempty"`
	ElapsedMS int64            `json:"elapsed_ms"`
}

// Available asks the model-list API of each provider (all of them, or those
// in ids) concurrently, each bounded by the list timeout. A failing
// provider is reported in its entry; Available itself does not fail. The
// result is sorted by provider id.
func (c *Catalog) Available(ctx context.Context, ids ...string) []ProviderModels {
	snap := c.snap.Load()
	var provs []Provider
	for _, p := range snap.providers {
		if len(ids) == 0 || containsStr(ids, p.ID) {
			provs = append(provs, p)
		}
	}
	configured := map[[2]string][]string{} // provider, upstream name → model ids
	for _, m := range snap.models {
		k := [2]string{m.Provider, m.Name}
		configured[k] = append(configured[k], m.ID)
	}
	timeout := time.Duration(c.listTimeout.Load())
	out := make([]ProviderModels, len(provs))
	var wg sync.WaitGroup
	for i, p := range provs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = c.listOne(ctx, p, timeout, configured)
		}()
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].Provider < out[j].Provider })
	return out
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (c *Catalog) listOne(ctx context.Context, p Provider, timeout time.Duration, configured map[[2]string][]string) ProviderModels {
	res := ProviderModels{Provider: p.ID, Kind: p.Kind, Models: []AvailableModel{}}
	start := time.Now()
	defer func() { res.ElapsedMS = time.Since(start).Milliseconds() }()
	prov, ok := c.reg.Get(p.ID)
	if !ok {
		res.Error = &ListError{Code: "not_built", Message: fmt.Sprintf("provider %q could not be built; see the agent log", p.ID)}
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type answer struct {
		models []provider.ModelInfo
		err    error
	}
	ch := make(chan answer, 1) // buffered: a provider that ignores ctx cannot leak a blocked sender
	go func() {
		ms, err := prov.ListModels(ctx)
		ch <- answer{ms, err}
	}()
	var a answer
	select {
	case a = <-ch:
	case <-ctx.Done():
		a.err = ctx.Err()
	}
	if a.err != nil {
		res.Error = listError(a.err, timeout, p.APIKey)
		return res
	}
	res.OK = true
	for _, m := range a.models {
		res.Models = append(res.Models, AvailableModel{
			ID: m.ID, DisplayName: m.DisplayName, OwnedBy: m.OwnedBy, Created: m.Created,
			ConfiguredAs: configured[[2]string{p.ID, m.ID}],
		})
	}
	sort.Slice(res.Models, func(i, j int) bool { return res.Models[i].ID < res.Models[j].ID })
	return res
}

func listError(err error, timeout time.Duration, apiKey string) *ListError {
	code := "error"
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return &ListError{Code: "timeout", Message: fmt.Sprintf("no answer within %s", timeout)}
	case errors.Is(err, context.Canceled):
		return &ListError{Code: "canceled", Message: "request canceled"}
	case errors.Is(err, provider.ErrUnauthorized):
		code = "unauthorized"
	case errors.Is(err, provider.ErrRateLimited):
		code = "rate_limited"
	case errors.Is(err, provider.ErrServer):
		code = "server_error"
	case errors.Is(err, provider.ErrUnavailable):
		code = "unavailable"
	case errors.Is(err, provider.ErrBadRequest):
		code = "bad_request"
	}
	msg := err.Error()
	if apiKey != "" {
		// Some APIs echo the key back in their error text.
		msg = strings.ReplaceAll(msg, apiKey, "[api key]")
	}
	return &ListError{Code: code, Message: msg}
}
