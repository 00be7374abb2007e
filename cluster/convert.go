package cluster

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// PolicyError is a validation error of one NetworkPolicy, naming the object and
// the field path.
type PolicyError struct {
	// Policy is "namespace/name".
	Policy string
	Err    *field.Error
}

func (e *PolicyError) Error() string {
	return fmt.Sprintf("networkpolicy %s: %s", e.Policy, e.Err.Error())
}

// Unwrap returns the field error.
func (e *PolicyError) Unwrap() error { return e.Err }

// ConvertNamespace converts a core/v1 Namespace.
// The kubernetes.io/metadata.name label, which the API server always sets, is
// added when a manifest omits it.
func ConvertNamespace(ns *corev1.Namespace) *Namespace {
	l := copyMap(ns.Labels)
	l[corev1.LabelMetadataName] = ns.Name
	return &Namespace{Name: ns.Name, Labels: labels.Set(l)}
}

// ConvertPod converts a core/v1 Pod. Pods in a terminal phase (Succeeded,
// Failed) keep no addresses: their IPs may already belong to a new pod.
// Pod IPs are read as ParseIP says; one it refuses (an IPv6 zone, not an
// address) is reported and skipped.
func ConvertPod(p *corev1.Pod) (*Pod, []error) {
	out := &Pod{
		Namespace:   p.Namespace,
		Name:        p.Name,
		Labels:      labels.Set(copyMap(p.Labels)),
		NodeName:    p.Spec.NodeName,
		HostNetwork: p.Spec.HostNetwork,
		Created:     p.CreationTimestamp.Time,
	}
	var errs []error
	for i, c := range p.Spec.Containers {
		for j, cp := range c.Ports {
			proto := ProtocolTCP
			if cp.Protocol != "" {
				var err error
				if proto, err = ParseAPIProtocol(string(cp.Protocol)); err != nil {
					errs = append(errs, objectError("Pod", out.Key(), fmt.Sprintf("spec.containers[%d].ports[%d].protocol", i, j), "%w (the port is ignored: a named port naming it matches nothing)", err))
					continue
				}
			}
			// The API server refuses ports outside 1-65535; a manifest can
			// still say 70000, which as a 16-bit nft port would be 4464.
			if msgs := validation.IsValidPortNum(int(cp.ContainerPort)); len(msgs) > 0 {
				errs = append(errs, objectError("Pod", out.Key(), fmt.Sprintf("spec.containers[%d].ports[%d].containerPort", i, j), "Invalid value: %d: %s (the port is ignored: a named port naming it matches nothing)", cp.ContainerPort, msgs[0]))
				continue
			}
			hp := uint16(0)
			if cp.HostPort > 0 && cp.HostPort <= 65535 {
				hp = uint16(cp.HostPort)
			}
			out.Ports = append(out.Ports, ContainerPort{Name: cp.Name, Port: cp.ContainerPort, Protocol: proto, HostPort: hp})
		}
	}
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return out, errs
	}
	if !p.Spec.HostNetwork && p.Spec.NodeName == "" && (p.Status.PodIP != "" || len(p.Status.PodIPs) > 0) {
		// A pod runs on a node; one that names none runs nowhere, and no
		// node's table judges its traffic. Its addresses are no pod's
		// (kube-scheduler sets spec.nodeName before any CNI gives an
		// address, so only a stale or forged status says this).
		errs = append(errs, objectError("Pod", out.Key(), "status.podIPs", "the pod has addresses but no spec.nodeName, so it runs on no node; its addresses are ignored"))
		return out, errs
	}
	raw := make([]string, 0, 2)
	for _, ip := range p.Status.PodIPs {
		raw = append(raw, ip.IP)
	}
	onlyPodIP := len(raw) == 0 && p.Status.PodIP != ""
	if onlyPodIP {
		raw = append(raw, p.Status.PodIP)
	}
	for i, s := range raw {
		a, err := ParseIP(s)
		if err != nil {
			path := fmt.Sprintf("status.podIPs[%d]", i)
			if onlyPodIP {
				path = "status.podIP"
			}
			errs = append(errs, objectError("Pod", out.Key(), path, "Invalid value: %w (the address is ignored)", err))
			continue
		}
		if _, dup := out.IP(familyOf(a)); dup {
			continue
		}
		out.IPs = append(out.IPs, a)
	}
	return out, errs
}

