package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/policyd/policyd/verdicts"
)

// maxProfileSeconds caps /debug/pprof/profile and /debug/pprof/trace: a
// longer capture ties up a CPU of the node and the listener.
const maxProfileSeconds = 30

// listener is one HTTP server the agent runs beside its sync loop.
type listener struct {
	name string
	srv  *http.Server
	ln   net.Listener
}

// newServer returns an http.Server with timeouts, so that a slow or idle
// client cannot hold connections open on a node's port indefinitely.
func newServer(h http.Handler, write time.Duration) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      write,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
}

// listen binds addr for the server called name ("--metrics-addr").
func listen(name, addr string, srv *http.Server) (*listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &listener{name: name, srv: srv, ln: ln}, nil
}

func (l *listener) serve(log *slog.Logger) {
	go func() {
		if err := l.srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("HTTP server stopped", "listener", l.name, "err", err)
		}
	}()
}

func (l *listener) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = l.srv.Shutdown(ctx)
}

// isLoopback reports whether addr ("host:port") binds only loopback
// addresses. An empty host, 0.0.0.0 or :: bind every address of the node.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// requireBearer wraps h so that it answers only requests carrying
// "Authorization: Bearer TOKEN" (compared in constant time).
func requireBearer(token string, h http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="policyd metrics"`)
			http.Error(w, "unauthorized: "+r.URL.Path+" needs the bearer token of the agent's --metrics-token-file", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// readToken reads a bearer token file (surrounding white space dropped).
func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 16 {
		return "", fmt.Errorf("%s: token is %d bytes; use at least 16 random bytes", path, len(tok))
	}
	return tok, nil
}

// metricsHandler serves the agent's endpoints: /metrics and /verdicts (who
// talks to whom, and which policy drops it), behind the bearer token when
// one is given; /healthz and /readyz always without (kubelet probes carry
// no credentials, and they reveal only the sync state).
func metricsHandler(agentMux http.Handler, token string) http.Handler {
	if token == "" {
		return agentMux
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", requireBearer(token, agentMux))
	mux.Handle(verdicts.Path, requireBearer(token, agentMux))
	mux.Handle("/", agentMux)
	return mux
}

// pprofHandler serves net/http/pprof with the capture length capped.
func pprofHandler() http.Handler {
	capped := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if s := r.URL.Query().Get("seconds"); s != "" {
				n, err := strconv.Atoi(s)
				if err != nil || n <= 0 || n > maxProfileSeconds {
					http.Error(w, fmt.Sprintf("seconds must be 1 to %d", maxProfileSeconds), http.StatusBadRequest)
					return
				}
			}
			h(w, r)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", capped(pprof.Profile))
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", capped(pprof.Trace))
	return mux
}
