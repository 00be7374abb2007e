// Package selectorstest generates synthetic clusters for tests and benchmarks
// of the selector index and of the compiler.
package selectorstest

import (
	"fmt"
	"math/rand/v2"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/policyd/policyd/cluster"
)

// Nodes is the number of nodes Synthetic spreads pods over, named
// "node-0" … "node-99".
const Nodes = 100

var (
	teams = []string{"payments", "search", "checkout", "identity", "platform", "data", "ml", "web", "mobile", "infra"}
	envs  = []string{"prod", "staging", "dev"}
	apps  = []appSpec{
		{"web", "frontend", []corev1.ContainerPort{port("http", 8080, "TCP"), port("metrics", 9090, "TCP")}},
		{"gateway", "frontend", []corev1.ContainerPort{port("https", 8443, "TCP"), port("http", 8080, "TCP")}},
		{"api", "backend", []corev1.ContainerPort{port("grpc", 9000, "TCP"), port("http", 8080, "TCP"), port("metrics", 9090, "TCP")}},
		{"auth", "backend", []corev1.ContainerPort{port("http", 8081, "TCP"), port("metrics", 9090, "TCP")}},
		{"worker", "backend", []corev1.ContainerPort{port("metrics", 9091, "TCP")}},
		{"queue", "backend", []corev1.ContainerPort{port("amqp", 5672, "TCP"), port("", 15672, "TCP")}},
		{"search", "backend", []corev1.ContainerPort{port("http", 9200, "TCP"), port("transport", 9300, "TCP")}},
		{"db", "data", []corev1.ContainerPort{port("postgres", 5432, "TCP"), port("", 9187, "TCP")}},
		{"cache", "data", []corev1.ContainerPort{port("redis", 6379, "TCP")}},
		{"stream", "data", []corev1.ContainerPort{port("kafka", 9092, "TCP"), port("sctp-feed", 9899, "SCTP")}},
	}
	dnsPorts = []corev1.ContainerPort{port("dns", 53, "UDP"), port("dns-tcp", 53, "TCP"), port("metrics", 9153, "TCP")}
	tiers    = []string{"frontend", "backend", "data"}
)

type appSpec struct {
	name, tier string
	ports      []corev1.ContainerPort
}

func port(name string, n int32, proto corev1.Protocol) corev1.ContainerPort {
	return corev1.ContainerPort{Name: name, ContainerPort: n, Protocol: proto}
}

// Synthetic returns a deterministic synthetic cluster for seed: namespaces
// namespaces (the first is kube-system with CoreDNS and one hostNetwork
// kube-proxy pod per node, the others "<team>-<i>" labelled team and env),
// pods pods grouped in deployments (labels app, tier, team, pod-template-hash,
// sometimes version; container ports including named ones) with unique
// addresses in 10.0.0.0/8 (every other pod dual-stack, fd00::/64) spread over
// nodes "node-0" … "node-99", and policies policies spread over the namespaces,
// each with 1-3 rules mixing pod, namespace, combined and ipBlock peers (In,
// NotIn, Exists, DoesNotExist and matchLabels selectors) and numeric, named,
// range and protocol-only ports. Every policy is built as a
// networking.k8s.io/v1 object and converted with cluster.ConvertPolicy.
//
// It panics if it generates an object that does not convert cleanly, which is
// a bug in the generator, or if namespaces < 1 while pods or policies > 0.
func Synthetic(pods, policies, namespaces int, seed int64) *cluster.Snapshot {
	nsObjs, podObjs, polObjs := SyntheticObjects(pods, policies, namespaces, seed)
	s, errs := cluster.NewSnapshot(nsObjs, podObjs, polObjs)
	if len(errs) > 0 {
		panic(fmt.Sprintf("selectorstest: generated invalid objects: %v", errs))
	}
	return s
}

