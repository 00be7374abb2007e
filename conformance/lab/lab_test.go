package lab

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"

	"github.com/policyd/policyd/cluster"
)

var tcpUDP = []cluster.Protocol{cluster.ProtocolTCP, cluster.ProtocolUDP}

// fourPods is two pods on each of two nodes; b and c have no address and
// get one from the lab.
func fourPods() []*corev1.Pod {
	return []*corev1.Pod{
		podFixture("x", "a", "node-1", withIP("10.244.1.10")),
		podFixture("x", "b", "node-1"),
		podFixture("y", "c", "node-2"),
		podFixture("y", "d", "node-2", withIP("10.244.1.11")),
	}
}

// dropRule installs, in node's namespace, a postrouting rule dropping what
// match selects, the way a policy engine's table would.
func dropRule(t *testing.T, l *Lab, node, match string) {
	t.Helper()
	text := fmt.Sprintf("table inet t {\n\tchain c {\n\t\ttype filter hook postrouting priority 0; policy accept;\n\t\t%s drop\n\t}\n}\n", match)
	if out, err := l.ExecInNode(context.Background(), node, []byte(text), "nft", "-f", "-"); err != nil {
		t.Fatalf("installing drop rule in %s: %v %s", node, err, out)
	}
}

func deleteDropRule(t *testing.T, l *Lab, node string) {
	t.Helper()
	if out, err := l.ExecInNode(context.Background(), node, nil, "nft", "delete", "table", "inet", "t"); err != nil {
		t.Fatalf("deleting drop rule in %s: %v %s", node, err, out)
	}
}

// TestLab_NoPolicyAllowsAllThenDropDeniesExactlyOne builds each CNI shape
// with four pods on two nodes: with no rules every TCP and UDP probe, same-
// and cross-node, is allowed; a hand-written drop rule for one pod's TCP/80
// in its node's postrouting denies exactly the probes to that pod and port
// (except from the pod itself, which never leaves its namespace).
func TestLab_NoPolicyAllowsAllThenDropDeniesExactlyOne(t *testing.T) {
	requireKernel(t)
	for _, cni := range []CNI{CNIRouted, CNIBridged} {
		t.Run(string(cni), func(t *testing.T) {
			l := newTestLab(t, Config{CNI: cni}, fourPods())
			for _, pi := range l.Pods() {
				t.Logf("pod %s on %s: %v (allocated %v)", pi.Key, pi.Node, pi.IPs, pi.Allocated)
			}
			probes := allProbes(l, []int32{80, 81}, tcpUDP, IPv4, false)
			probeAndCheck(t, l, probes, nil)

			target := l.PodIP("y/d")
			dropRule(t, l, "node-2", fmt.Sprintf("ip daddr %s tcp dport 80", target))
			probeAndCheck(t, l, probes, func(p Probe) bool {
				return !(p.To == "y/d" && p.From != "y/d" && p.Port == 80 && p.Protocol == cluster.ProtocolTCP)
			})
			deleteDropRule(t, l, "node-2")
			probeAndCheck(t, l, probes, nil)
		})
	}
}

// TestLab_SameNodeTrafficPath proves how same-node pod traffic travels. In
// the bridged shape it is switched by the bridge at L2 and still meets the
// node's inet hooks (br_netfilter): a node postrouting rule matching TTL 64
// (a packet the node routed would have 63) catches it. In the routed shape
// the node routes it, so the same rule catches nothing.
func TestLab_SameNodeTrafficPath(t *testing.T) {
	requireKernel(t)
	for _, cni := range []CNI{CNIRouted, CNIBridged} {
		t.Run(string(cni), func(t *testing.T) {
			l := newTestLab(t, Config{CNI: cni}, fourPods())
			want := "0"
			if cni == CNIBridged {
				want = "1"
			}
			for _, key := range []string{"net/bridge/bridge-nf-call-iptables", "net/bridge/bridge-nf-call-ip6tables"} {
				if v, err := readSysctl(l.nodes[0].ns.ns, key); err != nil || v != want {
					t.Fatalf("%s in node namespace = %q, %v; want %s", key, v, err, want)
				}
			}
			dropRule(t, l, "node-1", fmt.Sprintf("ip daddr %s ip ttl 64 th dport 80", l.PodIP("x/b")))
			probeAndCheck(t, l, allProbes(l, []int32{80}, tcpUDP, IPv4, false), func(p Probe) bool {
				return !(cni == CNIBridged && p.From == "x/a" && p.To == "x/b")
			})
		})
	}
}

// TestLab_SCTPIsNotProbed: SCTP probes report Probed false, not a verdict.
func TestLab_SCTPIsNotProbed(t *testing.T) {
	requireKernel(t)
	l := newTestLab(t, Config{CNI: CNIRouted}, fourPods()[:2])
	res := l.ProbeAll(context.Background(), []Probe{{From: "x/a", To: "x/b", Port: 80, Protocol: cluster.ProtocolSCTP}})
	if r := res[0]; r.Probed || r.Observed || r.Err != "" || !strings.Contains(r.Detail, "SCTP") {
		t.Errorf("SCTP probe = %+v, want not probed with an SCTP detail and no error", r)
	}
}

