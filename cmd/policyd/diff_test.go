package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDiff_WhatAChangeDeniesAndAllows: removing the examples' frontend and
// db policies (default-deny stays) denies the api its db and everyone the
// frontend Service; removing the Admin CNP (no-scrape-db) allows prometheus
// to scrape db; a new pod is listed
// apart. Denials come first, the exit status says something changed, and
// the filters narrow the list.
func TestDiff_WhatAChangeDeniesAndAllows(t *testing.T) {
	t.Parallel()
	newDir := t.TempDir()
	for _, f := range []string{"namespaces.yaml", "pods.yaml", "services.yaml", "policies/baseline.yaml", "policies/monitoring.yaml", "policies/shop.yaml"} {
		b, err := os.ReadFile(filepath.Join(examples, f))
		require.NoError(t, err)
		if f == "policies/shop.yaml" {
			// Keep only the api policy (the second document): the
			// frontend and db policies go, default-deny stays.
			docs := strings.Split(string(b), "\n---\n")
			require.GreaterOrEqual(t, len(docs), 3)
			b = []byte(docs[1])
		}
		if f == "pods.yaml" {
			b = append(b, []byte(`
---
apiVersion: v1
kind: Pod
metadata: {name: newcomer, namespace: shop, labels: {app: newcomer}}
spec: {nodeName: node-a, containers: [{name: c, image: i}]}
status: {podIP: 10.244.1.99, podIPs: [{ip: 10.244.1.99}]}
`)...)
		}
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(newDir, f)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(newDir, f), b, 0o644))
	}

	out, stderr, code := cli(t, "", "diff", examples, newDir, "-o", "jsonl")
	require.Equal(t, 1, code, "%s%s", out, stderr)
	var changes []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var c map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &c), line)
		changes = append(changes, c)
	}
	require.NotEmpty(t, changes)
	sawAllow, sawDeny := false, false
	for _, c := range changes {
		before, after := c["before"].(bool), c["after"].(bool)
		require.NotEqual(t, before, after, "%v", c)
		if before {
			assert.False(t, sawAllow, "a denial after an allowance: %v", c)
			sawDeny = true
		} else {
			sawAllow = true
		}
		for _, k := range []string{"from", "to", "port", "protocol", "before_policies", "after_policies"} {
			assert.Contains(t, c, k)
		}
	}
	assert.True(t, sawDeny && sawAllow, "the change both denies and allows")
	has := func(from, to string, port float64, before bool, beforePol, afterPol string) {
		t.Helper()
		for _, c := range changes {
			if c["from"] == from && c["to"] == to && c["port"] == port && c["before"] == before {
				if beforePol != "" {
					assert.Contains(t, c["before_policies"], beforePol, "%v", c)
				}
				if afterPol != "" {
					assert.Contains(t, c["after_policies"], afterPol, "%v", c)
				}
				return
			}
		}
		t.Errorf("no change %s -> %s %v (before %v) in:\n%s", from, to, port, before, out)
	}
	has("shop/api", "shop/db", 5432, true, "shop/db", "shop/default-deny")
	has("monitoring/prometheus", "shop/db", 9100, false, "no-scrape-db", "shop/allow-prometheus")
	svc := false
	for _, c := range changes {
		svc = svc || c["to"] == "svc/shop/frontend" && c["before"] == true
	}
	assert.True(t, svc, "the frontend Service's backends are denied now:\n%s", out)
	for _, c := range changes {
		assert.NotEqual(t, "shop/newcomer", c["from"], "a pod on one side only is not compared")
	}

	text, _, _ := cli(t, "", "diff", examples, newDir)
	assert.Contains(t, text, "ALLOWED -> DENIED  shop -> shop")
	assert.Contains(t, text, "pods only in NEW (not compared): shop/newcomer")
	assert.Less(t, strings.Index(text, "ALLOWED -> DENIED"), strings.Index(text, "DENIED -> ALLOWED"))

	narrowed, _, code := cli(t, "", "diff", examples, newDir, "-o", "jsonl", "--to", "app=db")
	assert.Equal(t, 1, code)
	for _, line := range strings.Split(strings.TrimSpace(narrowed), "\n") {
		assert.Contains(t, line, `"to":"shop/db"`)
	}
	assert.Less(t, strings.Count(narrowed, "\n"), strings.Count(out, "\n"))

	_, _, code = cli(t, "", "diff", "--old-f", examples, "--new-f", examples)
	assert.Equal(t, 0, code, "nothing changes")
	_, stderr, code = cli(t, "", "diff", examples)
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "OLD and NEW")
	_, _, code = cli(t, "", "diff", examples, filepath.Join(newDir, "nope"))
	assert.Equal(t, 2, code, "a missing path is an input error")
}
