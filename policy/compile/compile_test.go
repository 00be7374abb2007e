package compile_test

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/manifest"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/policy/trace"
	"github.com/policyd/policyd/selectors"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// fixture is a small cluster: namespaces x and y, pods x/a, x/b on node-1 and
// y/c on node-2, each serving TCP 80 named "http".
type fixture struct {
	namespaces []*corev1.Namespace
	pods       []*corev1.Pod
	policies   []*networkingv1.NetworkPolicy
}

func newFixture(tweaks ...func(*fixture)) *fixture {
	f := &fixture{}
	for _, ns := range []string{"x", "y"} {
		f.namespaces = append(f.namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"team": ns}}})
	}
	f.pods = []*corev1.Pod{
		pod("x", "a", "node-1", "10.0.0.1", "fd00::1"),
		pod("x", "b", "node-1", "10.0.0.2"),
		pod("y", "c", "node-2", "10.0.0.3", "fd00::3"),
	}
	for _, t := range tweaks {
		t(f)
	}
	return f
}

func pod(ns, name, node string, ips ...string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"pod": name}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{
			Name:  "c",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80, Protocol: corev1.ProtocolTCP}},
		}}},
	}
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	return p
}

func withPolicy(np *networkingv1.NetworkPolicy) func(*fixture) {
	return func(f *fixture) { f.policies = append(f.policies, np) }
}

func policy(ns, name string, spec networkingv1.NetworkPolicySpec) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
}

func (f *fixture) compile(t *testing.T, node string) *ruleset.Ruleset {
	t.Helper()
	snap, errs := cluster.NewSnapshot(f.namespaces, f.pods, f.policies)
	require.Empty(t, errs)
	rs, err := compile.Compile(selectors.FromSnapshot(snap), node)
	require.NoError(t, err)
	require.NoError(t, ruleset.Check(rs), "the compiled ruleset breaks its shapes' contract")
	return rs
}

func tcp(port int) networkingv1.NetworkPolicyPort {
	proto := corev1.ProtocolTCP
	p := intstr.FromInt32(int32(port))
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &p}
}

func named(name string) networkingv1.NetworkPolicyPort {
	p := intstr.FromString(name)
	return networkingv1.NetworkPolicyPort{Port: &p}
}

func podSel(l map[string]string) *metav1.LabelSelector { return &metav1.LabelSelector{MatchLabels: l} }

func mapTargets(rs *ruleset.Ruleset, m string) map[string]string {
	out := map[string]string{}
	for _, e := range rs.Set(m).Elements {
		out[e.Addr.String()] = e.Verdict.Chain
	}
	return out
}

func TestCompile_NoPolicies(t *testing.T) {
	t.Parallel()
	rs := newFixture().compile(t, "node-1")
	for _, m := range []string{compile.MapIngress4, compile.MapIngress6, compile.MapEgress4, compile.MapEgress6} {
		require.NotNil(t, rs.Set(m), m)
		assert.Empty(t, rs.Set(m).Elements, "no policy isolates anything, so %s must be empty", m)
	}
	var names []string
	for _, c := range rs.Chains {
		names = append(names, c.Name)
	}
	assert.Equal(t, []string{compile.ChainInput, compile.ChainPostrouting}, names)
}

func TestCompile_DefaultDenyIngress(t *testing.T) {
	t.Parallel()
	rs := newFixture(withPolicy(policy("x", "deny", networkingv1.NetworkPolicySpec{}))).compile(t, "node-1")
	in4 := mapTargets(rs, compile.MapIngress4)
	require.Len(t, in4, 2, "both pods of x on node-1 are isolated for ingress")
	assert.Equal(t, in4["10.0.0.1"], in4["10.0.0.2"], "pods isolated by the same policies share one chain")
	assert.Equal(t, map[string]string{"fd00::1": in4["10.0.0.1"]}, mapTargets(rs, compile.MapIngress6))
	assert.Empty(t, rs.Set(compile.MapEgress4).Elements, "a policy without egress rules or type does not isolate egress")
	ch := rs.Chain(in4["10.0.0.1"])
	require.NotNil(t, ch)
	require.NotEmpty(t, ch.Rules)
	ct, ok := ch.Rules[0].(*ruleset.CtRule)
	require.True(t, ok, "first rule %q", ch.Rules[0].Text())
	invalid := rs.Chain(ct.Verdict.Chain)
	require.NotNil(t, invalid, "invalid packets jump to %q", ct.Verdict.Chain)
	// Node traffic (kubelet probes) passes, in any conntrack state; the rest
	// is dropped.
	assert.Equal(t, []string{"ct state invalid jump " + invalid.Name, "fib saddr type local accept", "drop"}, ruleTexts(ch))
	assert.Equal(t, []string{"fib saddr type local accept", "drop"}, ruleTexts(invalid))
}

