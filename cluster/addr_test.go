package cluster_test

import (
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/policyd/policyd/cluster"
	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// kernelForm reports whether a is what the kernel takes as a set element:
// IPv4, or IPv6 that is not IPv4-mapped, with no zone.
func kernelForm(a netip.Addr) bool { return a.IsValid() && a.Zone() == "" && !a.Is4In6() }

// TestParseIP_AsTheAPIServerInTheKernelsForm: every form netip accepts is
// either refused or returned in a form the kernel takes, meaning what the
// API server (netutils.ParseIPSloppy) means by it.
func TestParseIP_AsTheAPIServerInTheKernelsForm(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, want string }{
		{"10.0.0.9", "10.0.0.9"},
		{"fd00::9", "fd00::9"},
		{"FD00:0:0:0:0:0:0:9", "fd00::9"}, // non-canonical IPv6
		{"::ffff:10.0.0.9", "10.0.0.9"},
		{"::ffff:a00:9", "10.0.0.9"},    // IPv4-mapped, hex
		{"010.000.000.009", "10.0.0.9"}, // legacy leading zeros: decimal
		{"::a00:9", "::a00:9"},          // IPv4-compatible (deprecated): plain IPv6
		{"64:ff9b::10.0.0.9", "64:ff9b::a00:9"},
		{"fd00::9%eth0", ""}, // a zone: netip takes it, the API does not
		{"fe80::1%1", ""},
		{"fd00::9%", ""},
		{"10.0.0.9%eth0", ""},
		{" 10.0.0.9", ""},
		{"10.0.0.9/32", ""},
		{"", ""},
		{"::ffff:10.0.0.256", ""},
		{"1.2.3", ""},
		{"10.0.0.9\n", ""},
		{"fd00::9%eth0%eth1", ""},
		{"::ffff:a00:9%eth0", ""},
		{"0x0a.0.0.9", ""},
		{"[fd00::9]", ""},
		{"fd00:0:0:0:0:0:0:0:9", ""},
	} {
		in, want := tt.in, tt.want
		got, err := cluster.ParseIP(in)
		if want == "" {
			assert.Error(t, err, "%q parsed as %v", in, got)
			continue
		}
		require.NoError(t, err, in)
		assert.Equal(t, want, got.String(), in)
		assert.True(t, kernelForm(got), "%q: %v is not in the kernel's form", in, got)
	}
}

// TestParseCIDR_AsTheAPIServerInTheKernelsForm: ipBlock CIDRs. The
// IPv4-mapped prefixes are refused whether written dotted or in hex (the
// hex form once parsed to an invalid prefix, the kernel's "invalid IP");
// everything accepted is a valid, masked prefix of a kernel-form address.
func TestParseCIDR_AsTheAPIServerInTheKernelsForm(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, want string }{
		{"10.0.0.0/8", "10.0.0.0/8"},
		{"10.0.0.1/8", "10.0.0.0/8"}, // host bits: the network
		{"010.0.0.0/8", "10.0.0.0/8"},
		{"10.0.0.0/08", "10.0.0.0/8"},
		{"FD00::/8", "fd00::/8"},
		{"::/0", "::/0"},
		{"0.0.0.0/0", "0.0.0.0/0"},
		{"::ffff:0:0/80", "::/80"}, // masked, no longer mapped
		{"::ffff:0:0/95", "::fffe:0:0/95"},
		{"::ffff:10.0.0.0/104", ""},
		{"::ffff:a00:0/104", ""},
		{"::ffff:0:0/96", ""},
		{"::ffff:a00:1/128", ""},
		{"fd00::%eth0/64", ""},
		{"10.0.0.0/33", ""},
		{"fd00::/129", ""},
		{"10.0.0.0", ""},
		{"10.0.0.0/8 ", ""},
		{"10.0.0.0/-1", ""},
		{"", ""},
	} {
		in, want := tt.in, tt.want
		got, err := cluster.ParseCIDR(in)
		if want == "" {
			assert.Error(t, err, "%q parsed as %v", in, got)
			continue
		}
		require.NoError(t, err, in)
		assert.Equal(t, want, got.String(), in)
		assert.True(t, got.IsValid() && got == got.Masked() && kernelForm(got.Addr()), "%q: %v", in, got)
	}
}

