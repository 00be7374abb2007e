package model

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/policyd/policyd/cluster"
)

// Evaluate decides whether pkt may open a connection in cluster s, following
// the NetworkPolicy v1 semantics:
//
//   - A connection is allowed only when the source pod's egress and the
//     destination pod's ingress both allow it. Each side is judged on its own.
//   - A pod is isolated for a direction only when at least one policy in the
//     pod's own namespace selects it (podSelector) and isolates that direction
//     (policyTypes, with the defaulting cluster.ConvertPolicy applies). A pod
//     no policy isolates allows everything in that direction. Policies in
//     other namespaces never select it.
//   - An isolated pod allows exactly the union of what the rules of all
//     isolating policies allow for that direction; order and number of
//     policies do not matter, and there is no deny rule.
//   - A rule admits a packet when one of its peers matches the other end and
//     one of its ports matches the packet. An absent or empty peer list matches
//     every peer, an absent or empty ports list every port and protocol. An
//     isolating policy with no rules for the direction admits nothing.
//   - Addresses that are not (non-hostNetwork) pods are never judged: egress
//     from them and ingress to them is allowed.
//   - hostNetwork pods are never isolated and never match pod-selector peers;
//     their traffic counts as their node's. ipBlock peers match them by IP.
//   - Traffic from the destination pod's own node (Src.Node) is always allowed
//     into the pod. (The API documentation says traffic to and from the node
//     is always allowed; policyd applies the "from" half only: egress from a
//     pod to any node address is judged like any other destination.)
//   - A pod cannot block traffic to itself: a packet whose source and
//     destination are the same pod (or its own address) never leaves the
//     pod and is allowed in both directions. A pod calling itself through
//     a Service (Packet.Hairpin) is judged like any other packet: its
//     egress to its own address, its ingress from it.
//   - An address a (non-hostNetwork) pod holds is that pod's, never a
//     node's, whatever a Node's status.addresses say. An address two or
//     more Nodes list matches a ClusterNetworkPolicy nodes peer of an
//     Accept or Pass rule only when the peer selects every one of them,
//     of a Deny rule when it selects any (the strictest).
//
// The Decision explains each direction: which policies isolate the pod, the
// first rule that admitted the packet, or the rule that came closest.
func Evaluate(s *cluster.Snapshot, pkt Packet) Decision {
	return newEvaluator(s).evaluate(pkt, true)
}

// evaluator caches which policies select which pod, so that a matrix does not
// re-match every policy's podSelector for every cell.
type evaluator struct {
	s *cluster.Snapshot
	// selecting maps a pod to the policies isolating it, per direction
	// (index 0 ingress, 1 egress), in policy key order.
	selecting map[*cluster.Pod]*[2][]*cluster.Policy
	// conflicts maps an address two or more pods claim to those pods.
	conflicts map[netip.Addr][]*cluster.Pod
}

func newEvaluator(s *cluster.Snapshot) *evaluator {
	return &evaluator{s: s, selecting: map[*cluster.Pod]*[2][]*cluster.Policy{}, conflicts: s.AddressConflicts()}
}

// claimants returns the pods an endpoint's address is judged as: every pod
// claiming it when two or more do and the endpoint is one of them, else nil.
func (e *evaluator) claimants(ep Endpoint) []*cluster.Pod {
	pod := policyPod(ep)
	if pod == nil || ep.Node {
		return nil
	}
	cl := e.conflicts[ep.IP.Unmap()]
	if !slices.Contains(cl, pod) {
		return nil
	}
	return cl
}

// selfTraffic reports whether pkt goes from a pod to itself (or to its own
// address), which never leaves the pod's network namespace.
func selfTraffic(pkt Packet) bool {
	self := policyPod(pkt.Src)
	if self == nil || pkt.Src.Node || pkt.Hairpin {
		return false
	}
	if pkt.Src.IP.IsValid() && pkt.Src.IP.Unmap() == pkt.Dst.IP.Unmap() {
		return true
	}
	return pkt.Dst.Pod != nil && self.Key() == pkt.Dst.Pod.Key()
}

func (e *evaluator) evaluate(pkt Packet, explain bool) Decision {
	pkt.Dst.Node = false // only meaningful on the source
	eg := e.judge(cluster.Egress, pkt, explain)
	in := e.judge(cluster.Ingress, pkt, explain)
	return Decision{Allowed: eg.Allowed && in.Allowed, Egress: eg, Ingress: in}
}

