package nft

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/conformance/lab"
	"github.com/policyd/policyd/internal/netnstest"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/selectors"
)

// Lab tests with real packets for the identities of issue 26: node
// traffic under a fail-closed tier, and a remote node's gateway address
// through the pod network's closing.

// idLab is a routed lab of pods (label app=NAME, serving TCP and UDP 80)
// on nodes, each node's table programmed by its own Backend.
type idLab struct {
	t        *testing.T
	lab      *lab.Lab
	backends map[string]*Backend
	pods     []*corev1.Pod
}

func newIDLab(t *testing.T, nodes []string, pods map[string]string) *idLab {
	t.Helper()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ip", "nft")
	var objs []*corev1.Pod
	for name, node := range pods {
		objs = append(objs, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: faultNS, Name: name, Labels: map[string]string{"app": name}},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{
				{ContainerPort: 80, Protocol: corev1.ProtocolTCP}, {ContainerPort: 80, Protocol: corev1.ProtocolUDP}}}}},
		})
	}
	l, err := lab.New(context.Background(), lab.Config{CNI: lab.CNIRouted, Nodes: nodes, RunID: fmt.Sprintf("id%d%d", os.Getpid()%1000000, labRuns.Add(1))}, objs)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, l.Close()) })
	il := &idLab{t: t, lab: l, backends: map[string]*Backend{}, pods: l.PodObjects()}
	for _, n := range nodes {
		h, ok := l.NodeNetNSHandle(n)
		require.True(t, ok)
		b, err := New(Options{NetNS: int(h)})
		require.NoError(t, err)
		il.backends[n] = b
	}
	return il
}

// sync compiles snap with opts for every node and commits it there.
func (il *idLab) sync(snap *cluster.Snapshot, opts compile.Options) {
	il.t.Helper()
	ix := selectors.FromSnapshot(snap)
	for n, b := range il.backends {
		rs, err := (&compile.Compiler{Options: opts}).Compile(ix, n)
		require.NoError(il.t, err)
		_, err = b.Sync(context.Background(), rs)
		require.NoError(il.t, err, "node %s", n)
	}
}

// dial connects by TCP and exchanges a UDP datagram from node's own
// network namespace, from src (the route's choice when invalid), to dst
// port 80, and reports what got through.
func (il *idLab) dial(node string, src, dst netip.Addr) (tcp, udp bool) {
	il.t.Helper()
	require.NoError(il.t, il.lab.DoInNode(node, func() error {
		d := net.Dialer{Timeout: 400 * time.Millisecond}
		if src.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		}
		if c, err := d.Dial("tcp", netip.AddrPortFrom(dst, 80).String()); err == nil {
			tcp = true
			_ = c.Close()
		}
		var laddr *net.UDPAddr
		if src.IsValid() {
			laddr = &net.UDPAddr{IP: src.AsSlice()}
		}
		c, err := net.DialUDP("udp", laddr, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 80)))
		if err != nil {
			return err
		}
		defer func() { _ = c.Close() }()
		_ = c.SetDeadline(time.Now().Add(400 * time.Millisecond))
		if _, err := c.Write([]byte("probe")); err != nil {
			return nil
		}
		buf := make([]byte, 64)
		if _, err := c.Read(buf); err == nil {
			udp = true
		}
		return nil
	}))
	return tcp, udp
}

