package cluster_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/model"
)

// Fixture: namespace x with x/a {app=a} 10.0.0.1 and x/c {app=c} 10.0.0.3,
// namespace y with y/b {app=b} 10.0.1.1. Every pod declares TCP/80 "http".

func testPod(ns, name, app, ip string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": app}},
		Spec:       corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80}}}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIPs: []corev1.PodIP{{IP: ip}}},
	}
}

// basePolicy selects x/a and admits ingress from y/b (by namespace) on TCP/80;
// tweaks then add the invalid part under test.
func basePolicy(tweak func(*networkingv1.NetworkPolicySpec)) *networkingv1.NetworkPolicy {
	p80 := intstr.FromInt32(80)
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "p"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "a"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "y"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: &p80}},
			}},
		},
	}
	tweak(&np.Spec)
	return np
}

func badSelector() *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Near", Values: []string{"a"}}}}
}

func ptr[T any](v T) *T { return &v }

type probe struct {
	from, to string
	proto    cluster.Protocol
	port     int32
	want     bool
}

func TestConvertPolicy_InvalidFailsClosed(t *testing.T) {
	t.Parallel()
	ruleFrom := func(peers ...networkingv1.NetworkPolicyPeer) func(*networkingv1.NetworkPolicySpec) {
		return func(s *networkingv1.NetworkPolicySpec) {
			s.Ingress = append(s.Ingress, networkingv1.NetworkPolicyIngressRule{From: peers})
		}
	}
	rulePorts := func(ports ...networkingv1.NetworkPolicyPort) func(*networkingv1.NetworkPolicySpec) {
		return func(s *networkingv1.NetworkPolicySpec) {
			s.Ingress = append(s.Ingress, networkingv1.NetworkPolicyIngressRule{Ports: ports})
		}
	}
	ipBlock := func(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
		return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
	}
	named := func(name string) *intstr.IntOrString { v := intstr.FromString(name); return &v }
	num := func(n int32) *intstr.IntOrString { v := intstr.FromInt32(n); return &v }
	// Without the invalid part, the base policy lets y/b reach x/a on TCP/80
	// only. Every bad rule below, read permissively, would let y/b reach x/a
	// on TCP/81 (a bad peer treated as "all peers" with no ports, or a bad
	// port treated as "all ports"): the probes check that it does not.
	wantBase := []probe{
		{"y/b", "x/a", cluster.ProtocolTCP, 80, true},
		{"y/b", "x/a", cluster.ProtocolTCP, 81, false},
		{"x/c", "x/a", cluster.ProtocolTCP, 80, false},
	}
	tests := []struct {
		name      string
		tweak     func(*networkingv1.NetworkPolicySpec)
		wantPaths []string // every error names one of these fields, in order
		wantMsg   string
		probes    []probe // checked in addition to wantBase unless replace
		replace   bool
		check     func(t *testing.T, p *cluster.Policy)
	}{
		{
			name:      "bad operator in spec.podSelector applies the policy to the whole namespace with no rules",
			tweak:     func(s *networkingv1.NetworkPolicySpec) { s.PodSelector = *badSelector() },
			wantPaths: []string{"spec.podSelector"},
			wantMsg:   `"Near" is not a valid label selector operator`,
			replace:   true,
			probes: []probe{
				{"y/b", "x/a", cluster.ProtocolTCP, 80, false}, // its rules are dropped
				{"y/b", "x/c", cluster.ProtocolTCP, 80, false}, // and every pod of x is isolated
				{"x/a", "y/b", cluster.ProtocolTCP, 80, true},  // egress is untouched (no egress rules, no policyTypes)
			},
			check: func(t *testing.T, p *cluster.Policy) {
				if !p.PodSelector.Empty() || p.IngressRules != nil || p.EgressRules != nil {
					t.Errorf("want selector everything and no rules, got %q, %d/%d rules", p.PodSelector, len(p.IngressRules), len(p.EgressRules))
				}
			},
		},
		{
			name:      "bad operator in a peer podSelector drops that peer only",
			tweak:     ruleFrom(networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{}}, networkingv1.NetworkPolicyPeer{PodSelector: badSelector()}),
			wantPaths: []string{"spec.ingress[1].from[1].podSelector"},
			wantMsg:   "Near",
			replace:   true,
			probes: []probe{
				{"x/c", "x/a", cluster.ProtocolTCP, 81, true}, // the valid sibling peer still applies
				{"y/b", "x/a", cluster.ProtocolTCP, 81, false},
			},
			check: wantRule(1, false, 1, true, 0),
		},
		{
			name:      "bad operator in a namespaceSelector: a rule with no valid peer matches nothing",
			tweak:     ruleFrom(networkingv1.NetworkPolicyPeer{NamespaceSelector: badSelector(), PodSelector: &metav1.LabelSelector{}}),
			wantPaths: []string{"spec.ingress[1].from[0].namespaceSelector"},
			check:     wantRule(1, false, 0, true, 0),
		},
		{
			// The API server validates protocol as exactly TCP, UDP or SCTP.
			name:      "lowercase protocol in a port entry is unsupported: the rule matches nothing",
			tweak:     rulePorts(networkingv1.NetworkPolicyPort{Protocol: ptr(corev1.Protocol("tcp")), Port: num(81)}),
			wantPaths: []string{"spec.ingress[1].ports[0].protocol"},
			wantMsg:   `Unsupported value: "tcp"`,
			check:     wantRule(1, true, 0, false, 0),
		},
		{
			name:      "unparsable CIDR",
			tweak:     ruleFrom(ipBlock("10.0.1.0/33")),
			wantPaths: []string{"spec.ingress[1].from[0].ipBlock.cidr"},
			wantMsg:   `Invalid value: "10.0.1.0/33": not a CIDR`,
			check:     wantRule(1, false, 0, true, 0),
		},
		{
			name:      "CIDR that is an address",
			tweak:     ruleFrom(ipBlock("10.0.1.1")),
			wantPaths: []string{"spec.ingress[1].from[0].ipBlock.cidr"},
			check:     wantRule(1, false, 0, true, 0),
		},
		{
			name:      "except not inside cidr",
			tweak:     ruleFrom(ipBlock("10.0.1.0/24", "10.0.1.128/25", "10.0.2.0/25")),
			wantPaths: []string{"spec.ingress[1].from[0].ipBlock.except[1]"},
			wantMsg:   "must be a strict subset of cidr 10.0.1.0/24",
			check:     wantRule(1, false, 0, true, 0),
		},
		{
			name:      "except equal to cidr",
			tweak:     ruleFrom(ipBlock("10.0.1.0/24", "10.0.1.0/24")),
			wantPaths: []string{"spec.ingress[1].from[0].ipBlock.except[0]"},
			check:     wantRule(1, false, 0, true, 0),
		},
		{
			name:      "except of the other family",
			tweak:     ruleFrom(ipBlock("0.0.0.0/0", "fd00::/64")),
			wantPaths: []string{"spec.ingress[1].from[0].ipBlock.except[0]"},
			check:     wantRule(1, false, 0, true, 0),
		},
		{
			name:      "unparsable except",
			tweak:     ruleFrom(ipBlock("10.0.0.0/8", "10.0.1.0/24", "ten")),
			wantPaths: []string{"spec.ingress[1].from[0].ipBlock.except[1]"},
			check:     wantRule(1, false, 0, true, 0),
		},
		{
			name:      "ipBlock together with a selector",
			tweak:     ruleFrom(networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0"}, PodSelector: &metav1.LabelSelector{}}),
			wantPaths: []string{"spec.ingress[1].from[0]"},
			wantMsg:   "may not be combined",
			check:     wantRule(1, false, 0, true, 0),
		},
		{
			name:      "empty peer",
			tweak:     ruleFrom(networkingv1.NetworkPolicyPeer{}),
			wantPaths: []string{"spec.ingress[1].from[0]"},
			check:     wantRule(1, false, 0, true, 0),
		},
		{
			name:      "invalid port name",
			tweak:     rulePorts(networkingv1.NetworkPolicyPort{Port: named("Not_A-Name")}, networkingv1.NetworkPolicyPort{Port: named("http")}),
			wantPaths: []string{"spec.ingress[1].ports[0].port"},
			wantMsg:   "not a valid port name",
			replace:   true,
			probes: []probe{
				{"x/c", "x/a", cluster.ProtocolTCP, 80, true}, // the valid "http" entry still applies
				{"x/c", "x/a", cluster.ProtocolTCP, 81, false},
				{"y/b", "x/a", cluster.ProtocolTCP, 81, false},
			},
			check: wantRule(1, true, 0, false, 1),
		},
		{
			name:      "endPort below port",
			tweak:     rulePorts(networkingv1.NetworkPolicyPort{Port: num(82), EndPort: ptr(int32(80))}),
			wantPaths: []string{"spec.ingress[1].ports[0].endPort"},
			wantMsg:   "must be greater than or equal to port 82",
			check:     wantRule(1, true, 0, false, 0),
		},
		{
			name:      "endPort with a named port",
			tweak:     rulePorts(networkingv1.NetworkPolicyPort{Port: named("http"), EndPort: ptr(int32(90))}),
			wantPaths: []string{"spec.ingress[1].ports[0].endPort"},
			wantMsg:   "named port",
			check:     wantRule(1, true, 0, false, 0),
		},
		{
			name:      "endPort without port",
			tweak:     rulePorts(networkingv1.NetworkPolicyPort{EndPort: ptr(int32(90))}),
			wantPaths: []string{"spec.ingress[1].ports[0].endPort"},
			check:     wantRule(1, true, 0, false, 0),
		},
		{
			name:      "port out of range",
			tweak:     rulePorts(networkingv1.NetworkPolicyPort{Port: num(0)}, networkingv1.NetworkPolicyPort{Port: num(70000)}, networkingv1.NetworkPolicyPort{Port: num(80), EndPort: ptr(int32(70000))}),
			wantPaths: []string{"spec.ingress[1].ports[0].port", "spec.ingress[1].ports[1].port", "spec.ingress[1].ports[2].endPort"},
			check:     wantRule(1, true, 0, false, 0),
		},
		{
			name:      "unknown protocol",
			tweak:     rulePorts(networkingv1.NetworkPolicyPort{Protocol: ptr(corev1.Protocol("ICMP"))}),
			wantPaths: []string{"spec.ingress[1].ports[0].protocol"},
			wantMsg:   `Unsupported value: "ICMP"`,
			probes:    []probe{{"x/c", "x/a", cluster.ProtocolUDP, 80, false}, {"x/c", "x/a", cluster.ProtocolSCTP, 80, false}},
			check:     wantRule(1, true, 0, false, 0),
		},
		{
			name: "bad egress peer and port in one rule",
			tweak: func(s *networkingv1.NetworkPolicySpec) {
				s.Egress = []networkingv1.NetworkPolicyEgressRule{{
					To:    []networkingv1.NetworkPolicyPeer{ipBlock("10.0.0.0/8", "192.168.0.0/16")},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: ptr(corev1.Protocol("tcpp"))}},
				}}
			},
			wantPaths: []string{"spec.egress[0].to[0].ipBlock.except[0]", "spec.egress[0].ports[0].protocol"},
			probes:    []probe{{"x/a", "y/b", cluster.ProtocolTCP, 80, false}, {"x/a", "x/c", cluster.ProtocolUDP, 53, false}},
			check: func(t *testing.T, p *cluster.Policy) {
				if !p.IsolatesEgress || len(p.EgressRules) != 1 || p.EgressRules[0].AllPeers || p.EgressRules[0].AllPorts {
					t.Errorf("egress must stay isolated with a rule matching nothing: %+v", p.EgressRules)
				}
			},
		},
		{
			name:      "unknown policyType isolates both directions",
			tweak:     func(s *networkingv1.NetworkPolicySpec) { s.PolicyTypes = []networkingv1.PolicyType{"Sideways"} },
			wantPaths: []string{"spec.policyTypes[0]"},
			probes:    []probe{{"x/a", "y/b", cluster.ProtocolTCP, 80, false}},
			check: func(t *testing.T, p *cluster.Policy) {
				if !p.IsolatesIngress || !p.IsolatesEgress {
					t.Errorf("want both directions isolated, got ingress %v egress %v", p.IsolatesIngress, p.IsolatesEgress)
				}
			},
		},
		{
			// Without the unknown entry the ingress allow-all is ignored
			// (only Egress is listed); with it, ingress is isolated, and
			// that rule must not come into force.
			name: "unknown policyType does not bring an unlisted direction's rules into force",
			tweak: func(s *networkingv1.NetworkPolicySpec) {
				s.PolicyTypes = []networkingv1.PolicyType{"Egress", "Sideways"}
				s.Ingress = append(s.Ingress, networkingv1.NetworkPolicyIngressRule{})
			},
			wantPaths: []string{"spec.policyTypes[1]"},
			replace:   true,
			probes: []probe{
				{"y/b", "x/a", cluster.ProtocolTCP, 80, false},
				{"x/c", "x/a", cluster.ProtocolTCP, 81, false},
				{"x/a", "y/b", cluster.ProtocolTCP, 80, false},
			},
			check: func(t *testing.T, p *cluster.Policy) {
				if !p.IsolatesIngress || !p.IsolatesEgress || p.IngressRules != nil {
					t.Errorf("want both directions isolated and no ingress rules, got ingress %v egress %v, %d ingress rules", p.IsolatesIngress, p.IsolatesEgress, len(p.IngressRules))
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			np := basePolicy(tt.tweak)
			p, errs := cluster.ConvertPolicy(np)
			if len(errs) != len(tt.wantPaths) {
				t.Fatalf("got %d errors, want %d: %v", len(errs), len(tt.wantPaths), errs)
			}
			for i, err := range errs {
				msg := err.Error()
				if !strings.HasPrefix(msg, "networkpolicy x/p: "+tt.wantPaths[i]+": ") {
					t.Errorf("error %d = %q, want it to name networkpolicy x/p and field %s", i, msg, tt.wantPaths[i])
				}
				var pe *cluster.PolicyError
				if !errors.As(err, &pe) || pe.Err.Field != tt.wantPaths[i] {
					t.Errorf("error %d is not a *PolicyError for field %s: %#v", i, tt.wantPaths[i], err)
				}
			}
			if tt.wantMsg != "" && !strings.Contains(errs[0].Error(), tt.wantMsg) {
				t.Errorf("error %q does not contain %q", errs[0], tt.wantMsg)
			}
			if len(p.Errors) != len(errs) {
				t.Errorf("Policy.Errors has %d entries, ConvertPolicy returned %d", len(p.Errors), len(errs))
			}
			if tt.check != nil {
				tt.check(t, p)
			}
			// The policy is still enforced, and never allows more than the
			// base policy did.
			s, serrs := cluster.NewSnapshot(
				[]*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, {ObjectMeta: metav1.ObjectMeta{Name: "y"}}},
				[]*corev1.Pod{testPod("x", "a", "a", "10.0.0.1"), testPod("x", "c", "c", "10.0.0.3"), testPod("y", "b", "b", "10.0.1.1")},
				[]*networkingv1.NetworkPolicy{np},
			)
			if len(serrs) != len(errs) {
				t.Errorf("NewSnapshot reported %d errors, want %d", len(serrs), len(errs))
			}
			probes := tt.probes
			if !tt.replace {
				probes = append(append([]probe{}, wantBase...), probes...)
			}
			for _, pr := range probes {
				from, to := s.Pod(pr.from), s.Pod(pr.to)
				d := model.Evaluate(s, model.Packet{
					Src: model.Endpoint{Pod: from, IP: from.IPs[0]}, Dst: model.Endpoint{Pod: to, IP: to.IPs[0]},
					Protocol: pr.proto, Port: pr.port,
				})
				if d.Allowed != pr.want {
					t.Errorf("%s -> %s %s/%d: allowed %v, want %v (%s | %s)", pr.from, pr.to, pr.proto, pr.port, d.Allowed, pr.want, d.Egress.Reason, d.Ingress.Reason)
				}
			}
		})
	}
}