// TestLab_DNATReachesPodsViaClusterIP: in DNAT mode every pod is reached
// through its ClusterIP (hairpin included), and a postrouting rule written
// against the pod address denies ClusterIP traffic: policy is judged after
// DNAT.
func TestLab_DNATReachesPodsViaClusterIP(t *testing.T) {
	requireKernel(t)
	for _, cni := range []CNI{CNIRouted, CNIBridged} {
		t.Run(string(cni), func(t *testing.T) {
			l := newTestLab(t, Config{CNI: cni, DNAT: true}, fourPods())
			for _, pi := range l.Pods() {
				if len(pi.ClusterIPs) != 1 || !services4.Contains(pi.ClusterIPs[0]) {
					t.Fatalf("pod %s ClusterIPs = %v, want one in %s", pi.Key, pi.ClusterIPs, services4)
				}
			}
			probes := allProbes(l, []int32{80, 81}, tcpUDP, IPv4, true)
			probeAndCheck(t, l, probes, nil)

			dropRule(t, l, "node-2", fmt.Sprintf("ip daddr %s tcp dport 80", l.PodIP("y/d")))
			probeAndCheck(t, l, probes, func(p Probe) bool {
				// The hairpin y/d -> ClusterIP(y/d) leaves the pod too.
				return !(p.To == "y/d" && p.Port == 80 && p.Protocol == cluster.ProtocolTCP)
			})
		})
	}
}

// TestLab_IPv6 builds a dual-stack lab in each shape: v6 probes, direct
// and via ClusterIP, are all allowed, and a v6 drop rule denies exactly its
// probe.
func TestLab_IPv6(t *testing.T) {
	requireKernel(t)
	for _, cni := range []CNI{CNIRouted, CNIBridged} {
		t.Run(string(cni), func(t *testing.T) {
			l := newTestLab(t, Config{CNI: cni, IPv6: true, DNAT: true}, fourPods())
			for _, pi := range l.Pods() {
				if len(pi.IPs) != 2 || !pi.IPs[1].Is6() {
					t.Fatalf("pod %s IPs = %v, want IPv4 and IPv6", pi.Key, pi.IPs)
				}
			}
			probes := append(allProbes(l, []int32{80}, tcpUDP, IPv6, false), allProbes(l, []int32{80}, tcpUDP, IPv6, true)...)
			probeAndCheck(t, l, probes, nil)
			dropRule(t, l, "node-1", fmt.Sprintf("ip6 daddr %s udp dport 80", l.PodAddr("x/b", IPv6)))
			probeAndCheck(t, l, probes, func(p Probe) bool {
				return !(p.To == "x/b" && p.Protocol == cluster.ProtocolUDP && (p.From != "x/b" || p.Service))
			})
		})
	}
}

// TestLab_HostNetworkPod: a hostNetwork pod serves from its node's
// namespace at the node address, and probes from it leave from the node.
func TestLab_HostNetworkPod(t *testing.T) {
	requireKernel(t)
	pods := append(fourPods(), podFixture("kube-system", "h", "node-1", hostNetwork, withIP("192.168.1.1")))
	l := newTestLab(t, Config{CNI: CNIBridged, DNAT: true}, pods)
	if got, want := l.PodIP("kube-system/h"), nodeAddr(0, v4); got != want {
		t.Fatalf("hostNetwork pod IP = %v, want node address %v", got, want)
	}
	probeAndCheck(t, l, allProbes(l, []int32{80, 81}, tcpUDP, IPv4, false), nil)
}

// TestLab_UpdatePods: a label change keeps the pod's namespace and
// addresses; a new pod is built and reachable; a removed pod is gone.
func TestLab_UpdatePods(t *testing.T) {
	requireKernel(t)
	for _, cni := range []CNI{CNIRouted, CNIBridged} {
		t.Run(string(cni), func(t *testing.T) {
			pods := fourPods()
			l := newTestLab(t, Config{CNI: cni, DNAT: true}, pods)
			before := map[string]PodInfo{}
			for _, pi := range l.Pods() {
				before[pi.Key] = pi
			}

			next := []*corev1.Pod{pods[0].DeepCopy(), pods[1].DeepCopy(), pods[2].DeepCopy(), podFixture("z", "e", "node-1")}
			next[1].Labels = map[string]string{"pod": "b", "new": "label"}
			if err := l.UpdatePods(context.Background(), next); err != nil {
				t.Fatalf("UpdatePods: %v", err)
			}
			after := map[string]PodInfo{}
			for _, pi := range l.Pods() {
				after[pi.Key] = pi
			}
			for _, key := range []string{"x/a", "x/b", "y/c"} {
				b, a := before[key], after[key]
				if a.NetNS != b.NetNS || fmt.Sprint(a.IPs, a.ClusterIPs) != fmt.Sprint(b.IPs, b.ClusterIPs) {
					t.Errorf("pod %s changed: before %+v, after %+v", key, b, a)
				}
			}
			if _, ok := after["y/d"]; ok {
				t.Errorf("removed pod y/d still present")
			}
			if len(after) != 4 {
				t.Errorf("got %d pods, want 4", len(after))
			}
			for _, o := range l.PodObjects() {
				if o.Name == "b" && o.Labels["new"] != "label" {
					t.Errorf("PodObjects did not take x/b's new labels: %v", o.Labels)
				}
			}
			probeAndCheck(t, l, append(allProbes(l, []int32{80}, tcpUDP, IPv4, false), allProbes(l, []int32{80}, tcpUDP, IPv4, true)...), nil)
		})
	}
}