// TestLab_NodeTrafficUnderFailClosedAdminDeny: an Admin
// ClusterNetworkPolicy whose Deny rule is invalid denies everything into
// the pods it selects, fail-closed; the kubelet's probes from the pod's own
// node still get in (the node's traffic is accepted before any tier),
// while another pod's traffic is dropped.
func TestLab_NodeTrafficUnderFailClosedAdminDeny(t *testing.T) {
	il := newIDLab(t, []string{"node-1"}, map[string]string{"target": "node-1", "client": "node-1"})
	bad := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Near"}}}
	broken := &npav1beta1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "broken"}, Spec: npav1beta1.ClusterNetworkPolicySpec{
		Tier: npav1beta1.AdminTier, Priority: 1,
		Subject: npav1beta1.ClusterNetworkPolicySubject{Pods: &npav1beta1.NamespacedPod{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "target"}}}},
		Ingress: []npav1beta1.ClusterNetworkPolicyIngressRule{{Action: npav1beta1.ClusterNetworkPolicyRuleActionDeny, From: []npav1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: bad}}}},
	}}
	nss := []*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: faultNS}}}
	snap, errs := cluster.NewSnapshot(nss, il.pods, nil)
	require.Empty(t, errs)
	require.NotEmpty(t, snap.AddClusterPolicies([]*npav1beta1.ClusterNetworkPolicy{broken}, nil), "the CNP is invalid")
	target := il.lab.PodIP(faultNS + "/target")

	// Before: nothing in force, everything gets through.
	tcp, udp := il.dial("node-1", netip.Addr{}, target)
	require.True(t, tcp && udp, "the lab itself works: tcp %v udp %v", tcp, udp)

	il.sync(snap, compile.Options{})
	tcp, udp = il.dial("node-1", netip.Addr{}, target)
	assert.True(t, tcp, "kubelet-like TCP from the node into a pod under a fail-closed Admin Deny")
	assert.True(t, udp, "kubelet-like UDP from the node into a pod under a fail-closed Admin Deny")
	for _, r := range il.lab.ProbeAll(context.Background(), []lab.Probe{
		{From: faultNS + "/client", To: faultNS + "/target", Port: 80, Protocol: cluster.ProtocolTCP},
		{From: faultNS + "/client", To: faultNS + "/target", Port: 80, Protocol: cluster.ProtocolUDP},
	}) {
		require.Empty(t, r.Err)
		assert.False(t, r.Observed, "%s: a pod's traffic is denied (%s)", r.Probe, r.Detail)
	}
}

// TestLab_RemoteGatewayThroughThePodNetwork: with the pod network on (the
// Nodes' pod CIDRs), the addresses node-1's CNI uses inside its pod CIDR
// (the first address, the bridge or host-local gateway; the network
// address, flannel.1's; an annotated Calico tunnel address) reach a pod no
// policy isolates on node-2, as the API server's call to a webhook pod
// does; an unknown address of node-1's pod CIDR is still dropped.
func TestLab_RemoteGatewayThroughThePodNetwork(t *testing.T) {
	il := newIDLab(t, []string{"node-1", "node-2"}, map[string]string{"open": "node-2"})
	infos := il.lab.Nodes()
	subnet1 := infos[0].Subnets[0]
	gateway := infos[0].Gateways[0]     // the first address, on the node already
	network := subnet1.Addr()           // flannel.1's
	calico := addN(subnet1.Addr(), 192) // annotated
	unknown := addN(subnet1.Addr(), 77) // no one's
	for _, a := range []netip.Addr{gateway, network, calico, unknown} {
		require.NoError(t, il.lab.AddNodeAddress("node-1", a))
	}
	var nodes []*corev1.Node
	var podNet []netip.Prefix
	for i, n := range infos {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name}, Spec: corev1.NodeSpec{PodCIDR: n.Subnets[0].String(), PodCIDRs: []string{n.Subnets[0].String()}},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: lab.NodeAddr(i, lab.IPv4).String()}}}}
		if i == 0 {
			node.Annotations = map[string]string{"projectcalico.org/IPv4VXLANTunnelAddr": calico.String()}
		}
		nodes = append(nodes, node)
		podNet = append(podNet, n.Subnets[0])
	}
	nss := []*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: faultNS}}}
	snap, errs := cluster.NewSnapshot(nss, il.pods, nil)
	require.Empty(t, errs)
	require.Empty(t, snap.AddClusterPolicies(nil, nodes))
	open := il.lab.PodIP(faultNS + "/open")

	// Before: nothing in force, every source gets through.
	for _, src := range []netip.Addr{gateway, network, calico, unknown} {
		tcp, udp := il.dial("node-1", src, open)
		require.True(t, tcp && udp, "the lab itself works from %s: tcp %v udp %v", src, tcp, udp)
	}
	il.sync(snap, compile.Options{PodNetwork: podNet})
	for _, src := range []netip.Addr{gateway, network, calico} {
		tcp, udp := il.dial("node-1", src, open)
		assert.True(t, tcp && udp, "node-1's CNI address %s to a pod on node-2 with the pod network on: tcp %v udp %v", src, tcp, udp)
	}
	tcp, udp := il.dial("node-1", unknown, open)
	assert.False(t, tcp || udp, "an unknown address of the pod network (%s) is dropped: tcp %v udp %v", unknown, tcp, udp)
}

func addN(a netip.Addr, n int) netip.Addr {
	for range n {
		a = a.Next()
	}
	return a
}
