package lab

import (
	"context"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/policyd/policyd/cluster"
)

// TestLab_ServicesPinnedNodePortAndLoadBalancer builds each CNI shape with
// backends x/b1 (node-1) and x/b2 (node-2) and a client x/c (node-1), and
// one Service per externalTrafficPolicy. A drop rule on node-2 in
// postrouting before srcnat (where policyd's chain is) for packets from the
// external client to b2 shows the source addresses: under Cluster,
// traffic entering at node-1 reaches b2 masqueraded to node-1 (not
// dropped); entering at node-2, b2's own node, the rule still sees the
// client (the masquerade comes after it: dropped); under Local the client
// keeps its address (dropped), and a connection pinned to a backend of
// another node is dropped by the table. The load-balancer IP enters at
// b1's node.
func TestLab_ServicesPinnedNodePortAndLoadBalancer(t *testing.T) {
	requireKernel(t)
	for _, cni := range []CNI{CNIRouted, CNIBridged} {
		t.Run(string(cni), func(t *testing.T) {
			l := newTestLab(t, Config{CNI: cni, External: true}, servicePods())
			b1, b2 := l.PodIP("x/b1"), l.PodIP("x/b2")
			backends := []ServiceBackend{{Pod: "x/b1", Addr: b1, Port: 80}, {Pod: "x/b2", Addr: b2, Port: 80}}
			vip, lb := ServiceAddr(0), netip.MustParseAddr("10.250.0.10")
			svcs := []Service{
				{Name: "x/cluster TCP/8080", Protocol: cluster.ProtocolTCP, Port: 8080, ClusterIPs: []netip.Addr{vip}, NodePort: 30080, Backends: backends},
				{Name: "x/local TCP/8080", Protocol: cluster.ProtocolTCP, Port: 8080, ClusterIPs: []netip.Addr{ServiceAddr(1)}, ExternalIPs: []netip.Addr{lb}, NodePort: 30081, Local: true, Backends: backends},
			}
			if err := l.SetServices(context.Background(), svcs); err != nil {
				t.Fatal(err)
			}
			if got := l.LoadBalancerNode(svcs[1]); got != "node-1" {
				t.Errorf("LoadBalancerNode = %s, want node-1", got)
			}
			dropRule(t, l, "node-2", "ip saddr "+ExternalClientAddr.String()+" ip daddr "+b2.String()+" tcp dport 80")
			n1, n2 := NodeAddr(0, IPv4), NodeAddr(1, IPv4)
			ap := netip.AddrPortFrom
			type tc struct {
				p    Probe
				want bool
			}
			var tcs []tc
			add := func(from, to string, target netip.AddrPort, pin int, want bool) {
				tcs = append(tcs, tc{Probe{From: from, To: to, Port: 80, Protocol: cluster.ProtocolTCP, Target: target, Pin: pin}, want})
			}
			add("x/c", "x/b1", ap(vip, 8080), 1, true)
			add("x/c", "x/b2", ap(vip, 8080), 2, true) // the pod's own address: not dropped
			add(ExternalClient, "x/b1", ap(n1, 30080), 1, true)
			add(ExternalClient, "x/b2", ap(n1, 30080), 2, true)  // masqueraded to node-1: not dropped
			add(ExternalClient, "x/b2", ap(n2, 30080), 2, false) // b2's node: the rule sees the client
			add(ExternalClient, "x/b2", ap(n2, 30081), 2, false) // Local: the client's address, dropped
			add(ExternalClient, "x/b1", ap(n1, 30081), 1, true)  // Local: the client's address
			add(ExternalClient, "x/b1", ap(n1, 30081), 0, true)  // Local, unpinned: the only local backend
			add(ExternalClient, "x/b2", ap(n1, 30081), 2, false) // Local: b2 is not on node-1
			add(ExternalClient, "x/b1", ap(lb, 8080), 1, true)
			add(ExternalClient, "x/b2", ap(lb, 8080), 2, false) // the LB sends to node-1, Local
			var probes []Probe
			want := map[Probe]bool{}
			for _, c := range tcs {
				probes = append(probes, c.p)
				want[c.p] = c.want
			}
			probeAndCheck(t, l, probes, func(p Probe) bool { return want[p] })
		})
	}
}

func servicePods() []*corev1.Pod {
	return []*corev1.Pod{
		podFixture("x", "b1", "node-1"),
		podFixture("x", "b2", "node-2"),
		podFixture("x", "c", "node-1"),
	}
}
