package vault

import (
	"errors"
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
	a := &api{v: v, errs: restErrors(v)}
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

type api struct {
	v    *Vault
	errs route.Errors
}

func (a *api) list(w http.ResponseWriter, r *http.Request) {
	notes, err := a.v.List(r.Context())
	a.errs.Reply(w, err, http.StatusOK, map[string]any{"notes": notes})
}

func (a *api) read(w http.ResponseWriter, r *http.Request) {
	n, err := a.v.Read(r.Context(), notePath(r))
	if err != nil {
		a.errs.Write(w, err)
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
		a.errs.Write(w, err)
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
	err := a.v.Delete(r.Context(), notePath(r), exp)
	a.errs.Reply(w, err, http.StatusOK, map[string]any{"ok": true})
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
	a.errs.Reply(w, err, http.StatusOK, g)
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
	a.errs.Reply(w, err, http.StatusOK, map[string]any{"results": hits})
}

// restErrors maps the vault's errors to statuses (spec/rest.md): a
// conflict carries the note's current version as its ETag; a failure of
// the vault itself is logged and its text kept out of the answer.
func restErrors(v *Vault) route.Errors {
	return route.Errors{
		Before: func(w http.ResponseWriter, err error) bool {
			var ce *ConflictError
			if errors.As(err, &ce) && ce.Current != "" {
				w.Header().Set("ETag", `"`+ce.Current+`"`)
			}
			return false
		},
		Codes: []route.Code{
			{Err: ErrInvalidPath, Status: http.StatusBadRequest, Code: "invalid_path"},
			{Err: ErrNotFound, Status: http.StatusNotFound, Code: "not_found"},
			{Err: ErrConflict, Status: http.StatusConflict, Code: "conflict"},
			{Err: ErrExists, Status: http.StatusConflict, Code: "exists"},
			{Err: ErrTooLarge, Status: http.StatusRequestEntityTooLarge, Code: "too_large"},
			{Err: ErrInvalidContent, Status: http.StatusUnprocessableEntity, Code: "invalid_content"},
		},
		Other: route.Logged(v.log, "vault request failed", "the vault failed; see agentd.log"),
	}
}
