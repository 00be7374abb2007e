package explain

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/model"
)

// invalidSnapshot is the fixture after tweak, which must make it invalid,
// plus the ClusterNetworkPolicies cnps.
func invalidSnapshot(t *testing.T, tweak func(*objects), cnps ...*npav1beta1.ClusterNetworkPolicy) *cluster.Snapshot {
	t.Helper()
	o := baseObjects()
	if tweak != nil {
		tweak(o)
	}
	s, errs := cluster.NewSnapshot(o.nss, o.pods, o.policies)
	errs = append(errs, s.AddClusterPolicies(cnps, nil)...)
	require.NotEmpty(t, errs, "the input must be invalid")
	return s
}

// dbPort sets db-ingress's only port entry.
func dbPort(p networkingv1.NetworkPolicyPort) func(*objects) {
	return func(o *objects) { o.policies[0].Spec.Ingress[0].Ports = []networkingv1.NetworkPolicyPort{p} }
}

// dropWeb is an Admin ClusterNetworkPolicy on db whose ingress rule from
// web has the action Drop, which the API does not know.
func dropWeb() *npav1beta1.ClusterNetworkPolicy {
	return &npav1beta1.ClusterNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "drop-web"},
		Spec: npav1beta1.ClusterNetworkPolicySpec{
			Tier: npav1beta1.AdminTier, Priority: 10,
			Subject: npav1beta1.ClusterNetworkPolicySubject{Pods: &npav1beta1.NamespacedPod{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}}},
			Ingress: []npav1beta1.ClusterNetworkPolicyIngressRule{{
				Name: "drop", Action: "Drop",
				From: []npav1beta1.ClusterNetworkPolicyIngressPeer{{Pods: &npav1beta1.NamespacedPod{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}}},
			}},
		},
	}
}

// TestExplain_Invalid: for each invalid input issue 29 found unmarked, the
// result of web -> db TCP/5432 lists the invalid field in JSON
// ("invalid") and text ("invalid:" lines, and a rule judged as Deny for
// its invalid action says so), while the verdict stays the fail-closed
// one the compiled ruleset agrees with.
func TestExplain_Invalid(t *testing.T) {
	t.Parallel()
	tcp, lower := "TCP", "tcp"
	p5432, p80800 := intstr.FromInt32(5432), intstr.FromInt32(80800)
	end := int32(5000)
	tests := []struct {
		name  string
		snap  func(t *testing.T) *cluster.Snapshot
		want  cluster.Invalid
		texts []string
	}{
		{"port out of range", func(t *testing.T) *cluster.Snapshot {
			return invalidSnapshot(t, dbPort(networkingv1.NetworkPolicyPort{Protocol: (*corev1.Protocol)(&tcp), Port: &p80800}))
		}, cluster.Invalid{Kind: "NetworkPolicy", Name: "shop/db-ingress", Field: "spec.ingress[0].ports[0].port", Value: "80800", Message: "Invalid value: 80800: must be between 1 and 65535, inclusive"},
			[]string{"  invalid: NetworkPolicy shop/db-ingress spec.ingress[0].ports[0].port: Invalid value: 80800: must be between 1 and 65535, inclusive\n"}},
		{"protocol in lower case", func(t *testing.T) *cluster.Snapshot {
			return invalidSnapshot(t, dbPort(networkingv1.NetworkPolicyPort{Protocol: (*corev1.Protocol)(&lower), Port: &p5432}))
		}, cluster.Invalid{Kind: "NetworkPolicy", Name: "shop/db-ingress", Field: "spec.ingress[0].ports[0].protocol", Value: "tcp", Message: `Unsupported value: "tcp": supported values: "TCP", "UDP", "SCTP"`},
			[]string{`  invalid: NetworkPolicy shop/db-ingress spec.ingress[0].ports[0].protocol: Unsupported value: "tcp"`}},
		{"endPort below port", func(t *testing.T) *cluster.Snapshot {
			return invalidSnapshot(t, dbPort(networkingv1.NetworkPolicyPort{Protocol: (*corev1.Protocol)(&tcp), Port: &p5432, EndPort: &end}))
		}, cluster.Invalid{Kind: "NetworkPolicy", Name: "shop/db-ingress", Field: "spec.ingress[0].ports[0].endPort", Value: "5000", Message: "Invalid value: 5000: must be greater than or equal to port 5432"},
			[]string{"  invalid: NetworkPolicy shop/db-ingress spec.ingress[0].ports[0].endPort: Invalid value: 5000: must be greater than or equal to port 5432\n"}},
		{"ClusterNetworkPolicy action Drop", func(t *testing.T) *cluster.Snapshot {
			return invalidSnapshot(t, nil, dropWeb())
		}, cluster.Invalid{Kind: "ClusterNetworkPolicy", Name: "drop-web", Field: "spec.ingress[0].action", Value: "Drop", Message: `Unsupported value: "Drop": supported values: "Accept", "Deny", "Pass"`},
			[]string{
				`ingress shop/db: DENIES, by Admin ClusterNetworkPolicy drop-web (priority 10) ingress[0] "drop": Deny (invalid action Drop: judged as Deny)` + "\n",
				`  invalid: ClusterNetworkPolicy drop-web spec.ingress[0].action: Unsupported value: "Drop"`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rs, err := Explain(tt.snap(t), Query{Src: "shop/web", Dst: "shop/db", Port: 5432, Trace: true})
			require.NoError(t, err)
			require.Len(t, rs, 1)
			require.NoError(t, Disagreement(rs), "the compiled ruleset judges the invalid input as the model does")
			assert.False(t, rs[0].Allowed, "invalid input fails closed: web may no longer reach db")

			var buf bytes.Buffer
			require.NoError(t, WriteJSON(&buf, rs))
			var decoded []struct {
				Invalid []cluster.Invalid `json:"invalid"`
			}
			require.NoError(t, json.Unmarshal(buf.Bytes(), &decoded))
			assert.Equal(t, []cluster.Invalid{tt.want}, decoded[0].Invalid, "the JSON's invalid field")

			buf.Reset()
			require.NoError(t, WriteText(&buf, rs))
			for _, s := range tt.texts {
				assert.Contains(t, buf.String(), s)
			}
		})
	}
}

