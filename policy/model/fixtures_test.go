package model

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/policyd/policyd/cluster"
)

// Fixture builders. The base cluster:
//
//	namespace x {ns=x}          x/a {app=a} 10.0.0.1 fd00::1   x/b {app=b} 10.0.0.2 (http=TCP/80)
//	                            x/host hostNetwork on node-1, 10.255.0.1
//	namespace y {ns=y, team=b}  y/a {app=a} 10.0.1.1 fd00::101 y/b {app=b, env=""} 10.0.1.2 (http=TCP/81)
//	namespace z {ns=z}          z/c {tier=back} 10.0.2.1
//
// Every pod declares serve-<port>-<proto> for 80 and 81 over TCP, UDP, SCTP.

func baseObjects() ([]*corev1.Namespace, []*corev1.Pod) {
	nss := []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: "x", Labels: map[string]string{"ns": "x"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "y", Labels: map[string]string{"ns": "y", "team": "b"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "z", Labels: map[string]string{"ns": "z"}}},
	}
	pods := []*corev1.Pod{
		newPod("x", "a", map[string]string{"app": "a"}, "10.0.0.1", "fd00::1"),
		newPod("x", "b", map[string]string{"app": "b"}, "10.0.0.2"),
		newPod("y", "a", map[string]string{"app": "a"}, "10.0.1.1", "fd00::101"),
		newPod("y", "b", map[string]string{"app": "b", "env": ""}, "10.0.1.2"),
		newPod("z", "c", map[string]string{"tier": "back"}, "10.0.2.1"),
	}
	host := newPod("x", "host", map[string]string{"app": "a"}, "10.255.0.1")
	host.Spec.HostNetwork = true
	pods = append(pods, host)
	addNamedPort(pods[1], "http", 80)
	addNamedPort(pods[3], "http", 81)
	return nss, pods
}

func newPod(ns, name string, labels map[string]string, ips ...string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec:       corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "c"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for _, port := range []int32{80, 81} {
		for _, proto := range cluster.Protocols {
			p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{
				Name: "serve-" + itoa(port) + "-" + proto.Lower(), ContainerPort: port, Protocol: corev1.Protocol(proto.String()),
			})
		}
	}
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	return p
}

func addNamedPort(p *corev1.Pod, name string, port int32) {
	p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{Name: name, ContainerPort: port, Protocol: corev1.ProtocolTCP})
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }

// snapshot builds the base cluster with policies, failing the test on any
// conversion error unless allowErrors.
func snapshot(t testing.TB, policies []*networkingv1.NetworkPolicy, allowErrors bool) *cluster.Snapshot {
	t.Helper()
	nss, pods := baseObjects()
	s, errs := cluster.NewSnapshot(nss, pods, policies)
	if len(errs) > 0 && !allowErrors {
		t.Fatalf("fixture does not convert: %v", errs)
	}
	return s
}

type specTweak func(*networkingv1.NetworkPolicySpec)

func np(ns, name string, tweaks ...specTweak) *networkingv1.NetworkPolicy {
	p := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for _, tw := range tweaks {
		tw(&p.Spec)
	}
	return p
}

// selecting sets spec.podSelector.matchLabels from k, v pairs; none selects all.
func selecting(kv ...string) specTweak {
	return func(s *networkingv1.NetworkPolicySpec) { s.PodSelector = *labelsSel(kv...) }
}

func types(ts ...networkingv1.PolicyType) specTweak {
	return func(s *networkingv1.NetworkPolicySpec) { s.PolicyTypes = ts }
}

const (
	tIn = networkingv1.PolicyTypeIngress
	tEg = networkingv1.PolicyTypeEgress
)

// ingress appends rules; with no arguments it sets an empty (non-nil) list.
func ingress(rules ...networkingv1.NetworkPolicyIngressRule) specTweak {
	return func(s *networkingv1.NetworkPolicySpec) {
		if s.Ingress == nil {
			s.Ingress = []networkingv1.NetworkPolicyIngressRule{}
		}
		s.Ingress = append(s.Ingress, rules...)
	}
}

