package lint_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/manifest"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/lint"
)

// base: namespace app with pod web (app=web, TCP/80 "http"), namespace
// kube-system with a CoreDNS pod behind Service kube-dns (UDP and TCP 53).
const base = `
apiVersion: v1
kind: Namespace
metadata: {name: app}
---
apiVersion: v1
kind: Namespace
metadata: {name: kube-system}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: app, labels: {app: web}}
spec: {nodeName: n1, containers: [{name: c, ports: [{name: http, containerPort: 80}]}]}
status: {phase: Running, podIP: 10.0.0.1, podIPs: [{ip: 10.0.0.1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec: {nodeName: n1, containers: [{name: c, ports: [{name: dns, containerPort: 53, protocol: UDP}, {name: dns-tcp, containerPort: 53}]}]}
status: {phase: Running, podIP: 10.0.0.53, podIPs: [{ip: 10.0.0.53}]}
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system}
spec:
  clusterIP: 10.96.0.10
  selector: {k8s-app: kube-dns}
  ports: [{name: dns, port: 53, protocol: UDP, targetPort: 53}, {name: dns-tcp, port: 53, protocol: TCP, targetPort: 53}]
`

func snap(t *testing.T, policies string) *cluster.Snapshot {
	t.Helper()
	objs, err := manifest.Decode("in.yaml", []byte(base+"---\n"+policies))
	require.NoError(t, err)
	s, errs := objs.Snapshot()
	require.Empty(t, errs)
	return s
}

const egressDenyAll = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-egress, namespace: app}
spec: {podSelector: {}, policyTypes: [Egress]}
`

const allowDNS = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-dns, namespace: app}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}, podSelector: {matchLabels: {k8s-app: kube-dns}}}]
    ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]
`

func kinds(fs []lint.Finding) map[string][]string {
	out := map[string][]string{}
	for _, f := range fs {
		out[f.Kind] = append(out[f.Kind], f.Object+" "+f.Field)
	}
	return out
}

func TestLint(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		policies string
		kind     string
		want     []string // objects + fields of that kind; nil: none
	}{
		{"egress isolated without DNS", egressDenyAll, lint.KindEgressWithoutDNS, []string{"NetworkPolicy app/deny-egress spec.egress"}},
		{"egress isolated with DNS allowed", egressDenyAll + "---\n" + allowDNS, lint.KindEgressWithoutDNS, nil},
		{"UDP only is not enough", strings.Replace(allowDNS, ", {protocol: TCP, port: 53}", "", 1), lint.KindEgressWithoutDNS, []string{"NetworkPolicy app/allow-dns spec.egress"}},
		{"policy selecting no pod", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: app}\nspec: {podSelector: {matchLabels: {app: gone}}}\n",
			lint.KindSelectsNoPod, []string{"NetworkPolicy app/p spec.podSelector"}},
		{"policy selecting a pod", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: app}\nspec: {podSelector: {matchLabels: {app: web}}}\n",
			lint.KindSelectsNoPod, nil},
		{"peer selecting nothing", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: app}\nspec: {podSelector: {}, ingress: [{from: [{podSelector: {matchLabels: {app: gone}}}]}]}\n",
			lint.KindPeerSelectsNothing, []string{"NetworkPolicy app/p spec.ingress[0].from[0]"}},
		{"peer selecting a pod", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: app}\nspec: {podSelector: {}, ingress: [{from: [{podSelector: {matchLabels: {app: web}}}]}]}\n",
			lint.KindPeerSelectsNothing, nil},
		{"named port nobody serves", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: app}\nspec: {podSelector: {}, ingress: [{ports: [{port: https}]}]}\n",
			lint.KindNamedPortUnserved, []string{"NetworkPolicy app/p spec.ingress[0].ports[0]"}},
		{"named port served", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: app}\nspec: {podSelector: {}, ingress: [{ports: [{port: http}]}]}\n",
			lint.KindNamedPortUnserved, nil},
		{"rule shadowed by an allow-all rule", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: app}\nspec: {podSelector: {}, ingress: [{}, {from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 80}]}]}\n",
			lint.KindShadowedRule, []string{"NetworkPolicy app/p spec.ingress[1]"}},
		{"rules that do not cover each other", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: app}\nspec: {podSelector: {}, ingress: [{ports: [{port: 81}]}, {from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 80}]}]}\n",
			lint.KindShadowedRule, nil},
		{"CNP rule after a catch-all", "apiVersion: policy.networking.k8s.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {name: c}\nspec: {tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Accept, from: [{namespaces: {}}]}, {action: Deny, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {number: 80}}}]}]}\n",
			lint.KindShadowedRule, []string{"ClusterNetworkPolicy c spec.ingress[1]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := kinds(lint.Lint(snap(t, tt.policies), lint.Options{}))[tt.kind]
			assert.Equal(t, tt.want, got, "all findings: %v", lint.Lint(snap(t, tt.policies), lint.Options{}))
		})
	}
}