// TestLab_ModelTiming builds the upstream 9-pod model on three nodes in each
// shape and times the probes: 144 probes (every pod to every other pod on
// TCP 80 and 81) and the full matrix (9 x 9 pods x 2 ports x TCP, UDP, SCTP),
// with a rule on every node dropping port 80 so that about half of them
// time out. SCTP probes come back not probed.
func TestLab_ModelTiming(t *testing.T) {
	requireKernel(t)
	for _, cni := range []CNI{CNIRouted, CNIBridged} {
		t.Run(string(cni), func(t *testing.T) {
			nodes := []string{"node-1", "node-2", "node-3"}
			l := newTestLab(t, Config{CNI: cni, Nodes: nodes, DNAT: true}, modelPods(nodes))
			for _, n := range nodes {
				dropRule(t, l, n, "th dport 80")
			}
			var probes144 []Probe
			for _, p := range allProbes(l, []int32{80, 81}, []cluster.Protocol{cluster.ProtocolTCP}, IPv4, false) {
				if p.From != p.To {
					probes144 = append(probes144, p)
				}
			}
			if len(probes144) != 144 {
				t.Fatalf("built %d probes, want 144", len(probes144))
			}
			blocked := func(p Probe) bool { return p.Port == 80 && p.From != p.To }
			probeAndCheck(t, l, probes144, func(p Probe) bool { return !blocked(p) })

			full := allProbes(l, []int32{80, 81}, cluster.Protocols, IPv4, false)
			start := time.Now()
			res := l.ProbeAll(context.Background(), full)
			t.Logf("full matrix: %d probes in %v", len(full), time.Since(start).Round(time.Millisecond))
			for _, r := range res {
				if r.Protocol == cluster.ProtocolSCTP {
					if r.Probed {
						t.Errorf("%v: SCTP probed", r.Probe)
					}
					continue
				}
				if !r.Probed || r.Err != "" || r.Observed == blocked(r.Probe) {
					t.Errorf("%v: %+v", r.Probe, r)
				}
			}
		})
	}
}

// TestLab_EmptyThenGrow: a lab may start with nodes and no pods (empty DNAT
// tables) and get its pods later.
func TestLab_EmptyThenGrow(t *testing.T) {
	requireKernel(t)
	l := newTestLab(t, Config{CNI: CNIBridged, Nodes: []string{"node-1", "node-2"}, DNAT: true, IPv6: true}, nil)
	if len(l.Pods()) != 0 {
		t.Fatalf("pods = %v, want none", l.Pods())
	}
	if err := l.UpdatePods(context.Background(), fourPods()); err != nil {
		t.Fatalf("UpdatePods: %v", err)
	}
	probeAndCheck(t, l, append(allProbes(l, []int32{81}, tcpUDP, IPv4, true), allProbes(l, []int32{81}, tcpUDP, IPv6, false)...), nil)
}

// TestLab_SourcePortPerAttempt: a probe given a source port binds its
// first attempt to it and its retry to the next port (a retry on the same
// ports would fail while the first connection is in TIME_WAIT), and says
// so; the packets carry those ports (a drop rule matching only the first
// port lets the retry through).
func TestLab_SourcePortPerAttempt(t *testing.T) {
	requireKernel(t)
	l := newTestLab(t, Config{CNI: CNIRouted}, fourPods())
	dropRule(t, l, "node-1", fmt.Sprintf("ip daddr %s tcp sport 45000", l.PodIP("x/b")))
	res := l.ProbeAll(context.Background(), []Probe{
		{From: "y/c", To: "x/b", Port: 80, Protocol: cluster.ProtocolTCP, SrcPort: 45000},
		{From: "y/c", To: "x/b", Port: 80, Protocol: cluster.ProtocolTCP, SrcPort: 45010},
		{From: "y/c", To: "x/b", Port: 80, Protocol: cluster.ProtocolTCP},
	})
	first, other, chosen := res[0], res[1], res[2]
	assert.True(t, first.Observed, "the retry from port 45001 must pass: %+v", first)
	assert.Equal(t, 2, first.Attempts)
	assert.Equal(t, []int{45000, 45001}, first.SrcPorts)
	assert.True(t, other.Observed, "%+v", other)
	assert.Equal(t, []int{45010}, other.SrcPorts)
	assert.True(t, chosen.Observed, "%+v", chosen)
	assert.Nil(t, chosen.SrcPorts, "the kernel chose the port")
}