func TestCompile_OnlyThisNodesPods(t *testing.T) {
	t.Parallel()
	f := newFixture(withPolicy(policy("y", "deny", networkingv1.NetworkPolicySpec{})))
	assert.Empty(t, mapTargets(f.compile(t, "node-1"), compile.MapIngress4), "y/c runs on node-2")
	assert.Len(t, mapTargets(f.compile(t, "node-2"), compile.MapIngress4), 1)
}

func TestCompile_PeerSetsAreSharedAndComplete(t *testing.T) {
	t.Parallel()
	allowFromA := networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod": "b"}},
		Ingress: []networkingv1.NetworkPolicyIngressRule{{
			From: []networkingv1.NetworkPolicyPeer{{PodSelector: podSel(map[string]string{"pod": "a"})}},
		}},
	}
	other := allowFromA.DeepCopy()
	other.Ingress[0].Ports = []networkingv1.NetworkPolicyPort{tcp(80)}
	rs := newFixture(withPolicy(policy("x", "p1", allowFromA)), withPolicy(policy("x", "p2", *other))).compile(t, "node-1")

	var peer4 []*ruleset.Set
	for _, s := range rs.Sets {
		if strings.HasPrefix(s.Name, "peer4-") {
			peer4 = append(peer4, s)
		}
	}
	require.Len(t, peer4, 1, "two policies with the same peer selector share one set")
	assert.Equal(t, []ruleset.Element{{Addr: netip.MustParseAddr("10.0.0.1")}}, peer4[0].Elems())
	in4 := mapTargets(rs, compile.MapIngress4)
	assert.Equal(t, []string{"10.0.0.2"}, keys(in4))
	ch := rs.Chain(in4["10.0.0.2"])
	require.NotNil(t, ch)
	assert.Contains(t, ruleTexts(ch), "ip saddr @"+peer4[0].Name+" accept")
}

func TestCompile_NamedPortsResolvedPerPod(t *testing.T) {
	t.Parallel()
	f := newFixture(
		func(f *fixture) {
			// x/b serves "http" on 8080 instead of 80.
			f.pods[1].Spec.Containers[0].Ports[0].ContainerPort = 8080
		},
		withPolicy(policy("x", "http", networkingv1.NetworkPolicySpec{
			Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{named("http")}}},
		})),
	)
	rs := f.compile(t, "node-1")
	var named4 *ruleset.Set
	for _, s := range rs.Sets {
		if strings.HasPrefix(s.Name, "named4-") {
			named4 = s
		}
	}
	require.NotNil(t, named4)
	var got []string
	for _, e := range named4.Elems() {
		got = append(got, named4.ElementKey(e))
	}
	assert.Equal(t, []string{"10.0.0.1 . tcp . 80", "10.0.0.2 . tcp . 8080"}, got, "ingress-only named ports resolve on this node's pods only")
}