func TestDNSWarning(t *testing.T) {
	t.Parallel()
	s := snap(t, egressDenyAll)
	w := lint.DNSWarning(s, s.Pod("app/web"), lint.Options{})
	assert.Contains(t, w, "pod app/web cannot reach cluster DNS (service kube-system/kube-dns) on TCP/53, UDP/53")
	assert.Contains(t, w, "app/deny-egress")
	ok := snap(t, egressDenyAll+"---\n"+allowDNS)
	assert.Empty(t, lint.DNSWarning(ok, ok.Pod("app/web"), lint.Options{}))
	// An address given instead of the Service: no pod, nothing allows it.
	assert.Contains(t, lint.DNSWarning(ok, ok.Pod("app/web"), lint.Options{DNSAddrs: []netip.Addr{netip.MustParseAddr("10.0.0.99")}}), "UDP/53")
}

// TestLint_Quarantined: a policy over the budget is a quarantined finding
// naming the node, the figure and the budget; within the budget, none.
func TestLint_Quarantined(t *testing.T) {
	t.Parallel()
	var peers []string
	for i := range 30 {
		peers = append(peers, fmt.Sprintf("{ipBlock: {cidr: 10.%d.0.0/16}}", 100+i))
	}
	big := "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: big, namespace: app}\nspec: {podSelector: {}, ingress: [{from: [" + strings.Join(peers, ", ") + "]}]}\n"
	s := snap(t, big)
	tight := compile.Budget{Object: compile.Cost{Rules: 20, Elements: 1000, Chains: 100}}
	fs := kinds(lint.Lint(s, lint.Options{Budget: tight}))[lint.KindQuarantined]
	assert.Equal(t, []string{"NetworkPolicy app/big "}, fs)
	for _, f := range lint.Lint(s, lint.Options{Budget: tight}) {
		if f.Kind == lint.KindQuarantined {
			assert.Contains(t, f.Message, "node n1")
			assert.Contains(t, f.Message, "over the per-object budget of 20")
		}
	}
	assert.Empty(t, kinds(lint.Lint(s, lint.Options{Budget: compile.DefaultBudget(0)}))[lint.KindQuarantined])
}

// invalidInputs are the invalid objects issue 29 found invisible to lint:
// a port out of range, a protocol in lower case, an endPort below port (on
// a NetworkPolicy selecting app/web), a ClusterNetworkPolicy action Drop,
// and (beside them) a pod's containerPort out of range.
var invalidInputs = []struct {
	name, yaml, object, field, message string
}{
	{"port out of range", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: app}\nspec: {podSelector: {}, ingress: [{ports: [{port: 80800}]}]}\n",
		"NetworkPolicy app/p", "spec.ingress[0].ports[0].port", "Invalid value: 80800: must be between 1 and 65535"},
	{"protocol in lower case", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: app}\nspec: {podSelector: {}, ingress: [{ports: [{protocol: tcp, port: 80}]}]}\n",
		"NetworkPolicy app/p", "spec.ingress[0].ports[0].protocol", `Unsupported value: "tcp"`},
	{"endPort below port", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: app}\nspec: {podSelector: {}, egress: [{ports: [{port: 90, endPort: 85}]}]}\n",
		"NetworkPolicy app/p", "spec.egress[0].ports[0].endPort", "Invalid value: 85: must be greater than or equal to port 90"},
	{"ClusterNetworkPolicy action Drop", "apiVersion: policy.networking.k8s.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {name: c}\nspec: {tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Drop, from: [{namespaces: {}}]}]}\n",
		"ClusterNetworkPolicy c", "spec.ingress[0].action", `Unsupported value: "Drop"`},
	{"pod containerPort out of range", "apiVersion: v1\nkind: Pod\nmetadata: {name: big, namespace: app}\nspec: {nodeName: n1, containers: [{name: c, ports: [{containerPort: 70000}]}]}\nstatus: {podIP: 10.0.0.7}\n",
		"Pod app/big", "spec.containers[0].ports[0].containerPort", "Invalid value: 70000"},
}

// invalidSnap is snap for input that is expected to be invalid.
func invalidSnap(t *testing.T, yaml string) *cluster.Snapshot {
	t.Helper()
	objs, err := manifest.Decode("in.yaml", []byte(base+"---\n"+yaml))
	require.NoError(t, err)
	s, errs := objs.Snapshot()
	require.NotEmpty(t, errs, "the input must be invalid")
	return s
}

// TestLint_Invalid: every invalid object and field is a finding of kind
// invalid naming the object and the field path (issue 29: lint said "no
// findings" for each of these).
func TestLint_Invalid(t *testing.T) {
	t.Parallel()
	for _, tt := range invalidInputs {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got []lint.Finding
			for _, f := range lint.Lint(invalidSnap(t, tt.yaml), lint.Options{}) {
				if f.Kind == lint.KindInvalid {
					got = append(got, f)
				}
			}
			require.Len(t, got, 1, "invalid findings")
			assert.Equal(t, tt.object, got[0].Object)
			assert.Equal(t, tt.field, got[0].Field)
			assert.Contains(t, got[0].Message, tt.message)
			assert.Contains(t, got[0].String(), tt.object+": "+tt.field+": ")
		})
	}
	// Valid input has no invalid finding.
	assert.Empty(t, kinds(lint.Lint(snap(t, allowDNS), lint.Options{}))[lint.KindInvalid])
}