// SyntheticObjects returns the API objects Synthetic converts, for tests and
// benchmarks that load the same cluster into an API server. Pods carry the
// status (phase Running, addresses) a kubelet would have written; their
// containers have names and ports but no image. Namespace i's pods come
// before namespace i+1's, and policy i is in namespace i%namespaces.
func SyntheticObjects(pods, policies, namespaces int, seed int64) ([]*corev1.Namespace, []*corev1.Pod, []*networkingv1.NetworkPolicy) {
	if namespaces < 1 && (pods > 0 || policies > 0) {
		panic("selectorstest: Synthetic needs at least one namespace for pods or policies")
	}
	g := &gen{rng: rand.New(rand.NewPCG(uint64(seed), 0x5e1ec7)), namespaces: namespaces}
	var nsObjs []*corev1.Namespace
	for i := range namespaces {
		nsObjs = append(nsObjs, g.namespace(i))
	}
	var podObjs []*corev1.Pod
	for i := range namespaces {
		n := pods / namespaces
		if i < pods%namespaces {
			n++
		}
		podObjs = append(podObjs, g.pods(i, n)...)
	}
	var polObjs []*networkingv1.NetworkPolicy
	for i := range policies {
		polObjs = append(polObjs, g.policy(i))
	}
	return nsObjs, podObjs, polObjs
}

type gen struct {
	rng        *rand.Rand
	namespaces int
	nsNames    []string
	nextIP     uint32
	hostNet    int
}

func (g *gen) namespaceName(i int) string {
	if i == 0 {
		return "kube-system"
	}
	return fmt.Sprintf("%s-%d", teams[i%len(teams)], i)
}

func (g *gen) namespace(i int) *corev1.Namespace {
	name := g.namespaceName(i)
	g.nsNames = append(g.nsNames, name)
	l := map[string]string{}
	if i == 0 {
		l["team"] = "platform"
	} else {
		l["team"] = teams[i%len(teams)]
		l["env"] = envs[i%len(envs)]
	}
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
}

const hexDigits = "0123456789abcdef"

func (g *gen) suffix(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = hexDigits[g.rng.IntN(len(hexDigits))]
	}
	return string(b)
}

// podAddrs returns the next unique pod address(es).
func (g *gen) podAddrs() []corev1.PodIP {
	k := g.nextIP
	g.nextIP++
	if k >= 254<<16 {
		panic("selectorstest: too many pods for 10.1.0.0-10.254.255.255")
	}
	v4 := netip.AddrFrom4([4]byte{10, byte(1 + k>>16), byte(k >> 8), byte(k)})
	ips := []corev1.PodIP{{IP: v4.String()}}
	if k%2 == 0 {
		var b [16]byte
		b[0], b[1] = 0xfd, 0x00
		b[12], b[13], b[14], b[15] = byte(k>>24), byte(k>>16), byte(k>>8), byte(k)
		ips = append(ips, corev1.PodIP{IP: netip.AddrFrom16(b).String()})
	}
	return ips
}

