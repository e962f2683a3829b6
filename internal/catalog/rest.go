package catalog

import (
	"fmt"
	"net/http"
	"time"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/route"
)

// Routes returns the providers and models REST API (docs/rest-models.md).
// Reads need the chat capability; writes, and GET /api/models/available
// (which calls the providers' APIs with their stored keys), need admin.
func Routes(c *Catalog) []route.Route {
	a := &api{c: c, errs: restErrors(c)}
	chat, admin := auth.CapChat, auth.CapAdmin
	return []route.Route{
		{Pattern: "GET /api/providers", Cap: chat, Handler: http.HandlerFunc(a.listProviders)},
		{Pattern: "GET /api/providers/{id}", Cap: chat, Handler: http.HandlerFunc(a.getProvider)},
		{Pattern: "POST /api/providers", Cap: admin, Handler: http.HandlerFunc(a.createProvider)},
		{Pattern: "PUT /api/providers/{id}", Cap: admin, Handler: http.HandlerFunc(a.updateProvider)},
		{Pattern: "DELETE /api/providers/{id}", Cap: admin, Handler: http.HandlerFunc(a.deleteProvider)},
		{Pattern: "GET /api/models", Cap: chat, Handler: http.HandlerFunc(a.listModels)},
		{Pattern: "GET /api/models/catalog", Cap: chat, Handler: http.HandlerFunc(a.modelCatalog)},
		{Pattern: "GET /api/models/available", Cap: admin, Handler: http.HandlerFunc(a.available)},
		{Pattern: "GET /api/models/{id}", Cap: chat, Handler: http.HandlerFunc(a.getModel)},
		{Pattern: "POST /api/models", Cap: admin, Handler: http.HandlerFunc(a.createModel)},
		{Pattern: "PUT /api/models/{id}", Cap: admin, Handler: http.HandlerFunc(a.updateModel)},
		{Pattern: "DELETE /api/models/{id}", Cap: admin, Handler: http.HandlerFunc(a.deleteModel)},
		{Pattern: "POST /api/models/{id}/enable", Cap: admin, Handler: http.HandlerFunc(a.enableModel)},
		{Pattern: "POST /api/models/{id}/disable", Cap: admin, Handler: http.HandlerFunc(a.disableModel)},
	}
}

type api struct {
	c    *Catalog
	errs route.Errors
}