func TestCompile_IPBlockExceptAndPortRanges(t *testing.T) {
	t.Parallel()
	end := int32(90)
	r := tcp(80)
	r.EndPort = &end
	f := newFixture(withPolicy(policy("x", "egress", networkingv1.NetworkPolicySpec{
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
		Egress: []networkingv1.NetworkPolicyEgressRule{{
			To:    []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/24", Except: []string{"10.0.0.128/25", "10.0.0.2/32"}}}},
			Ports: []networkingv1.NetworkPolicyPort{r, tcp(85), tcp(91)},
		}},
	})))
	rs := f.compile(t, "node-1")
	var cidr, ports *ruleset.Set
	for _, s := range rs.Sets {
		switch {
		case strings.HasPrefix(s.Name, "cidr4-"):
			cidr = s
		case strings.HasPrefix(s.Name, "ports-"):
			ports = s
		}
	}
	require.NotNil(t, cidr)
	require.NotNil(t, ports)
	assert.Equal(t, []string{"10.0.0.0/31", "10.0.0.3-10.0.0.127"}, elementKeys(cidr))
	assert.Equal(t, []string{"tcp . 80-91"}, elementKeys(ports), "overlapping and adjacent ranges merge: the kernel rejects overlaps")
}

func TestCompile_DeterministicWhateverTheInputOrder(t *testing.T) {
	t.Parallel()
	objs, err := manifest.LoadPath("../../examples")
	require.NoError(t, err)
	snap, errs := objs.Snapshot()
	require.Empty(t, errs)
	want, err := compile.Compile(selectors.FromSnapshot(snap), "node-a")
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 5; i++ {
		rng.Shuffle(len(objs.Pods), func(a, b int) { objs.Pods[a], objs.Pods[b] = objs.Pods[b], objs.Pods[a] })
		rng.Shuffle(len(objs.Policies), func(a, b int) { objs.Policies[a], objs.Policies[b] = objs.Policies[b], objs.Policies[a] })
		s, _ := cluster.NewSnapshot(objs.Namespaces, objs.Pods, objs.Policies)
		got, err := compile.Compile(selectors.FromSnapshot(s), "node-a")
		require.NoError(t, err)
		require.Equal(t, want.Text(), got.Text())
	}
}