func (g *gen) pods(nsIndex, n int) []*corev1.Pod {
	ns := g.nsNames[nsIndex]
	var out []*corev1.Pod
	if nsIndex == 0 {
		// kube-system: one hostNetwork kube-proxy per node (at most a quarter of
		// the namespace's pods), then CoreDNS replicas.
		proxies := min(n/4, Nodes)
		for i := range proxies {
			node := g.hostNet
			g.hostNet++
			addr := netip.AddrFrom4([4]byte{10, 255, byte(node >> 8), byte(node)}).String()
			out = append(out, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("kube-proxy-%d", i),
					Labels: map[string]string{"k8s-app": "kube-proxy"}},
				Spec: corev1.PodSpec{NodeName: fmt.Sprintf("node-%d", node%Nodes), HostNetwork: true,
					Containers: []corev1.Container{{Name: "kube-proxy"}}},
				Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: addr, PodIPs: []corev1.PodIP{{IP: addr}}},
			})
		}
		hash := g.suffix(10)
		for i := range n - proxies {
			ips := g.podAddrs()
			out = append(out, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("coredns-%s-%d", hash, i),
					Labels: map[string]string{"k8s-app": "kube-dns", "pod-template-hash": hash}},
				Spec: corev1.PodSpec{NodeName: fmt.Sprintf("node-%d", g.rng.IntN(Nodes)),
					Containers: []corev1.Container{{Name: "coredns", Ports: dnsPorts}}},
				Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ips[0].IP, PodIPs: ips},
			})
		}
		return out
	}
	team := teams[nsIndex%len(teams)]
	// Deployments of 1-12 replicas, apps cycling through the catalogue (a
	// second round of an app is a second version of it).
	for dep := 0; len(out) < n; dep++ {
		app := apps[(dep+nsIndex)%len(apps)]
		replicas := min(1+g.rng.IntN(12), n-len(out))
		hash := g.suffix(10)
		l := map[string]string{"app": app.name, "tier": app.tier, "team": team, "pod-template-hash": hash}
		if dep >= len(apps) {
			l["version"] = fmt.Sprintf("v%d", 1+dep/len(apps))
		}
		for r := range replicas {
			ips := g.podAddrs()
			out = append(out, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s-%s-%d", app.name, hash, r), Labels: l},
				Spec: corev1.PodSpec{NodeName: fmt.Sprintf("node-%d", g.rng.IntN(Nodes)),
					Containers: []corev1.Container{{Name: app.name, Ports: app.ports}}},
				Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ips[0].IP, PodIPs: ips},
			})
		}
	}
	return out
}

func (g *gen) pick(xs []string) string { return xs[g.rng.IntN(len(xs))] }

func (g *gen) app() appSpec { return apps[g.rng.IntN(len(apps))] }

// subjectSelector returns a policy podSelector from a small vocabulary, so
// that many policies share selectors, as in real clusters.
func (g *gen) subjectSelector() metav1.LabelSelector {
	switch g.rng.IntN(6) {
	case 0:
		return metav1.LabelSelector{}
	case 1, 2:
		return metav1.LabelSelector{MatchLabels: map[string]string{"app": g.app().name}}
	case 3:
		return metav1.LabelSelector{MatchLabels: map[string]string{"tier": g.pick(tiers)}}
	case 4:
		return metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"backend", "data"}}}}
	default:
		return metav1.LabelSelector{
			MatchLabels: map[string]string{"app": g.app().name},
			MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "version", Operator: metav1.LabelSelectorOpDoesNotExist}}}
	}
}

func (g *gen) podSelector() *metav1.LabelSelector {
	var s metav1.LabelSelector
	switch g.rng.IntN(7) {
	case 0:
		// {}: every pod.
	case 1, 2:
		s.MatchLabels = map[string]string{"app": g.app().name}
	case 3:
		s.MatchLabels = map[string]string{"tier": g.pick(tiers)}
	case 4:
		s.MatchExpressions = []metav1.LabelSelectorRequirement{
			{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{g.app().name, g.app().name}}}
	case 5:
		s.MatchExpressions = []metav1.LabelSelectorRequirement{
			{Key: "tier", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"data"}},
			{Key: "team", Operator: metav1.LabelSelectorOpExists}}
	default:
		s.MatchExpressions = []metav1.LabelSelectorRequirement{
			{Key: "version", Operator: metav1.LabelSelectorOpDoesNotExist}}
		s.MatchLabels = map[string]string{"tier": "frontend"}
	}
	return &s
}

