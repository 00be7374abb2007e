package compile_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/policy/trace"
	"github.com/policyd/policyd/selectors"
)

func udp(port int) networkingv1.NetworkPolicyPort {
	proto := corev1.ProtocolUDP
	p := intstr.FromInt32(int32(port))
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &p}
}

// portDispatchFixture isolates x/a (10.0.0.1) for ingress with rules on
// single ports, a range and a named port, and x/b (10.0.0.2) for egress
// with two rules on single ports; both on node-1.
func portDispatchFixture() *fixture {
	end := int32(2000)
	rng := tcp(1000)
	rng.EndPort = &end
	fromB := []networkingv1.NetworkPolicyPeer{{PodSelector: podSel(map[string]string{"pod": "b"})}}
	fromC := []networkingv1.NetworkPolicyPeer{{PodSelector: podSel(map[string]string{"pod": "c"}), NamespaceSelector: &metav1.LabelSelector{}}}
	ports := func(p ...networkingv1.NetworkPolicyPort) []networkingv1.NetworkPolicyPort { return p }
	return newFixture(
		withPolicy(policy("x", "in", networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod": "a"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{
				{From: fromB, Ports: ports(tcp(80))},
				{From: fromC, Ports: ports(tcp(80), udp(53))},
				{Ports: ports(tcp(443))},
				{From: fromC, Ports: ports(rng)},
				{From: fromB, Ports: ports(named("http"))},
			},
		})),
		withPolicy(policy("x", "out", networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod": "b"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{
				{To: []networkingv1.NetworkPolicyPeer{{PodSelector: podSel(map[string]string{"pod": "a"})}}, Ports: ports(tcp(80), tcp(443), tcp(1500))},
				{To: []networkingv1.NetworkPolicyPeer{{PodSelector: podSel(map[string]string{"pod": "c"}), NamespaceSelector: &metav1.LabelSelector{}}}, Ports: ports(udp(53))},
			},
		})),
	)
}

// TestCompile_PortDispatch: a group chain with several rules on single
// ports looks the port up once and goes to the rules of that port, then the
// rules for any port; what it allows is what the rules say, packet by
// packet, through the tracer.
func TestCompile_PortDispatch(t *testing.T) {
	t.Parallel()
	rs := portDispatchFixture().compile(t, "node-1")
	a, b, c := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")

	in := rs.Chain(mapTargets(rs, compile.MapIngress4)["10.0.0.1"])
	require.NotNil(t, in)
	var pd *ruleset.PortDispatchRule
	for _, r := range in.Rules {
		if r, ok := r.(*ruleset.PortDispatchRule); ok {
			pd = r
		}
	}
	require.NotNil(t, pd, "a's ingress chain has no port dispatch:\n%s", chainText(rs, in))
	m := rs.Set(pd.Map)
	require.NotNil(t, m)
	assert.False(t, m.Interval, "the port map is a hash map")
	// The range and the named port are not single ports: they stay in the
	// group chain, after the dispatch.
	assert.Equal(t, []string{"tcp . 80", "tcp . 443", "udp . 53"}, elementKeys(m))
	for _, e := range m.Elems() {
		require.Equal(t, ruleset.Goto, e.Verdict.Kind, "entry %s", m.ElementKey(e))
		pc := rs.Chain(e.Verdict.Chain)
		require.NotNil(t, pc, "entry %s", m.ElementKey(e))
		assert.True(t, strings.HasPrefix(pc.Name, "ingress-port-"), pc.Name)
		if e.Port == 443 {
			// Any peer on 443: the port decides, nothing after it counts.
			assert.Equal(t, []string{"accept"}, ruleTexts(pc))
		}
	}

	tests := []struct {
		name      string
		src, dst  netip.Addr
		proto     uint8
		port      uint16
		allowed   bool
		decidedBy string // comment of the rule that decides, "" for a drop
	}{
		{"b to a on tcp 80 (rule 0; b's egress rule 0)", b, a, 6, 80, true, "x/in ingress[0]"},
		{"c to a on tcp 80 (rule 1)", c, a, 6, 80, true, "x/in ingress[1]"},
		{"c to a on udp 53 (rule 1)", c, a, 17, 53, true, "x/in ingress[1]"},
		{"c to a on tcp 443 (rule 2, any peer)", c, a, 6, 443, true, "x/in ingress[2]"},
		{"c to a on tcp 1500 (the range, after a dispatch miss)", c, a, 6, 1500, true, "x/in ingress[3]"},
		{"b to a on tcp 1500: b's egress allows it, no ingress rule does", b, a, 6, 1500, false, ""},
		{"c to a on udp 80: no rule names udp 80", c, a, 17, 80, false, ""},
		{"c to a on tcp 8080", c, a, 6, 8080, false, ""},
		{"b to a on tcp 443 (egress through the dispatch, ingress rule 2)", b, a, 6, 443, true, "x/in ingress[2]"},
		{"b to c on udp 53 (egress rule 1 returns to the base chain)", b, c, 17, 53, true, "x/out egress[1]"},
		{"b to c on tcp 80: egress dispatches tcp 80 to the rule for a only", b, c, 6, 80, false, ""},
		{"b to c on tcp 22: no egress entry, the group chain drops", b, c, 6, 22, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, err := trace.Trace(rs, ruleset.HookPostrouting, trace.Packet{Src: tt.src, Dst: tt.dst, Protocol: tt.proto, Port: tt.port})
			require.NoError(t, err)
			require.Equal(t, tt.allowed, res.Allowed(), "%s", res)
			if tt.decidedBy != "" {
				found := false
				for _, s := range res.Steps {
					found = found || s.Matched && s.Comment == tt.decidedBy
				}
				assert.True(t, found, "no step of rule %q:\n%s", tt.decidedBy, res)
			}
		})
	}
}