// policyPod returns the pod an endpoint is judged as for policy purposes: its
// pod unless that is missing or a hostNetwork pod (whose traffic is node
// traffic and which no policy isolates).
func policyPod(ep Endpoint) *cluster.Pod {
	if ep.Pod == nil || ep.Pod.HostNetwork {
		return nil
	}
	return ep.Pod
}

// isolating returns the policies that isolate pod for d, sorted by key.
func (e *evaluator) isolating(pod *cluster.Pod, d cluster.Direction) []*cluster.Policy {
	cached := e.selecting[pod]
	if cached == nil {
		cached = &[2][]*cluster.Policy{}
		for _, p := range e.s.Policies {
			// A policy only ever selects pods of its own namespace. A nil
			// selector (never produced by ConvertPolicy) fails closed: it
			// selects every pod of the namespace.
			if p.Namespace != pod.Namespace || (p.PodSelector != nil && !p.PodSelector.Matches(pod.Labels)) {
				continue
			}
			if p.IsolatesIngress {
				cached[0] = append(cached[0], p)
			}
			if p.IsolatesEgress {
				cached[1] = append(cached[1], p)
			}
		}
		for i := range cached {
			sort.SliceStable(cached[i], func(a, b int) bool { return cached[i][a].Key() < cached[i][b].Key() })
		}
		e.selecting[pod] = cached
	}
	if d == cluster.Ingress {
		return cached[0]
	}
	return cached[1]
}

// judge decides one direction: egress on the source, ingress on the
// destination.
//
// An address two or more (non-hostNetwork, non-terminal) pods claim is
// policed as the strictest of them: a direction allows only when it allows
// for each claimant, and a peer selector matches the address only when it
// matches every claimant (matchPeer), a named port only when every claimant
// resolves it to the packet's port (matchPort). So a pod that takes another
// pod's address (anyone who can write pods/status can) never widens what the
// address may do; compile builds the same.
func (e *evaluator) judge(d cluster.Direction, pkt Packet, explain bool) Direction {
	subject := pkt.Src
	if d == cluster.Ingress {
		subject = pkt.Dst
	}
	cl := e.claimants(subject)
	if len(cl) < 2 || selfTraffic(pkt) {
		return e.judgeOne(d, pkt, explain)
	}
	var own, deny *Direction
	for _, c := range cl {
		p := pkt
		if d == cluster.Ingress {
			p.Dst.Pod = c
		} else {
			p.Src.Pod = c
		}
		r := e.judgeOne(d, p, explain)
		if c == subject.Pod {
			own = &r
		}
		if !r.Allowed && deny == nil {
			deny = &r
		}
	}
	out := *own
	if deny != nil {
		out = *deny
	}
	out.Allowed = deny == nil
	if explain {
		keys := make([]string, len(cl))
		for i, c := range cl {
			keys[i] = c.Key()
		}
		out.Claimants = keys
		out.Reason = fmt.Sprintf("%s (judged as %s, one of the pods claiming %s: %s)", out.Reason, out.Pod, subject.IP, strings.Join(keys, ", "))
	}
	return out
}

