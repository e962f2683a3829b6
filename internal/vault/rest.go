package vault

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/route"
)

// Routes returns the vault REST API (spec/rest.md "Vault"). The vault is
// the owner's notes: reading and writing need the chat capability, bridges
// get nothing.
func Routes(v *Vault) []route.Route {
	a := &api{v: v}
	chat := auth.CapChat
	return []route.Route{
		{Pattern: "GET /api/vault/notes", Cap: chat, Handler: http.HandlerFunc(a.list)},
		{Pattern: "GET /api/vault/notes/{path...}", Cap: chat, Handler: http.HandlerFunc(a.read)},
		{Pattern: "PUT /api/vault/notes/{path...}", Cap: chat, Handler: http.HandlerFunc(a.write)},
		{Pattern: "DELETE /api/vault/notes/{path...}", Cap: chat, Handler: http.HandlerFunc(a.delete)},
		{Pattern: "GET /api/vault/graph", Cap: chat, Handler: http.HandlerFunc(a.graph)},
		{Pattern: "GET /api/vault/search", Cap: chat, Handler: http.HandlerFunc(a.search)},
	}
}

type api struct{ v *Vault }

func (a *api) list(w http.ResponseWriter, r *http.Request) {
	notes, err := a.v.List(r.Context())
	if err != nil {
		a.fail(w, err)
		return
	}
	route.JSON(w, http.StatusOK, map[string]any{"notes": notes})
}

func (a *api) read(w http.ResponseWriter, r *http.Request) {
	n, err := a.v.Read(r.Context(), notePath(r))
	if err != nil {
		a.fail(w, err)
		return
	}
	w.Header().Set("ETag", `"`+n.Hash+`"`)
	route.JSON(w, http.StatusOK, n)
}

// notePath is the note path of a request, decoded from the raw URL path
// rather than taken from ServeMux's wildcard: "/api/vault/notes//etc/x"
// must read as the absolute path it spells (and be refused), not as a
// relative one with an empty first segment.
func notePath(r *http.Request) string {
	raw := strings.TrimPrefix(r.URL.EscapedPath(), notesPrefix)
	p, err := url.PathUnescape(raw)
	if err != nil {
		return "\x00" // undecodable: CleanPath refuses it as invalid
	}
	return p
}

const notesPrefix = "/api/vault/notes/"

// writeBody is PUT's body; base_hash (agentd) is the version the content
// was based on, like If-Match.
type writeBody struct {
	Content  *string `json:"content"`
	BaseHash string  `json:"base_hash"`
}

func (a *api) write(w http.ResponseWriter, r *http.Request) {
	var body writeBody
	// Notes are documents, larger than route.MaxBody allows; JSON escaping
	// can double a note's size.
	if !route.DecodeLimit(w, r, &body, 2*MaxNoteBytes+1024) {
		return
	}
	if body.Content == nil {
		route.Error(w, http.StatusBadRequest, "bad_request", "content is required")
		return
	}
	exp, ok := expectOf(w, r, body.BaseHash)
	if !ok {
		return
	}
	res, err := a.v.Write(r.Context(), notePath(r), []byte(*body.Content), exp)
	if err != nil {
		a.fail(w, err)
		return
	}
	w.Header().Set("ETag", `"`+res.Hash+`"`)
	route.JSON(w, http.StatusOK, map[string]any{"ok": true, "path": res.Path, "hash": res.Hash, "created": res.Created, "modified": res.Modified})
}

func (a *api) delete(w http.ResponseWriter, r *http.Request) {
	exp, ok := expectOf(w, r, "")
	if !ok {
		return
	}
	if err := a.v.Delete(r.Context(), notePath(r), exp); err != nil {
		a.fail(w, err)
		return
	}
	route.JSON(w, http.StatusOK, map[string]any{"ok": true})
}

// expectOf reads a change's precondition: If-Match (an ETag from GET) or
// base_hash, and If-None-Match: * for create-only.
func expectOf(w http.ResponseWriter, r *http.Request, baseHash string) (Expect, bool) {
	exp := Expect{Hash: baseHash}
	if im := strings.TrimSpace(r.Header.Get("If-Match")); im != "" && im != "*" {
		h := strings.Trim(strings.TrimPrefix(im, "W/"), `"`)
		if exp.Hash != "" && exp.Hash != h {
			route.Error(w, http.StatusBadRequest, "bad_request", "If-Match and base_hash name different versions")
			return exp, false
		}
		exp.Hash = h
	}
	if strings.TrimSpace(r.Header.Get("If-None-Match")) == "*" {
		exp.Absent = true
	}
	return exp, true
}

func (a *api) graph(w http.ResponseWriter, r *http.Request) {
	g, err := a.v.Graph(r.Context())
	if err != nil {
		a.fail(w, err)
		return
	}
	route.JSON(w, http.StatusOK, g)
}

func (a *api) search(w http.ResponseWriter, r *http.Request) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	if q == "" {
		route.Error(w, http.StatusBadRequest, "bad_request", "q is required")
		return
	}
	limit := 50
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 500 {
			route.Error(w, http.StatusBadRequest, "bad_request", "limit must be a number from 1 to 500")
			return
		}
		limit = n
	}
	hits, err := a.v.Search(r.Context(), q, limit)
	if err != nil {
		a.fail(w, err)
		return
	}
	route.JSON(w, http.StatusOK, map[string]any{"results": hits})
}

// fail maps the vault's errors to statuses (spec/rest.md).
func (a *api) fail(w http.ResponseWriter, err error) {
	var ce *ConflictError
	switch {
	case errors.Is(err, ErrInvalidPath):
		route.Error(w, http.StatusBadRequest, "invalid_path", err.Error())
	case errors.Is(err, ErrNotFound):
		route.Error(w, http.StatusNotFound, "not_found", err.Error())
	case errors.As(err, &ce):
		if ce.Current != "" {
			w.Header().Set("ETag", `"`+ce.Current+`"`)
		}
		route.Error(w, http.StatusConflict, "conflict", err.Error())
	case errors.Is(err, ErrExists):
		route.Error(w, http.StatusConflict, "exists", err.Error())
	case errors.Is(err, ErrTooLarge):
		route.Error(w, http.StatusRequestEntityTooLarge, "too_large", err.Error())
	case errors.Is(err, ErrInvalidContent):
		route.Error(w, http.StatusUnprocessableEntity, "invalid_content", err.Error())
	default:
		a.v.log.Error("vault request failed", slog.Any("err", err))
		route.Error(w, http.StatusInternalServerError, "internal", "the vault failed; see agentd.log")
	}
}
