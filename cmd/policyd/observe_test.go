package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"

	"github.com/policyd/policyd/deploy"
	"github.com/policyd/policyd/nflog"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/decider"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/verdicts"
)

var (
	npDeny  = decider.Decider{Kind: decider.KindNetworkPolicy, Direction: "ingress", Verdict: decider.VerdictDeny, Policies: []string{"shop/db", "shop/default-deny"}}
	cnpDeny = decider.Decider{Kind: decider.KindClusterNetworkPolicy, Direction: "ingress", Verdict: decider.VerdictDeny, Tier: "Admin", Policies: []string{"no-scrape-db"}, Rule: decider.Index(0), RuleName: "no-metrics-scrape-of-db", Action: "Deny"}
	npAllow = decider.Decider{Kind: decider.KindNetworkPolicy, Direction: "egress", Verdict: decider.VerdictAllow, Policies: []string{"shop/frontend"}}
)

// observeAgent is an agent's /verdicts on loopback, behind token when it is
// not empty, with a resolver that knows the three deciders above.
func observeAgent(t *testing.T, token string) (*verdicts.Resolver, string) {
	t.Helper()
	r := verdicts.NewResolver("node-1", func(a netip.Addr) (string, string, bool) {
		switch a.String() {
		case "10.240.0.2":
			return "shop", "frontend-1", true
		case "10.240.0.3":
			return "shop", "db", true
		case "10.240.1.4":
			return "monitoring", "prometheus", true
		}
		return "", "", false
	})
	m := map[string]decider.Decider{}
	for _, d := range []decider.Decider{npDeny, cnpDeny, npAllow} {
		m[compile.DeciderID(d)] = d
	}
	r.Learn(&ruleset.Ruleset{Deciders: m})
	var tok *bearerToken
	if token != "" {
		tok = fixedToken(token)
	}
	srv := httptest.NewServer(metricsHandler(r.Handler(), tok))
	t.Cleanup(srv.Close)
	return r, strings.TrimPrefix(srv.URL, "http://")
}

func packet(d decider.Decider, src, dst string, sport, dport uint16, at time.Time) nflog.Packet {
	return nflog.Packet{Time: at, Prefix: compile.DeciderID(d), Flow: nflog.Flow{
		Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Protocol: 6, SrcPort: sport, DstPort: dport}}
}

// syncBuffer is a bytes.Buffer safe to read while observe writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// observe runs policyd observe until its output holds want lines, then
// cancels it (as Ctrl-C does) and returns the lines, stderr and the exit
// status.
func observe(t *testing.T, want int, args ...string) (lines []string, stderr string, code int) {
	t.Helper()
	var out, errOut syncBuffer
	root := newRootCommand()
	root.SetOut(&out)
	root.SetErr(&errOut)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	root.SetContext(ctx)
	done := make(chan int, 1)
	go func() { done <- execute(root, append([]string{"observe"}, args...), &errOut) }()
	deadline := time.After(10 * time.Second)
	for strings.Count(out.String(), "\n") < want {
		select {
		case code = <-done:
			return strings.Split(strings.TrimSpace(out.String()), "\n"), errOut.String(), code
		case <-deadline:
			cancel()
			t.Fatalf("observe printed %q, want %d lines; stderr %q", out.String(), want, errOut.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	code = <-done
	return strings.Split(strings.TrimSpace(out.String()), "\n"), errOut.String(), code
}

// observeFails runs policyd observe, which must end by itself within 5 s
// (an error), and returns its stderr and exit status.
func observeFails(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errOut syncBuffer
	root := newRootCommand()
	root.SetOut(&out)
	root.SetErr(&errOut)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	root.SetContext(ctx)
	code := execute(root, append([]string{"observe"}, args...), &errOut)
	require.NoError(t, ctx.Err(), "observe %v kept streaming instead of failing", args)
	return errOut.String(), code
}

// TestObserve_JSONLinesFilteredByTheAgent: -o json prints one record a
// line, the backlog --since asks for and then live records, as the agent
// filtered them; cancelling (Ctrl-C) exits 0.
func TestObserve_JSONLinesFilteredByTheAgent(t *testing.T) {
	t.Parallel()
	r, addr := observeAgent(t, "")
	now := time.Now()
	r.Handle(packet(npDeny, "10.240.0.2", "10.240.0.3", 40000, 5432, now.Add(-time.Minute)))
	r.Handle(packet(npAllow, "10.240.0.2", "10.240.0.3", 40001, 443, now.Add(-time.Minute))) // only --verdict excludes it
	go func() {
		// Live, once observe is connected.
		for r.Subscribers() == 0 {
			time.Sleep(time.Millisecond)
		}
		r.Handle(packet(cnpDeny, "10.240.1.4", "10.240.0.3", 40002, 9100, time.Now()))
	}()
	lines, stderr, code := observe(t, 2, "--agent-addr", addr, "-n", "shop", "--pod", "db", "--verdict", "deny", "--since", "5m", "-o", "json")
	require.Equal(t, 0, code, stderr)
	require.Len(t, lines, 2)
	var first, second verdicts.Record
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &first))
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &second))
	assert.Equal(t, "shop/frontend-1", first.Src.Key())
	assert.Equal(t, "shop/db", first.Dst.Key())
	assert.Equal(t, []string{"shop/db", "shop/default-deny"}, first.Policies)
	assert.Equal(t, "ClusterNetworkPolicy", second.Kind.String())
	assert.Equal(t, "monitoring/prometheus", second.Src.Key())
	assert.Equal(t, "no-metrics-scrape-of-db", second.RuleName)
	assert.NotContains(t, strings.Join(lines, "\n"), `"verdict":"allow"`, "the allow was filtered out by the agent")
}

