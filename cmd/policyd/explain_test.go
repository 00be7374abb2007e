package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newRootCommand()
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func exitCodeOf(err error) int { return exitCode(err) }

func TestExplain_VerdictsAndExitCodes(t *testing.T) {
	t.Parallel()
	out, err := run(t, "explain", "--manifests", "../../examples", "shop/api", "shop/db", "--port", "5432")
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(out, "ALLOWED  shop/api -> shop/db  TCP/5432"), out)
	assert.Contains(t, out, "allows, by shop/")

	out, err = run(t, "explain", "--manifests", "../../examples", "shop/frontend-1", "shop/db", "--port", "5432")
	assert.Equal(t, 1, exitCodeOf(err), "a denied connection exits 1")
	assert.True(t, strings.HasPrefix(out, "DENIED  shop/frontend-1 -> shop/db  TCP/5432"), out)
	assert.Contains(t, out, "nearest miss")

	_, err = run(t, "explain", "--manifests", "../../examples", "shop/nope", "shop/db")
	assert.Equal(t, 2, exitCodeOf(err), "an unknown pod is a usage error")
	_, err = run(t, "explain", "--manifests", "../../examples", "shop/api", "shop/db", "-o", "xml")
	assert.Equal(t, 2, exitCodeOf(err))
}

// TestExplain_JSONAndTraceAgree checks the documented JSON fields and that
// the compiled ruleset's trace agrees with the model for every declared port
// of every pair of the examples.
func TestExplain_JSONAndTraceAgree(t *testing.T) {
	t.Parallel()
	pods := []string{"shop/frontend-1", "shop/frontend-2", "shop/api", "shop/db", "monitoring/prometheus"}
	checked := 0
	for _, src := range pods {
		for _, dst := range pods {
			if src == dst {
				continue
			}
			out, err := run(t, "explain", "--manifests", "../../examples", src, dst, "--trace", "-o", "json")
			require.Contains(t, []int{0, 1}, exitCodeOf(err), "%s -> %s: %v", src, dst, err)
			var res []map[string]any
			require.NoError(t, json.Unmarshal([]byte(out), &res), out)
			for _, r := range res {
				for _, k := range []string{"from", "to", "port", "protocol", "allowed", "egress", "ingress", "trace"} {
					require.Contains(t, r, k)
				}
				tr := r["trace"].(map[string]any)
				assert.Equal(t, true, tr["agrees"], "%s -> %s port %v: trace and model disagree", src, dst, r["port"])
				assert.Equal(t, r["allowed"], tr["allowed"])
				checked++
			}
		}
	}
	assert.Greater(t, checked, 20)
}

func TestExplain_MatrixJSONL(t *testing.T) {
	t.Parallel()
	out, err := run(t, "explain", "--manifests", "../../examples", "--matrix", "-o", "jsonl")
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.NotEmpty(t, lines)
	allowed, denied := 0, 0
	for _, l := range lines {
		var c map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &c), l)
		for _, k := range []string{"from", "to", "port", "protocol", "allowed"} {
			require.Contains(t, c, k, l)
		}
		assert.NotEqual(t, c["from"], c["to"], "a pod to itself is never listed")
		if c["allowed"] == true {
			allowed++
		} else {
			denied++
		}
	}
	assert.Positive(t, allowed)
	assert.Positive(t, denied)
}