// ConvertPolicy validates and converts a NetworkPolicy. It always returns a
// policy, even when errs is non-empty. The conversion is fail-closed:
//   - an invalid podSelector selects every pod of the namespace;
//   - an invalid policyTypes entry isolates both directions;
//   - an invalid peer (bad selector, bad CIDR, except outside cidr, no or
//     conflicting fields) is dropped from its rule, and a rule whose peers are
//     all invalid matches nothing — never "every peer";
//   - an invalid port entry (bad name, endPort with a named port or below port,
//     unknown protocol, out of range) is dropped likewise, and a rule whose port
//     entries are all invalid matches nothing — never "every port".
//
// So an invalid policy may deny more than its author meant but never allows more.
func ConvertPolicy(np *networkingv1.NetworkPolicy) (*Policy, []error) {
	p := &Policy{Namespace: np.Namespace, Name: np.Name, Created: np.CreationTimestamp.Time}
	var errs field.ErrorList
	spec := field.NewPath("spec")

	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil {
		errs = append(errs, field.Invalid(spec.Child("podSelector"), np.Spec.PodSelector.String(), err.Error()+" (policy applied to every pod of the namespace, allowing nothing it would not otherwise)"))
		sel = labels.Everything()
	}
	p.PodSelector = sel
	p.PodSelectorKey = sel.String()

	if len(np.Spec.PolicyTypes) == 0 {
		p.IsolatesIngress = true
		p.IsolatesEgress = len(np.Spec.Egress) > 0
	}
	listedIngress, listedEgress, unknownType := false, false, false
	for i, t := range np.Spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			p.IsolatesIngress, listedIngress = true, true
		case networkingv1.PolicyTypeEgress:
			p.IsolatesEgress, listedEgress = true, true
		default:
			errs = append(errs, field.NotSupported(spec.Child("policyTypes").Index(i), t, []string{"Ingress", "Egress"}))
			p.IsolatesIngress, p.IsolatesEgress, unknownType = true, true, true
		}
	}

	for i, r := range np.Spec.Ingress {
		path := spec.Child("ingress").Index(i)
		rule, rerrs := convertRule(np.Namespace, r.From, r.Ports, path.Child("from"), path.Child("ports"))
		errs = append(errs, rerrs...)
		p.IngressRules = append(p.IngressRules, rule)
	}
	for i, r := range np.Spec.Egress {
		path := spec.Child("egress").Index(i)
		rule, rerrs := convertRule(np.Namespace, r.To, r.Ports, path.Child("to"), path.Child("ports"))
		errs = append(errs, rerrs...)
		p.EgressRules = append(p.EgressRules, rule)
	}
	// A policy whose podSelector failed is applied to the whole namespace; its
	// rules must not then allow anything to pods it may not have meant.
	if err != nil {
		p.IngressRules, p.EgressRules = nil, nil
	}
	// An unknown policyType isolates both directions, but a direction keeps
	// its rules only where they would be in force without the unknown
	// entry: listed, or, when no valid entry is listed, by the default
	// (ingress always, egress when it has rules). policyTypes [Egress,
	// Sideways] must not turn an ignored "ingress: [{}]" into an allow-all.
	if unknownType {
		noneListed := !listedIngress && !listedEgress
		if !listedIngress && !noneListed {
			p.IngressRules = nil
		}
		if !listedEgress && !(noneListed && len(np.Spec.Egress) > 0) {
			p.EgressRules = nil
		}
	}
	for _, e := range errs {
		p.Errors = append(p.Errors, &PolicyError{Policy: p.Key(), Err: e})
	}
	return p, p.Errors
}

func convertRule(ns string, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort, peersPath, portsPath *field.Path) (Rule, field.ErrorList) {
	var errs field.ErrorList
	r := Rule{AllPeers: len(peers) == 0, AllPorts: len(ports) == 0}
	for i := range peers {
		peer, err := convertPeer(ns, &peers[i], peersPath.Index(i))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.Peers = append(r.Peers, peer)
	}
	for i := range ports {
		port, err := convertPort(&ports[i], portsPath.Index(i))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.Ports = append(r.Ports, port)
	}
	return r, errs
}

