// Package proxy is the loopback proxy (spec "Loopback proxy"): it listens on
// a loopback address only and forwards each plain HTTP request or WebSocket
// connection over its own authenticated iroh stream to the agent's gateway,
// so curl, browsers and ordinary WebSocket clients work unchanged.
//
// The proxy lends the device's certificate to whoever can reach the port,
// so it guards what a loopback listener cannot: the Host header must name
// the loopback address it listens on (DNS rebinding), and a request with an
// Origin header must come from that same origin (other web pages).
package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"
)

// Timeouts of the local side.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	shutdownTimeout   = 2 * time.Second
)

// Config of a Proxy.
type Config struct {
	// Listen is host:port; host must be a loopback IP or "localhost".
	Listen string
	// Dial opens an authenticated gateway stream, ready for HTTP/1.1
	// (enroll.Remote.DialAuth).
	Dial func(ctx context.Context) (net.Conn, error)
	Log  *slog.Logger
}

// Proxy is a running loopback proxy.
type Proxy struct {
	ln        net.Listener
	srv       *http.Server
	transport *http.Transport
	log       *slog.Logger
	port      string
	origin    string // the one Origin accepted: http://<listen host>:<port>
}

// CheckLoopback refuses a listen address that is not on loopback.
func CheckLoopback(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen address %q: want 127.0.0.1:PORT: %w", addr, err)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("listen address %q: bad port: %w", addr, err)
	}
	if !isLoopbackHost(host) {
		return fmt.Errorf("listen address %q is not a loopback address: the proxy presents this device's certificate to anyone who reaches it, so it only listens on 127.0.0.1, ::1 or localhost", addr)
	}
	return nil
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// Listen checks cfg and opens the local listener.
func Listen(cfg Config) (*Proxy, error) {
	if err := CheckLoopback(cfg.Listen); err != nil {
		return nil, err
	}
	if cfg.Dial == nil {
		return nil, errors.New("proxy: no Dial function")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("proxy: listen: %w", err)
	}
	if a, ok := ln.Addr().(*net.TCPAddr); !ok || !a.IP.IsLoopback() {
		ln.Close()
		return nil, fmt.Errorf("proxy: %s resolved to non-loopback %s", cfg.Listen, ln.Addr())
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	host, _, _ := net.SplitHostPort(cfg.Listen)
	p := &Proxy{ln: ln, log: cfg.Log.With("component", "proxy"), port: port,
		origin: "http://" + net.JoinHostPort(strings.ToLower(strings.Trim(host, "[]")), port)}
	p.transport = &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return cfg.Dial(ctx)
		},
		// One iroh stream per request. An idle stream on a connection
		// whose peer died (agent restart, sidecar crash) only fails at
		// QUIC's 30 s idle timeout, so reusing one would hang a request
		// that long; a new stream makes the sidecar probe the cached
		// connection (≈ 1 RTT) and redial a dead one. Cost measured with
		// BenchmarkProxyRequest on loopback: p50 2.7 ms per small GET
		// against 1.1 ms with keep-alive.
		DisableKeepAlives: true,
		ForceAttemptHTTP2: false,
	}
	target := &url.URL{Scheme: "http", Host: "agentd"}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			// Keep the local Host: the gateway's WebSocket origin check
			// compares it with the browser's Origin.
			pr.Out.Host = pr.In.Host
		},
		Transport:     p.transport,
		FlushInterval: -1,
		ErrorHandler:  p.upstreamError,
	}
	p.srv = &http.Server{
		Handler:           p.guard(rp),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	return p, nil
}

// Addr is the local address (useful with port 0).
func (p *Proxy) Addr() net.Addr { return p.ln.Addr() }

// Transport is the RoundTripper that carries requests to the agent.
func (p *Proxy) Transport() http.RoundTripper { return p.transport }

// Serve serves until ctx ends, then shuts down (open WebSockets are closed).
func (p *Proxy) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- p.srv.Serve(p.ln) }()
	select {
	case err := <-errc:
		p.transport.CloseIdleConnections()
		return fmt.Errorf("proxy: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	_ = p.srv.Shutdown(sctx)
	_ = p.srv.Close() // hijacked WebSocket connections are not closed by Shutdown
	<-errc
	p.transport.CloseIdleConnections()
	return nil
}

// guard enforces the Host and Origin rules before anything is forwarded.
func (p *Proxy) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !p.allowedHost(r.Host) {
			writeError(w, http.StatusMisdirectedRequest, "bad_host",
				fmt.Sprintf("Host %q is not this proxy's loopback address (use http://127.0.0.1:%s)", r.Host, p.port))
			return
		}
		// Only the proxy's own origin, exactly: another loopback origin
		// (http://127.0.0.2:PORT, or any port) is another web page.
		if o := r.Header.Get("Origin"); o != "" {
			if o != p.origin {
				p.log.Warn("refused a cross-origin request", "origin", o, "path", r.URL.Path)
				writeError(w, http.StatusForbidden, "cross_origin",
					fmt.Sprintf("requests from origin %q are refused: only pages served by this proxy may use it", o))
				return
			}
		}
		// The agent may answer while the request body is still streaming in
		// (an echo, an upload that fails early). Without full duplex,
		// net/http stops reading the inbound body once the response has
		// started; the reverse proxy then sees a body read error and drops
		// the upstream stream mid-response.
		_ = http.NewResponseController(w).EnableFullDuplex()
		next.ServeHTTP(w, r)
	})
}

// allowedHost accepts loopback hosts with this proxy's port in Host (a
// client may name the proxy as localhost or 127.0.0.1; DNS rebinding
// cannot produce a loopback Host).
func (p *Proxy) allowedHost(hostport string) bool {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil || port != p.port {
		return false
	}
	return isLoopbackHost(host)
}

func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return // the local client went away
	}
	p.log.Warn("proxy: agent unreachable", "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, http.StatusBadGateway, "agent_unreachable", err.Error())
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}