// TestConvert_KernelRefusedFormsAreReportedNamingTheObject: a zoned pod IP,
// Node address, Service or endpoint address, a hex IPv4-mapped ipBlock or
// networks CIDR: each is reported with the object and field and left out
// (fail-closed as that object's other invalid parts are); the mapped pod IP
// is the IPv4 address it maps.
func TestConvert_KernelRefusedFormsAreReportedNamingTheObject(t *testing.T) {
	t.Parallel()
	pod := testPod("x", "a", "a", "10.0.0.1")
	pod.Status.PodIPs = []corev1.PodIP{{IP: "::ffff:a00:1"}, {IP: "fd00::9%eth0"}}
	p, errs := cluster.ConvertPod(pod)
	require.Len(t, errs, 1)
	assert.Contains(t, errs[0].Error(), `pod x/a: status.podIPs[1]: Invalid value: "fd00::9%eth0" has an IPv6 zone`)
	assert.Equal(t, []netip.Addr{netip.MustParseAddr("10.0.0.1")}, p.IPs)

	pod.Status.PodIPs, pod.Status.PodIP = nil, "fd00::9%eth0"
	_, errs = cluster.ConvertPod(pod)
	require.Len(t, errs, 1)
	assert.Contains(t, errs[0].Error(), "pod x/a: status.podIP: Invalid value")

	n, errs := cluster.ConvertNode(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "fd00::100%eth0"}, {Type: corev1.NodeInternalIP, Address: "10.1.0.1"}, {Type: corev1.NodeExternalIP, Address: "::ffff:a01:2"},
	}}})
	require.Len(t, errs, 1)
	assert.Contains(t, errs[0].Error(), `node n1: status.addresses[0].address: Invalid value: "fd00::100%eth0"`)
	assert.Equal(t, []netip.Addr{netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.1.0.2")}, n.IPs)

	np := basePolicy(func(s *networkingv1.NetworkPolicySpec) {
		s.Ingress[0].From = []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "::ffff:a00:0/104"}}, {IPBlock: &networkingv1.IPBlock{CIDR: "fd00::/64", Except: []string{"::ffff:a00:0/112"}}}}
	})
	cp, errs := cluster.ConvertPolicy(np)
	require.Len(t, errs, 2)
	assert.Contains(t, errs[0].Error(), `networkpolicy x/p: spec.ingress[0].from[0].ipBlock.cidr: Invalid value: "::ffff:a00:0/104": an IPv4-mapped IPv6 prefix is ambiguous`)
	assert.Contains(t, errs[1].Error(), `networkpolicy x/p: spec.ingress[0].from[1].ipBlock.except[0]`)
	assert.Empty(t, cp.IngressRules[0].Peers, "both peers match nothing")
	assert.False(t, cp.IngressRules[0].AllPeers)

	c, errs := cluster.ConvertClusterPolicy(cnp(func(s *npav1beta1.ClusterNetworkPolicySpec) {
		s.Egress = []npav1beta1.ClusterNetworkPolicyEgressRule{{Action: npav1beta1.ClusterNetworkPolicyRuleActionAccept, To: []npav1beta1.ClusterNetworkPolicyEgressPeer{
			{Networks: []npav1beta1.CIDR{"::ffff:a00:0/104"}}, {Networks: []npav1beta1.CIDR{"fd00::%eth0/64"}}, {Networks: []npav1beta1.CIDR{"10.0.0.0/8"}},
		}}}
	}))
	require.Len(t, errs, 2)
	assert.Contains(t, errs[0].Error(), "clusternetworkpolicy c: ")
	assert.Contains(t, errs[0].Error(), "spec.egress[0].to[0].networks[0]")
	assert.Contains(t, errs[1].Error(), "spec.egress[0].to[1].networks[0]")
	require.Len(t, c.Egress[0].Peers, 1)
	assert.Equal(t, "10.0.0.0/8", c.Egress[0].Peers[0].CIDR.String())

	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "s"}, Spec: corev1.ServiceSpec{
		ClusterIPs: []string{"fd00:96::1%eth0", "10.96.0.1"}, ExternalIPs: []string{"::ffff:a63:1"},
	}}
	s, errs := cluster.ConvertService(svc)
	require.Len(t, errs, 1)
	assert.Contains(t, errs[0].Error(), "service x/s: spec.clusterIPs[0]: Invalid value")
	assert.Equal(t, []netip.Addr{netip.MustParseAddr("10.96.0.1")}, s.ClusterIPs)
	assert.Equal(t, []netip.Addr{netip.MustParseAddr("10.99.0.1")}, s.ExternalIPs)

	_, sl, errs := cluster.ConvertEndpointSlice(&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "s-1"},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"fd00::9%eth0", "10.0.0.9"}}}})
	require.Len(t, errs, 1)
	assert.Contains(t, errs[0].Error(), "endpointslice x/s-1: endpoints[0].addresses[0]: Invalid value")
	require.Len(t, sl.Endpoints, 1)
	assert.Equal(t, "10.0.0.9", sl.Endpoints[0].Addr.String())
}