// TestExplain_InvalidBearing: a result lists only the invalid fields that
// bear on it: not those of a policy no end of it involves, nor an invalid
// egress rule of a policy judged only for ingress; and valid input lists
// none.
func TestExplain_InvalidBearing(t *testing.T) {
	t.Parallel()
	bad := intstr.FromInt32(0)
	snap := invalidSnapshot(t, func(o *objects) {
		// db-ingress also has an invalid egress rule (policyTypes Ingress:
		// it bears on no egress verdict).
		o.policies[0].Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: &bad}}}}
		// A policy of another namespace, invalid.
		o.policies = append(o.policies, &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "elsewhere"},
			Spec:       networkingv1.NetworkPolicySpec{Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: &bad}}}}},
		})
	})
	require.Len(t, snap.Invalid(), 2)
	rs, err := Explain(snap, Query{Src: "shop/web", Dst: "shop/db", Port: 5432})
	require.NoError(t, err)
	assert.Empty(t, rs[0].Invalid)
	assert.True(t, rs[0].Allowed)

	rs, err = Explain(snapshot(t), Query{Src: "shop/web", Dst: "shop/db", Port: 5432})
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, WriteJSON(&buf, rs))
	assert.NotContains(t, buf.String(), `"invalid"`, "valid input has no invalid field")
}

// TestMarkedAction: how the text marks a deciding ClusterNetworkPolicy rule
// that is invalid, or whose policy is.
func TestMarkedAction(t *testing.T) {
	t.Parallel()
	ref := model.ClusterRuleRef{Policy: "c", Direction: "ingress", Rule: 1, Action: "Deny"}
	inv := func(field, value string) cluster.Invalid {
		return cluster.Invalid{Kind: "ClusterNetworkPolicy", Name: "c", Field: field, Value: value, Message: "m"}
	}
	tests := []struct {
		name   string
		action string
		inv    []cluster.Invalid
		want   string
	}{
		{"valid", "Deny", nil, "Deny"},
		{"another rule invalid", "Deny", []cluster.Invalid{inv("spec.ingress[0].action", "Drop"), inv("spec.ingress[10].from[0]", "")}, "Deny"},
		{"another policy invalid", "Deny", []cluster.Invalid{{Kind: "ClusterNetworkPolicy", Name: "d", Field: "spec.ingress[1].action", Value: "Drop"}}, "Deny"},
		{"action", "Deny", []cluster.Invalid{inv("spec.ingress[1].from[0]", ""), inv("spec.ingress[1].action", "Drop")}, "Deny (invalid action Drop: judged as Deny)"},
		{"a peer of a Deny rule", "Deny", []cluster.Invalid{inv("spec.ingress[1].from[0].pods.podSelector", "")}, "Deny (invalid spec.ingress[1].from[0].pods.podSelector: the whole rule judged as Deny of every packet)"},
		{"a peer of an Accept rule", "Accept", []cluster.Invalid{inv("spec.ingress[1].from[0]", "")}, "Accept (invalid spec.ingress[1].from[0]: that entry ignored)"},
		{"the tier", "Deny", []cluster.Invalid{inv("spec.tier", "Middle")}, "Deny (invalid spec.tier: the policy judged in its fail-closed form)"},
		{"an egress rule only", "Deny", []cluster.Invalid{inv("spec.egress[1].action", "Drop")}, "Deny"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := ref
			r.Action = tt.action
			assert.Equal(t, tt.want, markedAction(r, tt.inv))
		})
	}
}
