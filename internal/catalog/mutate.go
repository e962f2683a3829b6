package catalog

import (
	"context"
	"database/sql"
	"errors"
	"net/url"
	"regexp"
	"strings"
	"unicode"

	"github.com/agentd/agentd/internal/provider"
)

// ProviderInput creates a provider.
type ProviderInput struct {
	ID      string `json:"id"`
	Kind    string `json:"kind"`
	BaseURL string `json:"base_url"`
	APIKey  string `json:"api_key"`
}

// ProviderPatch updates a provider; nil fields keep their value (so a client
// that never saw the API key does not wipe it), "" clears a string.
type ProviderPatch struct {
	Kind    *string `json:"kind"`
	BaseURL *string `json:"base_url"`
	APIKey  *string `json:"api_key"`
}

// ModelInput creates a model. Name "" means ID; Enabled nil means true.
type ModelInput struct {
	ID                 string  `json:"id"`
	Provider           string  `json:"provider"`
	Name               string  `json:"name"`
	InputPricePerMTok  float64 `json:"input_price_per_mtok"`
	OutputPricePerMTok float64 `json:"output_price_per_mtok"`
	Enabled            *bool   `json:"enabled"`
}

// ModelPatch updates a model; nil fields keep their value. Name "" resets
// the upstream name to the model id.
type ModelPatch struct {
	Provider           *string  `json:"provider"`
	Name               *string  `json:"name"`
	InputPricePerMTok  *float64 `json:"input_price_per_mtok"`
	OutputPricePerMTok *float64 `json:"output_price_per_mtok"`
	Enabled            *bool    `json:"enabled"`
}

// Limits of what the API accepts.
const (
	maxURLLen   = 2048
	maxKeyLen   = 4096
	maxModelID  = 128
	maxNameLen  = 256
	maxPriceUSD = 1e6 // per million tokens
)

var providerIDRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// reservedModelIDs are path segments of the REST API under /api/models/.
var reservedModelIDs = map[string]bool{"catalog": true, "available": true}

func invalid(format string, a ...any) error { return errorf(ErrInvalid, format, a...) }

func validateProvider(id, kind, baseURL, apiKey string) error {
	if !providerIDRe.MatchString(id) {
		return invalid("id: %q is not a valid provider id (1-64 of lowercase letters, digits, . _ -, starting with a letter or digit)", id)
	}
	switch kind {
	case provider.KindOpenAI, provider.KindAnthropic, provider.KindEcho:
	case "":
		return invalid("kind: required (openai, anthropic or echo)")
	default:
		return invalid("kind: unknown kind %q (want openai, anthropic or echo)", kind)
	}
	if baseURL != "" {
		if len(baseURL) > maxURLLen {
			return invalid("base_url: longer than %d bytes", maxURLLen)
		}
		u, err := url.Parse(baseURL)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			return invalid("base_url: %q is not an absolute http(s) URL", baseURL)
		case u.User != nil:
			return invalid("base_url: must not contain credentials; use api_key")
		case u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(baseURL, "?#"):
			return invalid("base_url: must not have a query or fragment")
		}
	}
	if len(apiKey) > maxKeyLen {
		return invalid("api_key: longer than %d bytes", maxKeyLen)
	}
	for _, r := range apiKey {
		if r <= ' ' || r > '~' {
			return invalid("api_key: only printable ASCII without spaces is allowed")
		}
	}
	return nil
}

func validateModelID(id string) error {
	if id == "" || len(id) > maxModelID {
		return invalid("id: must be 1-%d bytes", maxModelID)
	}
	if id == "." || id == ".." || reservedModelIDs[id] {
		return invalid("id: %q is reserved", id)
	}
	for _, r := range id {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) || strings.ContainsRune(`/\?#%`, r) {
			return invalid("id: %q is not a valid model id (no spaces, control characters or / \\ ? # %%)", id)
		}
	}
	return nil
}

func validateModelFields(name string, in, out float64) error {
	if len(name) > maxNameLen {
		return invalid("name: longer than %d bytes", maxNameLen)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return invalid("name: must not contain control characters")
		}
	}
	if strings.TrimSpace(name) != name {
		return invalid("name: must not start or end with white space")
	}
	for _, p := range []struct {
		field string
		v     float64
	}{{"input_price_per_mtok", in}, {"output_price_per_mtok", out}} {
		if p.v < 0 || p.v > maxPriceUSD || p.v != p.v {
			return invalid("%s: must be between 0 and %g (USD per million tokens), got %g", p.field, maxPriceUSD, p.v)
		}
	}
	return nil
}

