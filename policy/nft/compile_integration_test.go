package nft

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/cluster/clustertest"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/selectors"
)

func clusterPod(ns, name, node string, ips ...string) *corev1.Pod {
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

// compiledRuleset runs the real compiler on a small cluster (peer pods across
// namespaces, ipBlock with except, port ranges, single-port hash sets, named
// ports, both families, default deny) and returns node-1's ruleset: base
// chains, ingress and egress group chains and the invalid chain.
func compiledRuleset(t *testing.T) *ruleset.Ruleset {
	t.Helper()
	nss := []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: "x", Labels: map[string]string{"team": "x"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "y", Labels: map[string]string{"team": "y"}}},
	}
	pods := []*corev1.Pod{
		clusterPod("x", "a", "node-1", "10.0.0.1", "fd00::1"),
		clusterPod("x", "b", "node-1", "10.0.0.2"),
		clusterPod("y", "c", "node-2", "10.0.0.3", "fd00::3"),
	}
	tcp := corev1.ProtocolTCP
	udp := corev1.ProtocolUDP
	p80 := intstr.FromInt32(80)
	pname := intstr.FromString("http")
	end := int32(2000)
	p1000 := intstr.FromInt32(1000)
	p443, p53 := intstr.FromInt32(443), intstr.FromInt32(53)
	pols := []*networkingv1.NetworkPolicy{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "web"}, Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod": "a"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "y"}}}, {IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.1.0.0/16"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p80}, {Port: &pname}, {Protocol: &udp, Port: &p1000, EndPort: &end}},
			}},
			Egress: []networkingv1.NetworkPolicyEgressRule{{
				To:    []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"pod": "c"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: &pname}},
			}, {To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "::/0"}}}}, {
				// Single ports only: a plain (non-interval) port set.
				To:    []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p443}, {Protocol: &udp, Port: &p53}},
			}},
		}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "deny"}, Spec: networkingv1.NetworkPolicySpec{
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		}},
	}
	snap, errs := cluster.NewSnapshot(nss, pods, pols)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	rs, err := compile.Compile(selectors.FromSnapshot(snap), "node-1")
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// TestLower_CompiledRulesetMatchesNftText runs the real compiler on a small
// cluster (peer pods across namespaces, ipBlock with except, port ranges,
// single-port hash sets, named ports, both families, default deny) and
// requires the lowering to equal nft -f of its text, and a table loaded by
// nft -f to be adopted with no operations.
func TestLower_CompiledRulesetMatchesNftText(t *testing.T) {
	requireTextEqualsNetlink(t, compiledRuleset(t))
}

// requireTextEqualsNetlink applies rs as `nft -f` text in one namespace and
// through the netlink backend in another, requires equal listings and rule
// expressions, and requires a backend to adopt the text table with 0 ops.
func requireTextEqualsNetlink(t *testing.T, rs *ruleset.Ruleset) {
	t.Helper()
	textNS, _ := kernelNS(t)
	ns, b := kernelNS(t)
	applyText(t, textNS, rs.Text())
	if _, err := b.Sync(context.Background(), rs); err != nil {
		t.Fatal(err)
	}
	if got, exp := listTable(t, ns), listTable(t, textNS); got != exp {
		t.Fatalf("nft list differs (-nft -f +netlink):\n%s", lineDiff(exp, got))
	}
	if gotX, expX := ruleExprs(t, ns), ruleExprs(t, textNS); gotX != expX {
		t.Fatalf("rule expressions differ (-nft -f +netlink):\n%s", lineDiff(expX, gotX))
	}
	st, err := newBackendIn(t, textNS).Sync(context.Background(), rs)
	if err != nil || st.Ops != 0 {
		t.Fatalf("adopting the nft -f table: %+v, %v; want 0 ops", st, err)
	}
}

