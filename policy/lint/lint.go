// Package lint owns `policyd lint`: findings about invalid objects and
// fields (enforced in their fail-closed form), and about policies that are
// valid but probably not what their author meant — egress isolation that
// cuts a pod off from the cluster DNS, policies and peers that select
// nothing, named ports no pod serves, rules another rule makes redundant.
//
// Findings are advice, never enforcement: every check reads the same
// snapshot and semantics model (package model) the enforcement is proven
// against, so a finding about DNS says exactly what the kernel will do.
package lint

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/model"
	"github.com/policyd/policyd/selectors"
)

// Finding kinds.
const (
	KindEgressWithoutDNS   = "egress-without-dns"
	KindSelectsNoPod       = "selects-no-pod"
	KindPeerSelectsNothing = "peer-selects-nothing"
	KindNamedPortUnserved  = "named-port-unserved"
	KindShadowedRule       = "shadowed-rule"
	// KindQuarantined: an object over the nodes' budget, enforced in its
	// fail-closed form on a node (policy/quarantine).
	KindQuarantined = "quarantined"
	// KindInvalid: an invalid object or field (cluster.Snapshot.Invalid),
	// enforced in its fail-closed form: a port 80800, a protocol "tcp", an
	// endPort below port, a ClusterNetworkPolicy action "Drop".
	KindInvalid = "invalid"
)