// judgeOne decides one direction for the endpoints' own pods.
func (e *evaluator) judgeOne(d cluster.Direction, pkt Packet, explain bool) Direction {
	subject, other := pkt.Src, pkt.Dst
	if d == cluster.Ingress {
		subject, other = pkt.Dst, pkt.Src
	}
	out := Direction{Direction: d.String()}
	pod := policyPod(subject)
	if d == cluster.Egress && pkt.Src.Node {
		// Node traffic is not a pod's egress.
		out.Allowed = true
		if explain {
			out.Reason = fmt.Sprintf("allowed: the source %s is the node, whose traffic no egress policy governs", describeEndpoint(subject))
		}
		return out
	}
	if pod == nil {
		out.Allowed = true
		if explain {
			out.Reason = fmt.Sprintf("allowed: %s %s is %s, so no %s policy applies to it", roleOf(d), describeEndpoint(subject), notPodWhy(subject), d)
		}
		return out
	}
	policies := e.isolating(pod, d)
	out.Isolated = len(policies) > 0
	if explain {
		out.Pod = pod.Key()
		for _, p := range policies {
			out.Policies = append(out.Policies, p.Key())
		}
	}
	if d == cluster.Ingress && pkt.Src.Node {
		// Kubelet health checks come from the pod's own node and must always
		// reach it, whatever the policies say.
		out.Allowed = true
		if explain {
			out.Reason = fmt.Sprintf("allowed: traffic from %s's own node %s is always allowed in (kubelet probes)", pod.Key(), pkt.Src.IP)
		}
		return out
	}
	if selfTraffic(pkt) {
		// A pod cannot block traffic to itself.
		out.Allowed = true
		if explain {
			self := policyPod(pkt.Src)
			if other := policyPod(pkt.Dst); other != nil && other != self {
				out.Reason = fmt.Sprintf("allowed: %s is %s's own address (%s claims it too), so the packet never leaves %s", pkt.Dst.IP, self.Key(), other.Key(), self.Key())
			} else {
				out.Reason = fmt.Sprintf("allowed: traffic from %s to itself is always allowed (it never leaves the pod)", pod.Key())
			}
		}
		return out
	}
	dst := policyPod(pkt.Dst) // named ports are resolved on the destination pod
	dsts := []*cluster.Pod{dst}
	if cl := e.claimants(pkt.Dst); len(cl) > 1 {
		dsts = cl // an address several pods claim: each must resolve the name alike
	}

	// Admin tier: the first matching rule of the ClusterNetworkPolicies
	// selecting the pod, in evaluation order, decides; Pass skips the rest
	// of the tier.
	if done := e.tier(cluster.TierAdmin, pod, d, other, dsts, pkt, explain, &out); done {
		return out
	}
	if !out.Isolated {
		// Baseline tier: only for pods no NetworkPolicy isolates.
		if done := e.tier(cluster.TierBaseline, pod, d, other, dsts, pkt, explain, &out); done {
			return out
		}
		out.Allowed = true
		if explain {
			out.Reason = fmt.Sprintf("allowed: no policy in namespace %s selects %s for %s, so it is not isolated for %s", pod.Namespace, pod.Key(), d, d)
			if len(out.Passed) > 0 || e.hasClusterPolicies(pod, d) {
				out.Reason += ", and no ClusterNetworkPolicy rule decides it"
			}
		}
		return out
	}
	if explain {
		out.Tier = "NetworkPolicy"
	}
	var best *Miss
	bestScore := -1
	rules := 0
	for _, p := range policies {
		for ri, r := range p.Rules(d) {
			rules++
			peer := e.matchPeer(r, other)
			port := matchPort(r, dsts, pkt.Protocol, pkt.Port)
			if peer != None && port != None {
				out.Allowed = true
				if explain {
					out.Match = &RuleRef{Policy: p.Key(), Direction: d.String(), Rule: ri, Peer: peer, Port: port}
					out.Reason = fmt.Sprintf("allowed by %s", out.Match)
				}
				return out
			}
			if !explain {
				continue
			}
			score := 0
			if peer != None {
				score = 2
			} else if port != None {
				score = 1
			}
			if score > bestScore {
				bestScore = score
				best = &Miss{RuleRef: RuleRef{Policy: p.Key(), Direction: d.String(), Rule: ri, Peer: peer, Port: port}}
				best.Reason = missReason(r, d, other, dst, pkt, peer, port)
			}
		}
	}
	if !explain {
		return out
	}
	out.NearestMiss = best
	plural := "policy"
	if len(policies) > 1 {
		plural = "policies"
	}
	if rules == 0 {
		out.Reason = fmt.Sprintf("denied: %s is isolated for %s by %s %s, which %s no %s rules, so all %s is denied; add an %s rule admitting %s on %s",
			pod.Key(), d, plural, strings.Join(out.Policies, ", "), haveHas(len(policies)), d, d, d, describeEndpoint(other), protoPort(pkt))
		return out
	}
	out.Reason = fmt.Sprintf("denied: no %s rule of %s %s admits %s on %s; nearest is %s: %s",
		d, plural, strings.Join(out.Policies, ", "), describeEndpoint(other), protoPort(pkt), best.RuleRef, best.Reason)
	return out
}

func haveHas(n int) string {
	if n == 1 {
		return "has"
	}
	return "have"
}

func roleOf(d cluster.Direction) string {
	if d == cluster.Egress {
		return "the source"
	}
	return "the destination"
}

func notPodWhy(ep Endpoint) string {
	if ep.Pod != nil && ep.Pod.HostNetwork {
		return "a hostNetwork pod (node traffic, never isolated)"
	}
	return "not a pod"
}

// matchPeer returns the index of the first peer of r matching ep, All when r
// has no peer list, or None.
func (e *evaluator) matchPeer(r cluster.Rule, ep Endpoint) int {
	if r.AllPeers {
		return All
	}
	for i, peer := range r.Peers {
		if e.peerMatches(peer, ep) {
			return i
		}
	}
	return None
}