// TestLower_CompiledClusterPoliciesMatchNftText: a ruleset compiled from
// random ClusterNetworkPolicies (tier chains: accept, drop, return and goto
// verdicts, node and network peers, tier maps keyed by address and by
// address, protocol and port, address ones masked to a prefix length) lists
// the same whether applied as text
// or through netlink, and the netlink backend adopts the text table with
// 0 operations.
func TestLower_CompiledClusterPoliciesMatchNftText(t *testing.T) {
	var rs *ruleset.Ruleset
	for seed := uint64(1); seed < 200 && rs == nil; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		snap, _ := clustertest.Random(rng, clustertest.Options{IPv6: true, MaxClusterPolicies: 6})
		cand, err := compile.Compile(selectors.FromSnapshot(snap), "node-1")
		if err != nil {
			t.Fatal(err)
		}
		txt := cand.Text()
		tierMaps := strings.Contains(txt, " . meta l4proto . th dport vmap @tmap") &&
			(strings.Contains(txt, "saddr vmap @tmap") || strings.Contains(txt, "daddr vmap @tmap")) && strings.Contains(txt, ": goto ")
		exact, interval := portedTierMapForms(cand)
		masked := strings.Contains(txt, "addr & ")
		if strings.Contains(txt, " goto ") && strings.Contains(txt, "-baseline-") && tierMaps && exact && interval && masked {
			rs = cand
		}
	}
	if rs == nil {
		t.Fatal("no seed compiled to a ruleset with goto, a baseline chain, tier maps of both kinds with goto entries, ported ones both exact (hashed) and with intervals, and address ones looked up masked: the generator changed")
	}
	requireTextEqualsNetlink(t, rs)
}

// TestLower_CompiledLoggedRulesetMatchesNftText: a ruleset compiled from
// random ClusterNetworkPolicies and NetworkPolicies with drop and accept
// logging on (log chains, gotos to them) lists the same whether applied as
// text or through netlink, and is adopted with 0 operations.
func TestLower_CompiledLoggedRulesetMatchesNftText(t *testing.T) {
	cc := &compile.Compiler{Options: compile.Options{Log: compile.LogOptions{Drops: true, Allowed: true, Group: 100, Rate: 10, Burst: 5}}}
	var rs *ruleset.Ruleset
	for seed := uint64(1); seed < 200 && rs == nil; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		snap, _ := clustertest.Random(rng, clustertest.Options{IPv6: true, MaxClusterPolicies: 6})
		cand, err := cc.Compile(selectors.FromSnapshot(snap), "node-1")
		if err != nil {
			t.Fatal(err)
		}
		if txt := cand.Text(); strings.Contains(txt, "ct state new counter") && strings.Contains(txt, "-tier-") && strings.Contains(txt, "chain ingress-") {
			rs = cand
		}
	}
	if rs == nil {
		t.Fatal("no seed compiled to a ruleset with accept logging, a tier chain and a group chain")
	}
	textNS, _ := kernelNS(t)
	ns, b := kernelNS(t)
	applyText(t, textNS, rs.Text())
	if _, err := b.Sync(context.Background(), rs); err != nil {
		t.Fatal(err)
	}
	if got, exp := listTable(t, ns), listTable(t, textNS); got != exp {
		t.Fatalf("nft list differs (-nft -f +netlink):\n%s", lineDiff(exp, got))
	}
	b2 := newBackendIn(t, textNS)
	if st, err := b2.Sync(context.Background(), rs); err != nil || st.Ops != 0 {
		t.Fatalf("adopting the nft -f table: %+v, %v; want 0 ops", st, err)
	}
}

// portedTierMapForms reports whether rs has a tier map keyed by address,
// protocol and port without intervals (all its rules' peers pods or nodes on
// single ports: a hash table in the kernel) and one with intervals.
func portedTierMapForms(rs *ruleset.Ruleset) (exact, interval bool) {
	for _, s := range rs.Sets {
		if !s.Map || !strings.HasPrefix(s.Name, "tmap") || !s.Key.HasPort() || s.Len() == 0 {
			continue
		}
		if s.Interval {
			interval = true
		} else {
			exact = true
		}
	}
	return exact, interval
}
