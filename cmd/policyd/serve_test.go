package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestIsLoopback(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"127.0.0.1:9743": true, "[::1]:9743": true, "localhost:6060": true, "127.0.0.2:1": true,
		":9743": false, "0.0.0.0:9743": false, "[::]:9743": false, "10.0.0.1:9743": false, "garbage": false,
	} {
		assert.Equal(t, want, isLoopback(addr), addr)
	}
}

// TestMetricsHandler_TokenGuardsMetricsAndVerdicts: with a token, /metrics
// and /verdicts answer only requests that carry it; the probes stay open
// for the kubelet.
func TestMetricsHandler_TokenGuardsMetricsAndVerdicts(t *testing.T) {
	t.Parallel()
	inner := http.NewServeMux()
	for _, p := range []string{"/metrics", "/verdicts", "/healthz", "/readyz"} {
		inner.HandleFunc(p, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("served")) })
	}
	h := metricsHandler(inner, "0123456789abcdef-token")
	get := func(path, auth string) int {
		r := httptest.NewRequest("GET", path, nil)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	assert.Equal(t, 401, get("/metrics", ""))
	assert.Equal(t, 401, get("/metrics", "Bearer wrong"))
	assert.Equal(t, 401, get("/metrics", "0123456789abcdef-token"))
	assert.Equal(t, 200, get("/metrics", "Bearer 0123456789abcdef-token"))
	assert.Equal(t, 401, get("/verdicts", ""), "the verdict stream says who talks to whom")
	assert.Equal(t, 401, get("/verdicts?namespace=x", "Bearer wrong"))
	assert.Equal(t, 200, get("/verdicts", "Bearer 0123456789abcdef-token"))
	assert.Equal(t, 200, get("/healthz", ""))
	assert.Equal(t, 200, get("/readyz", ""))
	assert.Equal(t, 200, metricsCode(metricsHandler(inner, "")), "no token: open, as before")
}

func metricsCode(h http.Handler) int {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	return w.Code
}

func TestReadToken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	require.NoError(t, os.WriteFile(short, []byte("abc\n"), 0o600))
	_, err := readToken(short)
	assert.ErrorContains(t, err, "at least 16")
	good := filepath.Join(dir, "good")
	require.NoError(t, os.WriteFile(good, []byte("  0123456789abcdef0123\n"), 0o600))
	tok, err := readToken(good)
	require.NoError(t, err)
	assert.Equal(t, "0123456789abcdef0123", tok)
}

// TestPprofHandler_CapsCaptures: a profile or trace longer than the cap is
// refused before it starts.
func TestPprofHandler_CapsCaptures(t *testing.T) {
	t.Parallel()
	h := pprofHandler()
	for _, path := range []string{"/debug/pprof/profile?seconds=31", "/debug/pprof/trace?seconds=3600", "/debug/pprof/profile?seconds=-1", "/debug/pprof/profile?seconds=x"} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		assert.Equal(t, 400, w.Code, path)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/debug/pprof/heap", nil))
	assert.Equal(t, 200, w.Code)
}

func TestNewServer_HasTimeouts(t *testing.T) {
	t.Parallel()
	s := newServer(http.NotFoundHandler(), 0)
	assert.NotZero(t, s.ReadHeaderTimeout)
	assert.NotZero(t, s.ReadTimeout)
	assert.NotZero(t, s.IdleTimeout)
	assert.NotZero(t, s.MaxHeaderBytes)
}