func (e *evaluator) peerMatches(peer cluster.Peer, ep Endpoint) bool {
	switch peer.Kind {
	case cluster.PeerPods:
		// Pod-selector peers match pods only: never external addresses,
		// nodes, or hostNetwork pods.
		pod := policyPod(ep)
		if pod == nil {
			return false
		}
		if cl := e.claimants(ep); len(cl) > 1 {
			// An address several pods claim matches only when it matches
			// for each of them.
			for _, c := range cl {
				if !e.podMatchesPeer(peer, c) {
					return false
				}
			}
			return true
		}
		return e.podMatchesPeer(peer, pod)
	case cluster.PeerIPBlock:
		// ipBlock matches by address, whether or not it belongs to a pod:
		// inside cidr and inside none of the excepts.
		return ipBlockMatches(peer, ep.IP)
	}
	return false // invalid peer: matches nothing
}

// podMatchesPeer reports whether a pod-selector peer selects pod.
func (e *evaluator) podMatchesPeer(peer cluster.Peer, pod *cluster.Pod) bool {
	{
		// Without a namespaceSelector the peer means the policy's own
		// namespace; with one, every namespace whose labels it matches. Both
		// selectors in one peer must match (AND); two peers are an OR.
		if peer.NamespaceSelector == nil {
			if pod.Namespace != peer.Namespace {
				return false
			}
		} else if !peer.NamespaceSelector.Matches(e.s.NamespaceLabels(pod.Namespace)) {
			return false
		}
		return peer.PodSelector == nil || peer.PodSelector.Matches(pod.Labels)
	}
}

func ipBlockMatches(peer cluster.Peer, ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || !peer.CIDR.Contains(ip) {
		return false
	}
	for _, ex := range peer.Except {
		if ex.Contains(ip) {
			return false
		}
	}
	return true
}

// matchPort returns the index of the first port entry of r matching the
// packet, All when r has no ports list, or None. Named ports resolve on the
// destination pod (dsts holds it, nil when the destination is not a pod, or
// every pod claiming the destination address, which must all resolve it to
// the packet's port).
func matchPort(r cluster.Rule, dsts []*cluster.Pod, proto cluster.Protocol, port int32) int {
	if r.AllPorts {
		return All
	}
	for i, pt := range r.Ports {
		ok := true
		for _, dst := range dsts {
			ok = ok && pt.Matches(dst, proto, port)
		}
		if ok {
			return i
		}
	}
	return None
}

func protoPort(pkt Packet) string {
	return fmt.Sprintf("%s/%d", pkt.Protocol, pkt.Port)
}

// missReason explains why rule r did not admit the packet.
func missReason(r cluster.Rule, d cluster.Direction, other Endpoint, dst *cluster.Pod, pkt Packet, peer, port int) string {
	var peerWhy, portWhy string
	if peer == None {
		var list []string
		for _, pr := range r.Peers {
			list = append(list, describePeer(pr))
		}
		note := ""
		if policyPod(other) == nil {
			note = fmt.Sprintf(" (it is %s, so only ipBlock peers can match it)", notPodWhy(other))
		}
		if len(list) == 0 {
			peerWhy = fmt.Sprintf("the rule lists no valid %s peer, so it matches no %s", fromTo(d), describeEndpoint(other))
		} else {
			peerWhy = fmt.Sprintf("%s matches none of [%s]%s", describeEndpoint(other), strings.Join(list, "; "), note)
		}
	}
	if port == None {
		var list []string
		for _, pt := range r.Ports {
			list = append(list, describePort(pt, dst))
		}
		if len(list) == 0 {
			portWhy = "the rule lists no valid port, so it matches no port"
		} else {
			portWhy = fmt.Sprintf("port %s is not in [%s]", protoPort(pkt), strings.Join(list, ", "))
		}
	}
	switch {
	case peerWhy != "" && portWhy != "":
		return "neither peer nor port matched: " + peerWhy + ", and " + portWhy
	case peerWhy != "":
		return "port matched but " + peerWhy
	default:
		return "peer matched but " + portWhy
	}
}

func fromTo(d cluster.Direction) string {
	if d == cluster.Ingress {
		return "from"
	}
	return "to"
}