// Finding is one piece of advice about one object.
type Finding struct {
	Kind string `json:"kind"`
	// Object is "NetworkPolicy ns/name" or "ClusterNetworkPolicy name".
	Object string `json:"object"`
	// Field is the field path the finding is about, when there is one.
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func (f Finding) String() string {
	where := f.Object
	if f.Field != "" {
		where += ": " + f.Field
	}
	return fmt.Sprintf("%s: %s [%s]", where, f.Message, f.Kind)
}

// Options tunes the checks.
type Options struct {
	// DNSService is the cluster DNS Service, "namespace/name"; default
	// kube-system/kube-dns. DNSAddrs, when set, are DNS server addresses
	// used instead (port 53, UDP and TCP).
	DNSService string
	DNSAddrs   []netip.Addr
	// Budget is the nodes' budget (policyd run's flags); an object it
	// quarantines on a node is a finding. The zero Budget quarantines
	// nothing.
	Budget compile.Budget
}

// DefaultDNSService is the cluster DNS Service of kubeadm, kind and most
// distributions (CoreDNS behind it).
const DefaultDNSService = "kube-system/kube-dns"

// Lint returns every finding about snap, sorted by object, field, kind.
func Lint(snap *cluster.Snapshot, opts Options) []Finding {
	ix := selectors.FromSnapshot(snap)
	var out []Finding
	out = append(out, dnsFindings(snap, opts)...)
	out = append(out, quarantineFindings(snap, ix, opts)...)
	out = append(out, invalidFindings(snap)...)
	for _, p := range snap.Policies {
		obj := "NetworkPolicy " + p.Key()
		if len(ix.SubjectPods(p)) == 0 {
			out = append(out, Finding{Kind: KindSelectsNoPod, Object: obj, Field: "spec.podSelector", Message: fmt.Sprintf("selects no pod of namespace %s: the policy has no effect", p.Namespace)})
		}
		for _, d := range []cluster.Direction{cluster.Ingress, cluster.Egress} {
			rules := p.Rules(d)
			for ri, r := range rules {
				path := fmt.Sprintf("spec.%s[%d]", d, ri)
				for pi := range r.Peers {
					peer := &r.Peers[pi]
					if peer.Kind == cluster.PeerPods && len(ix.PeerPods(peer)) == 0 {
						out = append(out, Finding{Kind: KindPeerSelectsNothing, Object: obj, Field: fmt.Sprintf("%s.%s[%d]", path, fromTo(d), pi), Message: "this peer selects no pod: it admits nothing"})
					}
				}
				for pti, pt := range r.Ports {
					if pt.Name != "" && !served(snap, ix, p, d, pt) {
						out = append(out, Finding{Kind: KindNamedPortUnserved, Object: obj, Field: fmt.Sprintf("%s.ports[%d]", path, pti), Message: fmt.Sprintf("no %s declares a %s port named %s: the entry matches nothing", destinations(d), pt.Protocol, pt.Name)})
					}
				}
				for oi, o := range rules {
					if oi != ri && covers(o, r) && (!covers(r, o) || oi < ri) {
						out = append(out, Finding{Kind: KindShadowedRule, Object: obj, Field: path, Message: fmt.Sprintf("everything this rule admits, %s[%d] admits too: it is redundant", d, oi)})
						break
					}
				}
			}
		}
	}
	for _, cp := range snap.ClusterPolicies {
		obj := "ClusterNetworkPolicy " + cp.Name
		selects := false
		for _, pod := range snap.Pods {
			if cp.SelectsPod(pod, snap.NamespaceLabels(pod.Namespace)) {
				selects = true
				break
			}
		}
		if !selects {
			out = append(out, Finding{Kind: KindSelectsNoPod, Object: obj, Field: "spec.subject", Message: "selects no pod: the policy has no effect"})
		}
		for _, d := range []cluster.Direction{cluster.Ingress, cluster.Egress} {
			for ri, r := range cp.Rules(d) {
				if ri > 0 && catchAll(cp.Rules(d)[:ri]) >= 0 {
					out = append(out, Finding{Kind: KindShadowedRule, Object: obj, Field: fmt.Sprintf("spec.%s[%d]", d, ri), Message: fmt.Sprintf("%s[%d] before it matches every packet of this direction: this rule never decides", d, catchAll(cp.Rules(d)[:ri]))})
				}
				for pi := range r.Peers {
					peer := &r.Peers[pi]
					if peer.Kind == cluster.PeerPods && len(ix.PeerPods(peer)) == 0 {
						out = append(out, Finding{Kind: KindPeerSelectsNothing, Object: obj, Field: fmt.Sprintf("spec.%s[%d]", d, ri), Message: fmt.Sprintf("peer %d selects no pod", pi)})
					}
				}
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Object != out[j].Object {
			return out[i].Object < out[j].Object
		}
		if out[i].Field != out[j].Field {
			return out[i].Field < out[j].Field
		}
		return out[i].Kind < out[j].Kind
	})
	return out
}

// invalidFindings reports every invalid object and field of snap: what
// the converters refused, and what is enforced instead, as they say it.
func invalidFindings(snap *cluster.Snapshot) []Finding {
	var out []Finding
	for _, v := range snap.Invalid() {
		out = append(out, Finding{Kind: KindInvalid, Object: v.Object(), Field: v.Field, Message: v.Message})
	}
	return out
}

// quarantineFindings reports every object a node quarantines: on every
// node a pod of snap runs on or a Node object names.
func quarantineFindings(snap *cluster.Snapshot, ix *selectors.Index, opts Options) []Finding {
	if opts.Budget.IsZero() {
		return nil
	}
	var nodes []string
	for _, p := range snap.Pods {
		if p.NodeName != "" {
			nodes = append(nodes, p.NodeName)
		}
	}
	for _, n := range snap.Nodes {
		nodes = append(nodes, n.Name)
	}
	var out []Finding
	for _, d := range compile.Quarantines(ix, nodes, compile.Options{Budget: opts.Budget}).All() {
		out = append(out, Finding{Kind: KindQuarantined, Object: d.Object.String(), Message: d.Message()})
	}
	return out
}

// catchAll returns the index of the first rule of rules that matches every
// packet (a rule turned into Deny-all, or all namespaces with no
// protocols), or -1.
func catchAll(rules []cluster.ClusterRule) int {
	for i, r := range rules {
		if r.MatchAll {
			return i
		}
		if !r.AllPorts {
			continue
		}
		for _, p := range r.Peers {
			if p.Kind == cluster.PeerPods && p.NamespaceSelector != nil && p.NamespaceSelector.Empty() && (p.PodSelector == nil || p.PodSelector.Empty()) {
				// Every pod, but not outside addresses: only a catch-all for
				// ingress, whose peers are pods anyway.
				return i
			}
		}
	}
	return -1
}

// covers reports whether rule a admits everything rule b does, judged on
// their written form: every peer of b is a peer of a (by key) or a admits
// every peer, and likewise for ports.
func covers(a, b cluster.Rule) bool {
	peersOK := a.AllPeers
	if !peersOK && !b.AllPeers {
		peersOK = true
		for _, pb := range b.Peers {
			if !slices.ContainsFunc(a.Peers, func(pa cluster.Peer) bool { return pa.Key == pb.Key }) {
				peersOK = false
				break
			}
		}
	}
	portsOK := a.AllPorts
	if !portsOK && !b.AllPorts {
		portsOK = true
		for _, tb := range b.Ports {
			if !slices.ContainsFunc(a.Ports, func(ta cluster.Port) bool {
				return ta.Protocol == tb.Protocol && (ta.Name != "" && ta.Name == tb.Name || ta.Name == "" && tb.Name == "" && (ta.Port == 0 || ta.Port <= tb.Port && tb.EndPort <= ta.EndPort && tb.Port != 0))
			}) {
				portsOK = false
				break
			}
		}
	}
	return peersOK && portsOK && (len(a.Peers) > 0 || a.AllPeers) && (len(a.Ports) > 0 || a.AllPorts)
}

// served reports whether some pod that rule's named port may resolve on
// declares it: the policy's own subjects for ingress, any pod for egress.
func served(snap *cluster.Snapshot, ix *selectors.Index, p *cluster.Policy, d cluster.Direction, pt cluster.Port) bool {
	pods := snap.Pods
	if d == cluster.Ingress {
		pods = ix.SubjectPods(p)
	}
	for _, pod := range pods {
		if _, ok := pod.ResolvePort(pt.Name, pt.Protocol); ok && !pod.HostNetwork {
			return true
		}
	}
	return false
}

func fromTo(d cluster.Direction) string {
	if d == cluster.Ingress {
		return "from"
	}
	return "to"
}

func destinations(d cluster.Direction) string {
	if d == cluster.Ingress {
		return "pod the policy selects"
	}
	return "pod"
}

// DNS is the cluster DNS as a list of (address, port, protocol) a pod must
// reach, and its name for messages; empty when the snapshot holds no DNS
// Service and none was given.
type dnsTarget struct {
	dst   model.Endpoint
	port  int32
	proto cluster.Protocol
}

func dnsTargets(snap *cluster.Snapshot, opts Options) ([]dnsTarget, string) {
	var out []dnsTarget
	if len(opts.DNSAddrs) > 0 {
		for _, a := range opts.DNSAddrs {
			for _, proto := range []cluster.Protocol{cluster.ProtocolUDP, cluster.ProtocolTCP} {
				ep := model.Endpoint{IP: a, Pod: snap.PodByIP(a)}
				out = append(out, dnsTarget{ep, 53, proto})
			}
		}
		return out, "the DNS servers given"
	}
	name := opts.DNSService
	if name == "" {
		name = DefaultDNSService
	}
	svc := snap.Service(name)
	if svc == nil {
		return nil, ""
	}
	for _, sp := range svc.Ports {
		if sp.Port != 53 {
			continue
		}
		for _, fam := range []int{4, 6} {
			for _, b := range snap.Backends(svc, sp, fam) {
				if b.Ready && b.Port != 0 {
					out = append(out, dnsTarget{model.Endpoint{Pod: b.Pod, IP: b.Addr}, b.Port, sp.Protocol})
				}
			}
		}
	}
	return out, "service " + name
}

// dnsBlock is what stops a pod from reaching the cluster DNS: the blocked
// PROTO/port pairs and the policies denying them ("ns/name" for a
// NetworkPolicy, "ClusterNetworkPolicy name" for a CNP).
type dnsBlock struct {
	dns      string
	blocked  []string
	deniedBy []string
}

// dnsCheck judges pod's egress to every DNS target.
func dnsCheck(snap *cluster.Snapshot, pod *cluster.Pod, opts Options) dnsBlock {
	targets, name := dnsTargets(snap, opts)
	out := dnsBlock{dns: name}
	if len(targets) == 0 || pod == nil || pod.HostNetwork {
		return out
	}
	add := func(l *[]string, v string) {
		if !slices.Contains(*l, v) {
			*l = append(*l, v)
		}
	}
	for _, t := range targets {
		ip, ok := pod.IP(family(t.dst.IP))
		if !ok {
			continue
		}
		d := model.Evaluate(snap, model.Packet{Src: model.Endpoint{Pod: pod, IP: ip}, Dst: t.dst, Protocol: t.proto, Port: t.port})
		if d.Egress.Allowed {
			continue
		}
		add(&out.blocked, fmt.Sprintf("%s/%d", t.proto, t.port))
		for _, p := range d.Egress.Policies {
			add(&out.deniedBy, p)
		}
		if d.Egress.ClusterRule != nil {
			add(&out.deniedBy, "ClusterNetworkPolicy "+d.Egress.ClusterRule.Policy)
		}
	}
	sort.Strings(out.blocked)
	return out
}

// DNSWarning returns a warning when pod may not reach the cluster DNS on
// every DNS port and protocol (or "" when it may, when the pod is not
// egress-isolated in a way that matters, or when no DNS is known).
func DNSWarning(snap *cluster.Snapshot, pod *cluster.Pod, opts Options) string {
	b := dnsCheck(snap, pod, opts)
	if len(b.blocked) == 0 {
		return ""
	}
	return fmt.Sprintf("pod %s cannot reach cluster DNS (%s) on %s: its egress is denied by %s; add an egress rule allowing UDP and TCP 53 to the DNS pods (e.g. namespace kube-system, pods k8s-app=kube-dns)",
		pod.Key(), b.dns, strings.Join(b.blocked, ", "), strings.Join(b.deniedBy, ", "))
}

func dnsFindings(snap *cluster.Snapshot, opts Options) []Finding {
	byPolicy := map[string][]string{}
	for _, pod := range snap.Pods {
		if pod.HostNetwork || len(pod.IPs) == 0 {
			continue
		}
		for _, p := range dnsCheck(snap, pod, opts).deniedBy {
			byPolicy[p] = append(byPolicy[p], pod.Key())
		}
	}
	var out []Finding
	for p, pods := range byPolicy {
		obj := "NetworkPolicy " + p
		if strings.HasPrefix(p, "ClusterNetworkPolicy ") {
			obj = p
		}
		out = append(out, Finding{Kind: KindEgressWithoutDNS, Object: obj, Field: "spec.egress",
			Message: fmt.Sprintf("isolates egress of %s and nothing lets them reach cluster DNS (UDP and TCP 53): name lookups will fail; allow egress to the DNS pods", strings.Join(pods, ", "))})
	}
	return out
}

func family(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}
