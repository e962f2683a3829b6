// Package catalog keeps the LLM providers and models the agent may use in
// SQLite (tables providers and models, migration 0004_catalog.sql), seeded
// from openagent.yaml and editable over REST (docs/rest-models.md).
//
// Sources. Entries of openagent.yaml are upserted with source "config" when
// the catalog opens and on every Seed (config reload); config entries that
// left the file are deleted. Entries added over REST have source "api" and are
// kept across restarts and reloads. A REST edit of a config entry (PUT,
// enable, disable) is allowed: it becomes an override ("overridden": true)
// that survives restarts and reloads until the file's entry itself changes;
// then the file wins again. Config entries cannot be deleted over REST (409
// config_defined): remove them from the file. When the file gains an entry
// whose id an api entry already uses, the file's entry replaces it.
//
// Reads (Model, Models, Providers, ProviderConfigs, Registry) come from an
// in-memory snapshot swapped atomically after every write; they never touch
// the database. Writes are serialised; after each one the catalog rebuilds
// its provider.Registry (when providers changed) and then calls every OnChange
// hook with (resource, action, id).
package catalog

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/hook"
	"github.com/agentd/agentd/internal/provider"
)

// Sources of an entry.
const (
	SourceConfig = "config" // openagent.yaml
	SourceAPI    = "api"    // added over REST
)

// Resources and actions passed to OnChange hooks (and meant to be broadcast
// as resource_event{resource, action, id}).
const (
	ResourceProvider = "provider"
	ResourceModel    = "model"

	ActionCreated  = "created"
	ActionUpdated  = "updated"
	ActionDeleted  = "deleted"
	ActionEnabled  = "enabled"
	ActionDisabled = "disabled"
)

