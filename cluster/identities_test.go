package cluster_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/policyd/policyd/cluster"
)

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// TestConvertNode_Gateways: the addresses CNIs give a node inside the pod
// network, from Node objects shaped as each CNI writes them.
func TestConvertNode_Gateways(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		node     corev1.Node
		want     []netip.Addr
		wantErrs []string
	}{
		{
			// kube-flannel with the kube subnet manager: the subnet is
			// spec.podCIDR(s), flannel.1 holds its network address (and
			// flannel-v6.1 the IPv6 one), cni0 the first address; the
			// annotations carry the VTEP, not an address in the subnet.
			name: "flannel vxlan, dual-stack",
			node: corev1.Node{
				ObjectMeta: metav1.ObjectMeta{Name: "n", Annotations: map[string]string{
					"flannel.alpha.coreos.com/backend-data":        `{"VNI":1,"VtepMAC":"4a:3c:1e:8f:11:02"}`,
					"flannel.alpha.coreos.com/backend-type":        "vxlan",
					"flannel.alpha.coreos.com/kube-subnet-manager": "true",
					"flannel.alpha.coreos.com/public-ip":           "192.168.56.11",
					"flannel.alpha.coreos.com/public-ipv6":         "fd00:56::11",
				}},
				Spec:   corev1.NodeSpec{PodCIDR: "10.244.1.0/24", PodCIDRs: []string{"10.244.1.0/24", "fd00:10:244:1::/64"}},
				Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.56.11"}, {Type: corev1.NodeHostName, Address: "n"}}},
			},
			want: addrs("10.244.1.0", "10.244.1.1", "fd00:10:244:1::", "fd00:10:244:1::1"),
		},
		{
			// Calico with its own IPAM: no pod CIDR; calico-node annotates
			// the tunnel and WireGuard devices' addresses (IPv4Address is
			// the node's own address, with its prefix length).
			name: "Calico IPAM, IP-in-IP, VXLAN and WireGuard",
			node: corev1.Node{
				ObjectMeta: metav1.ObjectMeta{Name: "n", Annotations: map[string]string{
					"projectcalico.org/IPv4Address":                "192.168.56.12/24",
					"projectcalico.org/IPv4IPIPTunnelAddr":         "10.244.151.128",
					"projectcalico.org/IPv4VXLANTunnelAddr":        "10.244.151.129",
					"projectcalico.org/VXLANTunnelMACAddr":         "66:a8:4c:2d:bd:03",
					"projectcalico.org/IPv6VXLANTunnelAddr":        "fd00:10:244:97c0::1",
					"projectcalico.org/IPv4WireguardInterfaceAddr": "10.244.151.130",
					"projectcalico.org/IPv6WireguardInterfaceAddr": "fd00:10:244:97c0::2",
					"projectcalico.org/WireguardPublicKey":         "VZ4xUa4jNDUg9xXSkjjLnK9g5NmL1i1svwrKVhVrp0I=",
				}},
				Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.56.12"}}},
			},
			want: addrs("10.244.151.128", "10.244.151.129", "10.244.151.130", "fd00:10:244:97c0::1", "fd00:10:244:97c0::2"),
		},
		{
			// Calico with host-local IPAM: the tunnel address is the first
			// of the pod CIDR, which Calico derives and annotates too.
			name: "Calico host-local",
			node: corev1.Node{
				ObjectMeta: metav1.ObjectMeta{Name: "n", Annotations: map[string]string{"projectcalico.org/IPv4IPIPTunnelAddr": "10.244.3.1"}},
				Spec:       corev1.NodeSpec{PodCIDR: "10.244.3.0/24"},
			},
			want: addrs("10.244.3.0", "10.244.3.1"),
		},
		{
			// Cilium, cluster-pool IPAM: the router (cilium_host), health
			// and Ingress addresses, in the current and the older forms.
			name: "Cilium",
			node: corev1.Node{
				ObjectMeta: metav1.ObjectMeta{Name: "n", Annotations: map[string]string{
					"network.cilium.io/ipv4-cilium-host": "10.0.1.28",
					"network.cilium.io/ipv4-health-ip":   "10.0.1.9",
					"network.cilium.io/ipv4-pod-cidr":    "10.0.1.0/25",
					"network.cilium.io/ipv6-cilium-host": "fd00:10:0:1::f00d",
					"network.cilium.io/ipv4-Ingress-ip":  "10.0.1.77",
					"io.cilium.network.ipv4-cilium-host": "10.0.2.28",
				}},
			},
			want: addrs("10.0.1.9", "10.0.1.28", "10.0.1.77", "10.0.2.28", "fd00:10:0:1::f00d"),
		},
		{
			name: "unparsable annotation reported and skipped",
			node: corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Annotations: map[string]string{
				"projectcalico.org/IPv4VXLANTunnelAddr": "tunl0",
				"network.cilium.io/ipv6-cilium-host":    "fe80::1%eth0",
				"network.cilium.io/ipv4-health-ip":      "::ffff:10.0.1.9",
			}}},
			want:     addrs("10.0.1.9"),
			wantErrs: []string{"node n: metadata.annotations[projectcalico.org/IPv4VXLANTunnelAddr]", "node n: metadata.annotations[network.cilium.io/ipv6-cilium-host]"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n, errs := cluster.ConvertNode(&tt.node)
			assert.Equal(t, tt.want, n.Gateways)
			require.Len(t, errs, len(tt.wantErrs), "%v", errs)
			var msgs []string
			for _, e := range errs {
				msgs = append(msgs, e.Error())
			}
			for _, w := range tt.wantErrs {
				assert.Contains(t, strings.Join(msgs, "\n"), w)
			}
		})
	}
}

