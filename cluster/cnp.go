package cluster

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// Tier is a ClusterNetworkPolicy tier. The zero value is invalid.
type Tier uint8

// Tier values, in evaluation order around NetworkPolicy v1.
const (
	TierInvalid Tier = iota
	// TierAdmin is evaluated before NetworkPolicies.
	TierAdmin
	// TierBaseline is evaluated for pods no NetworkPolicy isolates.
	TierBaseline
)

// String returns the API spelling (Admin, Baseline).
func (t Tier) String() string {
	switch t {
	case TierAdmin:
		return "Admin"
	case TierBaseline:
		return "Baseline"
	}
	return "invalid"
}

// Action is a ClusterNetworkPolicy rule action. The zero value is invalid.
type Action uint8

// Action values.
const (
	ActionInvalid Action = iota
	// ActionAccept ends evaluation of the direction and allows it.
	ActionAccept
	// ActionDeny ends evaluation of the direction and drops the packet.
	ActionDeny
	// ActionPass skips the rest of the tier.
	ActionPass
)

// String returns the API spelling (Accept, Deny, Pass).
func (a Action) String() string {
	switch a {
	case ActionAccept:
		return "Accept"
	case ActionDeny:
		return "Deny"
	case ActionPass:
		return "Pass"
	}
	return "invalid"
}

// MaxPriority is the largest ClusterNetworkPolicy priority the API accepts.
const MaxPriority = 1000

// ClusterPolicy is a validated ClusterNetworkPolicy
// (policy.networking.k8s.io v1beta1, or v1alpha2 with the same schema).
//
// Conversion is fail-closed, as the API asks: an Accept rule with an invalid
// peer or protocol entry drops that entry (a rule left with none matches
// nothing); a Deny or Pass rule with any invalid part becomes a Deny of
// everything in its direction (MatchAll). A policy whose tier, priority or
// subject is invalid is enforced defensively: an invalid tier is read as
// Admin, an invalid priority as 0 (first), an invalid subject as every pod;
// its Accept rules then match nothing and its Pass rules deny, so it can
// only ever deny more than its author meant.
type ClusterPolicy struct {
	Name     string
	Tier     Tier
	Priority int32
	// SubjectNamespaces selects the namespaces of the subject pods (never
	// nil); SubjectPods their pods (nil: every pod of those namespaces).
	SubjectNamespaces labels.Selector
	SubjectPods       labels.Selector
	Ingress, Egress   []ClusterRule
	// Errors are the validation errors, as *ClusterPolicyError.
	Errors []error
	// Created is metadata.creationTimestamp: among objects that cost a
	// node alike, the newest is quarantined first (policy/quarantine).
	Created time.Time
}

// ClusterRule is one ingress or egress rule of a ClusterPolicy.
type ClusterRule struct {
	// Name is the rule's optional name.
	Name   string
	Action Action
	// Peers lists the rule's valid peers (PeerPods, PeerIPBlock for
	// networks, PeerNodes); a rule with none matches nothing.
	Peers []Peer
	// Ports lists the valid protocol entries; AllPorts means the rule has
	// no protocols list and matches every protocol and port.
	Ports    []Port
	AllPorts bool
	// MatchAll makes the rule match every packet of its direction (a Deny or
	// Pass rule with an invalid part, turned into a Deny of everything).
	MatchAll bool
}

// ClusterPolicyError is a validation error of one ClusterNetworkPolicy,
// naming the object and the field path.
type ClusterPolicyError struct {
	Policy string
	Err    *field.Error
}

func (e *ClusterPolicyError) Error() string {
	return fmt.Sprintf("clusternetworkpolicy %s: %s", e.Policy, e.Err.Error())
}

// Unwrap returns the field error.
func (e *ClusterPolicyError) Unwrap() error { return e.Err }

// Key returns the policy's name (ClusterNetworkPolicies are cluster-scoped).
func (p *ClusterPolicy) Key() string { return p.Name }

// Rules returns the rules of direction d.
func (p *ClusterPolicy) Rules(d Direction) []ClusterRule {
	if d == Ingress {
		return p.Ingress
	}
	return p.Egress
}