func convertPeer(ns string, in *networkingv1.NetworkPolicyPeer, path *field.Path) (Peer, *field.Error) {
	hasSel := in.PodSelector != nil || in.NamespaceSelector != nil
	switch {
	case in.IPBlock != nil && hasSel:
		return Peer{}, field.Forbidden(path, "ipBlock may not be combined with podSelector or namespaceSelector")
	case in.IPBlock != nil:
		return convertIPBlock(in.IPBlock, path.Child("ipBlock"))
	case !hasSel:
		return Peer{}, field.Required(path, "must specify podSelector, namespaceSelector or ipBlock")
	}
	peer := Peer{Kind: PeerPods}
	podKey, nsKey := "*", "ns="+ns
	if in.PodSelector != nil {
		s, err := metav1.LabelSelectorAsSelector(in.PodSelector)
		if err != nil {
			return Peer{}, field.Invalid(path.Child("podSelector"), in.PodSelector.String(), err.Error())
		}
		peer.PodSelector = s
		podKey = s.String()
	}
	if in.NamespaceSelector != nil {
		s, err := metav1.LabelSelectorAsSelector(in.NamespaceSelector)
		if err != nil {
			return Peer{}, field.Invalid(path.Child("namespaceSelector"), in.NamespaceSelector.String(), err.Error())
		}
		peer.NamespaceSelector = s
		nsKey = "nssel=" + s.String()
	} else {
		peer.Namespace = ns
	}
	if podKey == "" {
		podKey = "*" // podSelector {} and an absent podSelector select the same pods
	}
	peer.Key = nsKey + ";pods=" + podKey
	return peer, nil
}

func convertIPBlock(b *networkingv1.IPBlock, path *field.Path) (Peer, *field.Error) {
	cidr, err := ParseCIDR(b.CIDR)
	if err != nil {
		return Peer{}, field.Invalid(path.Child("cidr"), b.CIDR, err.Error())
	}
	peer := Peer{Kind: PeerIPBlock, CIDR: cidr}
	for i, s := range b.Except {
		ex, err := ParseCIDR(s)
		if err != nil {
			return Peer{}, field.Invalid(path.Child("except").Index(i), s, err.Error())
		}
		if ex.Addr().Is4() != cidr.Addr().Is4() || ex.Bits() <= cidr.Bits() || !cidr.Contains(ex.Addr()) {
			return Peer{}, field.Invalid(path.Child("except").Index(i), s, fmt.Sprintf("must be a strict subset of cidr %s", cidr))
		}
		peer.Except = append(peer.Except, ex)
	}
	sort.Slice(peer.Except, func(i, j int) bool { return prefixLess(peer.Except[i], peer.Except[j]) })
	// Built once, not by repeated concatenation: a tenant can write tens
	// of thousands of excepts, and += copies the key each time.
	var key strings.Builder
	key.WriteString("ipblock=" + cidr.String())
	for _, ex := range peer.Except {
		key.WriteString(",except=" + ex.String())
	}
	peer.Key = key.String()
	return peer, nil
}

func convertPort(in *networkingv1.NetworkPolicyPort, path *field.Path) (Port, *field.Error) {
	out := Port{Protocol: ProtocolTCP}
	if in.Protocol != nil {
		proto, err := ParseAPIProtocol(string(*in.Protocol))
		if err != nil {
			return Port{}, field.NotSupported(path.Child("protocol"), *in.Protocol, []string{"TCP", "UDP", "SCTP"})
		}
		out.Protocol = proto
	}
	if in.Port == nil {
		if in.EndPort != nil {
			return Port{}, field.Forbidden(path.Child("endPort"), "may not be set without port")
		}
		return out, nil
	}
	if in.Port.Type == intstr.String {
		name := in.Port.StrVal
		if msgs := validation.IsValidPortName(name); len(msgs) > 0 {
			return Port{}, field.Invalid(path.Child("port"), name, "not a valid port name: "+msgs[0])
		}
		if in.EndPort != nil {
			return Port{}, field.Forbidden(path.Child("endPort"), "may not be used with a named port")
		}
		out.Name = name
		return out, nil
	}
	port := in.Port.IntVal
	if msgs := validation.IsValidPortNum(int(port)); len(msgs) > 0 {
		return Port{}, field.Invalid(path.Child("port"), port, msgs[0])
	}
	out.Port, out.EndPort = port, port
	if in.EndPort != nil {
		end := *in.EndPort
		if msgs := validation.IsValidPortNum(int(end)); len(msgs) > 0 {
			return Port{}, field.Invalid(path.Child("endPort"), end, msgs[0])
		}
		if end < port {
			return Port{}, field.Invalid(path.Child("endPort"), end, fmt.Sprintf("must be greater than or equal to port %d", port))
		}
		out.EndPort = end
	}
	return out, nil
}

