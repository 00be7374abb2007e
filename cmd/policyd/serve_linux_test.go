package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	k8sfake "k8s.io/client-go/kubernetes/fake"

	"github.com/policyd/policyd/agent"
	"github.com/policyd/policyd/policy/nft"
	"github.com/policyd/policyd/policy/ruleset"
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
	h := metricsHandler(inner, fixedToken("0123456789abcdef-token"))
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
	assert.Equal(t, 200, metricsCode(metricsHandler(inner, nil)), "no token: open, as before")
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

// refusingBackend fails every Sync while refuse is set, with an error that
// names what a sync error names: policies and addresses.
type refusingBackend struct {
	*nft.Fake
	refuse atomic.Bool
}

const secretDetail = "netlink: refused element 10.0.0.9 of policy shop/db-only"

func (b *refusingBackend) Sync(ctx context.Context, want *ruleset.Ruleset) (nft.SyncStats, error) {
	if b.refuse.Load() {
		return nft.SyncStats{}, errors.New(secretDetail)
	}
	return b.Fake.Sync(ctx, want)
}

// TestListener_WithoutTheTokenOnlyOK: the agent's listener, bound as
// policyd run binds it, with --metrics-token-file set. A process in the
// node's network namespace without the token (a hostNetwork pod; here the
// test process over loopback) gets 401 from /metrics and /verdicts, and
// from /healthz and /readyz only "ok" or "not ok", also while every sync
// fails; the failure is in the log. A token file that is missing refuses
// every request (403) until it appears, then the token opens /metrics.
func TestListener_WithoutTheTokenOnlyOK(t *testing.T) {
	t.Parallel()
	backend := &refusingBackend{Fake: nft.NewFake()}
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	a, err := agent.New(agent.Config{
		NodeName: "node-1", Client: k8sfake.NewClientset(), Backend: backend,
		MinSyncInterval: 10 * time.Millisecond, MaxSyncInterval: 50 * time.Millisecond, UnreadyAfter: 500 * time.Millisecond,
		Logger: log,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("agent.Run: %v", err)
		}
	})
	require.Eventually(t, a.Ready, 10*time.Second, 10*time.Millisecond)

	tokFile := filepath.Join(t.TempDir(), "token")
	tok := newBearerToken(tokFile, log) // not there yet: a Secret not filled in
	go tok.run(ctx, 20*time.Millisecond)
	l, err := serveMetrics(log, "127.0.0.1:0", a.Handler(), tok)
	require.NoError(t, err)
	t.Cleanup(l.shutdown)
	base := "http://" + l.ln.Addr().String()
	get := func(path, token string) (int, string) {
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	const secret = "0123456789abcdef-the-agents-token"

	// No token file: everything guarded is refused, whatever is sent.
	for _, p := range []string{"/metrics", "/verdicts"} {
		for _, tk := range []string{"", secret} {
			code, _ := get(p, tk)
			assert.Equal(t, http.StatusForbidden, code, "%s with %q before the token file exists", p, tk)
		}
	}
	assert.Contains(t, logs.String(), "--metrics-token-file unreadable")

	require.NoError(t, os.WriteFile(tokFile, []byte(secret+"\n"), 0o600))
	require.Eventually(t, func() bool { code, _ := get("/metrics", secret); return code == http.StatusOK }, 5*time.Second, 10*time.Millisecond,
		"the token file appeared and was never read")

	backend.refuse.Store(true)
	a.Trigger()
	require.Eventually(t, func() bool { return a.Status().LastError != nil }, 5*time.Second, 10*time.Millisecond)
	for _, p := range []string{"/metrics", "/verdicts", "/verdicts?verdict=deny"} {
		code, body := get(p, "")
		assert.Equal(t, http.StatusUnauthorized, code, p)
		assert.NotContains(t, body, "10.0.0.9", p)
		code, _ = get(p, "not-the-token-but-long-enough")
		assert.Equal(t, http.StatusUnauthorized, code, p)
	}
	code, body := get("/healthz", "")
	assert.Equal(t, 200, code)
	assert.Equal(t, "ok\n", body)
	code, body = get("/readyz", "")
	assert.Equal(t, "ok\n", body, "%d: a sync failed, for less than --unready-after", code)
	require.Eventually(t, func() bool { code, _ := get("/readyz", ""); return code == http.StatusServiceUnavailable }, 5*time.Second, 10*time.Millisecond)
	code, body = get("/readyz", "")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "not ok\n", body, "the sync error is for the log, not for every process on the node")
	assert.Contains(t, logs.String(), secretDetail, "the log has the detail")
	code, body = get("/metrics", secret)
	assert.Equal(t, 200, code)
	assert.NotContains(t, body, "policyd_sync_failing_seconds 0\n", "the metrics show the failure")
}