// SelectsPod reports whether pod is a subject of p, its namespace having
// nsLabels. hostNetwork pods are never subjects.
func (p *ClusterPolicy) SelectsPod(pod *Pod, nsLabels labels.Set) bool {
	if pod.HostNetwork || !p.SubjectNamespaces.Matches(nsLabels) {
		return false
	}
	return p.SubjectPods == nil || p.SubjectPods.Matches(pod.Labels)
}

// Before reports whether p is evaluated before o within a tier: lower
// priority first; equal priorities, which the API leaves undefined, by name.
func (p *ClusterPolicy) Before(o *ClusterPolicy) bool {
	if p.Priority != o.Priority {
		return p.Priority < o.Priority
	}
	return p.Name < o.Name
}

// SortClusterPolicies orders policies by tier, then evaluation order.
func SortClusterPolicies(ps []*ClusterPolicy) {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].Tier != ps[j].Tier {
			return ps[i].Tier < ps[j].Tier
		}
		return ps[i].Before(ps[j])
	})
}

// ConvertClusterPolicy validates and converts a ClusterNetworkPolicy. It
// always returns a policy, even when errs is non-empty; see ClusterPolicy
// for the fail-closed reading of invalid parts.
func ConvertClusterPolicy(in *npav1beta1.ClusterNetworkPolicy) (*ClusterPolicy, []error) {
	p := &ClusterPolicy{Name: in.Name, Priority: in.Spec.Priority, Created: in.CreationTimestamp.Time}
	var errs field.ErrorList
	spec := field.NewPath("spec")
	defensive := false

	switch in.Spec.Tier {
	case npav1beta1.AdminTier:
		p.Tier = TierAdmin
	case npav1beta1.BaselineTier:
		p.Tier = TierBaseline
	default:
		errs = append(errs, field.NotSupported(spec.Child("tier"), in.Spec.Tier, []string{"Admin", "Baseline"}))
		p.Tier, defensive = TierAdmin, true
	}
	if in.Spec.Priority < 0 || in.Spec.Priority > MaxPriority {
		errs = append(errs, field.Invalid(spec.Child("priority"), in.Spec.Priority, fmt.Sprintf("must be between 0 and %d", MaxPriority)))
		p.Priority, defensive = 0, true
	}
	ns, pods, err := convertSubject(in.Spec.Subject, spec.Child("subject"))
	if err != nil {
		errs = append(errs, err)
		ns, pods, defensive = labels.Everything(), nil, true
	}
	p.SubjectNamespaces, p.SubjectPods = ns, pods

	for i, r := range in.Spec.Ingress {
		path := spec.Child("ingress").Index(i)
		peers := make([]npav1beta1.ClusterNetworkPolicyEgressPeer, len(r.From))
		for j, f := range r.From {
			peers[j] = npav1beta1.ClusterNetworkPolicyEgressPeer{Namespaces: f.Namespaces, Pods: f.Pods}
		}
		rule, rerrs := convertClusterRule(r.Name, r.Action, peers, r.Protocols, path, path.Child("from"), false)
		errs = append(errs, rerrs...)
		p.Ingress = append(p.Ingress, rule)
	}
	for i, r := range in.Spec.Egress {
		path := spec.Child("egress").Index(i)
		rule, rerrs := convertClusterRule(r.Name, r.Action, r.To, r.Protocols, path, path.Child("to"), true)
		errs = append(errs, rerrs...)
		p.Egress = append(p.Egress, rule)
	}
	if defensive {
		for _, rules := range [][]ClusterRule{p.Ingress, p.Egress} {
			for i := range rules {
				switch rules[i].Action {
				case ActionAccept:
					rules[i].Peers, rules[i].Ports, rules[i].AllPorts, rules[i].MatchAll = nil, nil, false, false
				case ActionPass:
					rules[i].Action = ActionDeny
				}
			}
		}
	}
	for _, e := range errs {
		p.Errors = append(p.Errors, &ClusterPolicyError{Policy: p.Name, Err: e})
	}
	return p, p.Errors
}