// describePeer renders a peer as a person reads it.
func describePeer(p cluster.Peer) string {
	switch p.Kind {
	case cluster.PeerPods:
		pods := "all pods"
		if p.PodSelector != nil && !p.PodSelector.Empty() {
			pods = "pods with " + p.PodSelector.String()
		}
		switch {
		case p.NamespaceSelector == nil:
			return pods + " in namespace " + p.Namespace
		case p.NamespaceSelector.Empty():
			return pods + " in all namespaces"
		}
		return pods + " in namespaces with " + p.NamespaceSelector.String()
	case cluster.PeerIPBlock:
		s := "ipBlock " + p.CIDR.String()
		if len(p.Except) > 0 {
			ex := make([]string, len(p.Except))
			for i, x := range p.Except {
				ex[i] = x.String()
			}
			s += " except " + strings.Join(ex, ", ")
		}
		return s
	}
	return "invalid peer"
}

// describePort renders a port entry; a named port shows what it resolves to on
// the destination pod.
func describePort(pt cluster.Port, dst *cluster.Pod) string {
	if pt.Name == "" {
		return pt.String()
	}
	if dst == nil {
		return pt.String() + " (named ports only match pod destinations, not hostNetwork pods or other addresses)"
	}
	if n, ok := dst.ResolvePort(pt.Name, pt.Protocol); ok {
		return fmt.Sprintf("%s (=%d on %s)", pt, n, dst.Key())
	}
	return fmt.Sprintf("%s (%s declares no %s port named %s)", pt, dst.Key(), pt.Protocol, pt.Name)
}

// describeEndpoint renders "x/a (10.0.0.2)", "node 10.255.0.1" or an address.
func describeEndpoint(ep Endpoint) string {
	switch {
	case ep.Node:
		return "node " + ep.IP.String()
	case ep.Pod != nil:
		return fmt.Sprintf("%s (%s)", ep.Pod.Key(), ep.IP)
	}
	return ep.IP.String()
}

// clusterPolicies returns the ClusterNetworkPolicies of tier t selecting pod
// that have rules for d, in evaluation order.
func (e *evaluator) clusterPolicies(t cluster.Tier, pod *cluster.Pod, d cluster.Direction) []*cluster.ClusterPolicy {
	var out []*cluster.ClusterPolicy
	for _, cp := range e.s.ClusterPolicies { // already in evaluation order
		if cp.Tier == t && len(cp.Rules(d)) > 0 && cp.SelectsPod(pod, e.s.NamespaceLabels(pod.Namespace)) {
			out = append(out, cp)
		}
	}
	return out
}

func (e *evaluator) hasClusterPolicies(pod *cluster.Pod, d cluster.Direction) bool {
	return len(e.clusterPolicies(cluster.TierAdmin, pod, d)) > 0 || len(e.clusterPolicies(cluster.TierBaseline, pod, d)) > 0
}

// tier evaluates tier t for pod in direction d. It reports whether a rule
// decided (Accept or Deny; in the Baseline tier also Pass, which hands over
// to the default allow), setting out; a Pass in the Admin tier or no
// matching rule returns false, recording a Pass in out.Passed.
func (e *evaluator) tier(t cluster.Tier, pod *cluster.Pod, d cluster.Direction, other Endpoint, dsts []*cluster.Pod, pkt Packet, explain bool, out *Direction) bool {
	for _, cp := range e.clusterPolicies(t, pod, d) {
		for ri, r := range cp.Rules(d) {
			peer, port, disputed := e.matchClusterRule(r, other, dsts, pkt)
			if peer == None || port == None {
				continue
			}
			ref := ClusterRuleRef{Policy: cp.Name, Tier: t.String(), Priority: cp.Priority, Direction: d.String(), Rule: ri, Name: r.Name, Action: r.Action.String(), Peer: peer, Port: port}
			switch {
			case r.Action == cluster.ActionAccept:
				out.Allowed = true
			case r.Action == cluster.ActionPass && disputed:
				// The claimants of the address disagree on a Pass: what
				// follows it could decide either way, so it denies.
				out.Allowed = false
			case r.Action == cluster.ActionPass:
				if explain {
					out.Passed = append(out.Passed, ref)
				}
				if t == cluster.TierAdmin {
					return false // on to the NetworkPolicy tier
				}
				out.Allowed = true // past the Baseline tier: the default allows
			default: // Deny (and anything invalid) drops
				out.Allowed = false
			}
			if explain {
				out.Tier = t.String()
				out.ClusterRule = &ref
				verdict := "denied"
				if out.Allowed {
					verdict = "allowed"
				}
				what := "by"
				if r.Action == cluster.ActionPass && !disputed {
					what = "after a Pass (the default allows) by"
				}
				out.Reason = fmt.Sprintf("%s %s %s", verdict, what, cluster.DescribeClusterRule(cp, d, ri))
				switch {
				case r.MatchAll:
					out.Reason += " (invalid: enforced as a Deny of everything)"
				case disputed:
					out.Reason += fmt.Sprintf(": %s %s on %s holds for some but not all of the pods or Nodes claiming the addresses, so the rule denies it (a claim never loosens a Deny or Pass)", r.Action, describeEndpoint(other), protoPort(pkt))
				default:
					out.Reason += ": " + r.Action.String() + " " + describeEndpoint(other) + " on " + protoPort(pkt)
				}
			}
			return true
		}
	}
	return false
}

