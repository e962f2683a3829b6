package catalog_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/agentd/agentd/internal/catalog"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/store/storetest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func ptr[T any](v T) *T { return &v }

// baseConfig: echo plus an OpenAI provider with two models.
func baseConfig() *config.Config {
	c := config.Default()
	c.Providers = []config.Provider{
		{ID: "echo", Kind: "echo"},
		{ID: "oa", Kind: "openai", BaseURL: "https://api.example.com/v1", APIKey: "sk-config-key-000000000000"},
	}
	c.Models = []config.Model{
		{ID: "echo", Provider: "echo"},
		{ID: "gpt", Provider: "oa", Name: "gpt-4o-mini", InputPricePerMTok: 0.15, OutputPricePerMTok: 0.6},
		{ID: "old", Provider: "oa", Enabled: ptr(false)},
	}
	c.Agent.DefaultModel = "gpt"
	if err := c.Validate(); err != nil {
		panic(err)
	}
	return c
}

type events struct {
	mu  sync.Mutex
	got []string
}

func (e *events) hook(resource, action, id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, resource+" "+action+" "+id)
}

func (e *events) take() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.got
	e.got = nil
	return out
}

func openCatalog(t *testing.T, s *store.Store, cfg *config.Config) *catalog.Catalog {
	t.Helper()
	c, err := catalog.Open(context.Background(), s.DB(), cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSeedFromConfig(t *testing.T) {
	s := storetest.Open(t, t.TempDir())
	c := openCatalog(t, s, baseConfig())

	m, ok := c.Model("gpt")
	if !ok || m.Provider != "oa" || m.Name != "gpt-4o-mini" || m.InputPricePerMTok != 0.15 || m.OutputPricePerMTok != 0.6 || !m.Enabled || m.Source != catalog.SourceConfig {
		t.Fatalf("gpt = %+v, %v", m, ok)
	}
	if m, _ := c.Model("old"); m.Enabled || m.Name != "old" {
		t.Errorf("old = %+v; want disabled, name defaulting to id", m)
	}
	if c.DefaultModel() != "gpt" {
		t.Errorf("default = %q", c.DefaultModel())
	}
	ids := func() []string {
		var out []string
		for _, p := range c.Providers(context.Background()) {
			out = append(out, p.ID)
		}
		return out
	}
	if got := ids(); !slices.Equal(got, []string{"echo", "oa"}) {
		t.Errorf("providers = %v", got)
	}
	pcs := c.ProviderConfigs()
	if len(pcs) != 2 || pcs[1].ID != "oa" || pcs[1].APIKey != "sk-config-key-000000000000" || pcs[1].BaseURL != "https://api.example.com/v1" {
		t.Errorf("provider configs = %+v", pcs)
	}
	if got := c.Registry().IDs(); !slices.Equal(got, []string{"echo", "oa"}) {
		t.Errorf("registry = %v", got)
	}
	if _, ok := c.Model("nope"); ok {
		t.Error("unknown model found")
	}
	var en []string
	for _, m := range c.EnabledModels() {
		en = append(en, m.ID)
	}
	if !slices.Equal(en, []string{"echo", "gpt"}) {
		t.Errorf("enabled = %v", en)
	}
}

func TestReloadAndRestartKeepAPIEntries(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := storetest.Open(t, dir)
	c := openCatalog(t, s, baseConfig())
	ev := &events{}
	c.OnChange(ev.hook)

	if _, err := c.CreateProvider(ctx, catalog.ProviderInput{ID: "local", Kind: "openai", BaseURL: "http://127.0.0.1:11434/v1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateModel(ctx, catalog.ModelInput{ID: "llama", Provider: "local", Name: "llama3.2"}); err != nil {
		t.Fatal(err)
	}
	// An api model on a config provider.
	if _, err := c.CreateModel(ctx, catalog.ModelInput{ID: "gpt-big", Provider: "oa", Name: "gpt-4o", InputPricePerMTok: 2.5, OutputPricePerMTok: 10}); err != nil {
		t.Fatal(err)
	}
	if got := ev.take(); !slices.Equal(got, []string{"provider created local", "model created llama", "model created gpt-big"}) {
		t.Errorf("events = %v", got)
	}

	// Reload: gpt's price changes, old leaves the file, new arrives.
	cfg := baseConfig()
	cfg.Models[1].OutputPricePerMTok = 0.7
	cfg.Models = append(cfg.Models[:2], config.Model{ID: "new", Provider: "oa"})
	if err := c.Seed(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if got := ev.take(); !slices.Equal(got, []string{"model updated gpt", "model created new", "model deleted old"}) {
		t.Errorf("reload events = %v", got)
	}
	if m, _ := c.Model("gpt"); m.OutputPricePerMTok != 0.7 {
		t.Errorf("gpt price not reloaded: %+v", m)
	}
	if _, ok := c.Model("old"); ok {
		t.Error("model removed from the file is still there")
	}
	for _, id := range []string{"llama", "gpt-big", "new"} {
		if m, ok := c.Model(id); !ok || !m.Enabled {
			t.Errorf("model %s missing after reload: %+v", id, m)
		}
	}
	// A second identical reload changes nothing.
	if err := c.Seed(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if got := ev.take(); len(got) != 0 {
		t.Errorf("no-op reload fired %v", got)
	}

	// Restart: close, reopen the file, open the catalog with the same config.
	s.Close()
	s2 := storetest.Open(t, dir)
	c2 := openCatalog(t, s2, cfg)
	m, ok := c2.Model("llama")
	if !ok || m.Source != catalog.SourceAPI || m.Name != "llama3.2" || m.Provider != "local" {
		t.Errorf("llama after restart = %+v, %v", m, ok)
	}
	if p, ok := c2.Provider("local"); !ok || p.Source != catalog.SourceAPI || p.BaseURL != "http://127.0.0.1:11434/v1" {
		t.Errorf("local after restart = %+v, %v", p, ok)
	}
	if m, _ := c2.Model("gpt-big"); m.InputPricePerMTok != 2.5 {
		t.Errorf("gpt-big after restart = %+v", m)
	}
	if got := c2.Registry().IDs(); !slices.Equal(got, []string{"echo", "local", "oa"}) {
		t.Errorf("registry after restart = %v", got)
	}
}

func TestOverrideSurvivesUntilFileEntryChanges(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := storetest.Open(t, dir)
	cfg := baseConfig()
	c := openCatalog(t, s, cfg)

	m, err := c.SetModelEnabled(ctx, "gpt", false)
	if err != nil || m.Enabled || !m.Overridden || m.Source != catalog.SourceConfig {
		t.Fatalf("disable gpt = %+v, %v", m, err)
	}
	p, err := c.UpdateProvider(ctx, "oa", catalog.ProviderPatch{APIKey: ptr("sk-rest-key-1111111111111")})
	if err != nil || !p.Overridden {
		t.Fatalf("update oa = %+v, %v", p, err)
	}
	// Reload of the same file, then restart: the overrides stay.
	if err := c.Seed(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = storetest.Open(t, dir)
	c = openCatalog(t, s, cfg)
	if m, _ := c.Model("gpt"); m.Enabled || !m.Overridden {
		t.Errorf("override lost: %+v", m)
	}
	if p, _ := c.Provider("oa"); p.APIKey != "sk-rest-key-1111111111111" || !p.Overridden {
		t.Errorf("provider override lost: %+v", p)
	}
	// The file's entries change: the file wins again.
	cfg2 := baseConfig()
	cfg2.Models[1].InputPricePerMTok = 0.2
	cfg2.Providers[1].APIKey = "sk-new-config-key-22222222"
	if err := c.Seed(ctx, cfg2); err != nil {
		t.Fatal(err)
	}
	if m, _ := c.Model("gpt"); !m.Enabled || m.Overridden || m.InputPricePerMTok != 0.2 {
		t.Errorf("file change did not win: %+v", m)
	}
	if p, _ := c.Provider("oa"); p.APIKey != "sk-new-config-key-22222222" || p.Overridden {
		t.Errorf("provider file change did not win: %+v", p)
	}
	if pc := c.ProviderConfigs(); pc[1].APIKey != "sk-new-config-key-22222222" {
		t.Errorf("provider configs not updated: %+v", pc[1])
	}
}

func TestFileAndAPIConflicts(t *testing.T) {
	ctx := context.Background()
	s := storetest.Open(t, t.TempDir())
	c := openCatalog(t, s, baseConfig())
	ev := &events{}
	c.OnChange(ev.hook)

	// An api model on config provider "oa"; then "oa" leaves the file.
	if _, err := c.CreateModel(ctx, catalog.ModelInput{ID: "mine", Provider: "oa"}); err != nil {
		t.Fatal(err)
	}
	// An api provider and model whose ids the file then takes over.
	if _, err := c.CreateProvider(ctx, catalog.ProviderInput{ID: "an", Kind: "openai"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateModel(ctx, catalog.ModelInput{ID: "claude", Provider: "an", InputPricePerMTok: 1}); err != nil {
		t.Fatal(err)
	}
	ev.take()
	cfg := config.Default()
	cfg.Providers = append(cfg.Providers, config.Provider{ID: "an", Kind: "anthropic", APIKey: "k"})
	cfg.Models = append(cfg.Models, config.Model{ID: "claude", Provider: "an", Name: "claude-sonnet-4-5", InputPricePerMTok: 3, OutputPricePerMTok: 15})
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := c.Seed(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	p, ok := c.Provider("oa")
	if !ok || p.Source != catalog.SourceAPI {
		t.Errorf("oa (still used by api model mine) = %+v, %v; want kept as api", p, ok)
	}
	if m, ok := c.Model("mine"); !ok || m.Provider != "oa" {
		t.Errorf("mine = %+v, %v", m, ok)
	}
	for _, id := range []string{"gpt", "old"} {
		if _, ok := c.Model(id); ok {
			t.Errorf("%s should be gone", id)
		}
	}
	if p, _ := c.Provider("an"); p.Source != catalog.SourceConfig || p.Kind != "anthropic" {
		t.Errorf("an = %+v; want taken over by the file", p)
	}
	if m, _ := c.Model("claude"); m.Source != catalog.SourceConfig || m.Name != "claude-sonnet-4-5" || m.InputPricePerMTok != 3 {
		t.Errorf("claude = %+v; want taken over by the file", m)
	}
	got := ev.take()
	for _, want := range []string{"provider updated an", "model updated claude", "model deleted gpt", "model deleted old", "provider updated oa"} {
		if !slices.Contains(got, want) {
			t.Errorf("events %v lack %q", got, want)
		}
	}
	// Now mine can go, and then oa (an api provider now) too.
	if err := c.DeleteModel(ctx, "mine"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteProvider(ctx, "oa"); err != nil {
		t.Fatal(err)
	}
	if got := c.Registry().IDs(); !slices.Equal(got, []string{"an", "echo"}) {
		t.Errorf("registry = %v", got)
	}
}

func TestWriteErrors(t *testing.T) {
	ctx := context.Background()
	s := storetest.Open(t, t.TempDir())
	c := openCatalog(t, s, baseConfig())
	ev := &events{}
	c.OnChange(ev.hook)

	check := func(name string, err, want error) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Errorf("%s: err = %v, want %v", name, err, want)
		}
	}
	_, err := c.CreateProvider(ctx, catalog.ProviderInput{ID: "oa", Kind: "openai"})
	check("duplicate provider", err, catalog.ErrExists)
	_, err = c.CreateProvider(ctx, catalog.ProviderInput{ID: "Bad Id", Kind: "openai"})
	check("bad id", err, catalog.ErrInvalid)
	_, err = c.CreateProvider(ctx, catalog.ProviderInput{ID: "x", Kind: "gemini"})
	check("bad kind", err, catalog.ErrInvalid)
	_, err = c.CreateProvider(ctx, catalog.ProviderInput{ID: "x", Kind: "openai", BaseURL: "ftp://h"})
	check("bad url", err, catalog.ErrInvalid)
	_, err = c.CreateProvider(ctx, catalog.ProviderInput{ID: "x", Kind: "openai", BaseURL: "https://u:p@h/v1"})
	check("credentials in url", err, catalog.ErrInvalid)
	_, err = c.CreateProvider(ctx, catalog.ProviderInput{ID: "x", Kind: "openai", APIKey: "a b"})
	check("bad key", err, catalog.ErrInvalid)
	_, err = c.UpdateProvider(ctx, "nope", catalog.ProviderPatch{})
	check("update unknown provider", err, catalog.ErrNotFound)
	check("delete unknown provider", c.DeleteProvider(ctx, "nope"), catalog.ErrNotFound)
	check("delete config provider", c.DeleteProvider(ctx, "oa"), catalog.ErrConfigDefined)

	_, err = c.CreateModel(ctx, catalog.ModelInput{ID: "m", Provider: "ghost"})
	check("unknown provider", err, catalog.ErrInvalid)
	_, err = c.CreateModel(ctx, catalog.ModelInput{ID: "m", Provider: "oa", InputPricePerMTok: -1})
	check("negative price", err, catalog.ErrInvalid)
	_, err = c.CreateModel(ctx, catalog.ModelInput{ID: "a/b", Provider: "oa"})
	check("slash in id", err, catalog.ErrInvalid)
	_, err = c.CreateModel(ctx, catalog.ModelInput{ID: "catalog", Provider: "oa"})
	check("reserved id", err, catalog.ErrInvalid)
	_, err = c.CreateModel(ctx, catalog.ModelInput{ID: "gpt", Provider: "oa"})
	check("duplicate model", err, catalog.ErrExists)
	_, err = c.UpdateModel(ctx, "gpt", catalog.ModelPatch{Provider: ptr("ghost")})
	check("move to unknown provider", err, catalog.ErrInvalid)
	_, err = c.UpdateModel(ctx, "nope", catalog.ModelPatch{})
	check("update unknown model", err, catalog.ErrNotFound)
	_, err = c.SetModelEnabled(ctx, "nope", true)
	check("enable unknown model", err, catalog.ErrNotFound)
	check("delete unknown model", c.DeleteModel(ctx, "nope"), catalog.ErrNotFound)
	check("delete config model", c.DeleteModel(ctx, "gpt"), catalog.ErrConfigDefined)

	if _, err := c.CreateProvider(ctx, catalog.ProviderInput{ID: "p2", Kind: "echo"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateModel(ctx, catalog.ModelInput{ID: "m2", Provider: "p2"}); err != nil {
		t.Fatal(err)
	}
	err = c.DeleteProvider(ctx, "p2")
	check("delete used provider", err, catalog.ErrInUse)
	if err == nil || !strings.Contains(err.Error(), "m2") {
		t.Errorf("in-use error does not name the model: %v", err)
	}
	// No-op updates fire nothing.
	ev.take()
	if _, err := c.SetModelEnabled(ctx, "gpt", true); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdateProvider(ctx, "p2", catalog.ProviderPatch{Kind: ptr("echo")}); err != nil {
		t.Fatal(err)
	}
	if got := ev.take(); len(got) != 0 {
		t.Errorf("no-op writes fired %v", got)
	}
	if m, _ := c.Model("gpt"); m.Overridden {
		t.Error("no-op write marked an override")
	}
}

// TestConcurrentReadsDuringWrites exercises the snapshot under -race.
func TestConcurrentReadsDuringWrites(t *testing.T) {
	ctx := context.Background()
	s := storetest.Open(t, t.TempDir())
	c := openCatalog(t, s, baseConfig())
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				if m, ok := c.Model("gpt"); !ok || m.Provider != "oa" {
					t.Errorf("gpt = %+v, %v", m, ok)
					return
				}
				_ = c.ProviderConfigs()
				_, _ = c.Registry().Get("oa")
			}
		}()
	}
	for i := range 20 {
		if _, err := c.UpdateModel(ctx, "gpt", catalog.ModelPatch{InputPricePerMTok: ptr(float64(i))}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.UpdateProvider(ctx, "oa", catalog.ProviderPatch{APIKey: ptr("key" + string(rune('a'+i)))}); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
}

// TestOpenWithoutConfigLoadsOnly: Open with a nil config neither seeds nor
// deletes anything.
func TestOpenWithoutConfigLoadsOnly(t *testing.T) {
	s := storetest.Open(t, t.TempDir())
	openCatalog(t, s, baseConfig())
	c := openCatalog(t, s, nil)
	if m, ok := c.Model("gpt"); !ok || m.Name != "gpt-4o-mini" {
		t.Errorf("gpt = %+v, %v", m, ok)
	}
	if got := c.Registry().IDs(); !slices.Equal(got, []string{"echo", "oa"}) {
		t.Errorf("registry = %v", got)
	}
	if c.DefaultModel() != "" {
		t.Errorf("default = %q; want none without a config", c.DefaultModel())
	}
}
