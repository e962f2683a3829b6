package config

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"strings"

	"github.com/goccy/go-yaml"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/route"
)

// Masked is what a literal secret reads as over REST; sent back, it means
// "keep the current value".
const Masked = "***"

// Routes are the config routes (rest.md "Config"): admin only, since the
// config holds credentials and starts processes.
func Routes(w *Watcher) []route.Route {
	return []route.Route{
		{Pattern: "GET /api/config", Cap: auth.CapAdmin, Handler: http.HandlerFunc(w.handleGet)},
		{Pattern: "PUT /api/config", Cap: auth.CapAdmin, Handler: http.HandlerFunc(w.handlePut)},
		{Pattern: "PATCH /api/config/{section}", Cap: auth.CapAdmin, Handler: http.HandlerFunc(w.handlePatch)},
	}
}

func (w *Watcher) handleGet(rw http.ResponseWriter, r *http.Request) {
	src, err := os.ReadFile(w.path)
	if err != nil {
		route.Error(rw, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	view, err := w.view(src)
	if err != nil {
		route.Error(rw, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	route.JSON(rw, http.StatusOK, view)
}

func (w *Watcher) handlePut(rw http.ResponseWriter, r *http.Request) {
	var body map[string]any
	if !route.Decode(rw, r, &body) {
		return
	}
	w.change(rw, func(eff map[string]any) (map[string]any, error) { return body, nil })
}

func (w *Watcher) handlePatch(rw http.ResponseWriter, r *http.Request) {
	section := r.PathValue("section")
	var patch any
	if !route.Decode(rw, r, &patch) {
		return
	}
	w.change(rw, func(eff map[string]any) (map[string]any, error) {
		if _, ok := eff[section]; !ok {
			return nil, &FieldError{Path: section, Msg: "unknown config section"}
		}
		d := copyTree(eff).(map[string]any)
		d[section] = MergePatch(d[section], patch)
		return d, nil
	})
}

// change computes the desired config with fn from the current one (as
// GET shows it, secrets in clear), writes the difference into the file,
// and applies it through Reload, the path every file edit takes.
func (w *Watcher) change(rw http.ResponseWriter, fn func(eff map[string]any) (map[string]any, error)) {
	fileMu.Lock()
	src, err := os.ReadFile(w.path)
	if err != nil {
		fileMu.Unlock()
		route.Error(rw, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	out, err := w.desired(src, fn)
	var cfg *Config
	if err == nil {
		cfg, err = WriteFile(w.path, out, w.lookupEnv())
	}
	fileMu.Unlock()
	if err != nil {
		var ce *Error
		var fe *FieldError
		switch {
		case errors.As(err, &ce), errors.As(err, &fe):
			route.Error(rw, http.StatusUnprocessableEntity, "invalid_config", err.Error())
		default:
			route.Error(rw, http.StatusInternalServerError, "internal", err.Error())
		}
		return
	}
	old := w.Current()
	if err := w.Reload(); err != nil {
		route.Error(rw, http.StatusInternalServerError, "internal", "written but not applied: "+err.Error())
		return
	}
	view, err := w.view(out)
	if err != nil {
		route.Error(rw, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	route.JSON(rw, http.StatusOK, map[string]any{
		"ok": true, "restart_required": !reflect.DeepEqual(old.Listeners, cfg.Listeners) || old.Metrics != cfg.Metrics, "config": view,
	})
}

// desired returns the new file text: fn's tree with "***" resolved and
// "<field>_set" dropped, checked exactly as a hand edit (same Parse, same
// messages) before anything is written.
func (w *Watcher) desired(src []byte, fn func(eff map[string]any) (map[string]any, error)) ([]byte, error) {
	raw, eff, err := w.trees(src)
	if err != nil {
		return nil, err
	}
	d, err := fn(eff)
	if err != nil {
		return nil, err
	}
	dv, err := unmask(normalize(d), eff, "")
	if err != nil {
		return nil, err
	}
	target := overlay(raw, eff, dv)
	out, err := Rewrite(src, target)
	if err != nil {
		return nil, fmt.Errorf("edit config: %w", err)
	}
	if _, err := Parse(w.path, out, w.lookupEnv()); err != nil {
		return nil, err
	}
	return out, nil
}

func (w *Watcher) lookupEnv() func(string) (string, bool) {
	if w.lookup != nil {
		return w.lookup
	}
	return os.LookupEnv
}

// trees returns the file as written (raw) and the config in effect with
// defaults filled in, where every value written as ${NAME} reads as written.
func (w *Watcher) trees(src []byte) (raw, eff map[string]any, err error) {
	rv, err := Raw(src)
	if err != nil {
		return nil, nil, err
	}
	raw, _ = rv.(map[string]any)
	if raw == nil {
		raw = map[string]any{}
	}
	cfg, err := Parse(w.path, src, w.lookupEnv())
	if err != nil {
		cfg = w.Current() // a refused hand edit: show and change what is in force
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("config as JSON: %w", err)
	}
	var ev any
	if err := yaml.Unmarshal(b, &ev); err != nil {
		return nil, nil, fmt.Errorf("config as JSON: %w", err)
	}
	ev, err = jsonValue(ev)
	if err != nil {
		return nil, nil, err
	}
	eff, _ = ev.(map[string]any)
	return raw, withRefs(eff, raw).(map[string]any), nil
}

// view is GET's answer: the config in effect, literal secrets masked.
func (w *Watcher) view(src []byte) (map[string]any, error) {
	_, eff, err := w.trees(src)
	if err != nil {
		return nil, err
	}
	return mask(eff).(map[string]any), nil
}

// withRefs puts every "${NAME}" string of the file back over the expanded
// value at the same place.
func withRefs(eff, raw any) any {
	switch e := eff.(type) {
	case map[string]any:
		r, _ := raw.(map[string]any)
		out := make(map[string]any, len(e))
		for k, v := range e {
			out[k] = withRefs(v, r[k])
		}
		return out
	case []any:
		r, _ := raw.([]any)
		out := make([]any, len(e))
		for i, v := range e {
			var rv any
			if i < len(r) {
				rv = r[i]
			}
			out[i] = withRefs(v, rv)
		}
		return out
	}
	if s, ok := raw.(string); ok && envRe.MatchString(s) {
		return s
	}
	return eff
}

var secretRe = regexp.MustCompile(`(^|_)(api_key|key|token|secret|password|passwd)$`)

// isSecret says whether the value of key (inside a map named parent) is a
// credential: api keys, bot tokens, and every MCP env or header value.
func isSecret(parent, key string) bool {
	return parent == "env" || parent == "headers" || secretRe.MatchString(strings.ToLower(key))
}

// mask replaces literal secrets by "***" and adds "<key>_set"; a ${NAME}
// reference is shown as written.
func mask(v any) any { return maskIn("", v) }

func maskIn(parent string, v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if s, ok := e.(string); ok && isSecret(parent, k) {
				out[k] = s
				if s != "" && !envRe.MatchString(s) {
					out[k] = Masked
				}
				if parent != "env" && parent != "headers" {
					out[k+"_set"] = s != ""
				}
				continue
			}
			out[k] = maskIn(k, e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = maskIn(parent, e)
		}
		return out
	}
	return v
}

// unmask undoes mask on a tree sent back: "***" becomes the current value
// at the same place, "<key>_set" beside a secret is dropped.
func unmask(d, eff any, path string) (any, error) {
	switch x := d.(type) {
	case map[string]any:
		e, _ := eff.(map[string]any)
		out := make(map[string]any, len(x))
		for k, v := range x {
			if base, ok := strings.CutSuffix(k, "_set"); ok && isSecret("", base) {
				if _, isBool := v.(bool); isBool {
					continue
				}
			}
			u, err := unmask(v, e[k], join(path, k))
			if err != nil {
				return nil, err
			}
			out[k] = u
		}
		return out, nil
	case []any:
		e, _ := eff.([]any)
		out := make([]any, len(x))
		for i, v := range x {
			var ev any
			if i < len(e) {
				ev = e[i]
			}
			u, err := unmask(v, ev, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			out[i] = u
		}
		return out, nil
	case string:
		if x == Masked {
			if _, ok := eff.(string); !ok {
				return nil, &FieldError{Path: path, Msg: `"***" keeps the current value, but there is none`}
			}
			return eff, nil
		}
	}
	return d, nil
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

// overlay returns the file tree to write: raw changed only where want
// differs from eff (the config in effect), so defaults a client sends back
// unchanged are not copied into the file, and what the file says stays as
// written.
func overlay(raw, eff, want any) any {
	if reflect.DeepEqual(eff, want) {
		return raw
	}
	switch w := want.(type) {
	case map[string]any:
		e, eok := eff.(map[string]any)
		if !eok {
			return want
		}
		r, _ := raw.(map[string]any)
		out := map[string]any{}
		for k, v := range r {
			if _, keep := w[k]; keep {
				out[k] = v
			}
		}
		for k, v := range w {
			ev, inEff := e[k]
			rv, inRaw := r[k]
			if inEff && reflect.DeepEqual(ev, v) {
				continue // unchanged: as the file has it (or not)
			}
			if !inRaw {
				rv = map[string]any{}
				if _, isList := v.([]any); isList {
					rv = nil
				}
			}
			out[k] = overlay(rv, ev, v)
		}
		return out
	case []any:
		e, eok := eff.([]any)
		r, rok := raw.([]any)
		if !eok || !rok || len(e) != len(w) || len(r) != len(w) {
			return want
		}
		out := make([]any, len(w))
		for i := range w {
			out[i] = overlay(r[i], e[i], w[i])
		}
		return out
	}
	return want
}

// MergePatch applies an RFC 7386 JSON merge patch to target: objects merge
// key by key, null deletes a key, anything else replaces.
func MergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	}
	out := make(map[string]any, len(t))
	for k, v := range t {
		out[k] = v
	}
	for k, v := range p {
		if v == nil {
			delete(out, k)
			continue
		}
		out[k] = MergePatch(out[k], v)
	}
	return out
}

func copyTree(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = copyTree(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = copyTree(e)
		}
		return out
	}
	return v
}
