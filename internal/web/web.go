// Package web serves the embedded web app at / on the gateway: the agent in
// a browser through `agentd proxy`, with the same authentication as every
// route (the proxy's device certificate). No CDN, no external fonts or
// scripts: everything ships in the binary under a strict
// Content-Security-Policy.
package web

import (
	"embed"
	"errors"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"

	"rsc.io/qr"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/route"
)

//go:embed static
var static embed.FS

// CSP allows the page its own origin only: scripts, styles, the REST API
// and the WebSocket (CSP3 'self' covers ws: of the same host), images and
// audio it made itself (blob:, data:). No inline script, no eval, no frames.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; " +
	"media-src 'self' blob:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Options configure the web app's routes.
type Options struct {
	// FileRoots are the folders /api/files may read (uploads/, memories/).
	FileRoots []string
}

// Routes serve the app (chat capability: a chat device sees chat pages,
// the app asks /api/me for the rest), the files the agent's replies attach,
// and QR codes for invitation tickets.
func Routes(o Options) []route.Route {
	sub, _ := fs.Sub(static, "static")
	files := http.FileServerFS(sub)
	index, _ := fs.ReadFile(sub, "index.html")
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secure(w)
		if r.URL.Path == "/" {
			// Not through FileServer: it redirects index.html to "./".
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write(index)
			return
		}
		r = r.Clone(r.Context())
		r.URL.Path = strings.TrimPrefix(r.URL.Path, "/app")
		files.ServeHTTP(w, r)
	})
	return []route.Route{
		{Pattern: "GET /{$}", Cap: auth.CapChat, Handler: app},
		{Pattern: "GET /app/{file...}", Cap: auth.CapChat, Handler: app},
		{Pattern: "GET /api/me", Cap: route.Device, Handler: http.HandlerFunc(me)},
		{Pattern: "GET /api/files", Cap: auth.CapChat, Handler: fileHandler(o.FileRoots)},
		{Pattern: "POST /api/qr", Cap: auth.CapAdmin, Handler: http.HandlerFunc(qrCode)},
	}
}

func secure(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
}

// me tells the app who it is: its pages depend on the capabilities.
func me(w http.ResponseWriter, r *http.Request) {
	id, _ := auth.FromContext(r.Context())
	route.JSON(w, http.StatusOK, map[string]any{
		"client_id": id.ClientID, "handle": id.Handle, "transport": id.Transport,
		"capabilities": id.Capabilities, "admin": id.Has(auth.CapAdmin),
	})
}

// fileHandler serves a file the agent attached (?path=, absolute), only
// from roots, symlinks resolved: never keys/, the database or the config.
func fileHandler(roots []string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Query().Get("path")
		real, err := confine(p, roots)
		if err != nil {
			route.Error(w, http.StatusBadRequest, "invalid_path", err.Error())
			return
		}
		f, err := os.Open(real)
		if err != nil {
			route.Error(w, http.StatusNotFound, "not_found", "no such file")
			return
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			route.Error(w, http.StatusNotFound, "not_found", "not a file")
			return
		}
		secure(w)
		if ct := mime.TypeByExtension(filepath.Ext(real)); ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		// Never rendered as a page of this origin: an uploaded HTML file
		// must not run with the proxy's certificate.
		w.Header().Set("Content-Disposition", `inline; filename="`+strings.ReplaceAll(filepath.Base(real), `"`, "")+`"`)
		if ct := w.Header().Get("Content-Type"); ct == "" || strings.Contains(ct, "html") || strings.Contains(ct, "svg") || strings.Contains(ct, "xml") {
			w.Header().Set("Content-Type", "application/octet-stream")
		}
		http.ServeContent(w, r, "", fi.ModTime(), f)
	})
}

// confine resolves p (absolute) and accepts it only inside one of roots.
func confine(p string, roots []string) (string, error) {
	if p == "" || !filepath.IsAbs(p) || strings.ContainsRune(p, 0) {
		return "", errors.New("path must be an absolute file path")
	}
	real, err := filepath.EvalSymlinks(filepath.Clean(p))
	if err != nil {
		return "", errors.New("no such file")
	}
	for _, root := range roots {
		rr, err := filepath.EvalSymlinks(root)
		if err != nil {
			continue
		}
		if rel, err := filepath.Rel(rr, real); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") && !path.IsAbs(rel) {
			return real, nil
		}
	}
	return "", errors.New("only files under uploads/ and memories/ can be read")
}

// qrCode draws text (an invitation ticket) as a PNG QR code.
func qrCode(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Text string `json:"text"`
	}
	if !route.Decode(w, r, &req) {
		return
	}
	if req.Text == "" || len(req.Text) > 2048 {
		route.Error(w, http.StatusBadRequest, "bad_request", `"text" must be 1–2048 bytes`)
		return
	}
	c, err := qr.Encode(req.Text, qr.M)
	if err != nil {
		route.Error(w, http.StatusBadRequest, "bad_request", "qr: "+err.Error())
		return
	}
	c.Scale = 6
	w.Header().Set("Content-Type", "image/png")
	w.Write(c.PNG())
}
