package catalog_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/catalog"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/provider/providertest"
	"github.com/agentd/agentd/internal/route"
	"github.com/agentd/agentd/internal/store/storetest"
)

// The secret of provider "oa": it must never appear in a GET body.
const secret = "sk-proj-SECRETSECRET1234567890wxyz"

// restEnv is a catalog behind a real HTTP server. Requests carry the
// capability in X-Test-Cap ("" = anonymous), which a test middleware turns
// into an auth identity, as the listeners do with device certificates.
type restEnv struct {
	t   *testing.T
	c   *catalog.Catalog
	srv *httptest.Server
	ev  *events
	// bodies of every GET, to check for the secret
	gets []string
}

func newREST(t *testing.T, cfg *config.Config) *restEnv {
	t.Helper()
	s := storetest.Open(t, t.TempDir())
	c := openCatalog(t, s, cfg)
	e := &restEnv{t: t, c: c, ev: &events{}}
	c.OnChange(e.ev.hook)
	mux := http.NewServeMux()
	for _, r := range catalog.Routes(c) {
		mux.Handle(r.Pattern, r.Guarded())
	}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cp := r.Header.Get("X-Test-Cap"); cp != "" {
			r = r.WithContext(auth.WithIdentity(r.Context(), &auth.Identity{ClientID: "test", Capabilities: []string{cp}}))
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func restConfig() *config.Config {
	c := baseConfig()
	c.Providers[1].APIKey = secret
	return c
}

type reply struct {
	status int
	body   string
}

func (r reply) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.body), v); err != nil {
		t.Fatalf("decode %q: %v", r.body, err)
	}
}

// errCode returns the error.code of an error body.
func (r reply) errCode() string {
	var b struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	_ = json.Unmarshal([]byte(r.body), &b)
	return b.Error.Code
}

func (e *restEnv) do(cp, method, path, body string) reply {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if cp != "" {
		req.Header.Set("X-Test-Cap", cp)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		e.t.Errorf("%s %s: content-type %q", method, path, ct)
	}
	if method == http.MethodGet {
		e.gets = append(e.gets, string(b))
	}
	return reply{resp.StatusCode, string(b)}
}

func (e *restEnv) want(r reply, status int, code string) {
	e.t.Helper()
	if r.status != status || (code != "" && r.errCode() != code) {
		e.t.Errorf("got %d %s, want %d %s", r.status, r.body, status, code)
	}
}

func (e *restEnv) noSecretInGets() {
	e.t.Helper()
	if len(e.gets) == 0 {
		e.t.Fatal("no GET recorded")
	}
	for _, b := range e.gets {
		if strings.Contains(b, secret) || strings.Contains(b, "SECRETSECRET") {
			e.t.Errorf("a GET body leaks the API key: %s", b)
		}
	}
}

