package nft

import (
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/selectors"
)

// TestLower_KernelRefusedFormsNeverReachTheTable: policies, pods and Nodes
// written in every address form the API server (or a kubelet writing its
// Node's status) accepts but the kernel would refuse or misread (an
// IPv4-mapped ipBlock or networks CIDR in hex, a zoned pod IP and Node
// address, mapped pod IPs dotted and hex, legacy leading zeros, mapped and
// zero-padded pod CIDRs) compile to a table that nft -f and netlink both
// load, alike; each refused value is reported naming its object and field.
// On 58ba857 the hex-mapped ipBlock became an invalid prefix (nft's
// "invalid IP") and every sync of every node with such a pod failed.
func TestLower_KernelRefusedFormsNeverReachTheTable(t *testing.T) {
	nss := []*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, {ObjectMeta: metav1.ObjectMeta{Name: "y"}}}
	pods := []*corev1.Pod{
		clusterPod("x", "a", "node-1", "10.0.0.1", "fd00::1"),
		clusterPod("x", "zoned", "node-1", "10.0.0.9", "fd00::9%eth0"),
		clusterPod("x", "hexmapped", "node-1", "::ffff:a00:7"),
		clusterPod("y", "dotmapped", "node-2", "::ffff:10.0.0.5", "fd00::5"),
		clusterPod("y", "zeros", "node-2", "010.000.000.008"),
		clusterPod("y", "onlyzoned", "node-2", "fd00::6%1"),
	}
	for _, p := range pods {
		p.Status.Phase = corev1.PodRunning
	}
	ipBlock := func(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
		return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
	}
	pols := []*networkingv1.NetworkPolicy{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "hex"},
		Spec: networkingv1.NetworkPolicySpec{
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
				ipBlock("::ffff:a00:0/104"), ipBlock("::ffff:0:0/96"), ipBlock("fd00::/16", "::ffff:a00:0/120"),
				ipBlock("010.1.0.0/16", "10.1.2.3/24"), ipBlock("::ffff:0:0/80"),
				{PodSelector: &metav1.LabelSelector{}, NamespaceSelector: &metav1.LabelSelector{}},
			}}},
			Egress: []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{ipBlock("::ffff:10.0.0.0/104"), ipBlock("fd00::%eth0/64")}}},
		},
	}}
	all := metav1.LabelSelector{}
	cnps := []*npav1beta1.ClusterNetworkPolicy{{
		ObjectMeta: metav1.ObjectMeta{Name: "nets"},
		Spec: npav1beta1.ClusterNetworkPolicySpec{
			Tier: npav1beta1.AdminTier, Priority: 5,
			Subject: npav1beta1.ClusterNetworkPolicySubject{Namespaces: &all},
			Egress: []npav1beta1.ClusterNetworkPolicyEgressRule{{
				Action: npav1beta1.ClusterNetworkPolicyRuleActionAccept,
				To:     []npav1beta1.ClusterNetworkPolicyEgressPeer{{Networks: []npav1beta1.CIDR{"::ffff:a00:0/104"}}, {Networks: []npav1beta1.CIDR{"10.2.0.0/16", "fd00:2::/32"}}, {Nodes: &all}},
			}, {
				Action: npav1beta1.ClusterNetworkPolicyRuleActionDeny,
				To:     []npav1beta1.ClusterNetworkPolicyEgressPeer{{Pods: &npav1beta1.NamespacedPod{}}},
			}},
		},
	}}
	nodes := []*corev1.Node{{
		ObjectMeta: metav1.ObjectMeta{Name: "node-1"},
		Spec:       corev1.NodeSpec{PodCIDRs: []string{"::ffff:a00:0/120", "fd00::/120"}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: "fd00:100::1%eth0"}, {Type: corev1.NodeInternalIP, Address: "10.100.0.1"},
			{Type: corev1.NodeExternalIP, Address: "::ffff:a64:2"},
		}},
	}, {
		ObjectMeta: metav1.ObjectMeta{Name: "node-2"},
		Spec:       corev1.NodeSpec{PodCIDRs: []string{"010.000.001.000/24", "fd00:0:0:1::%eth0/64"}},
		Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "010.100.000.003"}}},
	}}

	snap, errs := cluster.NewSnapshot(nss, pods, pols)
	errs = append(errs, snap.AddClusterPolicies(cnps, nodes)...)
	var msgs []string
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	all6 := strings.Join(msgs, "\n")
	for _, want := range []string{
		`pod x/zoned: status.podIPs[1]: Invalid value: "fd00::9%eth0"`,
		`pod y/onlyzoned: status.podIPs[0]: Invalid value: "fd00::6%1"`,
		`networkpolicy x/hex: spec.ingress[0].from[0].ipBlock.cidr: Invalid value: "::ffff:a00:0/104"`,
		`networkpolicy x/hex: spec.ingress[0].from[1].ipBlock.cidr: Invalid value: "::ffff:0:0/96"`,
		`networkpolicy x/hex: spec.ingress[0].from[2].ipBlock.except[0]: Invalid value: "::ffff:a00:0/120"`,
		`networkpolicy x/hex: spec.egress[0].to[0].ipBlock.cidr: Invalid value: "::ffff:10.0.0.0/104"`,
		`networkpolicy x/hex: spec.egress[0].to[1].ipBlock.cidr: Invalid value: "fd00::%eth0/64"`,
		`clusternetworkpolicy nets: spec.egress[0].to[0].networks[0]: Invalid value: "::ffff:a00:0/104"`,
		`node node-1: status.addresses[0].address: Invalid value: "fd00:100::1%eth0"`,
		`node node-2: spec.podCIDRs[1]: Invalid value: "fd00:0:0:1::%eth0/64"`,
		// node-1's pod CIDRs (the mapped one read as 10.0.0.0/24) make
		// their first addresses its gateways, and pod x/a holds both.
		`node node-1: gateway address 10.0.0.1 (from its annotations or pod CIDRs) is pod x/a's address`,
		`node node-1: gateway address fd00::1 (from its annotations or pod CIDRs) is pod x/a's address`,
	} {
		if !strings.Contains(all6, want) {
			t.Errorf("no error names %s; got:\n%s", want, all6)
		}
	}
	if len(msgs) != 12 {
		t.Errorf("%d conversion errors, want the 12 above:\n%s", len(msgs), all6)
	}
	want := map[string][]string{
		"x/a": {"10.0.0.1", "fd00::1"}, "x/zoned": {"10.0.0.9"}, "x/hexmapped": {"10.0.0.7"},
		"y/dotmapped": {"10.0.0.5", "fd00::5"}, "y/zeros": {"10.0.0.8"}, "y/onlyzoned": nil,
	}
	for key, ips := range want {
		var got []string
		for _, a := range snap.Pod(key).IPs {
			got = append(got, a.String())
		}
		if strings.Join(got, ",") != strings.Join(ips, ",") {
			t.Errorf("pod %s has addresses %v, want %v", key, got, ips)
		}
	}

	var podNet []netip.Prefix
	for _, n := range snap.Nodes {
		podNet = append(podNet, n.PodCIDRs...)
	}
	if got := len(podNet); got != 3 {
		t.Errorf("pod network %v: want 10.0.0.0/24, fd00::/120 and 10.0.1.0/24", podNet)
	}
	cc := &compile.Compiler{Options: compile.Options{PodNetwork: podNet}}
	for _, node := range []string{"node-1", "node-2"} {
		rs, err := cc.Compile(selectors.FromSnapshot(snap), node)
		if err != nil {
			t.Fatal(err)
		}
		if txt := rs.Text(); !strings.Contains(txt, "10.100.0.2") || !strings.Contains(txt, "10.0.0.0/24") {
			t.Fatalf("%s: the table lacks the mapped Node address or the mapped pod CIDR:\n%s", node, txt)
		}
		t.Run(node, func(t *testing.T) { requireTextEqualsNetlink(t, rs) })
	}
}