// TestObserve_Text is the text line of each kind of record.
func TestObserve_Text(t *testing.T) {
	t.Parallel()
	r, addr := observeAgent(t, "")
	at := time.Date(2026, 12, 1, 11, 27, 15, 666e6, time.Local)
	r.Handle(packet(npDeny, "10.240.0.2", "10.240.0.3", 40000, 5432, at))
	r.Handle(packet(cnpDeny, "10.240.1.4", "10.240.0.3", 40002, 9100, at))
	r.Handle(packet(npAllow, "10.240.0.2", "fd00::9", 40001, 443, at))
	lines, _, code := observe(t, 3, "--agent-addr", addr, "--since", "876000h")
	require.Equal(t, 0, code)
	assert.Equal(t, []string{
		"Dec  1 11:27:15.666: shop/frontend-1:40000 -> shop/db:5432 TCP ingress DENIED by NetworkPolicy shop/db,shop/default-deny (default deny: none of their rules allows it)",
		`Dec  1 11:27:15.666: monitoring/prometheus:40002 -> shop/db:9100 TCP ingress DENIED by Admin ClusterNetworkPolicy no-scrape-db ingress[0] "no-metrics-scrape-of-db" Deny`,
		"Dec  1 11:27:15.666: shop/frontend-1:40001 -> [fd00::9]:443 TCP egress ALLOWED by NetworkPolicy shop/frontend",
	}, lines)
}

// TestObserve_Errors: what goes wrong is said, with the contract's exit
// status: no agent 3, a missing token 2, bad flags 2.
func TestObserve_Errors(t *testing.T) {
	t.Parallel()
	gr, guarded := observeAgent(t, "0123456789abcdef-token")
	gr.Handle(packet(npDeny, "10.240.0.2", "10.240.0.3", 40000, 5432, time.Now()))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	nobody := ln.Addr().String()
	require.NoError(t, ln.Close())
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tok, []byte("0123456789abcdef-token\n"), 0o600))
	bad := filepath.Join(dir, "bad")
	require.NoError(t, os.WriteFile(bad, []byte("wrong-but-long-enough\n"), 0o600))

	for _, tt := range []struct {
		name  string
		args  []string
		code  int
		names []string
	}{
		{"no agent", []string{"--agent-addr", nobody}, 3, []string{"no policyd agent is listening on " + nobody, "--agent-addr"}},
		{"token needed", []string{"--agent-addr", guarded}, 2, []string{"--token-file"}},
		{"wrong token", []string{"--agent-addr", guarded, "--token-file", bad}, 2, []string{"--token-file"}},
		{"bad verdict", []string{"--verdict", "drop"}, 2, []string{`--verdict "drop"`, "allow or deny"}},
		{"bad pod", []string{"--pod", "a/b/c"}, 2, []string{`--pod "a/b/c"`}},
		{"bad output", []string{"-o", "yaml"}, 2, []string{"-o yaml"}},
		{"bad address", []string{"--agent-addr", "localhost"}, 2, []string{"--agent-addr localhost"}},
		{"arguments", []string{"shop/db"}, 2, []string{`"shop/db"`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stderr, code := observeFails(t, tt.args...)
			assert.Equal(t, tt.code, code, stderr)
			for _, n := range tt.names {
				assert.Contains(t, stderr, n)
			}
		})
	}
	lines, stderr, code := observe(t, 1, "--agent-addr", guarded, "--token-file", tok, "--since", "1h")
	assert.Equal(t, 0, code, "with the token the stream opens: %s", stderr)
	assert.Len(t, lines, 1)
}

// TestObserve_FindsTheAgentsTokenFileByDefault: in the agent's container
// (where the DaemonSet mounts the token at agentTokenFile), observe needs
// no --token-file; an explicit one still wins. Not parallel: it moves the
// default path while the parallel tests wait.
func TestObserve_FindsTheAgentsTokenFileByDefault(t *testing.T) {
	gr, guarded := observeAgent(t, "0123456789abcdef-token")
	gr.Handle(packet(npDeny, "10.240.0.2", "10.240.0.3", 40000, 5432, time.Now()))
	dir := t.TempDir()
	saved := agentTokenFile
	t.Cleanup(func() { agentTokenFile = saved })
	agentTokenFile = filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(agentTokenFile, []byte("0123456789abcdef-token\n"), 0o600))

	lines, stderr, code := observe(t, 1, "--agent-addr", guarded, "--since", "1h")
	assert.Equal(t, 0, code, "the mounted token opens the stream: %s", stderr)
	assert.Len(t, lines, 1)

	bad := filepath.Join(dir, "bad")
	require.NoError(t, os.WriteFile(bad, []byte("wrong-but-long-enough\n"), 0o600))
	stderr, code = observeFails(t, "--agent-addr", guarded, "--token-file", bad)
	assert.Equal(t, 2, code, "an explicit --token-file wins over the default: %s", stderr)
}

// TestObserve_DefaultTokenFileIsTheDaemonSets: observe's default token file
// is the one the shipped DaemonSet gives the agent, so `kubectl exec
// ds/policyd -- policyd observe` needs no flags.
func TestObserve_DefaultTokenFileIsTheDaemonSets(t *testing.T) {
	docs, err := deploy.Documents()
	require.NoError(t, err)
	var flag string
	for _, d := range docs {
		if ds, ok := d.Object.(*appsv1.DaemonSet); ok {
			for _, a := range ds.Spec.Template.Spec.Containers[0].Args {
				if v, ok := strings.CutPrefix(a, "--metrics-token-file="); ok {
					flag = v
				}
			}
		}
	}
	assert.Equal(t, agentTokenFile, flag)
}