// wantRule checks ingress rule i: whether it has AllPeers / AllPorts and how
// many valid peers and ports survived.
func wantRule(i int, allPeers bool, peers int, allPorts bool, ports int) func(t *testing.T, p *cluster.Policy) {
	return func(t *testing.T, p *cluster.Policy) {
		t.Helper()
		if len(p.IngressRules) <= i {
			t.Fatalf("ingress rule %d missing: invalid rules must be kept, not dropped (%d rules)", i, len(p.IngressRules))
		}
		r := p.IngressRules[i]
		if r.AllPeers != allPeers || len(r.Peers) != peers || r.AllPorts != allPorts || len(r.Ports) != ports {
			t.Errorf("ingress[%d] = AllPeers %v, %d peers, AllPorts %v, %d ports; want %v, %d, %v, %d",
				i, r.AllPeers, len(r.Peers), r.AllPorts, len(r.Ports), allPeers, peers, allPorts, ports)
		}
	}
}

func TestConvertPolicy_Valid(t *testing.T) {
	t.Parallel()
	p80, named := intstr.FromInt32(80), intstr.FromString("http")
	udp := corev1.ProtocolUDP
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "ok"},
		Spec: networkingv1.NetworkPolicySpec{
			Egress: []networkingv1.NetworkPolicyEgressRule{{
				To: []networkingv1.NetworkPolicyPeer{
					{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.1.7/24", Except: []string{"10.0.1.128/25", "10.0.1.0/26"}}},
					{PodSelector: &metav1.LabelSelector{}},
					{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "b"}}},
				},
				Ports: []networkingv1.NetworkPolicyPort{{Port: &p80, EndPort: ptr(int32(90))}, {Protocol: &udp, Port: &named}, {Protocol: &udp}},
			}},
		},
	}
	p, errs := cluster.ConvertPolicy(np)
	if len(errs) != 0 {
		t.Fatalf("unexpected errors: %v", errs)
	}
	if !p.IsolatesIngress || !p.IsolatesEgress {
		t.Errorf("policyTypes defaulting: ingress %v egress %v, want both (egress rules present)", p.IsolatesIngress, p.IsolatesEgress)
	}
	r := p.EgressRules[0]
	ip := r.Peers[0]
	if ip.Kind != cluster.PeerIPBlock || ip.CIDR != netip.MustParsePrefix("10.0.1.0/24") ||
		len(ip.Except) != 2 || ip.Except[0] != netip.MustParsePrefix("10.0.1.0/26") {
		t.Errorf("ipBlock peer = %+v, want masked cidr and sorted excepts", ip)
	}
	if r.Peers[1].Kind != cluster.PeerPods || r.Peers[1].Namespace != "x" || r.Peers[1].NamespaceSelector != nil {
		t.Errorf("podSelector-only peer = %+v, want the policy's own namespace", r.Peers[1])
	}
	if r.Peers[2].Namespace != "" || r.Peers[2].PodSelector != nil || r.Peers[2].NamespaceSelector == nil {
		t.Errorf("namespaceSelector-only peer = %+v", r.Peers[2])
	}
	want := []string{"TCP/80-90", "UDP/http", "UDP/*"}
	for i, pt := range r.Ports {
		if pt.String() != want[i] {
			t.Errorf("port %d = %s, want %s", i, pt, want[i])
		}
	}
}