func convertSubject(s npav1beta1.ClusterNetworkPolicySubject, path *field.Path) (labels.Selector, labels.Selector, *field.Error) {
	switch {
	case s.Namespaces != nil && s.Pods != nil:
		return nil, nil, field.Forbidden(path, "exactly one of namespaces and pods may be set")
	case s.Namespaces != nil:
		sel, err := metav1.LabelSelectorAsSelector(s.Namespaces)
		if err != nil {
			return nil, nil, field.Invalid(path.Child("namespaces"), s.Namespaces.String(), err.Error()+" (the policy is applied to every pod, allowing nothing)")
		}
		return sel, nil, nil
	case s.Pods != nil:
		nsSel, err := metav1.LabelSelectorAsSelector(&s.Pods.NamespaceSelector)
		if err != nil {
			return nil, nil, field.Invalid(path.Child("pods", "namespaceSelector"), s.Pods.NamespaceSelector.String(), err.Error()+" (the policy is applied to every pod, allowing nothing)")
		}
		podSel, err := metav1.LabelSelectorAsSelector(&s.Pods.PodSelector)
		if err != nil {
			return nil, nil, field.Invalid(path.Child("pods", "podSelector"), s.Pods.PodSelector.String(), err.Error()+" (the policy is applied to every pod, allowing nothing)")
		}
		return nsSel, podSel, nil
	}
	return nil, nil, field.Required(path, "one of namespaces and pods must be set (the policy is applied to every pod, allowing nothing)")
}

func convertClusterRule(name string, action npav1beta1.ClusterNetworkPolicyRuleAction, peers []npav1beta1.ClusterNetworkPolicyEgressPeer, protocols []npav1beta1.ClusterNetworkPolicyProtocol, path, peersPath *field.Path, egress bool) (ClusterRule, field.ErrorList) {
	var errs field.ErrorList
	r := ClusterRule{Name: name, AllPorts: len(protocols) == 0}
	switch action {
	case npav1beta1.ClusterNetworkPolicyRuleActionAccept:
		r.Action = ActionAccept
	case npav1beta1.ClusterNetworkPolicyRuleActionDeny:
		r.Action = ActionDeny
	case npav1beta1.ClusterNetworkPolicyRuleActionPass:
		r.Action = ActionPass
	default:
		errs = append(errs, field.NotSupported(path.Child("action"), action, []string{"Accept", "Deny", "Pass"}))
	}
	if len(name) > 100 {
		errs = append(errs, field.TooLong(path.Child("name"), "", 100))
	}
	if len(peers) == 0 {
		errs = append(errs, field.Required(peersPath, "at least one peer is required"))
	}
	namedPorts := false
	for _, pr := range protocols {
		if pr.DestinationNamedPort != "" {
			namedPorts = true
		}
	}
	for i := range peers {
		peer, err := convertClusterPeer(&peers[i], peersPath.Index(i), egress, namedPorts)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.Peers = append(r.Peers, peer...)
	}
	for i := range protocols {
		ports, err := convertClusterProtocol(&protocols[i], path.Child("protocols").Index(i))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.Ports = append(r.Ports, ports...)
	}
	if len(errs) > 0 && r.Action != ActionAccept {
		// A Deny or Pass rule (or one whose action is unknown) with an
		// invalid part denies everything, as the API's fail-closed rule says.
		r = ClusterRule{Name: name, Action: ActionDeny, MatchAll: true}
	}
	return r, errs
}