// TestCompile_Golden pins the compiled text of the shipped examples per node.
// Regenerate with: go test ./policy/compile -run Golden -update
func TestCompile_Golden(t *testing.T) {
	t.Parallel()
	objs, err := manifest.LoadPath("../../examples")
	require.NoError(t, err)
	snap, errs := objs.Snapshot()
	require.Empty(t, errs)
	ix := selectors.FromSnapshot(snap)
	for _, node := range []string{"node-a", "node-b"} {
		rs, err := compile.Compile(ix, node)
		require.NoError(t, err)
		require.NoError(t, ruleset.Check(rs), "the compiled ruleset breaks its shapes' contract")
		path := filepath.Join("testdata", "examples-"+node+".nft")
		if *update {
			require.NoError(t, os.MkdirAll("testdata", 0o755))
			require.NoError(t, os.WriteFile(path, []byte(rs.Text()), 0o644))
		}
		want, err := os.ReadFile(path)
		require.NoError(t, err, "run with -update to create the golden file")
		if diff := cmp.Diff(string(want), rs.Text()); diff != "" {
			t.Errorf("%s: compiled text differs from golden (-want +got):\n%s", node, diff)
		}
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func ruleTexts(c *ruleset.Chain) []string {
	var out []string
	for _, r := range c.Rules {
		out = append(out, r.Text())
	}
	return out
}

// reachableAllows returns the allow rules a packet can meet in group chain
// c: its own, and where it dispatches on the port, those of the chain each
// port goes to (entries in map order), each rule once (by text and comment)
// in the order first met.
func reachableAllows(rs *ruleset.Ruleset, c *ruleset.Chain) []*ruleset.AllowRule {
	var out []*ruleset.AllowRule
	seen := map[string]bool{}
	var walk func(c *ruleset.Chain)
	walk = func(c *ruleset.Chain) {
		for _, r := range c.Rules {
			switch r := r.(type) {
			case *ruleset.AllowRule:
				if k := r.Text() + "#" + r.Comment; !seen[k] {
					seen[k] = true
					out = append(out, r)
				}
			case *ruleset.PortDispatchRule:
				for _, e := range rs.Set(r.Map).Elems() {
					walk(rs.Chain(e.Verdict.Chain))
				}
			case *ruleset.VerdictRule:
				// A port chain's goto to the group's shared end.
				if r.Verdict.Kind == ruleset.Goto && strings.Contains(r.Verdict.Chain, "-rest-") {
					walk(rs.Chain(r.Verdict.Chain))
				}
			}
		}
	}
	walk(c)
	return out
}

// chainText renders group chain c and the chains its port dispatch goes to.
func chainText(rs *ruleset.Ruleset, c *ruleset.Chain) string {
	text := strings.Join(ruleTexts(c), "\n")
	for _, r := range c.Rules {
		if pd, ok := r.(*ruleset.PortDispatchRule); ok {
			for _, e := range rs.Set(pd.Map).Elems() {
				text += fmt.Sprintf("\n%s -> %s:\n  %s", rs.Set(pd.Map).ElementKey(e), e.Verdict.Chain, strings.Join(ruleTexts(rs.Chain(e.Verdict.Chain)), "\n  "))
			}
		}
	}
	return text
}

func elementKeys(s *ruleset.Set) []string {
	var out []string
	for _, e := range s.Elems() {
		out = append(out, s.ElementKey(e))
	}
	return out
}

func TestCompile_PerFamilyChains(t *testing.T) {
	t.Parallel()
	rs := newFixture(withPolicy(policy("x", "web", networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod": "a"}},
		Ingress: []networkingv1.NetworkPolicyIngressRule{{
			From: []networkingv1.NetworkPolicyPeer{
				{PodSelector: podSel(map[string]string{"pod": "b"})},
				{IPBlock: &networkingv1.IPBlock{CIDR: "10.9.0.0/16"}},
			},
			Ports: []networkingv1.NetworkPolicyPort{tcp(80), named("http")},
		}, {
			Ports: []networkingv1.NetworkPolicyPort{tcp(443)},
		}},
	}))).compile(t, "node-1")
	in4, in6 := mapTargets(rs, compile.MapIngress4), mapTargets(rs, compile.MapIngress6)
	c4, c6 := rs.Chain(in4["10.0.0.1"]), rs.Chain(in6["fd00::1"])
	require.NotNil(t, c4)
	require.NotNil(t, c6)
	assert.NotEqual(t, c4.Name, c6.Name, "the families' rules differ, so their chains do")
	for _, tt := range []struct {
		chain   *ruleset.Chain
		fam     int
		allows  int
		foreign string
	}{
		// v4: pod peer on 80, pod peer on http, ipBlock on 80, ipBlock on http, any peer on 443.
		{c4, 4, 5, "ip6 "},
		// v6: no v6 ipBlock, so pod peer on 80 and on http, any peer on 443.
		{c6, 6, 3, "ip "},
	} {
		t.Run(fmt.Sprintf("IPv%d", tt.fam), func(t *testing.T) {
			t.Parallel()
			allows := 0
			for _, ar := range reachableAllows(rs, tt.chain) {
				allows++
				assert.Contains(t, []int{0, tt.fam}, ar.Family, "rule %q", ar.Text())
				assert.NotContains(t, ar.Text(), tt.foreign)
			}
			assert.Equal(t, tt.allows, allows, "allow rules of %s:\n%s", tt.chain.Name, strings.Join(ruleTexts(tt.chain), "\n"))
		})
	}
}

func TestCompile_PortSetsAreHashSetsUnlessARangeNeedsIntervals(t *testing.T) {
	t.Parallel()
	udp := corev1.ProtocolUDP
	end := int32(90)
	rng := tcp(85)
	rng.EndPort = &end
	tests := []struct {
		name     string
		ports    []networkingv1.NetworkPolicyPort
		prefix   string
		interval bool
		want     []string
	}{
		{"single ports, adjacent ones not merged", []networkingv1.NetworkPolicyPort{tcp(81), tcp(80), tcp(80)}, "dports-", false, []string{"tcp . 80", "tcp . 81"}},
		{"a range", []networkingv1.NetworkPolicyPort{tcp(80), rng}, "ports-", true, []string{"tcp . 80", "tcp . 85-90"}},
		{"every port of a protocol", []networkingv1.NetworkPolicyPort{tcp(80), {Protocol: &udp}}, "ports-", true, []string{"tcp . 80", "udp . 0-65535"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rs := newFixture(withPolicy(policy("x", "p", networkingv1.NetworkPolicySpec{
				Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: tt.ports}},
			}))).compile(t, "node-1")
			var ports []*ruleset.Set
			for _, s := range rs.Sets {
				if s.Key == ruleset.KeyProtoPort {
					ports = append(ports, s)
				}
			}
			require.Len(t, ports, 1)
			assert.True(t, strings.HasPrefix(ports[0].Name, tt.prefix), "set %s", ports[0].Name)
			assert.Equal(t, tt.interval, ports[0].Interval)
			assert.Equal(t, tt.want, elementKeys(ports[0]))
		})
	}
}