// TestConvertPolicy_CIDRsParseAsTheAPIServerDoes: the API server accepts
// legacy leading zeros (decimal) and IPv4-mapped IPv6 prefixes. The first
// means what it says; the second is ambiguous and is refused, fail-closed.
func TestConvertPolicy_CIDRsParseAsTheAPIServerDoes(t *testing.T) {
	t.Parallel()
	mk := func(cidr string) *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "p"},
			Spec: networkingv1.NetworkPolicySpec{Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: []string{"010.1.0.0/16"}}}},
			}}},
		}
	}
	p, errs := cluster.ConvertPolicy(mk("010.0.0.0/8"))
	require.Empty(t, errs)
	require.Len(t, p.IngressRules[0].Peers, 1)
	assert.Equal(t, netip.MustParsePrefix("10.0.0.0/8"), p.IngressRules[0].Peers[0].CIDR)
	assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, p.IngressRules[0].Peers[0].Except)

	p, errs = cluster.ConvertPolicy(mk("::ffff:10.0.0.0/104"))
	require.Len(t, errs, 1)
	assert.Contains(t, errs[0].Error(), "networkpolicy x/p: spec.ingress[0].from[0].ipBlock.cidr")
	assert.Contains(t, errs[0].Error(), "ambiguous")
	assert.Empty(t, p.IngressRules[0].Peers, "the ambiguous peer matches nothing")
	assert.False(t, p.IngressRules[0].AllPeers, "and the rule does not widen to every peer")
}