func egress(rules ...networkingv1.NetworkPolicyEgressRule) specTweak {
	return func(s *networkingv1.NetworkPolicySpec) {
		if s.Egress == nil {
			s.Egress = []networkingv1.NetworkPolicyEgressRule{}
		}
		s.Egress = append(s.Egress, rules...)
	}
}

func in(peers []networkingv1.NetworkPolicyPeer, ports ...networkingv1.NetworkPolicyPort) networkingv1.NetworkPolicyIngressRule {
	return networkingv1.NetworkPolicyIngressRule{From: peers, Ports: ports}
}

func eg(peers []networkingv1.NetworkPolicyPeer, ports ...networkingv1.NetworkPolicyPort) networkingv1.NetworkPolicyEgressRule {
	return networkingv1.NetworkPolicyEgressRule{To: peers, Ports: ports}
}

func peers(ps ...networkingv1.NetworkPolicyPeer) []networkingv1.NetworkPolicyPeer { return ps }

func labelsSel(kv ...string) *metav1.LabelSelector {
	s := &metav1.LabelSelector{}
	for i := 0; i+1 < len(kv); i += 2 {
		if s.MatchLabels == nil {
			s.MatchLabels = map[string]string{}
		}
		s.MatchLabels[kv[i]] = kv[i+1]
	}
	return s
}

func exprSel(key string, op metav1.LabelSelectorOperator, values ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: op, Values: values}}}
}

func podPeer(sel *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: sel}
}

func nsPeer(sel *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: sel}
}

func nsPodPeer(ns, pods *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: ns, PodSelector: pods}
}

func ipPeer(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

func protoPtr(p cluster.Protocol) *corev1.Protocol {
	v := corev1.Protocol(p.String())
	return &v
}

func port(p cluster.Protocol, n int32) networkingv1.NetworkPolicyPort {
	v := intstr.FromInt32(n)
	return networkingv1.NetworkPolicyPort{Protocol: protoPtr(p), Port: &v}
}

func portRange(p cluster.Protocol, from, to int32) networkingv1.NetworkPolicyPort {
	pt := port(p, from)
	pt.EndPort = &to
	return pt
}

func namedPort(p cluster.Protocol, name string) networkingv1.NetworkPolicyPort {
	v := intstr.FromString(name)
	return networkingv1.NetworkPolicyPort{Protocol: protoPtr(p), Port: &v}
}

func protoOnly(p cluster.Protocol) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: protoPtr(p)}
}

// endpoint resolves a fixture endpoint spec:
//
//	"x/a"        the pod's first address
//	"x/a@6"      the pod's IPv6 address
//	"node:IP"    node traffic from IP
//	"IP"         an address; a pod when some non-hostNetwork pod holds it
func endpoint(t testing.TB, s *cluster.Snapshot, spec string) Endpoint {
	t.Helper()
	if ip, ok := strings.CutPrefix(spec, "node:"); ok {
		return Endpoint{IP: netip.MustParseAddr(ip), Node: true}
	}
	if a, err := netip.ParseAddr(spec); err == nil {
		return Endpoint{Pod: s.PodByIP(a), IP: a}
	}
	key, fam, _ := strings.Cut(spec, "@")
	p := s.Pod(key)
	if p == nil {
		t.Fatalf("fixture pod %q not found", key)
	}
	family := 4
	if fam == "6" {
		family = 6
	}
	a, ok := p.IP(family)
	if !ok {
		t.Fatalf("fixture pod %q has no IPv%d address", key, family)
	}
	return Endpoint{Pod: p, IP: a}
}

func packet(t testing.TB, s *cluster.Snapshot, from, to string, proto cluster.Protocol, port int32) Packet {
	t.Helper()
	return Packet{Src: endpoint(t, s, from), Dst: endpoint(t, s, to), Protocol: proto, Port: port}
}
