package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// invalidBase: shop/web (app=web, TCP/80) and shop/client on node n1.
const invalidBase = `apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {nodeName: n1, containers: [{name: c, ports: [{containerPort: 80}]}]}
status: {podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {app: client}}
spec: {nodeName: n1, containers: [{name: c}]}
status: {podIP: 10.0.0.3}
---
`

// webPolicy is a NetworkPolicy on web admitting client on ports.
func webPolicy(ports string) string {
	return `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [` + ports + `]
`
}

// TestLintAndExplain_InvalidInput: the four invalid inputs issue 29 found
// invisible (lint said "no findings" and exited 0; explain's JSON had no
// field for them; a Drop action showed as a plain Deny) are each a lint
// finding naming the object and field with exit status 1, an entry of
// explain's JSON field invalid, and a line of its text.
func TestLintAndExplain_InvalidInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml string
		finding    string // lint's text line, without its kind
		field      string // the JSON invalid entry's field
		explain    []string
	}{
		{"port out of range", webPolicy("{port: 80800}"),
			"NetworkPolicy shop/web: spec.ingress[0].ports[0].port: Invalid value: 80800: must be between 1 and 65535, inclusive",
			"spec.ingress[0].ports[0].port",
			[]string{"  invalid: NetworkPolicy shop/web spec.ingress[0].ports[0].port: Invalid value: 80800"}},
		{"protocol in lower case", webPolicy("{protocol: tcp, port: 80}"),
			`NetworkPolicy shop/web: spec.ingress[0].ports[0].protocol: Unsupported value: "tcp"`,
			"spec.ingress[0].ports[0].protocol",
			[]string{`  invalid: NetworkPolicy shop/web spec.ingress[0].ports[0].protocol: Unsupported value: "tcp"`}},
		{"endPort below port", webPolicy("{port: 90, endPort: 80}"),
			"NetworkPolicy shop/web: spec.ingress[0].ports[0].endPort: Invalid value: 80: must be greater than or equal to port 90",
			"spec.ingress[0].ports[0].endPort",
			[]string{"  invalid: NetworkPolicy shop/web spec.ingress[0].ports[0].endPort: Invalid value: 80"}},
		{"ClusterNetworkPolicy action Drop", `apiVersion: policy.networking.k8s.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: drop-client}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {}}
  ingress:
  - name: drop-it
    action: Drop
    from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: client}}}}]
`,
			`ClusterNetworkPolicy drop-client: spec.ingress[0].action: Unsupported value: "Drop"`,
			"spec.ingress[0].action",
			[]string{
				`ingress shop/web: DENIES, by Admin ClusterNetworkPolicy drop-client (priority 10) ingress[0] "drop-it": Deny (invalid action Drop: judged as Deny)`,
				`  invalid: ClusterNetworkPolicy drop-client spec.ingress[0].action: Unsupported value: "Drop"`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "in.yaml")
			require.NoError(t, os.WriteFile(path, []byte(invalidBase+tt.yaml), 0o644))

			out, errOut, code := cli(t, "", "lint", "-f", path)
			assert.Equal(t, 1, code, "an invalid object is a finding: exit 1\n%s%s", out, errOut)
			assert.Contains(t, out, tt.finding)
			assert.Contains(t, out, "[invalid]")
			assert.NotContains(t, out, "no findings")
			assert.NotContains(t, errOut, "invalid:", "lint reports invalid objects as findings, not again on stderr")

			out, _, code = cli(t, "", "lint", "-f", path, "-o", "json")
			assert.Equal(t, 1, code)
			var findings []struct{ Kind, Object, Field string }
			require.NoError(t, json.Unmarshal([]byte(out), &findings), out)
			require.NotEmpty(t, findings)
			assert.Equal(t, "invalid", findings[0].Kind)
			assert.Equal(t, tt.field, findings[0].Field)

			out, _, code = cli(t, "", "explain", "-f", path, "shop/client", "shop/web", "--port", "80", "-o", "json", "--trace")
			assert.Equal(t, 1, code, "invalid input fails closed: denied\n%s", out)
			var results []struct {
				Allowed bool
				Trace   struct{ Agrees bool }
				Invalid []struct{ Kind, Name, Field, Message string }
			}
			require.NoError(t, json.Unmarshal([]byte(out), &results), out)
			require.Len(t, results, 1)
			assert.True(t, results[0].Trace.Agrees, "the compiled ruleset agrees with the model")
			require.Len(t, results[0].Invalid, 1, out)
			assert.Equal(t, tt.field, results[0].Invalid[0].Field)

			out, _, _ = cli(t, "", "explain", "-f", path, "shop/client", "shop/web", "--port", "80")
			for _, s := range tt.explain {
				assert.Contains(t, out, s)
			}
		})
	}
}