func TestRESTProviders(t *testing.T) {
	e := newREST(t, restConfig())

	// List: masked.
	r := e.do("chat", "GET", "/api/providers", "")
	e.want(r, 200, "")
	var list struct{ Providers []catalog.ProviderView }
	r.decode(t, &list)
	if len(list.Providers) != 2 {
		t.Fatalf("providers = %s", r.body)
	}
	oa := list.Providers[1]
	if oa.ID != "oa" || !oa.HasAPIKey || oa.APIKeyHint != "sk-…wxyz" || oa.Source != "config" || !slices.Equal(oa.Models, []string{"gpt", "old"}) {
		t.Errorf("oa = %+v", oa)
	}
	if ec := list.Providers[0]; ec.HasAPIKey || ec.APIKeyHint != "" {
		t.Errorf("echo = %+v", ec)
	}
	if strings.Contains(r.body, `"api_key"`) {
		t.Errorf("list has an api_key field: %s", r.body)
	}
	e.want(e.do("chat", "GET", "/api/providers/oa", ""), 200, "")
	e.want(e.do("chat", "GET", "/api/providers/nope", ""), 404, "not_found")

	// Auth: anonymous 401, chat may not write.
	e.want(e.do("", "GET", "/api/providers", ""), 401, "unauthorized")
	e.want(e.do("chat", "POST", "/api/providers", `{"id":"x","kind":"echo"}`), 403, "forbidden")
	e.want(e.do("chat", "PUT", "/api/providers/oa", `{"api_key":"k"}`), 403, "forbidden")
	e.want(e.do("chat", "DELETE", "/api/providers/oa", ""), 403, "forbidden")

	// Create.
	r = e.do("admin", "POST", "/api/providers", `{"id":"local","kind":"openai","base_url":"http://127.0.0.1:11434/v1","api_key":"short"}`)
	e.want(r, 201, "")
	var pv catalog.ProviderView
	r.decode(t, &pv)
	if pv.ID != "local" || pv.Source != "api" || !pv.HasAPIKey || pv.APIKeyHint != "" || strings.Contains(r.body, "short") {
		t.Errorf("created = %s", r.body)
	}
	if _, ok := e.c.Registry().Get("local"); !ok {
		t.Error("registry not rebuilt after create")
	}
	// Validation.
	e.want(e.do("admin", "POST", "/api/providers", `{"id":"local","kind":"openai"}`), 409, "conflict")
	e.want(e.do("admin", "POST", "/api/providers", `{"id":"x","kind":"gemini"}`), 400, "bad_request")
	e.want(e.do("admin", "POST", "/api/providers", `{"id":"x"}`), 400, "bad_request")
	e.want(e.do("admin", "POST", "/api/providers", `{"id":"UPPER","kind":"echo"}`), 400, "bad_request")
	e.want(e.do("admin", "POST", "/api/providers", `{"id":"x","kind":"openai","base_url":"not a url"}`), 400, "bad_request")
	e.want(e.do("admin", "POST", "/api/providers", `{"id":"x","kind":"echo","colour":"red"}`), 400, "bad_request")
	e.want(e.do("admin", "POST", "/api/providers", `{"id":"x","kind":"echo"`), 400, "bad_request")
	e.want(e.do("admin", "POST", "/api/providers", `{"id":"x","kind":"echo"} {}`), 400, "bad_request")
	e.want(e.do("admin", "POST", "/api/providers", ``), 400, "bad_request")
	e.want(e.do("admin", "POST", "/api/providers", `{"id":"x","kind":"echo","api_key":"`+strings.Repeat("a", route.MaxBody)+`"}`), 413, "too_large")
	if r := e.do("admin", "POST", "/api/providers", `{"id":"x","kind":"gemini"}`); !strings.Contains(r.body, "unknown kind") {
		t.Errorf("kind error unclear: %s", r.body)
	}

	// Update: partial; omitted api_key is kept.
	r = e.do("admin", "PUT", "/api/providers/local", `{"base_url":"http://10.0.0.2:8080/v1"}`)
	e.want(r, 200, "")
	if p, _ := e.c.Provider("local"); p.APIKey != "short" || p.BaseURL != "http://10.0.0.2:8080/v1" {
		t.Errorf("after PUT: %+v", p)
	}
	e.want(e.do("admin", "PUT", "/api/providers/local", `{"id":"other"}`), 400, "bad_request")
	e.want(e.do("admin", "PUT", "/api/providers/local", `{"kind":"nope"}`), 400, "bad_request")
	e.want(e.do("admin", "PUT", "/api/providers/nope", `{}`), 404, "not_found")
	// Editing a config provider makes an override.
	r = e.do("admin", "PUT", "/api/providers/oa", `{"api_key":"sk-rest-override-key-9999"}`)
	e.want(r, 200, "")
	r.decode(t, &pv)
	if !pv.Overridden || pv.APIKeyHint != "sk-…9999" || strings.Contains(r.body, "override-key") {
		t.Errorf("override = %s", r.body)
	}

	// Delete.
	e.want(e.do("admin", "DELETE", "/api/providers/oa", ""), 409, "config_defined")
	e.want(e.do("admin", "DELETE", "/api/providers/nope", ""), 404, "not_found")
	e.want(e.do("admin", "POST", "/api/models", `{"id":"llama","provider":"local"}`), 201, "")
	r = e.do("admin", "DELETE", "/api/providers/local", "")
	e.want(r, 409, "in_use")
	if !strings.Contains(r.body, "llama") {
		t.Errorf("in_use does not name the model: %s", r.body)
	}
	e.want(e.do("admin", "DELETE", "/api/models/llama", ""), 200, "")
	e.want(e.do("admin", "DELETE", "/api/providers/local", ""), 200, "")
	e.want(e.do("chat", "GET", "/api/providers/local", ""), 404, "not_found")
	if _, ok := e.c.Registry().Get("local"); ok {
		t.Error("registry still has the deleted provider")
	}

	want := []string{
		"provider created local", "provider updated local", "provider updated oa",
		"model created llama", "model deleted llama", "provider deleted local",
	}
	if got := e.ev.take(); !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
	e.do("chat", "GET", "/api/models", "")
	e.do("chat", "GET", "/api/models/catalog", "")
	e.do("chat", "GET", "/api/providers", "")
	e.noSecretInGets()
}