// TestCompile_PortDispatchOnlyWithOneVerdict: with allowed packets logged,
// each policy's rules go to its own decider's log chain and the first
// matching rule is the one logged, so a chain whose rules come from two
// policies keeps its written order and makes no port dispatch; a chain of
// one policy (one verdict) still does, and so does every chain with drop
// logging only.
func TestCompile_PortDispatchOnlyWithOneVerdict(t *testing.T) {
	t.Parallel()
	f := portDispatchFixture()
	withPolicy(policy("x", "in2", networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod": "a"}},
		Ingress: []networkingv1.NetworkPolicyIngressRule{
			{From: []networkingv1.NetworkPolicyPeer{{PodSelector: podSel(map[string]string{"pod": "b"})}}, Ports: []networkingv1.NetworkPolicyPort{tcp(81), tcp(82)}},
		},
	}))(f)
	snap, errs := cluster.NewSnapshot(f.namespaces, f.pods, f.policies)
	require.Empty(t, errs)
	dispatches := func(log compile.LogOptions, m, addr string) bool {
		rs, err := (&compile.Compiler{Options: compile.Options{Log: log}}).Compile(selectors.FromSnapshot(snap), "node-1")
		require.NoError(t, err)
		ch := rs.Chain(mapTargets(rs, m)[addr])
		require.NotNil(t, ch, "%s has no entry for %s", m, addr)
		for _, r := range ch.Rules {
			if _, ok := r.(*ruleset.PortDispatchRule); ok {
				return true
			}
		}
		return false
	}
	allowed := compile.LogOptions{Drops: true, Allowed: true, Group: 100, Rate: 10, Burst: 5}
	drops := compile.LogOptions{Drops: true, Group: 100, Rate: 10, Burst: 5}
	assert.False(t, dispatches(allowed, compile.MapIngress4, "10.0.0.1"), "a's ingress (policies in and in2) dispatches with allowed logging")
	assert.True(t, dispatches(allowed, compile.MapEgress4, "10.0.0.2"), "b's egress (policy out only) does not dispatch with allowed logging")
	assert.True(t, dispatches(drops, compile.MapIngress4, "10.0.0.1"), "a's ingress does not dispatch with drop logging")
	assert.True(t, dispatches(compile.LogOptions{}, compile.MapIngress4, "10.0.0.1"), "a's ingress does not dispatch")
}