func TestCompile_AllowRulesCheapestFirstAndRedundantOnesDropped(t *testing.T) {
	t.Parallel()
	end := int32(2000)
	rng := tcp(1000)
	rng.EndPort = &end
	fromB := []networkingv1.NetworkPolicyPeer{{PodSelector: podSel(map[string]string{"pod": "b"})}}
	fromC := []networkingv1.NetworkPolicyPeer{{PodSelector: podSel(map[string]string{"pod": "c"})}}
	block := []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.9.0.0/16"}}}
	ports := func(p ...networkingv1.NetworkPolicyPort) []networkingv1.NetworkPolicyPort { return p }
	tests := []struct {
		name  string
		rules []networkingv1.NetworkPolicyIngressRule
		// want lists the indices of the policy rules whose allow rules the
		// IPv4 chain keeps, in the order a packet can meet them (with a
		// port dispatch: the rules of each port, ports in map order, then
		// the rules for any port).
		want []int
	}{
		{"a rule allowing everything makes the others redundant",
			[]networkingv1.NetworkPolicyIngressRule{{From: fromB, Ports: ports(tcp(80))}, {}, {From: fromC}}, []int{1}},
		{"a port-only rule covers the rules with its ports",
			[]networkingv1.NetworkPolicyIngressRule{{From: fromB, Ports: ports(tcp(80))}, {Ports: ports(tcp(80))}, {From: fromB, Ports: ports(tcp(81))}}, []int{1, 2}},
		{"a peer-only rule covers the rules with its peer",
			[]networkingv1.NetworkPolicyIngressRule{{From: fromB, Ports: ports(tcp(80))}, {From: fromB, Ports: ports(named("http"))}, {From: fromB}, {From: fromC, Ports: ports(tcp(80))}}, []int{3, 2}},
		{"a named-port-only rule covers the rules with its named port",
			[]networkingv1.NetworkPolicyIngressRule{{From: fromB, Ports: ports(named("http"))}, {Ports: ports(named("http"))}}, []int{1}},
		{"cheapest miss first: port only, port hash set, port interval set, peer only, named port",
			[]networkingv1.NetworkPolicyIngressRule{{From: fromC, Ports: ports(named("http"))}, {From: fromB}, {From: block, Ports: ports(rng)}, {From: fromC, Ports: ports(tcp(80))}, {Ports: ports(tcp(443))}},
			// Rules 3 and 4 are on single ports, so the chain dispatches:
			// tcp 80 goes to rule 3, then the rules for any port cheapest
			// first (2, 1, 0); tcp 443 to rule 4, which admits it all.
			[]int{3, 2, 1, 0, 4}},
		{"cheapest miss first without a port dispatch (one rule on a single port)",
			[]networkingv1.NetworkPolicyIngressRule{{From: fromC, Ports: ports(named("http"))}, {From: fromB}, {From: block, Ports: ports(rng)}, {Ports: ports(tcp(443))}},
			[]int{3, 2, 1, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rs := newFixture(withPolicy(policy("x", "p", networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod": "a"}},
				Ingress:     tt.rules,
			}))).compile(t, "node-1")
			ch := rs.Chain(mapTargets(rs, compile.MapIngress4)["10.0.0.1"])
			require.NotNil(t, ch)
			var got []int
			for _, ar := range reachableAllows(rs, ch) {
				var i int
				_, err := fmt.Sscanf(ar.Comment, "x/p ingress[%d]", &i)
				require.NoError(t, err, ar.Comment)
				if !slices.Contains(got, i) {
					got = append(got, i)
				}
			}
			assert.Equal(t, tt.want, got, "chain:\n%s", chainText(rs, ch))
		})
	}
}