func convertClusterPeer(in *npav1beta1.ClusterNetworkPolicyEgressPeer, path *field.Path, egress bool, namedPorts bool) ([]Peer, *field.Error) {
	set := 0
	for _, b := range []bool{in.Namespaces != nil, in.Pods != nil, in.Nodes != nil, len(in.Networks) > 0, len(in.DomainNames) > 0} {
		if b {
			set++
		}
	}
	if set != 1 {
		return nil, field.Invalid(path, "", "exactly one of namespaces, pods, nodes, networks and domainNames must be set (a newer CRD than policyd knows?)")
	}
	switch {
	case in.Namespaces != nil:
		sel, err := metav1.LabelSelectorAsSelector(in.Namespaces)
		if err != nil {
			return nil, field.Invalid(path.Child("namespaces"), in.Namespaces.String(), err.Error())
		}
		return []Peer{{Kind: PeerPods, NamespaceSelector: sel, Key: "nssel=" + sel.String() + ";pods=*"}}, nil
	case in.Pods != nil:
		nsSel, err := metav1.LabelSelectorAsSelector(&in.Pods.NamespaceSelector)
		if err != nil {
			return nil, field.Invalid(path.Child("pods", "namespaceSelector"), in.Pods.NamespaceSelector.String(), err.Error())
		}
		podSel, err := metav1.LabelSelectorAsSelector(&in.Pods.PodSelector)
		if err != nil {
			return nil, field.Invalid(path.Child("pods", "podSelector"), in.Pods.PodSelector.String(), err.Error())
		}
		podKey := podSel.String()
		if podKey == "" {
			podKey = "*"
		}
		return []Peer{{Kind: PeerPods, NamespaceSelector: nsSel, PodSelector: podSel, Key: "nssel=" + nsSel.String() + ";pods=" + podKey}}, nil
	}
	if !egress {
		return nil, field.Forbidden(path, "ingress peers are namespaces or pods")
	}
	switch {
	case in.Nodes != nil:
		if namedPorts {
			return nil, field.Forbidden(path.Child("nodes"), "a nodes peer cannot be used with destinationNamedPort")
		}
		sel, err := metav1.LabelSelectorAsSelector(in.Nodes)
		if err != nil {
			return nil, field.Invalid(path.Child("nodes"), in.Nodes.String(), err.Error())
		}
		return []Peer{{Kind: PeerNodes, NodeSelector: sel, Key: "nodes=" + sel.String()}}, nil
	case len(in.Networks) > 0:
		if namedPorts {
			return nil, field.Forbidden(path.Child("networks"), "a networks peer cannot be used with destinationNamedPort")
		}
		var out []Peer
		for i, c := range in.Networks {
			// As the CRD's CEL rule reads it (isCIDR, masked, no
			// IPv4-mapped address), and kernelPrefix to be sure.
			pfx, err := netip.ParsePrefix(string(c))
			if err == nil {
				err = kernelPrefix(pfx)
			}
			if err != nil {
				msg := "not a canonical CIDR (e.g. 10.0.0.0/8 or fd00::/8): " + err.Error()
				return nil, field.Invalid(path.Child("networks").Index(i), c, msg)
			}
			out = append(out, Peer{Kind: PeerIPBlock, CIDR: pfx, Key: "ipblock=" + pfx.String()})
		}
		return out, nil
	}
	return nil, field.Forbidden(path.Child("domainNames"), "domainNames peers are not supported by policyd yet; the peer matches nothing")
}

func convertClusterProtocol(in *npav1beta1.ClusterNetworkPolicyProtocol, path *field.Path) ([]Port, *field.Error) {
	type form struct {
		proto Protocol
		port  *npav1beta1.Port
		name  string
	}
	var forms []form
	if in.TCP != nil {
		forms = append(forms, form{ProtocolTCP, in.TCP.DestinationPort, "tcp"})
	}
	if in.UDP != nil {
		forms = append(forms, form{ProtocolUDP, in.UDP.DestinationPort, "udp"})
	}
	if in.SCTP != nil {
		forms = append(forms, form{ProtocolSCTP, in.SCTP.DestinationPort, "sctp"})
	}
	if in.DestinationNamedPort != "" {
		if len(forms) > 0 {
			return nil, field.Invalid(path, "", "exactly one of tcp, udp, sctp and destinationNamedPort must be set")
		}
		if msgs := validation.IsValidPortName(in.DestinationNamedPort); len(msgs) > 0 {
			return nil, field.Invalid(path.Child("destinationNamedPort"), in.DestinationNamedPort, msgs[0])
		}
		// The port's protocol is the container port's own: the name
		// matches on every protocol the destination declares it for.
		var out []Port
		for _, proto := range Protocols {
			out = append(out, Port{Protocol: proto, Name: in.DestinationNamedPort})
		}
		return out, nil
	}
	if len(forms) != 1 {
		return nil, field.Invalid(path, "", "exactly one of tcp, udp, sctp and destinationNamedPort must be set")
	}
	f := forms[0]
	out := Port{Protocol: f.proto}
	if f.port == nil {
		return []Port{out}, nil
	}
	pp := path.Child(f.name, "destinationPort")
	switch {
	case f.port.Range != nil && f.port.Number != 0:
		return nil, field.Invalid(pp, "", "exactly one of number and range must be set")
	case f.port.Range != nil:
		s, e := f.port.Range.Start, f.port.Range.End
		if msgs := validation.IsValidPortNum(int(s)); len(msgs) > 0 {
			return nil, field.Invalid(pp.Child("range", "start"), s, msgs[0])
		}
		if msgs := validation.IsValidPortNum(int(e)); len(msgs) > 0 {
			return nil, field.Invalid(pp.Child("range", "end"), e, msgs[0])
		}
		if s >= e {
			return nil, field.Invalid(pp.Child("range"), fmt.Sprintf("%d-%d", s, e), "start must be less than end")
		}
		out.Port, out.EndPort = s, e
	default:
		if msgs := validation.IsValidPortNum(int(f.port.Number)); len(msgs) > 0 {
			return nil, field.Invalid(pp.Child("number"), f.port.Number, msgs[0])
		}
		out.Port, out.EndPort = f.port.Number, f.port.Number
	}
	return []Port{out}, nil
}