// TestSnapshot_NodeAddresses: a pod's address is the pod's against Nodes,
// Nodes sharing an address are all its claimants, and both are reported
// naming the Node and the field; a Node's own address is node-local only
// on that node.
func TestSnapshot_NodeAddresses(t *testing.T) {
	t.Parallel()
	s, errs := cluster.NewSnapshot(nil, []*corev1.Pod{testPod("x", "a", "a", "10.0.0.1")}, nil)
	require.Empty(t, errs)
	node := func(name string, ips ...string) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDR: "10.244.9.0/24"}}
		for _, ip := range ips {
			n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip})
		}
		return n
	}
	errs = s.AddClusterPolicies(nil, []*corev1.Node{node("n1", "192.168.0.1", "10.0.0.1"), node("n2", "192.168.0.1"), node("n3", "192.168.0.3")})
	var msgs []string
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	all := strings.Join(msgs, "\n")
	assert.Contains(t, all, "node n1: status.addresses: 10.0.0.1 is pod x/a's address")
	assert.Contains(t, all, "nodes n1, n2: status.addresses: each lists 192.168.0.1")

	assert.Empty(t, s.NodesByIP(netip.MustParseAddr("10.0.0.1")), "a pod's address is no node's")
	assert.Nil(t, s.NodeByIP(netip.MustParseAddr("10.0.0.1")))
	assert.Len(t, s.NodesByIP(netip.MustParseAddr("192.168.0.1")), 2)
	assert.Nil(t, s.NodeByIP(netip.MustParseAddr("192.168.0.1")), "no single node holds a shared address")
	assert.Equal(t, "n3", s.NodeByIP(netip.MustParseAddr("::ffff:192.168.0.3")).Name)

	assert.True(t, s.NodeLocal(netip.MustParseAddr("192.168.0.3"), "n3"))
	assert.False(t, s.NodeLocal(netip.MustParseAddr("192.168.0.3"), "n1"))
	assert.False(t, s.NodeLocal(netip.MustParseAddr("192.168.0.1"), "n1"), "a shared address is no one node's")
	assert.False(t, s.NodeLocal(netip.MustParseAddr("10.0.0.1"), "n1"), "a pod's address is no node's")
	assert.False(t, s.NodeLocal(netip.MustParseAddr("10.244.9.1"), "n3"), "every node claims that gateway here")
}

// TestConvertPod_AddressesNeedANode: a pod with addresses but no
// spec.nodeName runs nowhere and holds no address; a hostNetwork pod and a
// pending pod without addresses are not reported.
func TestConvertPod_AddressesNeedANode(t *testing.T) {
	t.Parallel()
	p := testPod("x", "ghost", "ghost", "10.0.0.8")
	p.Spec.NodeName = ""
	cp, errs := cluster.ConvertPod(p)
	assert.Empty(t, cp.IPs)
	require.Len(t, errs, 1)
	assert.Contains(t, errs[0].Error(), "pod x/ghost: status.podIPs")

	p.Status.PodIPs = nil
	_, errs = cluster.ConvertPod(p)
	assert.Empty(t, errs)

	h := testPod("x", "host", "host", "192.168.0.1")
	h.Spec.NodeName, h.Spec.HostNetwork = "", true
	cp, errs = cluster.ConvertPod(h)
	assert.Empty(t, errs)
	assert.Len(t, cp.IPs, 1)
}

// TestBackends_ByAddress: an EndpointSlice's endpoint is the pod that holds
// its address now, whatever its targetRef names.
func TestBackends_ByAddress(t *testing.T) {
	t.Parallel()
	old := testPod("x", "old", "api", "10.0.0.5")
	old.Status.Phase = corev1.PodSucceeded
	newer := testPod("x", "new", "other", "10.0.0.5")
	vault := testPod("bank", "vault", "vault", "10.0.9.9")
	s, errs := cluster.NewSnapshot(nil, []*corev1.Pod{old, newer, vault, testPod("x", "a", "api", "10.0.0.1")}, nil)
	require.Empty(t, errs)
	name, port := "http", int32(8080)
	ep := func(addr string, ref *corev1.ObjectReference) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{addr}, TargetRef: ref}
	}
	sl := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "api-1", Labels: map[string]string{discoveryv1.LabelServiceName: "api"}},
		Ports: []discoveryv1.EndpointPort{{Name: &name, Port: &port}},
		Endpoints: []discoveryv1.Endpoint{
			ep("10.0.0.5", &corev1.ObjectReference{Kind: "Pod", Name: "old"}),                      // stale: new holds it now
			ep("10.0.0.1", &corev1.ObjectReference{Kind: "Pod", Namespace: "bank", Name: "vault"}), // forged
			ep("10.0.0.77", &corev1.ObjectReference{Kind: "Pod", Name: "a"}),                       // nobody's
		}}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "api"}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.1",
		Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}}}
	require.Empty(t, s.AddServices([]*corev1.Service{svc}, []*discoveryv1.EndpointSlice{sl}))
	api := s.Service("x/api")
	got := map[string]string{}
	for _, b := range s.Backends(api, api.Ports[0], 4) {
		who := "-"
		if b.Pod != nil {
			who = b.Pod.Key()
		}
		got[b.Addr.String()] = who
		assert.Contains(t, b.Why, "targetRef names pod", "%s: %s", b.Addr, b.Why)
	}
	assert.Equal(t, map[string]string{"10.0.0.5": "x/new", "10.0.0.1": "x/a", "10.0.0.77": "-"}, got)
}
