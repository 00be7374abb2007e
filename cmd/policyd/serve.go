package main

import (
	"context"
	"crypto/sha256"
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
	"sync/atomic"
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

// tokenReread is how often the agent reads --metrics-token-file again: a
// Secret volume is updated in place (a token filled in after the pod
// started, or rotated), within about a minute of the Secret's change.
const tokenReread = 10 * time.Second

// bearerToken is the token /metrics and /verdicts require, read from a file
// and read again every tokenReread. While the file is missing, empty or too
// short, no token is loaded and every request that needs one is refused:
// fail closed. Each change (loaded, unreadable, why) is logged once.
type bearerToken struct {
	path string
	log  *slog.Logger
	// want is the SHA-256 of "Bearer TOKEN", nil while none is loaded;
	// requests are compared by hash, so that neither the token's bytes nor
	// its length show in the time a comparison takes.
	want    atomic.Pointer[[sha256.Size]byte]
	lastErr string
}

// newBearerToken reads path once; run reads it again periodically.
func newBearerToken(path string, log *slog.Logger) *bearerToken {
	t := &bearerToken{path: path, log: log}
	t.reload()
	return t
}

// fixedToken is a bearerToken that never changes (tests).
func fixedToken(tok string) *bearerToken {
	t := &bearerToken{}
	sum := sha256.Sum256([]byte("Bearer " + tok))
	t.want.Store(&sum)
	return t
}

func (t *bearerToken) reload() {
	tok, err := readToken(t.path)
	msg := ""
	if err != nil {
		msg = err.Error()
		t.want.Store(nil)
	} else {
		sum := sha256.Sum256([]byte("Bearer " + tok))
		t.want.Store(&sum)
	}
	if msg == t.lastErr || t.log == nil {
		t.lastErr = msg
		return
	}
	if err != nil {
		t.log.Error("--metrics-token-file unreadable: /metrics and /verdicts refuse every request until it holds a token", "file", t.path, "err", err)
	} else {
		t.log.Info("--metrics-token-file read: /metrics and /verdicts answer requests carrying its token", "file", t.path)
	}
	t.lastErr = msg
}

// run reads the file again every interval until ctx ends.
func (t *bearerToken) run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.reload()
		}
	}
}

// requireBearer wraps h so that it answers only requests carrying
// "Authorization: Bearer TOKEN" (compared in constant time): 401 without
// it, 403 while the agent has no token loaded.
func requireBearer(t *bearerToken, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want := t.want.Load()
		if want == nil {
			http.Error(w, "forbidden: the agent's --metrics-token-file holds no token yet; every request to "+r.URL.Path+" is refused until it does", http.StatusForbidden)
			return
		}
		got := sha256.Sum256([]byte(r.Header.Get("Authorization")))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
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
// one is configured (tok not nil); /healthz and /readyz always without
// (kubelet probes carry no credentials, and they answer only ok or not ok).
func metricsHandler(agentMux http.Handler, tok *bearerToken) http.Handler {
	if tok == nil {
		return agentMux
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", requireBearer(tok, agentMux))
	mux.Handle(verdicts.Path, requireBearer(tok, agentMux))
	mux.Handle("/", agentMux)
	return mux
}

// serveMetrics binds addr and serves h on it with the agent's timeouts,
// guarded by tok as metricsHandler says, until the returned listener is
// shut down.
func serveMetrics(log *slog.Logger, addr string, h http.Handler, tok *bearerToken) (*listener, error) {
	if tok == nil && !isLoopback(addr) {
		log.Warn("/metrics and /verdicts are served without authentication on a non-loopback address; set --metrics-token-file, or keep --metrics-addr on 127.0.0.1", "addr", addr)
	}
	l, err := listen("--metrics-addr", addr, newServer(metricsHandler(h, tok), 30*time.Second))
	if err != nil {
		return nil, err
	}
	l.serve(log)
	log.Info("serving metrics and health", "addr", l.ln.Addr().String(), "metrics_auth", tok != nil)
	return l, nil
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