// Node is a node's name, labels and addresses, for ClusterNetworkPolicy
// nodes peers.
type Node struct {
	Name   string
	Labels labels.Set
	// IPs are the node's addresses from status.addresses (InternalIP and
	// ExternalIP), unmapped, at most a few.
	IPs []netip.Addr
	// PodCIDRs are the node's pod ranges from spec.podCIDRs (spec.podCIDR
	// when podCIDRs is empty), masked, sorted and without duplicates; empty
	// when the node publishes none (some CNIs allocate addresses
	// themselves). The agent takes the pod network from their union.
	PodCIDRs []netip.Prefix
	// Gateways are the addresses the node's CNI gives the node itself,
	// usually inside its pod range, sorted and without duplicates: the
	// source of the node's own traffic to pods (the API server calling a
	// webhook pod on another node, kubelet probes). They are never pods'
	// (see GatewayAnnotations for how they are learned); they exempt the
	// pod-network closing and mark node traffic in explain, and no nodes
	// peer matches them.
	Gateways []netip.Addr
}

// GatewayAnnotations are the Node annotations in which CNIs publish the
// addresses they give the node inside the pod network:
//
//   - Calico writes the address of its IP-in-IP device (tunl0), its VXLAN
//     device (vxlan.calico, vxlan-v6.calico) and its WireGuard device
//     (wireguard.cali) in projectcalico.org/IPv4IPIPTunnelAddr,
//     IPv4VXLANTunnelAddr, IPv6VXLANTunnelAddr, IPv4WireguardInterfaceAddr and
//     IPv6WireguardInterfaceAddr (libcalico-go's node conversion reads and
//     writes exactly these). Host-to-remote-pod traffic leaves through
//     those devices with their address as the source. With host-local
//     IPAM Calico picks the tunnel address itself: the first address of
//     the node's pod CIDR, which the pod-CIDR rule below covers.
//   - Cilium writes the address of cilium_host (its router on the node),
//     of its health endpoint and of its Ingress listener in
//     network.cilium.io/ipv4-cilium-host, ipv6-cilium-host,
//     ipv4-health-ip, ipv6-health-ip, ipv4-Ingress-ip and ipv6-Ingress-ip,
//     and older releases in io.cilium.network.ipv4-cilium-host and so on
//     (Cilium still reads both forms). None of these is a pod.
//
// Flannel publishes no such address: its VXLAN device flannel.1 takes the
// network address of the node's subnet as a /32 ("used as a source address
// for host to workload traffic", as its vxlan backend says), and its bridge
// cni0, like every bridge CNI's, the first address. So besides the
// annotations, the network address and the first address of each of the
// node's pod CIDRs are gateways. `policyd run --pod-network-exempt` adds
// any other range.
var GatewayAnnotations = []string{
	"projectcalico.org/IPv4IPIPTunnelAddr",
	"projectcalico.org/IPv4VXLANTunnelAddr",
	"projectcalico.org/IPv6VXLANTunnelAddr",
	"projectcalico.org/IPv4WireguardInterfaceAddr",
	"projectcalico.org/IPv6WireguardInterfaceAddr",
	"network.cilium.io/ipv4-cilium-host",
	"network.cilium.io/ipv6-cilium-host",
	"network.cilium.io/ipv4-health-ip",
	"network.cilium.io/ipv6-health-ip",
	"network.cilium.io/ipv4-Ingress-ip",
	"network.cilium.io/ipv6-Ingress-ip",
	"io.cilium.network.ipv4-cilium-host",
	"io.cilium.network.ipv6-cilium-host",
	"io.cilium.network.ipv4-health-ip",
	"io.cilium.network.ipv6-health-ip",
	"io.cilium.network.ipv4-Ingress-ip",
	"io.cilium.network.ipv6-Ingress-ip",
}