// matchClusterRule returns the matching peer and port indexes of r, or
// None, and whether the match is disputed.
//
// Of an address several pods claim, or several Nodes list, a peer selects
// all, some or none of the claimants, and a named port resolves to the
// packet's port on all, some or none of the pods claiming the
// destination. An Accept rule matches when a peer and a port entry do for
// all of them; a Deny rule when they do for any; a Pass rule passes when
// they do for all, and otherwise, when they do for some, is disputed: it
// denies (what follows a Pass can decide either way, so neither reading
// is the strictest). So a claim on an address never makes a rule decide
// more leniently than for its rightful holder; compile builds the same
// (disputedAddrs, disputedNamed).
func (e *evaluator) matchClusterRule(r cluster.ClusterRule, other Endpoint, dsts []*cluster.Pod, pkt Packet) (peer, port int, disputed bool) {
	if r.MatchAll {
		return All, All, false
	}
	peer, peerAll := firstMatch(len(r.Peers), func(i int) peerMatch { return e.clusterPeerMatches(r.Peers[i], other) })
	port, portAll := All, true
	if !r.AllPorts {
		// A named port resolves on the destination: on each pod claiming
		// its address, which may disagree.
		port, portAll = firstMatch(len(r.Ports), func(i int) peerMatch {
			n := 0
			for _, dst := range dsts {
				if r.Ports[i].Matches(dst, pkt.Protocol, pkt.Port) {
					n++
				}
			}
			return countMatch(n, len(dsts))
		})
	}
	if peer == None || port == None || !(peerAll && portAll) && r.Action == cluster.ActionAccept {
		return None, None, false
	}
	return peer, port, !(peerAll && portAll)
}

// firstMatch returns the index of the first of n entries matching for
// every claimant, and true; else the first matching for some, and false;
// else None.
func firstMatch(n int, match func(int) peerMatch) (int, bool) {
	some := None
	for i := range n {
		switch match(i) {
		case matchAll:
			return i, true
		case matchSome:
			if some == None {
				some = i
			}
		}
	}
	return some, false
}

// countMatch is the match of an entry selecting n of a claimants.
func countMatch(n, of int) peerMatch {
	switch {
	case of == 0 || n == 0:
		return matchNone
	case n == of:
		return matchAll
	}
	return matchSome
}

// peerMatch says how a peer selects the claimants of an address.
type peerMatch uint8

const (
	matchNone peerMatch = iota
	// matchSome: some but not all of the pods or Nodes claiming it.
	matchSome
	// matchAll: every claimant (the only one, usually).
	matchAll
)

// clusterPeerMatches says how a ClusterNetworkPolicy peer selects ep. A
// nodes peer selects the addresses in the selected Nodes' status.addresses,
// never a pod's (cluster.Snapshot.NodesByIP).
func (e *evaluator) clusterPeerMatches(peer cluster.Peer, ep Endpoint) peerMatch {
	count := countMatch
	switch peer.Kind {
	case cluster.PeerNodes:
		nodes := e.s.NodesByIP(ep.IP.Unmap())
		if peer.NodeSelector == nil {
			return matchNone
		}
		n := 0
		for _, nd := range nodes {
			if peer.NodeSelector.Matches(nd.Labels) {
				n++
			}
		}
		return count(n, len(nodes))
	case cluster.PeerPods:
		if cl := e.claimants(ep); len(cl) > 1 {
			n := 0
			for _, c := range cl {
				if e.podMatchesPeer(peer, c) {
					n++
				}
			}
			return count(n, len(cl))
		}
	}
	if e.peerMatches(peer, ep) {
		return matchAll
	}
	return matchNone
}