func TestRESTModels(t *testing.T) {
	e := newREST(t, restConfig())

	r := e.do("chat", "GET", "/api/models", "")
	e.want(r, 200, "")
	var list struct{ Models []catalog.Model }
	r.decode(t, &list)
	var ids []string
	for _, m := range list.Models {
		ids = append(ids, m.ID)
	}
	if !slices.Equal(ids, []string{"echo", "gpt", "old"}) {
		t.Errorf("models = %v", ids)
	}
	r = e.do("chat", "GET", "/api/models?provider=oa", "")
	r.decode(t, &list)
	if len(list.Models) != 2 {
		t.Errorf("filtered = %s", r.body)
	}
	var m catalog.Model
	r = e.do("chat", "GET", "/api/models/gpt", "")
	e.want(r, 200, "")
	r.decode(t, &m)
	if m.Name != "gpt-4o-mini" || m.InputPricePerMTok != 0.15 || m.Source != "config" {
		t.Errorf("gpt = %+v", m)
	}
	e.want(e.do("chat", "GET", "/api/models/nope", ""), 404, "not_found")

	// Writes need admin.
	e.want(e.do("chat", "POST", "/api/models", `{"id":"x","provider":"oa"}`), 403, "forbidden")
	e.want(e.do("chat", "POST", "/api/models/gpt/disable", ""), 403, "forbidden")
	e.want(e.do("chat", "PUT", "/api/models/gpt", `{}`), 403, "forbidden")
	e.want(e.do("chat", "DELETE", "/api/models/gpt", ""), 403, "forbidden")

	// Create.
	r = e.do("admin", "POST", "/api/models", `{"id":"gpt-big","provider":"oa","name":"gpt-4o","input_price_per_mtok":2.5,"output_price_per_mtok":10}`)
	e.want(r, 201, "")
	r.decode(t, &m)
	if m.ID != "gpt-big" || m.Name != "gpt-4o" || !m.Enabled || m.Source != "api" || m.OutputPricePerMTok != 10 {
		t.Errorf("created = %+v", m)
	}
	r = e.do("admin", "POST", "/api/models", `{"id":"nameless","provider":"echo","enabled":false}`)
	e.want(r, 201, "")
	r.decode(t, &m)
	if m.Name != "nameless" || m.Enabled {
		t.Errorf("nameless = %+v", m)
	}
	// Validation.
	r = e.do("admin", "POST", "/api/models", `{"id":"x","provider":"ghost"}`)
	e.want(r, 400, "bad_request")
	if !strings.Contains(r.body, `unknown provider \"ghost\"`) {
		t.Errorf("unknown provider error unclear: %s", r.body)
	}
	e.want(e.do("admin", "POST", "/api/models", `{"id":"x"}`), 400, "bad_request")
	e.want(e.do("admin", "POST", "/api/models", `{"id":"x","provider":"oa","input_price_per_mtok":-0.5}`), 400, "bad_request")
	e.want(e.do("admin", "POST", "/api/models", `{"id":"x","provider":"oa","output_price_per_mtok":"1"}`), 400, "bad_request")
	e.want(e.do("admin", "POST", "/api/models", `{"id":"","provider":"oa"}`), 400, "bad_request")
	e.want(e.do("admin", "POST", "/api/models", `{"id":"a b","provider":"oa"}`), 400, "bad_request")
	e.want(e.do("admin", "POST", "/api/models", `{"id":"available","provider":"oa"}`), 400, "bad_request")
	e.want(e.do("admin", "POST", "/api/models", `{"id":"x","provider":"oa","price":1}`), 400, "bad_request")
	e.want(e.do("admin", "POST", "/api/models", `{"id":"gpt","provider":"oa"}`), 409, "conflict")

	// Update.
	r = e.do("admin", "PUT", "/api/models/gpt-big", `{"output_price_per_mtok":12,"name":""}`)
	e.want(r, 200, "")
	r.decode(t, &m)
	if m.OutputPricePerMTok != 12 || m.InputPricePerMTok != 2.5 || m.Name != "gpt-big" {
		t.Errorf("updated = %+v", m)
	}
	e.want(e.do("admin", "PUT", "/api/models/gpt-big", `{"provider":"ghost"}`), 400, "bad_request")
	e.want(e.do("admin", "PUT", "/api/models/gpt-big", `{"input_price_per_mtok":-1}`), 400, "bad_request")
	e.want(e.do("admin", "PUT", "/api/models/gpt-big", `{"id":"gpt"}`), 400, "bad_request")
	e.want(e.do("admin", "PUT", "/api/models/nope", `{}`), 404, "not_found")
	e.want(e.do("admin", "PUT", "/api/models/gpt-big", `[]`), 400, "bad_request")
	r = e.do("admin", "PUT", "/api/models/gpt-big", `{"provider":"echo"}`)
	e.want(r, 200, "")

	// Enable / disable, including a config model (an override).
	r = e.do("admin", "POST", "/api/models/gpt/disable", "")
	e.want(r, 200, "")
	r.decode(t, &m)
	if m.Enabled || !m.Overridden {
		t.Errorf("disabled gpt = %+v", m)
	}
	if got, _ := e.c.Model("gpt"); got.Enabled {
		t.Error("snapshot not updated")
	}
	e.want(e.do("admin", "POST", "/api/models/old/enable", ""), 200, "")
	e.want(e.do("admin", "POST", "/api/models/nope/enable", ""), 404, "not_found")

	// Catalog: enabled models with pricing and the default.
	r = e.do("chat", "GET", "/api/models/catalog", "")
	e.want(r, 200, "")
	var cat struct {
		DefaultModel string `json:"default_model"`
		Models       []catalog.CatalogEntry
	}
	r.decode(t, &cat)
	ids = nil
	for _, x := range cat.Models {
		ids = append(ids, x.ID)
	}
	if cat.DefaultModel != "gpt" || !slices.Equal(ids, []string{"echo", "gpt-big", "old"}) {
		t.Errorf("catalog = %s", r.body)
	}
	if x := cat.Models[1]; x.Provider != "echo" || x.ProviderKind != "echo" || x.OutputPricePerMTok != 12 {
		t.Errorf("catalog entry = %+v", x)
	}

	// Delete.
	e.want(e.do("admin", "DELETE", "/api/models/gpt", ""), 409, "config_defined")
	e.want(e.do("admin", "DELETE", "/api/models/nope", ""), 404, "not_found")
	e.want(e.do("admin", "DELETE", "/api/models/gpt-big", ""), 200, "")
	e.want(e.do("chat", "GET", "/api/models/gpt-big", ""), 404, "not_found")

	want := []string{
		"model created gpt-big", "model created nameless", "model updated gpt-big", "model updated gpt-big",
		"model disabled gpt", "model enabled old", "model deleted gpt-big",
	}
	if got := e.ev.take(); !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
	e.noSecretInGets()
}