// HasAddr reports whether a is one of the node's own addresses: from
// status.addresses or a gateway.
func (n *Node) HasAddr(a netip.Addr) bool {
	return slices.Contains(n.IPs, a) || slices.Contains(n.Gateways, a)
}

// ConvertNode converts a core/v1 Node. Addresses are read as ParseIP and
// pod CIDRs as the API server reads them (an IPv4-mapped one is its IPv4
// prefix); one refused (an IPv6 zone, not an address) is reported and
// skipped.
func ConvertNode(n *corev1.Node) (*Node, []error) {
	out := &Node{Name: n.Name, Labels: labels.Set(copyMap(n.Labels))}
	var errs []error
	seen := map[netip.Addr]bool{}
	for i, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
			continue
		}
		ip, err := ParseIP(a.Address)
		if err != nil {
			errs = append(errs, objectError("Node", n.Name, fmt.Sprintf("status.addresses[%d].address", i), "Invalid value: %w (the address is ignored)", err))
			continue
		}
		if !seen[ip] {
			seen[ip] = true
			out.IPs = append(out.IPs, ip)
		}
	}
	sort.Slice(out.IPs, func(i, j int) bool { return out.IPs[i].Less(out.IPs[j]) })
	cidrs, field := n.Spec.PodCIDRs, "spec.podCIDRs"
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs, field = []string{n.Spec.PodCIDR}, "spec.podCIDR"
	}
	for i, c := range cidrs {
		p, err := parsePodCIDR(c)
		if err != nil {
			errs = append(errs, objectError("Node", n.Name, fmt.Sprintf("%s[%d]", field, i), "Invalid value: %q: %w (the range is ignored)", c, err))
			continue
		}
		if !slices.Contains(out.PodCIDRs, p) {
			out.PodCIDRs = append(out.PodCIDRs, p)
		}
	}
	slices.SortFunc(out.PodCIDRs, comparePrefixes)
	out.Gateways, errs = nodeGateways(n, out.PodCIDRs, errs)
	return out, errs
}

// nodeGateways returns the node's gateway addresses (see
// GatewayAnnotations): the annotated ones, and the network and first
// addresses of each pod CIDR. An annotation whose value is no address is
// reported and skipped; a value in CIDR form gives its address.
func nodeGateways(n *corev1.Node, podCIDRs []netip.Prefix, errs []error) ([]netip.Addr, []error) {
	var out []netip.Addr
	for _, key := range GatewayAnnotations {
		v, ok := n.Annotations[key]
		if !ok {
			continue
		}
		s, _, _ := strings.Cut(strings.TrimSpace(v), "/")
		ip, err := ParseIP(s) // as status.addresses: no zone, mapped forms read as IPv4
		if err != nil {
			errs = append(errs, objectError("Node", n.Name, fmt.Sprintf("metadata.annotations[%s]", key), "%w", err))
			continue
		}
		out = append(out, ip)
	}
	for _, p := range podCIDRs {
		if p.Addr().BitLen()-p.Bits() < 2 {
			continue // a /31 or /32 range has no room for gateways
		}
		out = append(out, p.Addr(), p.Addr().Next())
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out), errs
}

func comparePrefixes(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// DescribeClusterRule renders "CNP name ingress[2] "rule-name"" for reasons.
func DescribeClusterRule(p *ClusterPolicy, d Direction, i int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s ClusterNetworkPolicy %s (priority %d) %s[%d]", p.Tier, p.Name, p.Priority, d, i)
	if rules := p.Rules(d); i < len(rules) && rules[i].Name != "" {
		fmt.Fprintf(&b, " %q", rules[i].Name)
	}
	return b.String()
}