// TestCompile_NodeTrafficAndConntrackStates walks postrouting for first,
// invalid and established packets: node traffic (kubelet probes) to an
// isolated pod passes in every state, a pod's invalid packet to an isolated
// pod is dropped, and pods nothing isolates are never touched.
func TestCompile_NodeTrafficAndConntrackStates(t *testing.T) {
	t.Parallel()
	rs := newFixture(withPolicy(policy("x", "deny", networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod": "a"}},
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
	}))).compile(t, "node-1")
	a, b, node := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("192.168.0.1")
	tests := []struct {
		name     string
		pkt      trace.Packet
		accepted bool
	}{
		{"pod to isolated pod", trace.Packet{Src: b, Dst: a}, false},
		{"node to isolated pod", trace.Packet{Src: node, Dst: a, SrcLocal: true}, true},
		{"node to isolated pod, invalid", trace.Packet{Src: node, Dst: a, SrcLocal: true, State: ruleset.CtInvalid}, true},
		{"pod to isolated pod, invalid", trace.Packet{Src: b, Dst: a, State: ruleset.CtInvalid}, false},
		{"pod to isolated pod, established", trace.Packet{Src: b, Dst: a, State: ruleset.CtEstablished}, true},
		{"egress-isolated pod to pod", trace.Packet{Src: a, Dst: b}, false},
		{"egress-isolated pod to pod, invalid", trace.Packet{Src: a, Dst: b, State: ruleset.CtInvalid}, false},
		{"pod to pod nothing isolates, invalid", trace.Packet{Src: b, Dst: netip.MustParseAddr("10.0.0.3"), State: ruleset.CtInvalid}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.pkt.Protocol, tt.pkt.Port = 6, 80
			res, err := trace.Trace(rs, ruleset.HookPostrouting, tt.pkt)
			require.NoError(t, err)
			assert.Equal(t, tt.accepted, res.Allowed(), "path:\n%s", res)
		})
	}
}

// TestCompile_NoUnusedPortSets: a rule whose peers all match nothing (here an
// invalid ipBlock) emits no allow rule, so its ports must leave no set
// behind; and a port set's comment lists its elements without a stray comma.
func TestCompile_NoUnusedPortSets(t *testing.T) {
	t.Parallel()
	f := newFixture(withPolicy(policy("x", "p", networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod": "a"}},
		Ingress: []networkingv1.NetworkPolicyIngressRule{
			{From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "not-a-cidr"}}}, Ports: []networkingv1.NetworkPolicyPort{tcp(8080)}},
			{Ports: []networkingv1.NetworkPolicyPort{tcp(80), tcp(81)}},
		},
	})))
	snap, errs := cluster.NewSnapshot(f.namespaces, f.pods, f.policies)
	require.NotEmpty(t, errs, "the ipBlock is invalid")
	rs, err := compile.Compile(selectors.FromSnapshot(snap), "node-1")
	require.NoError(t, err)
	used := map[string]bool{}
	for _, c := range rs.Chains {
		for _, r := range c.Rules {
			if a, ok := r.(*ruleset.AllowRule); ok {
				used[a.PortSet] = true
			}
		}
	}
	var comments []string
	for _, s := range rs.Sets {
		if s.Key == ruleset.KeyProtoPort {
			assert.True(t, used[s.Name], "port set %s (%s) is not used by any rule", s.Name, s.Comment)
			comments = append(comments, s.Comment)
		}
	}
	assert.Equal(t, []string{"tcp . 80,tcp . 81"}, comments)
}