func TestRESTAvailable(t *testing.T) {
	good := providertest.NewOpenAI(t)
	good.APIKey = secret
	good.Models = []string{"gpt-4o-mini", "gpt-4o"}
	bad := providertest.NewAnthropic(t) // expects providertest.DefaultAPIKey; we send another
	// A provider that never answers its model list.
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	t.Cleanup(slow.Close)

	cfg := config.Default()
	cfg.Providers = append(cfg.Providers,
		config.Provider{ID: "oa", Kind: "openai", BaseURL: good.BaseURL(), APIKey: secret},
		config.Provider{ID: "an", Kind: "anthropic", BaseURL: bad.BaseURL(), APIKey: "sk-ant-wrong-key-000000000"},
		config.Provider{ID: "slow", Kind: "openai", BaseURL: slow.URL + "/v1", APIKey: "k"},
	)
	cfg.Models = append(cfg.Models, config.Model{ID: "mini", Provider: "oa", Name: "gpt-4o-mini"})
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	e := newREST(t, cfg)
	e.c.SetListTimeout(300 * time.Millisecond)

	e.want(e.do("chat", "GET", "/api/models/available", ""), 403, "forbidden")
	start := time.Now()
	r := e.do("admin", "GET", "/api/models/available", "")
	elapsed := time.Since(start)
	e.want(r, 200, "")
	if elapsed > 3*time.Second {
		t.Errorf("available took %s; providers are not asked concurrently with a timeout", elapsed)
	}
	var av struct{ Providers []catalog.ProviderModels }
	r.decode(t, &av)
	byID := map[string]catalog.ProviderModels{}
	for _, p := range av.Providers {
		byID[p.Provider] = p
	}
	if len(byID) != 4 {
		t.Fatalf("available = %s", r.body)
	}
	oa := byID["oa"]
	if !oa.OK || oa.Error != nil || len(oa.Models) != 2 || oa.Models[0].ID != "gpt-4o" || oa.Models[1].ID != "gpt-4o-mini" ||
		!slices.Equal(oa.Models[1].ConfiguredAs, []string{"mini"}) || len(oa.Models[0].ConfiguredAs) != 0 {
		t.Errorf("oa = %+v", oa)
	}
	an := byID["an"]
	if an.OK || an.Error == nil || an.Error.Code != "unauthorized" || len(an.Models) != 0 {
		t.Errorf("an = %+v", an)
	}
	sl := byID["slow"]
	if sl.OK || sl.Error == nil || sl.Error.Code != "timeout" {
		t.Errorf("slow = %+v", sl)
	}
	if ec := byID["echo"]; !ec.OK || len(ec.Models) != 1 || !slices.Equal(ec.Models[0].ConfiguredAs, []string{"echo"}) {
		t.Errorf("echo = %+v", ec)
	}

	// One provider only; unknown provider.
	r = e.do("admin", "GET", "/api/models/available?provider=oa", "")
	e.want(r, 200, "")
	r.decode(t, &av)
	if len(av.Providers) != 1 || av.Providers[0].Provider != "oa" {
		t.Errorf("filtered = %s", r.body)
	}
	e.want(e.do("admin", "GET", "/api/models/available?provider=nope", ""), 404, "not_found")

	// After a key fix over REST, the registry uses the new key.
	e.want(e.do("admin", "PUT", "/api/providers/an", `{"api_key":"`+providertest.DefaultAPIKey+`"}`), 200, "")
	r = e.do("admin", "GET", "/api/models/available?provider=an", "")
	r.decode(t, &av)
	if len(av.Providers) != 1 || !av.Providers[0].OK || len(av.Providers[0].Models) != 2 {
		t.Errorf("an after key fix = %s", r.body)
	}
	e.noSecretInGets()
}
