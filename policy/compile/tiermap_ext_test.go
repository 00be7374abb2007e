package compile_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/policy/trace"
	"github.com/policyd/policyd/selectors"
)

// TestCompile_TierMapPrefixLookups: an Admin policy's egress Deny and
// Accept rules to networks of three prefix lengths compile to masked hash
// lookups, and with more lengths to the interval map; in both forms, as
// in a /0 catch-all, the first rule covering the destination decides.
func TestCompile_TierMapPrefixLookups(t *testing.T) {
	t.Parallel()
	rule := func(action npav1beta1.ClusterNetworkPolicyRuleAction, cidrs ...string) npav1beta1.ClusterNetworkPolicyEgressRule {
		var nets []npav1beta1.CIDR
		for _, c := range cidrs {
			nets = append(nets, npav1beta1.CIDR(c))
		}
		return npav1beta1.ClusterNetworkPolicyEgressRule{Name: strings.ToLower(string(action)), Action: action, To: []npav1beta1.ClusterNetworkPolicyEgressPeer{{Networks: nets}}}
	}
	deny, accept := npav1beta1.ClusterNetworkPolicyRuleActionDeny, npav1beta1.ClusterNetworkPolicyRuleActionAccept
	base := []npav1beta1.ClusterNetworkPolicyEgressRule{
		rule(deny, "10.0.0.3/32"),
		rule(accept, "10.0.0.0/30"),
		rule(deny, "10.0.0.0/8"),
	}
	cases := []struct {
		name  string
		rules []npav1beta1.ClusterNetworkPolicyEgressRule
		form  string
		want  map[string]bool // destination: allowed
	}{
		{"three lengths", base, "ip daddr & 255.255.255.252 vmap @tmap4-",
			map[string]bool{"10.0.0.3": false, "10.0.0.2": true, "10.0.0.0": true, "10.0.0.4": false, "10.9.9.9": false, "192.168.1.1": true}},
		{"five lengths", append(base[:3:3], rule(accept, "10.0.0.128/25", "192.168.0.0/16")), "interval",
			map[string]bool{"10.0.0.3": false, "10.0.0.2": true, "10.0.0.200": false, "10.9.9.9": false, "192.168.1.1": true, "172.16.0.1": true}},
		{"catch-all", append(base[:2:2], rule(deny, "0.0.0.0/0")), "ip daddr & 255.255.255.252 vmap @tmap4-",
			map[string]bool{"10.0.0.3": false, "10.0.0.1": true, "10.9.9.9": false, "192.168.1.1": false}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := []*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "x", Labels: map[string]string{"team": "x"}}}}
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "a"}, Spec: corev1.PodSpec{NodeName: "node-1"},
				Status: corev1.PodStatus{PodIPs: []corev1.PodIP{{IP: "10.0.0.1"}}}}
			snap, errs := cluster.NewSnapshot(ns, []*corev1.Pod{p}, nil)
			require.Empty(t, errs)
			cnp := &npav1beta1.ClusterNetworkPolicy{
				ObjectMeta: metav1.ObjectMeta{Name: "admin"},
				Spec: npav1beta1.ClusterNetworkPolicySpec{Tier: npav1beta1.AdminTier, Priority: 1,
					Subject: npav1beta1.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{}}, Egress: tc.rules},
			}
			require.Empty(t, snap.AddClusterPolicies([]*npav1beta1.ClusterNetworkPolicy{cnp}, nil))
			rs, err := compile.Compile(selectors.FromSnapshot(snap), "node-1")
			require.NoError(t, err)
			txt := rs.Text()
			if tc.form == "interval" {
				intervals := 0
				for _, s := range rs.Sets {
					if s.Map && strings.HasPrefix(s.Name, "tmap4-") && s.Interval {
						intervals++
					}
				}
				assert.Equal(t, 1, intervals, "an interval tier map:\n%s", txt)
				assert.NotContains(t, txt, "daddr & ")
			} else {
				assert.Contains(t, txt, tc.form)
				for _, s := range rs.Sets {
					assert.False(t, strings.HasPrefix(s.Name, "tmap4-") && strings.HasSuffix(s.Name, "-0"), "a /0 looked up in map %s", s.Name)
				}
			}
			for dst, allowed := range tc.want {
				res, err := trace.Trace(rs, ruleset.HookPostrouting, trace.Packet{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr(dst), Protocol: 6, Port: 80})
				require.NoError(t, err)
				assert.Equal(t, allowed, res.Allowed(), "10.0.0.1 -> %s:\n%s", dst, res)
			}
		})
	}
}