// ProviderView is a provider as the REST API shows it: never the API key.
type ProviderView struct {
	ID        string `json:"id"`
	Kind      string `json:"kind"`
	BaseURL   string `json:"base_url"`
	HasAPIKey bool   `json:"has_api_key"`
	// APIKeyHint is "sk-…abcd" for keys of 16 bytes or more, else "".
	APIKeyHint string    `json:"api_key_hint"`
	Source     string    `json:"source"`
	Overridden bool      `json:"overridden"`
	Models     []string  `json:"models"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// MaskKey returns the displayable hint of an API key: the first 3 and last 4
// characters of keys at least 16 bytes long, nothing of shorter ones.
func MaskKey(k string) string {
	if len(k) < 16 {
		return ""
	}
	return k[:3] + "…" + k[len(k)-4:]
}

func (a *api) view(p Provider) ProviderView {
	v := ProviderView{
		ID: p.ID, Kind: p.Kind, BaseURL: p.BaseURL, HasAPIKey: p.APIKey != "", APIKeyHint: MaskKey(p.APIKey),
		Source: p.Source, Overridden: p.Overridden, Models: []string{}, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt,
	}
	for _, m := range a.c.snap.Load().models {
		if m.Provider == p.ID {
			v.Models = append(v.Models, m.ID)
		}
	}
	return v
}

func (a *api) listProviders(w http.ResponseWriter, r *http.Request) {
	ps := a.c.Providers(r.Context())
	out := make([]ProviderView, 0, len(ps))
	for _, p := range ps {
		out = append(out, a.view(p))
	}
	writeJSON(w, http.StatusOK, map[string]any{"providers": out})
}

func (a *api) getProvider(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	p, ok := a.c.Provider(id)
	if !ok {
		auth.WriteError(w, http.StatusNotFound, "not_found", fmt.Sprintf("provider %q not found", id))
		return
	}
	writeJSON(w, http.StatusOK, a.view(p))
}

func (a *api) createProvider(w http.ResponseWriter, r *http.Request) {
	var in ProviderInput
	if !decode(w, r, &in) {
		return
	}
	p, err := a.c.CreateProvider(r.Context(), in)
	a.errs.Reply(w, err, http.StatusCreated, a.view(p))
}

func (a *api) updateProvider(w http.ResponseWriter, r *http.Request) {
	var body struct {
		ID *string `json:"id"`
		ProviderPatch
	}
	if !decode(w, r, &body) || !sameID(w, r, body.ID) {
		return
	}
	p, err := a.c.UpdateProvider(r.Context(), r.PathValue("id"), body.ProviderPatch)
	a.errs.Reply(w, err, http.StatusOK, a.view(p))
}

func (a *api) deleteProvider(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	err := a.c.DeleteProvider(r.Context(), id)
	a.errs.Reply(w, err, http.StatusOK, map[string]any{"id": id, "deleted": true})
}

func (a *api) listModels(w http.ResponseWriter, r *http.Request) {
	prov := r.URL.Query().Get("provider")
	out := []Model{}
	for _, m := range a.c.Models() {
		if prov == "" || m.Provider == prov {
			out = append(out, m)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"models": out})
}

func (a *api) getModel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	m, ok := a.c.Model(id)
	if !ok {
		auth.WriteError(w, http.StatusNotFound, "not_found", fmt.Sprintf("model %q not found", id))
		return
	}
	writeJSON(w, http.StatusOK, m)
}

// CatalogEntry is an enabled model as GET /api/models/catalog lists it.
type CatalogEntry struct {
	ID                 string  `json:"id"`
	Provider           string  `json:"provider"`
	ProviderKind       string  `json:"provider_kind"`
	Name               string  `json:"name"`
	InputPricePerMTok  float64 `json:"input_price_per_mtok"`
	OutputPricePerMTok float64 `json:"output_price_per_mtok"`
	Default            bool    `json:"default"`
}

func (a *api) modelCatalog(w http.ResponseWriter, r *http.Request) {
	snap := a.c.snap.Load()
	out := []CatalogEntry{}
	for _, m := range snap.models {
		if !m.Enabled {
			continue
		}
		e := CatalogEntry{
			ID: m.ID, Provider: m.Provider, Name: m.Name,
			InputPricePerMTok: m.InputPricePerMTok, OutputPricePerMTok: m.OutputPricePerMTok,
			Default: m.ID == snap.defaultModel,
		}
		if p, ok := snap.provByID[m.Provider]; ok {
			e.ProviderKind = p.Kind
		}
		out = append(out, e)
	}
	writeJSON(w, http.StatusOK, map[string]any{"default_model": snap.defaultModel, "models": out})
}

func (a *api) available(w http.ResponseWriter, r *http.Request) {
	var ids []string
	if id := r.URL.Query().Get("provider"); id != "" {
		if _, ok := a.c.Provider(id); !ok {
			auth.WriteError(w, http.StatusNotFound, "not_found", fmt.Sprintf("provider %q not found", id))
			return
		}
		ids = []string{id}
	}
	writeJSON(w, http.StatusOK, map[string]any{"providers": a.c.Available(r.Context(), ids...)})
}

func (a *api) createModel(w http.ResponseWriter, r *http.Request) {
	var in ModelInput
	if !decode(w, r, &in) {
		return
	}
	m, err := a.c.CreateModel(r.Context(), in)
	a.errs.Reply(w, err, http.StatusCreated, m)
}

func (a *api) updateModel(w http.ResponseWriter, r *http.Request) {
	var body struct {
		ID *string `json:"id"`
		ModelPatch
	}
	if !decode(w, r, &body) || !sameID(w, r, body.ID) {
		return
	}
	m, err := a.c.UpdateModel(r.Context(), r.PathValue("id"), body.ModelPatch)
	a.errs.Reply(w, err, http.StatusOK, m)
}

func (a *api) deleteModel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	err := a.c.DeleteModel(r.Context(), id)
	a.errs.Reply(w, err, http.StatusOK, map[string]any{"id": id, "deleted": true})
}

func (a *api) enableModel(w http.ResponseWriter, r *http.Request)  { a.setEnabled(w, r, true) }
func (a *api) disableModel(w http.ResponseWriter, r *http.Request) { a.setEnabled(w, r, false) }

func (a *api) setEnabled(w http.ResponseWriter, r *http.Request, on bool) {
	m, err := a.c.SetModelEnabled(r.Context(), r.PathValue("id"), on)
	a.errs.Reply(w, err, http.StatusOK, m)
}

// restErrors maps the catalog's refusals to statuses; any other failure
// is logged and its text kept out of the answer.
func restErrors(c *Catalog) route.Errors {
	return route.Errors{
		Codes: []route.Code{
			{Err: ErrInvalid, Status: http.StatusBadRequest, Code: "bad_request"},
			{Err: ErrNotFound, Status: http.StatusNotFound, Code: "not_found"},
			{Err: ErrExists, Status: http.StatusConflict, Code: "conflict"},
			{Err: ErrInUse, Status: http.StatusConflict, Code: "in_use"},
			{Err: ErrConfigDefined, Status: http.StatusConflict, Code: "config_defined"},
		},
		Other: route.Logged(c.log, "catalog request failed", "internal error"),
	}
}

// sameID refuses a body "id" that differs from the path's.
func sameID(w http.ResponseWriter, r *http.Request, id *string) bool {
	if id != nil && *id != r.PathValue("id") {
		auth.WriteError(w, http.StatusBadRequest, "bad_request", "id: cannot be changed (body id differs from the URL's)")
		return false
	}
	return true
}

// decode is route.Decode (kept short for the many handlers here).
func decode(w http.ResponseWriter, r *http.Request, v any) bool { return route.Decode(w, r, v) }

func writeJSON(w http.ResponseWriter, status int, v any) { route.JSON(w, status, v) }