func (g *gen) namespaceSelector() *metav1.LabelSelector {
	var s metav1.LabelSelector
	switch g.rng.IntN(6) {
	case 0:
		// {}: every namespace.
	case 1, 2:
		s.MatchLabels = map[string]string{"team": g.pick(teams)}
	case 3:
		s.MatchExpressions = []metav1.LabelSelectorRequirement{
			{Key: "env", Operator: metav1.LabelSelectorOpIn, Values: []string{"prod", "staging"}}}
	case 4:
		s.MatchExpressions = []metav1.LabelSelectorRequirement{
			{Key: "env", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"dev"}}}
	default:
		s.MatchLabels = map[string]string{corev1.LabelMetadataName: g.nsNames[g.rng.IntN(len(g.nsNames))]}
	}
	return &s
}

func (g *gen) peer() networkingv1.NetworkPolicyPeer {
	switch g.rng.IntN(10) {
	case 0, 1, 2, 3:
		return networkingv1.NetworkPolicyPeer{PodSelector: g.podSelector()}
	case 4, 5:
		return networkingv1.NetworkPolicyPeer{NamespaceSelector: g.namespaceSelector()}
	case 6, 7:
		return networkingv1.NetworkPolicyPeer{NamespaceSelector: g.namespaceSelector(), PodSelector: g.podSelector()}
	case 8:
		return networkingv1.NetworkPolicyPeer{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: "kube-system"}},
			PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "kube-dns"}},
		}
	default:
		switch g.rng.IntN(3) {
		case 0:
			return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: []string{"10.0.0.0/8"}}}
		case 1:
			x := 1 + g.rng.IntN(200)
			return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{
				CIDR: fmt.Sprintf("10.%d.0.0/16", x), Except: []string{fmt.Sprintf("10.%d.1.0/24", x)}}}
		default:
			return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "fd00::/64"}}
		}
	}
}

func (g *gen) ports() []networkingv1.NetworkPolicyPort {
	n := g.rng.IntN(3)
	var out []networkingv1.NetworkPolicyPort
	for range n {
		tcp, udp, sctp := corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP
		switch g.rng.IntN(7) {
		case 0:
			p := intstr.FromInt32(8080)
			out = append(out, networkingv1.NetworkPolicyPort{Port: &p})
		case 1:
			p := intstr.FromString(g.pick([]string{"http", "metrics", "grpc", "postgres"}))
			out = append(out, networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: &p})
		case 2:
			p := intstr.FromInt32(53)
			out = append(out, networkingv1.NetworkPolicyPort{Protocol: &udp, Port: &p})
		case 3:
			p, end := intstr.FromInt32(8000), int32(8100)
			out = append(out, networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: &p, EndPort: &end})
		case 4:
			out = append(out, networkingv1.NetworkPolicyPort{Protocol: &udp})
		case 5:
			p := intstr.FromString("sctp-feed")
			out = append(out, networkingv1.NetworkPolicyPort{Protocol: &sctp, Port: &p})
		default:
			p := intstr.FromInt32(int32(1 + g.rng.IntN(65535)))
			out = append(out, networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: &p})
		}
	}
	return out
}

func (g *gen) peers() []networkingv1.NetworkPolicyPeer {
	var out []networkingv1.NetworkPolicyPeer
	for range g.rng.IntN(4) { // 0 peers: every source / destination
		out = append(out, g.peer())
	}
	return out
}

func (g *gen) policy(i int) *networkingv1.NetworkPolicy {
	nsIndex := i % g.namespaces
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: g.nsNames[nsIndex], Name: fmt.Sprintf("policy-%d", i)},
		Spec:       networkingv1.NetworkPolicySpec{PodSelector: g.subjectSelector()},
	}
	rules := 1 + g.rng.IntN(3)
	ingress, egress := true, false
	switch r := g.rng.IntN(20); {
	case r < 12:
	case r < 15:
		ingress, egress = false, true
	default:
		egress = true
	}
	if ingress {
		np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
	}
	if egress {
		np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
	}
	for r := range rules {
		if ingress && (!egress || r%2 == 0) {
			np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: g.peers(), Ports: g.ports()})
		} else {
			np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: g.peers(), Ports: g.ports()})
		}
	}
	return np
}