// TestConvertService_PortsOutOfRangeAreLeftOut: a Service port, targetPort
// or nodePort, or an EndpointSlice port, that the API server would refuse
// is reported naming the object and field and left out, rather than read
// as another 16-bit port (70000 is 4464 to the kernel).
func TestConvertService_PortsOutOfRangeAreLeftOut(t *testing.T) {
	t.Parallel()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "s"}, Spec: corev1.ServiceSpec{
		ClusterIP: "10.96.0.1",
		Ports: []corev1.ServicePort{
			{Name: "ok", Port: 80, TargetPort: intstr.FromInt32(8080)},
			{Name: "big-target", Port: 81, TargetPort: intstr.FromInt32(70000)},
			{Name: "neg-target", Port: 82, TargetPort: intstr.FromInt32(-1)},
			{Name: "big-port", Port: 70000},
			{Name: "bad-name", Port: 83, TargetPort: intstr.FromString("Not_A_Name")},
			{Name: "big-node", Port: 84, NodePort: 65536},
			{Name: "named", Port: 85, TargetPort: intstr.FromString("http")},
		},
	}}
	s, errs := cluster.ConvertService(svc)
	require.Len(t, errs, 5, "%v", errs)
	for i, want := range []string{
		"service x/s: spec.ports[1].targetPort: Invalid value: 70000",
		"service x/s: spec.ports[2].targetPort: Invalid value: -1",
		"service x/s: spec.ports[3].port: Invalid value: 70000",
		`service x/s: spec.ports[4].targetPort: Invalid value: "Not_A_Name"`,
		"service x/s: spec.ports[5].nodePort: Invalid value: 65536",
	} {
		assert.Contains(t, errs[i].Error(), want)
	}
	var names []string
	for _, p := range s.Ports {
		names = append(names, p.Name)
	}
	assert.Equal(t, []string{"ok", "named"}, names)

	_, sl, errs := cluster.ConvertEndpointSlice(&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "s-1"},
		Ports: []discoveryv1.EndpointPort{{Name: ptr("ok"), Port: ptr(int32(8080))}, {Name: ptr("big"), Port: ptr(int32(70000))}, {Name: ptr("zero"), Port: ptr(int32(0))}, {Name: ptr("all")}}})
	require.Len(t, errs, 2, "%v", errs)
	assert.Contains(t, errs[0].Error(), "endpointslice x/s-1: ports[1].port: Invalid value: 70000")
	assert.Contains(t, errs[1].Error(), "endpointslice x/s-1: ports[2].port: Invalid value: 0")
	require.Len(t, sl.Ports, 2)
	assert.Equal(t, "ok", sl.Ports[0].Name)
	assert.Equal(t, "all", sl.Ports[1].Name)
}