// NewSnapshot converts API objects into a Snapshot. Conversion errors are
// returned alongside it, and kept in its Errors (see Snapshot.Invalid); the
// Snapshot still holds every object, invalid policies in their fail-closed
// form.
func NewSnapshot(namespaces []*corev1.Namespace, pods []*corev1.Pod, policies []*networkingv1.NetworkPolicy) (*Snapshot, []error) {
	s := &Snapshot{Namespaces: map[string]*Namespace{}}
	var errs []error
	for _, ns := range namespaces {
		s.Namespaces[ns.Name] = ConvertNamespace(ns)
	}
	for _, p := range pods {
		cp, perrs := ConvertPod(p)
		errs = append(errs, perrs...)
		s.Pods = append(s.Pods, cp)
	}
	errs = append(errs, s.releaseHostAddresses()...)
	for _, np := range policies {
		cp, perrs := ConvertPolicy(np)
		errs = append(errs, perrs...)
		s.Policies = append(s.Policies, cp)
	}
	s.Sort()
	s.Errors = append(s.Errors, errs...)
	return s, errs
}

// Sort orders pods and policies by key, so that every consumer sees one order.
func (s *Snapshot) Sort() {
	sort.Slice(s.Pods, func(i, j int) bool { return s.Pods[i].Key() < s.Pods[j].Key() })
	sort.Slice(s.Policies, func(i, j int) bool { return s.Policies[i].Key() < s.Policies[j].Key() })
	SortClusterPolicies(s.ClusterPolicies)
	sort.Slice(s.Nodes, func(i, j int) bool { return s.Nodes[i].Name < s.Nodes[j].Name })
}

// AddClusterPolicies converts ClusterNetworkPolicies and nodes into s,
// keeping its order, and returns the conversion errors; as NewSnapshot, s
// holds every object, invalid ones in their fail-closed form.
func (s *Snapshot) AddClusterPolicies(cnps []*npav1beta1.ClusterNetworkPolicy, nodes []*corev1.Node) []error {
	var errs []error
	for _, c := range cnps {
		cp, cerrs := ConvertClusterPolicy(c)
		errs = append(errs, cerrs...)
		s.ClusterPolicies = append(s.ClusterPolicies, cp)
	}
	for _, n := range nodes {
		cn, nerrs := ConvertNode(n)
		errs = append(errs, nerrs...)
		s.Nodes = append(s.Nodes, cn)
	}
	s.Sort()
	if len(nodes) > 0 {
		errs = append(errs, s.NodeAddressConflicts()...)
	}
	s.Errors = append(s.Errors, errs...)
	return errs
}

// NodesByIP returns the nodes whose status.addresses list addr, by name;
// none when a (non-hostNetwork) pod holds addr: a pod's address is the
// pod's, whatever a Node says (anyone who can write a Node's status, its
// kubelet included, could otherwise make a nodes peer match a pod). Two
// or more nodes listing one address is a conflict: a nodes peer of an
// Accept or Pass rule matches it only when it selects every one of them,
// of a Deny rule when it selects any (compile builds the same).
func (s *Snapshot) NodesByIP(addr netip.Addr) []*Node {
	addr = addr.Unmap()
	var out []*Node
	for _, n := range s.Nodes {
		if slices.Contains(n.IPs, addr) {
			out = append(out, n)
		}
	}
	if len(out) > 0 && s.PodByIP(addr) != nil {
		return nil
	}
	return out
}

// NodeByIP returns the node whose status.addresses list addr when exactly
// one does and no pod holds addr (see NodesByIP), else nil.
func (s *Snapshot) NodeByIP(addr netip.Addr) *Node {
	if ns := s.NodesByIP(addr); len(ns) == 1 {
		return ns[0]
	}
	return nil
}

// NodeLocal reports whether addr is an address of node itself (in its
// status.addresses or a gateway, see Node.Gateways) that no pod holds and
// no other Node claims: traffic from it into the node's pods is node
// traffic (kubelet probes), which the kernel recognises as a source
// local to the node and lets in whatever the policies say.
func (s *Snapshot) NodeLocal(addr netip.Addr, node string) bool {
	addr = addr.Unmap()
	if node == "" || !addr.IsValid() || s.PodByIP(addr) != nil {
		return false
	}
	found := false
	for _, n := range s.Nodes {
		if !n.HasAddr(addr) {
			continue
		}
		if n.Name != node {
			return false
		}
		found = true
	}
	return found
}