// Provider is an LLM API endpoint.
type Provider struct {
	ID      string `json:"id"`
	Kind    string `json:"kind"`
	BaseURL string `json:"base_url"`
	// APIKey is never serialised.
	APIKey     string    `json:"-"`
	Source     string    `json:"source"`
	Overridden bool      `json:"overridden"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// Model is a model offered by a provider, with its pricing.
type Model struct {
	ID       string `json:"id"`
	Provider string `json:"provider"`
	// Name is the provider's (upstream) name for the model; never empty
	// (it defaults to ID).
	Name               string    `json:"name"`
	InputPricePerMTok  float64   `json:"input_price_per_mtok"`
	OutputPricePerMTok float64   `json:"output_price_per_mtok"`
	Enabled            bool      `json:"enabled"`
	Source             string    `json:"source"`
	Overridden         bool      `json:"overridden"`
	CreatedAt          time.Time `json:"created_at"`
	UpdatedAt          time.Time `json:"updated_at"`
}

// Errors of the write methods; test with errors.Is. The *Error returned
// carries a message fit for the API client.
var (
	ErrInvalid       = errors.New("invalid")
	ErrNotFound      = errors.New("not found")
	ErrExists        = errors.New("already exists")
	ErrInUse         = errors.New("in use")
	ErrConfigDefined = errors.New("defined in openagent.yaml")
)

// Error is a refused write.
type Error struct {
	Kind error // one of the Err* sentinels
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Is matches the sentinel kind.
func (e *Error) Is(target error) bool { return target != nil && target == e.Kind }

func errorf(kind error, format string, a ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, a...)}
}

// DefaultListTimeout bounds each provider's answer in Available.
const DefaultListTimeout = 15 * time.Second

// Catalog is the providers and models in force.
type Catalog struct {
	db  *sql.DB
	log *slog.Logger
	reg *provider.Registry
	now func() time.Time

	listTimeout atomic.Int64 // time.Duration

	// mu serialises writes (Seed and the REST mutations) and snapshot
	// reloads.
	mu   sync.Mutex
	snap atomic.Pointer[snapshot]

	hooks hook.Changes
}

type snapshot struct {
	providers    []Provider // by id
	models       []Model    // by id
	provByID     map[string]*Provider
	modelByID    map[string]*Model
	defaultModel string
}

// Open seeds the catalog from cfg (nil: no seeding) and loads it. The tables
// must exist (store.Open applies the migrations).
func Open(ctx context.Context, db *sql.DB, cfg *config.Config, log *slog.Logger) (*Catalog, error) {
	if log == nil {
		log = slog.Default()
	}
	c := &Catalog{db: db, log: log, reg: &provider.Registry{}, now: time.Now}
	c.listTimeout.Store(int64(DefaultListTimeout))
	c.snap.Store(&snapshot{provByID: map[string]*Provider{}, modelByID: map[string]*Model{}})
	if cfg != nil {
		if err := c.Seed(ctx, cfg); err != nil {
			return nil, err
		}
		return c, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.reloadLocked(ctx, nil); err != nil {
		return nil, err
	}
	return c, nil
}

// SetListTimeout changes how long Available waits for each provider.
func (c *Catalog) SetListTimeout(d time.Duration) {
	if d > 0 {
		c.listTimeout.Store(int64(d))
	}
}

// OnChange registers fn, called after every change (seeding included) with
// the resource ("provider" or "model"), the action (created, updated,
// deleted, enabled, disabled) and the entry's id. Hooks run synchronously,
// in registration order, after the snapshot and the registry were updated,
// outside the catalog's locks; they may read the catalog.
func (c *Catalog) OnChange(fn func(resource, action, id string)) {
	c.hooks.Add(fn)
}

type change struct{ resource, action, id string }

func (c *Catalog) notify(changes []change) {
	for _, ch := range changes {
		c.hooks.Notify(ch.resource, ch.action, ch.id)
	}
}

// Registry returns the provider registry the catalog keeps in step with its
// providers (rebuilt after every provider change). Hand it to the session
// manager.
func (c *Catalog) Registry() *provider.Registry { return c.reg }

// Model returns the model with id, enabled or not.
func (c *Catalog) Model(id string) (Model, bool) {
	m, ok := c.snap.Load().modelByID[id]
	if !ok {
		return Model{}, false
	}
	return *m, true
}

// Models returns every model, sorted by id.
func (c *Catalog) Models() []Model { return slices.Clone(c.snap.Load().models) }

// EnabledModels returns the enabled models, sorted by id.
func (c *Catalog) EnabledModels() []Model {
	var out []Model
	for _, m := range c.snap.Load().models {
		if m.Enabled {
			out = append(out, m)
		}
	}
	return out
}

// DefaultModel is agent.default_model of the last seeded config.
func (c *Catalog) DefaultModel() string { return c.snap.Load().defaultModel }

// Provider returns the provider with id.
func (c *Catalog) Provider(id string) (Provider, bool) {
	p, ok := c.snap.Load().provByID[id]
	if !ok {
		return Provider{}, false
	}
	return *p, true
}

// Providers returns every provider, sorted by id. The ctx is unused (reads
// come from memory); it is kept for symmetry with the write methods.
func (c *Catalog) Providers(context.Context) []Provider {
	return slices.Clone(c.snap.Load().providers)
}

// ProviderConfigs returns provider.New input for every provider.
func (c *Catalog) ProviderConfigs() []provider.Config {
	return c.snap.Load().providerConfigs(c.log)
}

func (s *snapshot) providerConfigs(log *slog.Logger) []provider.Config {
	out := make([]provider.Config, 0, len(s.providers))
	for _, p := range s.providers {
		out = append(out, provider.Config{ID: p.ID, Kind: p.Kind, BaseURL: p.BaseURL, APIKey: p.APIKey, Logger: log})
	}
	return out
}

// reloadLocked reads the tables into a new snapshot and rebuilds the
// registry if providers changed. def, if not nil, replaces the default model.
func (c *Catalog) reloadLocked(ctx context.Context, def *string) error {
	old := c.snap.Load()
	s := &snapshot{provByID: map[string]*Provider{}, modelByID: map[string]*Model{}, defaultModel: old.defaultModel}
	if def != nil {
		s.defaultModel = *def
	}
	rows, err := c.db.QueryContext(ctx, `SELECT id, kind, base_url, api_key, source, overridden, created_at, updated_at FROM providers ORDER BY id`)
	if err != nil {
		return fmt.Errorf("catalog: load providers: %w", err)
	}
	for rows.Next() {
		var p Provider
		var cr, up int64
		if err := rows.Scan(&p.ID, &p.Kind, &p.BaseURL, &p.APIKey, &p.Source, &p.Overridden, &cr, &up); err != nil {
			rows.Close()
			return fmt.Errorf("catalog: load providers: %w", err)
		}
		p.CreatedAt, p.UpdatedAt = time.UnixMilli(cr).UTC(), time.UnixMilli(up).UTC()
		s.providers = append(s.providers, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("catalog: load providers: %w", err)
	}
	rows, err = c.db.QueryContext(ctx, `SELECT id, provider, name, input_price_per_mtok, output_price_per_mtok, enabled, source, overridden, created_at, updated_at FROM models ORDER BY id`)
	if err != nil {
		return fmt.Errorf("catalog: load models: %w", err)
	}
	for rows.Next() {
		var m Model
		var cr, up int64
		if err := rows.Scan(&m.ID, &m.Provider, &m.Name, &m.InputPricePerMTok, &m.OutputPricePerMTok, &m.Enabled, &m.Source, &m.Overridden, &cr, &up); err != nil {
			rows.Close()
			return fmt.Errorf("catalog: load models: %w", err)
		}
		m.CreatedAt, m.UpdatedAt = time.UnixMilli(cr).UTC(), time.UnixMilli(up).UTC()
		s.models = append(s.models, m)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("catalog: load models: %w", err)
	}
	for i := range s.providers {
		s.provByID[s.providers[i].ID] = &s.providers[i]
	}
	for i := range s.models {
		s.modelByID[s.models[i].ID] = &s.models[i]
	}
	c.snap.Store(s)
	if !slices.EqualFunc(old.providers, s.providers, sameEndpoint) || len(c.reg.IDs()) != len(s.providers) {
		if err := c.reg.Replace(s.providerConfigs(c.log)); err != nil {
			// Cannot happen for validated rows; keep serving the old set.
			c.log.Error("catalog: providers not rebuilt; keeping the old ones", "err", err)
		}
	}
	return nil
}

func sameEndpoint(a, b Provider) bool {
	return a.ID == b.ID && a.Kind == b.Kind && a.BaseURL == b.BaseURL && a.APIKey == b.APIKey
}

// write runs fn in a transaction under the write lock, reloads the snapshot
// and then notifies the hooks of fn's changes.
func (c *Catalog) write(ctx context.Context, def *string, fn func(tx *sql.Tx, now int64) ([]change, error)) error {
	c.mu.Lock()
	changes, err := func() ([]change, error) {
		tx, err := c.db.BeginTx(ctx, nil)
		if err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
		defer tx.Rollback()
		changes, err := fn(tx, c.now().UnixMilli())
		if err != nil {
			return nil, err
		}
		if err := tx.Commit(); err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
		return changes, nil
	}()
	if err == nil {
		// Committed: the snapshot must follow even if the caller gave up.
		err = c.reloadLocked(context.WithoutCancel(ctx), def)
	}
	c.mu.Unlock()
	if err != nil {
		return err
	}
	c.notify(changes)
	return nil
}

// ---- seeding ----

type row struct {
	source     string
	hash       string
	overridden bool
	// fields, joined, to tell whether an update changes anything
	fields string
}

func providerFields(kind, baseURL, apiKey string) string {
	return strings.Join([]string{kind, baseURL, apiKey}, "\x00")
}

func modelFields(prov, name string, in, out float64, enabled bool) string {
	return strings.Join([]string{prov, name, strconv.FormatFloat(in, 'g', -1, 64), strconv.FormatFloat(out, 'g', -1, 64), strconv.FormatBool(enabled)}, "\x00")
}

func digest(fields string) string {
	h := sha256.Sum256([]byte(fields))
	return hex.EncodeToString(h[:])
}

func loadRows(ctx context.Context, tx *sql.Tx, table string) (map[string]row, error) {
	var q string
	switch table {
	case "providers":
		q = `SELECT id, source, config_hash, overridden, kind, base_url, api_key FROM providers`
	default:
		q = `SELECT id, source, config_hash, overridden, provider, name, input_price_per_mtok, output_price_per_mtok, enabled FROM models`
	}
	rows, err := tx.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]row{}
	for rows.Next() {
		var id string
		var r row
		if table == "providers" {
			var kind, base, key string
			if err := rows.Scan(&id, &r.source, &r.hash, &r.overridden, &kind, &base, &key); err != nil {
				return nil, err
			}
			r.fields = providerFields(kind, base, key)
		} else {
			var prov, name string
			var in, o float64
			var en bool
			if err := rows.Scan(&id, &r.source, &r.hash, &r.overridden, &prov, &name, &in, &o, &en); err != nil {
				return nil, err
			}
			r.fields = modelFields(prov, name, in, o, en)
		}
		out[id] = r
	}
	return out, rows.Err()
}

// Seed upserts cfg's providers and models (source config) and deletes config
// entries that left the file; api entries are kept. Call it on every applied
// config reload. A config provider that left the file while api models still
// use it is kept, as an api provider, and a warning is logged.
func (c *Catalog) Seed(ctx context.Context, cfg *config.Config) error {
	def := cfg.Agent.DefaultModel
	err := c.write(ctx, &def, func(tx *sql.Tx, now int64) ([]change, error) {
		return c.seedTx(ctx, tx, cfg, now)
	})
	if err != nil {
		return fmt.Errorf("catalog: seed from config: %w", err)
	}
	return nil
}

func (c *Catalog) seedTx(ctx context.Context, tx *sql.Tx, cfg *config.Config, now int64) ([]change, error) {
	var changes []change
	provs, err := loadRows(ctx, tx, "providers")
	if err != nil {
		return nil, err
	}
	models, err := loadRows(ctx, tx, "models")
	if err != nil {
		return nil, err
	}
	// Providers first: models reference them.
	inCfg := map[string]bool{}
	for _, p := range cfg.Providers {
		inCfg[p.ID] = true
		f := providerFields(p.Kind, p.BaseURL, p.APIKey)
		h := digest(f)
		r, ok := provs[p.ID]
		switch {
		case !ok:
			if _, err := tx.ExecContext(ctx, `INSERT INTO providers(id, kind, base_url, api_key, source, config_hash, overridden, created_at, updated_at)
				VALUES (?, ?, ?, ?, 'config', ?, 0, ?, ?)`, p.ID, p.Kind, p.BaseURL, p.APIKey, h, now, now); err != nil {
				return nil, err
			}
			changes = append(changes, change{ResourceProvider, ActionCreated, p.ID})
			continue
		case r.source == SourceConfig && r.hash == h && (r.overridden || r.fields == f):
			continue // in sync, or a REST override of an unchanged file entry
		case r.source == SourceAPI:
			c.log.Info("provider is now defined in openagent.yaml; the file's settings replace the ones set over REST", "provider", p.ID)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE providers SET kind = ?, base_url = ?, api_key = ?, source = 'config', config_hash = ?, overridden = 0,
			updated_at = CASE WHEN ? THEN updated_at ELSE ? END WHERE id = ?`, p.Kind, p.BaseURL, p.APIKey, h, r.fields == f, now, p.ID); err != nil {
			return nil, err
		}
		if r.fields != f || r.source != SourceConfig {
			changes = append(changes, change{ResourceProvider, ActionUpdated, p.ID})
		}
	}
	mInCfg := map[string]bool{}
	for _, m := range cfg.Models {
		mInCfg[m.ID] = true
		name := m.Name
		if name == "" {
			name = m.ID
		}
		f := modelFields(m.Provider, name, m.InputPricePerMTok, m.OutputPricePerMTok, m.IsEnabled())
		h := digest(f)
		r, ok := models[m.ID]
		switch {
		case !ok:
			if _, err := tx.ExecContext(ctx, `INSERT INTO models(id, provider, name, input_price_per_mtok, output_price_per_mtok, enabled, source, config_hash, overridden, created_at, updated_at)
				VALUES (?, ?, ?, ?, ?, ?, 'config', ?, 0, ?, ?)`, m.ID, m.Provider, name, m.InputPricePerMTok, m.OutputPricePerMTok, m.IsEnabled(), h, now, now); err != nil {
				return nil, fmt.Errorf("model %q: %w", m.ID, err)
			}
			changes = append(changes, change{ResourceModel, ActionCreated, m.ID})
			continue
		case r.source == SourceConfig && r.hash == h && (r.overridden || r.fields == f):
			continue
		case r.source == SourceAPI:
			c.log.Info("model is now defined in openagent.yaml; the file's settings replace the ones set over REST", "model", m.ID)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE models SET provider = ?, name = ?, input_price_per_mtok = ?, output_price_per_mtok = ?, enabled = ?,
			source = 'config', config_hash = ?, overridden = 0, updated_at = CASE WHEN ? THEN updated_at ELSE ? END WHERE id = ?`,
			m.Provider, name, m.InputPricePerMTok, m.OutputPricePerMTok, m.IsEnabled(), h, r.fields == f, now, m.ID); err != nil {
			return nil, fmt.Errorf("model %q: %w", m.ID, err)
		}
		if r.fields != f || r.source != SourceConfig {
			changes = append(changes, change{ResourceModel, ActionUpdated, m.ID})
		}
	}
	// Config entries that left the file: models, then providers.
	for _, id := range sortedKeys(models) {
		if models[id].source != SourceConfig || mInCfg[id] {
			continue
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM models WHERE id = ?`, id); err != nil {
			return nil, fmt.Errorf("model %q: %w", id, err)
		}
		changes = append(changes, change{ResourceModel, ActionDeleted, id})
	}
	for _, id := range sortedKeys(provs) {
		if provs[id].source != SourceConfig || inCfg[id] {
			continue
		}
		users, err := modelsOf(ctx, tx, id)
		if err != nil {
			return nil, err
		}
		if len(users) > 0 {
			c.log.Warn("provider was removed from openagent.yaml but models added over REST still use it; keeping it as an API provider",
				"provider", id, "models", strings.Join(users, ","))
			if _, err := tx.ExecContext(ctx, `UPDATE providers SET source = 'api', config_hash = '', overridden = 0, updated_at = ? WHERE id = ?`, now, id); err != nil {
				return nil, err
			}
			changes = append(changes, change{ResourceProvider, ActionUpdated, id})
			continue
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM providers WHERE id = ?`, id); err != nil {
			return nil, fmt.Errorf("provider %q: %w", id, err)
		}
		changes = append(changes, change{ResourceProvider, ActionDeleted, id})
	}
	return changes, nil
}

func sortedKeys(m map[string]row) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// modelsOf lists the ids of the models served by provider id.
func modelsOf(ctx context.Context, tx *sql.Tx, id string) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT id FROM models WHERE provider = ? ORDER BY id`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}