// TestConvertPod_InvalidContainerPortsMatchNothing: a container port the API
// server would refuse (outside 1-65535, or a protocol not spelt TCP, UDP or
// SCTP) is reported and ignored, so a named port naming it matches nothing,
// rather than wrapping to another 16-bit port (70000 is 4464, -65535 is 1).
func TestConvertPod_InvalidContainerPortsMatchNothing(t *testing.T) {
	t.Parallel()
	pod := testPod("x", "a", "a", "10.0.0.1")
	pod.Spec.Containers[0].Ports = []corev1.ContainerPort{
		{Name: "http", ContainerPort: 80},
		{Name: "big", ContainerPort: 70000},
		{Name: "neg", ContainerPort: -65535},
		{Name: "zero", ContainerPort: 0},
		{Name: "lower", ContainerPort: 90, Protocol: "tcp"},
	}
	p, errs := cluster.ConvertPod(pod)
	require.Len(t, errs, 4, "%v", errs)
	for i, want := range []string{"spec.containers[0].ports[1].containerPort: Invalid value: 70000", "ports[2].containerPort: Invalid value: -65535", "ports[3].containerPort: Invalid value: 0", `ports[4].protocol: protocol "tcp" must be written TCP`} {
		assert.Contains(t, errs[i].Error(), want)
		assert.Contains(t, errs[i].Error(), "pod x/a")
	}
	require.Len(t, p.Ports, 1)
	for _, name := range []string{"big", "neg", "zero", "lower"} {
		_, ok := p.ResolvePort(name, cluster.ProtocolTCP)
		assert.False(t, ok, "named port %s resolves", name)
	}

	named := func(name string) *intstr.IntOrString { v := intstr.FromString(name); return &v }
	np := basePolicy(func(s *networkingv1.NetworkPolicySpec) {
		s.Ingress[0].Ports = []networkingv1.NetworkPolicyPort{{Port: named("big")}, {Port: named("neg")}, {Port: named("lower")}}
	})
	snap, _ := cluster.NewSnapshot(
		[]*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, {ObjectMeta: metav1.ObjectMeta{Name: "y"}}},
		[]*corev1.Pod{pod, testPod("y", "b", "b", "10.0.1.1")},
		[]*networkingv1.NetworkPolicy{np},
	)
	from, to := snap.Pod("y/b"), snap.Pod("x/a")
	for _, port := range []int32{4464, 1, 90, 80} {
		d := model.Evaluate(snap, model.Packet{Src: model.Endpoint{Pod: from, IP: from.IPs[0]}, Dst: model.Endpoint{Pod: to, IP: to.IPs[0]}, Protocol: cluster.ProtocolTCP, Port: port})
		assert.False(t, d.Allowed, "TCP/%d allowed: %s", port, d.Ingress.Reason)
	}
}