// NodeAddressConflicts reports, naming the Node and field, each address a
// Node claims that a (non-hostNetwork) pod holds (the address stays the
// pod's) and each address two or more Nodes list in status.addresses
// (the strictest of them decides a nodes peer).
func (s *Snapshot) NodeAddressConflicts() []error {
	var errs []error
	byAddr := map[netip.Addr][]string{}
	for _, n := range s.Nodes {
		for _, a := range n.IPs {
			byAddr[a] = append(byAddr[a], n.Name)
			if p := s.PodByIP(a); p != nil {
				errs = append(errs, objectError("Node", n.Name, "status.addresses", "%s is pod %s's address; it is judged as that pod's, and no nodes peer matches it", a, p.Key()))
			}
		}
		for _, a := range n.Gateways {
			if p := s.PodByIP(a); p != nil && !slices.Contains(n.IPs, a) {
				errs = append(errs, objectError("Node", n.Name, "", "gateway address %s (from its annotations or pod CIDRs) is pod %s's address; it is judged as that pod's", a, p.Key()))
			}
		}
	}
	for _, a := range slices.SortedFunc(maps.Keys(byAddr), netip.Addr.Compare) {
		if names := byAddr[a]; len(names) > 1 && s.PodByIP(a) == nil {
			errs = append(errs, fmt.Errorf("nodes %s: status.addresses: each lists %s; a nodes peer of an Accept or Pass rule matches it only when it selects every one of them, of a Deny rule when it selects any", strings.Join(names, ", "), a))
		}
	}
	return errs
}

// releaseHostAddresses takes from hostNetwork pods the addresses a
// non-hostNetwork pod also claims, and reports each. A hostNetwork pod's
// address is its node's, which no pod can hold; when the API says both, the
// address is judged as the pod's (compile never uses hostNetwork pods'
// addresses), so that the claim can never lift the pod's isolation.
func (s *Snapshot) releaseHostAddresses() []error {
	podAddr := map[netip.Addr]*Pod{}
	for _, p := range s.Pods {
		if !p.HostNetwork {
			for _, a := range p.IPs {
				podAddr[a] = p
			}
		}
	}
	var errs []error
	for _, p := range s.Pods {
		if !p.HostNetwork {
			continue
		}
		kept := p.IPs[:0]
		for _, a := range p.IPs {
			if o, ok := podAddr[a]; ok {
				errs = append(errs, fmt.Errorf("pod %s (hostNetwork): address %s is also claimed by pod %s; it is judged as that pod's", p.Key(), a, o.Key()))
				continue
			}
			kept = append(kept, a)
		}
		p.IPs = kept
	}
	return errs
}

// AddressConflicts returns the addresses that two or more non-hostNetwork
// pods claim (terminal pods hold none), each with its claimants in key
// order. Such an address is policed as the strictest of its claimants.
func (s *Snapshot) AddressConflicts() map[netip.Addr][]*Pod {
	claims := map[netip.Addr][]*Pod{}
	for _, p := range s.Pods {
		if p.HostNetwork {
			continue
		}
		for _, a := range p.IPs {
			claims[a] = append(claims[a], p)
		}
	}
	for a, cl := range claims {
		if len(cl) < 2 {
			delete(claims, a)
			continue
		}
		sort.Slice(cl, func(i, j int) bool { return cl[i].Key() < cl[j].Key() })
	}
	return claims
}

// Pod returns the pod "namespace/name", or nil.
func (s *Snapshot) Pod(key string) *Pod {
	i := sort.Search(len(s.Pods), func(i int) bool { return s.Pods[i].Key() >= key })
	if i < len(s.Pods) && s.Pods[i].Key() == key {
		return s.Pods[i]
	}
	return nil
}

// PodByIP returns the non-hostNetwork pod owning addr, or nil. When several
// pods claim it, the owner is the one OwnsAddressOver says.
func (s *Snapshot) PodByIP(addr netip.Addr) *Pod {
	var owner *Pod
	for _, p := range s.Pods {
		if p.HostNetwork {
			continue
		}
		for _, a := range p.IPs {
			if a == addr && (owner == nil || p.OwnsAddressOver(owner)) {
				owner = p
			}
		}
	}
	return owner
}

// NamespaceLabels returns the labels of namespace name. A namespace that is
// not in the snapshot has only its kubernetes.io/metadata.name label, which
// the API server always sets.
func (s *Snapshot) NamespaceLabels(name string) labels.Set {
	if ns, ok := s.Namespaces[name]; ok {
		return ns.Labels
	}
	return labels.Set{"kubernetes.io/metadata.name": name}
}

func familyOf(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

func prefixLess(a, b netip.Prefix) bool {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c < 0
	}
	return a.Bits() < b.Bits()
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