// providerExists returns an ErrInvalid error naming the known providers
// when id is not one of them.
func providerExists(ctx context.Context, tx *sql.Tx, id string) error {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM providers WHERE id = ?`, id).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	rows, err := tx.QueryContext(ctx, `SELECT id FROM providers ORDER BY id`)
	if err != nil {
		return err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return err
		}
		ids = append(ids, s)
	}
	if id == "" {
		return invalid("provider: required (known: %s)", strings.Join(ids, ", "))
	}
	return invalid("provider: unknown provider %q (known: %s)", id, strings.Join(ids, ", "))
}

// CreateProvider adds a provider with source api.
func (c *Catalog) CreateProvider(ctx context.Context, in ProviderInput) (Provider, error) {
	if err := validateProvider(in.ID, in.Kind, in.BaseURL, in.APIKey); err != nil {
		return Provider{}, err
	}
	err := c.write(ctx, nil, func(tx *sql.Tx, now int64) ([]change, error) {
		res, err := tx.ExecContext(ctx, `INSERT INTO providers(id, kind, base_url, api_key, source, created_at, updated_at)
			VALUES (?, ?, ?, ?, 'api', ?, ?) ON CONFLICT(id) DO NOTHING`, in.ID, in.Kind, in.BaseURL, in.APIKey, now, now)
		if err != nil {
			return nil, err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil, errorf(ErrExists, "provider %q already exists", in.ID)
		}
		return []change{{ResourceProvider, ActionCreated, in.ID}}, nil
	})
	if err != nil {
		return Provider{}, err
	}
	p, _ := c.Provider(in.ID)
	return p, nil
}

// UpdateProvider changes a provider. Editing a config provider makes it an
// override (see the package comment).
func (c *Catalog) UpdateProvider(ctx context.Context, id string, patch ProviderPatch) (Provider, error) {
	err := c.write(ctx, nil, func(tx *sql.Tx, now int64) ([]change, error) {
		var cur ProviderInput
		cur.ID = id
		err := tx.QueryRowContext(ctx, `SELECT kind, base_url, api_key FROM providers WHERE id = ?`, id).Scan(&cur.Kind, &cur.BaseURL, &cur.APIKey)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, errorf(ErrNotFound, "provider %q not found", id)
		}
		if err != nil {
			return nil, err
		}
		next := cur
		if patch.Kind != nil {
			next.Kind = *patch.Kind
		}
		if patch.BaseURL != nil {
			next.BaseURL = *patch.BaseURL
		}
		if patch.APIKey != nil {
			next.APIKey = *patch.APIKey
		}
		if err := validateProvider(next.ID, next.Kind, next.BaseURL, next.APIKey); err != nil {
			return nil, err
		}
		if next == cur {
			return nil, nil
		}
		if _, err := tx.ExecContext(ctx, `UPDATE providers SET kind = ?, base_url = ?, api_key = ?,
			overridden = (source = 'config'), updated_at = ? WHERE id = ?`, next.Kind, next.BaseURL, next.APIKey, now, id); err != nil {
			return nil, err
		}
		return []change{{ResourceProvider, ActionUpdated, id}}, nil
	})
	if err != nil {
		return Provider{}, err
	}
	p, _ := c.Provider(id)
	return p, nil
}

// DeleteProvider removes an api provider no model uses.
func (c *Catalog) DeleteProvider(ctx context.Context, id string) error {
	return c.write(ctx, nil, func(tx *sql.Tx, now int64) ([]change, error) {
		var source string
		err := tx.QueryRowContext(ctx, `SELECT source FROM providers WHERE id = ?`, id).Scan(&source)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, errorf(ErrNotFound, "provider %q not found", id)
		}
		if err != nil {
			return nil, err
		}
		if source == SourceConfig {
			return nil, errorf(ErrConfigDefined, "provider %q is defined in openagent.yaml; remove it there", id)
		}
		users, err := modelsOf(ctx, tx, id)
		if err != nil {
			return nil, err
		}
		if len(users) > 0 {
			return nil, errorf(ErrInUse, "provider %q is used by model(s) %s; delete them or move them to another provider first", id, strings.Join(users, ", "))
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM providers WHERE id = ?`, id); err != nil {
			if strings.Contains(err.Error(), "FOREIGN KEY") {
				return nil, errorf(ErrInUse, "provider %q is still used by models", id)
			}
			return nil, err
		}
		return []change{{ResourceProvider, ActionDeleted, id}}, nil
	})
}

// CreateModel adds a model with source api.
func (c *Catalog) CreateModel(ctx context.Context, in ModelInput) (Model, error) {
	if err := validateModelID(in.ID); err != nil {
		return Model{}, err
	}
	if in.Name == "" {
		in.Name = in.ID
	}
	if err := validateModelFields(in.Name, in.InputPricePerMTok, in.OutputPricePerMTok); err != nil {
		return Model{}, err
	}
	enabled := in.Enabled == nil || *in.Enabled
	err := c.write(ctx, nil, func(tx *sql.Tx, now int64) ([]change, error) {
		if err := providerExists(ctx, tx, in.Provider); err != nil {
			return nil, err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO models(id, provider, name, input_price_per_mtok, output_price_per_mtok, enabled, source, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, 'api', ?, ?) ON CONFLICT(id) DO NOTHING`,
			in.ID, in.Provider, in.Name, in.InputPricePerMTok, in.OutputPricePerMTok, enabled, now, now)
		if err != nil {
			return nil, err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil, errorf(ErrExists, "model %q already exists", in.ID)
		}
		return []change{{ResourceModel, ActionCreated, in.ID}}, nil
	})
	if err != nil {
		return Model{}, err
	}
	m, _ := c.Model(in.ID)
	return m, nil
}

// UpdateModel changes a model. Editing a config model makes it an override.
func (c *Catalog) UpdateModel(ctx context.Context, id string, patch ModelPatch) (Model, error) {
	return c.updateModel(ctx, id, patch, ActionUpdated)
}

// SetModelEnabled enables or disables a model (an override for config
// models). Setting the state it already has changes nothing.
func (c *Catalog) SetModelEnabled(ctx context.Context, id string, enabled bool) (Model, error) {
	action := ActionDisabled
	if enabled {
		action = ActionEnabled
	}
	return c.updateModel(ctx, id, ModelPatch{Enabled: &enabled}, action)
}

type modelRow struct {
	provider string
	name     string
	in, out  float64
	enabled  bool
}

func (c *Catalog) updateModel(ctx context.Context, id string, patch ModelPatch, action string) (Model, error) {
	err := c.write(ctx, nil, func(tx *sql.Tx, now int64) ([]change, error) {
		var cur modelRow
		err := tx.QueryRowContext(ctx, `SELECT provider, name, input_price_per_mtok, output_price_per_mtok, enabled FROM models WHERE id = ?`, id).
			Scan(&cur.provider, &cur.name, &cur.in, &cur.out, &cur.enabled)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, errorf(ErrNotFound, "model %q not found", id)
		}
		if err != nil {
			return nil, err
		}
		next := cur
		if patch.Provider != nil {
			next.provider = *patch.Provider
		}
		if patch.Name != nil {
			next.name = *patch.Name
			if next.name == "" {
				next.name = id
			}
		}
		if patch.InputPricePerMTok != nil {
			next.in = *patch.InputPricePerMTok
		}
		if patch.OutputPricePerMTok != nil {
			next.out = *patch.OutputPricePerMTok
		}
		if patch.Enabled != nil {
			next.enabled = *patch.Enabled
		}
		if err := validateModelFields(next.name, next.in, next.out); err != nil {
			return nil, err
		}
		if next.provider != cur.provider {
			if err := providerExists(ctx, tx, next.provider); err != nil {
				return nil, err
			}
		}
		if next == cur {
			return nil, nil
		}
		if _, err := tx.ExecContext(ctx, `UPDATE models SET provider = ?, name = ?, input_price_per_mtok = ?, output_price_per_mtok = ?, enabled = ?,
			overridden = (source = 'config'), updated_at = ? WHERE id = ?`, next.provider, next.name, next.in, next.out, next.enabled, now, id); err != nil {
			return nil, err
		}
		return []change{{ResourceModel, action, id}}, nil
	})
	if err != nil {
		return Model{}, err
	}
	m, _ := c.Model(id)
	return m, nil
}

// DeleteModel removes an api model.
func (c *Catalog) DeleteModel(ctx context.Context, id string) error {
	return c.write(ctx, nil, func(tx *sql.Tx, now int64) ([]change, error) {
		var source string
		err := tx.QueryRowContext(ctx, `SELECT source FROM models WHERE id = ?`, id).Scan(&source)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, errorf(ErrNotFound, "model %q not found", id)
		}
		if err != nil {
			return nil, err
		}
		if source == SourceConfig {
			return nil, errorf(ErrConfigDefined, "model %q is defined in openagent.yaml; remove it there (or disable it)", id)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM models WHERE id = ?`, id); err != nil {
			return nil, err
		}
		return []change{{ResourceModel, ActionDeleted, id}}, nil
	})
}
