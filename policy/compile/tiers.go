package compile

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/ruleset"
)

// Tiers: ClusterNetworkPolicy (policy.networking.k8s.io).
//
// A pod that a ClusterNetworkPolicy selects in a direction (one with rules
// for that direction) is dispatched to a tier chain instead of its plain
// policy-group chain:
//
//	chain ingress-tier-<hash> {
//		ct state invalid jump invalid-…        (egress: drop)
//		<Admin rules, in evaluation order>     accept | drop | goto <next>
//		goto <next>
//	}
//
// where <next> is the pod's NetworkPolicy group chain when NetworkPolicies
// isolate it (they always decide), else its Baseline chain:
//
//	chain ingress-baseline-<hash> {
//		ct state invalid jump invalid-…
//		<Baseline rules>                       accept | drop | accept (Pass)
//		accept                                 (the default allows)
//	}
//
// For egress, "allow" is return: the destination's ingress is still judged
// in the base chain. An Admin Pass is a goto to <next>, so the rest of the
// Admin tier is skipped and nothing returns into it. Runs of rules become
// one tier-map lookup each (tiermap.go); the other rules are one allow-rule
// shape per (peer, protocols) alternative, in written order, with their
// action's verdict. The chains are named by their content, so pods with
// the same policies share them, and a packet walks only the rules of the
// ClusterNetworkPolicies that select its pod. A pod no ClusterNetworkPolicy
// selects gets exactly the NetworkPolicy chain it always had.

// podChain returns the chain direction d of pod p dispatches to for family
// fam, or "" when nothing isolates or selects it. chained builds the
// variant a conflict chain calls (ingress allow ends in return).
func (c *compiler) podChain(d cluster.Direction, p *cluster.Pod, fam int, chained bool) (string, error) {
	sel := c.selection(d, p)
	group, admin, baseline := sel.group, sel.admin, sel.baseline
	if len(admin) == 0 && (len(baseline) == 0 || len(group) > 0) {
		if len(group) == 0 {
			return "", nil
		}
		return c.groupChain(d, group, fam, chained)
	}
	allow := ruleset.Verdict{Kind: ruleset.Accept}
	if d == cluster.Egress || chained {
		allow = ruleset.Verdict{Kind: ruleset.Return}
	}
	// The chain after the Admin tier: NetworkPolicies when they isolate
	// the pod, else the Baseline tier; none means the default allow.
	var next string
	var err error
	switch {
	case len(group) > 0:
		next, err = c.groupChain(d, group, fam, chained)
	case len(baseline) > 0:
		next, err = c.tierChain(d, "baseline", baseline, fam, allow, allow, ruleset.Verdict{})
	}
	if err != nil {
		return "", err
	}
	if len(admin) == 0 {
		return next, nil
	}
	pass := allow
	if next != "" {
		pass = ruleset.Verdict{Kind: ruleset.Goto, Chain: next}
	}
	return c.tierChain(d, "tier", admin, fam, allow, pass, pass)
}

// podSelection is what applies to one pod in one direction: the
// NetworkPolicies isolating it and the CNPs of each tier selecting it (with
// rules for that direction), in evaluation order.
type podSelection struct {
	group           []*cluster.Policy
	admin, baseline []*cluster.ClusterPolicy
}

type podDir struct {
	pod *cluster.Pod
	d   cluster.Direction
}

// rawSelection returns what applies to p in direction d, matched once per
// compile: podChain asks for each of a pod's addresses, and conflict
// chains ask again for their claimants. selection (budget.go) applies the
// node's quarantine to it.
func (c *compiler) rawSelection(d cluster.Direction, p *cluster.Pod) podSelection {
	k := podDir{p, d}
	if sel, ok := c.selected[k]; ok {
		return sel
	}
	var sel podSelection
	for _, pol := range c.src.PoliciesFor(p.Namespace, p.Name) {
		if pol.Isolates(d) {
			sel.group = append(sel.group, pol)
		}
	}
	if cps := c.src.ClusterPolicies(); len(cps) > 0 && !p.HostNetwork {
		nsLabels := c.src.NamespaceLabels(p.Namespace)
		for _, cp := range cps {
			if len(cp.Rules(d)) == 0 || !cp.SelectsPod(p, nsLabels) {
				continue
			}
			if cp.Tier == cluster.TierBaseline {
				sel.baseline = append(sel.baseline, cp)
			} else {
				sel.admin = append(sel.admin, cp)
			}
		}
	}
	if c.selected == nil {
		c.selected = map[podDir]podSelection{}
	}
	c.selected[k] = sel
	// What the count and the build select, once: Compiler.Objects.
	if c.cc.selectNP != nil {
		for _, pol := range sel.group {
			c.cc.selectNP[pol] = true
		}
		for _, cps := range [][]*cluster.ClusterPolicy{sel.admin, sel.baseline} {
			for _, cp := range cps {
				c.cc.selectCNP[cp] = true
			}
		}
	}
	return sel
}

// tierChain returns the chain holding the rules of cps for direction d and
// family fam, creating it on first use: Accept rules end in allow, Deny
// rules drop, Pass rules end in pass; a packet no rule matches gets end
// (allow when end is the zero Verdict).
func (c *compiler) tierChain(d cluster.Direction, kind string, cps []*cluster.ClusterPolicy, fam int, allow, pass, end ruleset.Verdict) (string, error) {
	if end == (ruleset.Verdict{}) {
		end = allow
	}
	invalid := c.invalidVerdict(d)
	rules := []ruleset.Rule{&ruleset.CtRule{States: ruleset.CtInvalid, Verdict: invalid}}
	peerField := ruleset.Saddr
	if d == cluster.Egress {
		peerField = ruleset.Daddr
	}
	var entries []tierEntry
entries:
	for _, cp := range cps {
		rs := cp.Rules(d)
		for ri := range rs {
			r := &rs[ri]
			var v ruleset.Verdict
			switch r.Action {
			case cluster.ActionAccept:
				v = allow
			case cluster.ActionPass:
				v = pass
			default:
				v = ruleset.Verdict{Kind: ruleset.Drop}
			}
			comment := truncate(fmt.Sprintf("%s cnp %s %s[%d] %s", cp.Tier, cp.Name, d, ri, r.Action))
			// An Admin Pass decides nothing: it hands the packet to what
			// follows the tier, which logs its own verdict, or, when
			// nothing follows (pass is then allow), to the default allow,
			// which is never logged, as explain names no decider for it.
			if r.Action != cluster.ActionPass || cp.Tier != cluster.TierAdmin {
				v = c.logged(v, cnpDecider(cp, d, ri))
			}
			if d == cluster.Ingress && r.Action != cluster.ActionAccept && r.Action != cluster.ActionPass {
				v = c.nodeFirstDrop(v, allow)
			}
			e := tierEntry{cp: cp, index: ri, rule: r, verdict: v, comment: comment}
			// A Deny or Pass rule whose peers select some but not every
			// claimant of an address drops it (see disputedAddrs): an
			// entry right after the rule's own.
			var de *tierEntry
			if r.Action != cluster.ActionAccept && !r.MatchAll && c.disputed(r, fam) {
				dv := v
				if r.Action == cluster.ActionPass {
					dv = c.logged(ruleset.Verdict{Kind: ruleset.Drop}, cnpDecider(cp, d, ri))
					if d == cluster.Ingress {
						dv = c.nodeFirstDrop(dv, allow)
					}
				}
				de = &tierEntry{cp: cp, index: ri, rule: r, verdict: dv, disputed: true, comment: truncate(comment + " (disputed claims)")}
			}
			if !r.MatchAll {
				var ok bool
				e.portSet, e.named, ok = c.portMatch(cluster.Rule{Ports: r.Ports, AllPorts: r.AllPorts})
				if !ok {
					continue // every protocol entry was invalid: the rule matches nothing
				}
				switch {
				case len(e.named) > 0:
				case e.portSet == "":
					e.class = tierAllPorts
				default:
					e.class = tierPorts
				}
			}
			entries = append(entries, e)
			if de != nil {
				de.class, de.portSet, de.named = e.class, e.portSet, e.named
				entries = append(entries, *de)
			}
			if r.MatchAll {
				break entries // a Deny of everything (invalid, or quarantined): nothing after it is reached
			}
		}
	}
	laid, err := c.layoutTier(d, fam, peerField, entries)
	if err != nil {
		return "", err
	}
	rules = append(rules, laid...)
	if d == cluster.Ingress && end.Kind == ruleset.Drop {
		rules = append(rules, nodeTraffic())
	}
	rules = append(rules, &ruleset.VerdictRule{Verdict: end})
	name := d.String() + "-" + kind + "-" + chainHash(rules)
	if _, ok := c.chain[name]; !ok {
		c.chain[name] = &ruleset.Chain{Name: name, Rules: rules}
	}
	return name, nil
}

// nodeFirstDrop returns the verdict an ingress tier rule that drops with
// drop applies instead: a goto to a small chain that accepts (allow: accept,
// or return in a chained variant) traffic whose source is local to the
// node and then applies drop. Node traffic (kubelet probes, hostNetwork
// pods) is accepted into the node's pods before any tier decides, a
// fail-closed "Deny everything" included, as the model says; only packets
// a Deny rule matched pay for the route lookup. The chain is named by its
// content, like invalidChain.
func (c *compiler) nodeFirstDrop(drop, allow ruleset.Verdict) ruleset.Verdict {
	rules := []ruleset.Rule{
		&ruleset.FibLocalRule{Verdict: allow, Comment: "traffic from the node itself, e.g. kubelet probes"},
		&ruleset.VerdictRule{Verdict: drop},
	}
	return ruleset.Verdict{Kind: ruleset.Goto, Chain: c.addChain("ingress-deny-"+chainHash(rules), rules)}
}

// nodeSet returns the set of the addresses of family fam that a nodes
// peer matches for every one of their claimants (nodeAddrs), creating it
// on first use.
func (c *compiler) nodeSet(peer *cluster.Peer, fam int) string {
	name := fmt.Sprintf("nodes%d-%s", fam, shortHash(peer.Key))
	if _, ok := c.sets[name]; ok {
		return name
	}
	s := &ruleset.Set{Name: name, Key: ruleset.AddrKey(fam), Comment: truncate(peer.Key)}
	s.Addrs, _ = ruleset.PackAddrs(fam, c.nodeAddrs(peer, fam, false))
	c.sets[name] = s
	return name
}

// nodeAddrs returns, sorted, the addresses of family fam in the
// status.addresses of the Nodes a nodes peer selects, but never one a
// (non-hostNetwork) pod holds: a pod's address is the pod's, whatever a
// Node says. An address several Nodes list is in it only when the peer
// selects every one of them; with disputed, the addresses several Nodes
// list of which the peer selects some but not all are returned instead
// (see disputedSet). The model (cluster.Snapshot.NodesByIP) reads it
// alike.
func (c *compiler) nodeAddrs(peer *cluster.Peer, fam int, disputed bool) []netip.Addr {
	if peer.NodeSelector == nil {
		return nil
	}
	type count struct{ claimants, selected int }
	counts := map[netip.Addr]count{}
	for _, n := range c.src.Nodes() {
		m := peer.NodeSelector.Matches(n.Labels)
		for _, a := range n.IPs {
			if family(a) != fam {
				continue
			}
			if _, held := c.own[a]; held {
				continue
			}
			k := counts[a]
			k.claimants++
			if m {
				k.selected++
			}
			counts[a] = k
		}
	}
	var addrs []netip.Addr
	for a, k := range counts {
		if disputed && k.selected > 0 && k.selected < k.claimants || !disputed && k.selected == k.claimants {
			addrs = append(addrs, a)
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	return addrs
}

// Disputed addresses. An address several pods claim, or several Nodes
// list, is matched by a pods or nodes peer only when the peer selects every
// claimant (peerSet, nodeSet): for an Accept rule that is the strictest
// reading. For a Deny rule it is the widest: a pod that takes another's
// address (or a Node that lists another's) would lift a Deny. So a Deny
// rule also matches the addresses its peers select for some but not every
// claimant (disputed), and a Pass rule, whose effect depends on what
// follows it, denies them: then no claim can make a rule decide more
// leniently than it does for the address's rightful holder. The model
// (policy/model) judges alike.

// disputedAddrs returns, sorted, the addresses of family fam that peer
// selects for some but not every one of their claimants.
func (c *compiler) disputedAddrs(peer *cluster.Peer, fam int) []netip.Addr {
	switch peer.Kind {
	case cluster.PeerNodes:
		return c.nodeAddrs(peer, fam, true)
	case cluster.PeerPods:
		var out []netip.Addr
		for a, cl := range c.claims {
			if family(a) != fam {
				continue
			}
			n := 0
			for _, p := range cl {
				if c.peerSelects(peer, p) {
					n++
				}
			}
			if n > 0 && n < len(cl) {
				out = append(out, a)
			}
		}
		slices.SortFunc(out, netip.Addr.Compare)
		return out
	}
	return nil
}

// peerSelects reports whether a pods peer selects pod p, as the selector
// index does: in the peer's own namespace when it has no namespace
// selector, else in a namespace the selector matches; by its pod selector
// when it has one.
func (c *compiler) peerSelects(peer *cluster.Peer, p *cluster.Pod) bool {
	if peer.NamespaceSelector == nil {
		if p.Namespace != peer.Namespace {
			return false
		}
	} else if !peer.NamespaceSelector.Matches(c.src.NamespaceLabels(p.Namespace)) {
		return false
	}
	return peer.PodSelector == nil || peer.PodSelector.Matches(p.Labels)
}

// disputed reports whether some peer of r has disputed addresses of
// family fam, or some named port of r is resolved differently by the pods
// claiming an address of family fam.
func (c *compiler) disputed(r *cluster.ClusterRule, fam int) bool {
	if len(c.claims) == 0 && !c.nodesShareAddrs() {
		return false
	}
	for i := range r.Peers {
		if len(c.disputedAddrs(&r.Peers[i], fam)) > 0 {
			return true
		}
	}
	for _, pt := range r.Ports {
		if pt.Name != "" && len(c.disputedNamed(namedPort{name: pt.Name, proto: pt.Protocol}, fam)) > 0 {
			return true
		}
	}
	return false
}

// disputedNamed returns, sorted, the (address, protocol, port) elements
// of named port k for the addresses of family fam that several pods claim
// and do not all resolve k to one port: each port some claimant resolves
// it to. The named-port set (namedSet) holds such an address only when
// every claimant resolves the name alike; a Deny, and a Pass's disputed
// entry, match these too.
func (c *compiler) disputedNamed(k namedPort, fam int) []ruleset.Element {
	var out []ruleset.Element
	for a, cl := range c.claims {
		if family(a) != fam {
			continue
		}
		ports := map[int32]int{}
		for _, p := range cl {
			if port, ok := p.ResolvePort(k.name, k.proto); ok {
				ports[port]++
			}
		}
		alike := false
		for _, n := range ports {
			alike = len(ports) == 1 && n == len(cl)
		}
		if alike {
			continue // every claimant resolves it alike: namedSet holds it
		}
		for port := range ports {
			out = append(out, ruleset.Element{Addr: a, Proto: uint8(k.proto), Port: uint16(port), PortEnd: uint16(port)})
		}
	}
	slices.SortFunc(out, ruleset.CompareAddrPort)
	return out
}

// disputedNamedSet returns the set of disputedNamed(k, fam), creating it
// on first use; "" when it is empty.
func (c *compiler) disputedNamedSet(k namedPort, fam int) string {
	elems := c.disputedNamed(k, fam)
	if len(elems) == 0 {
		return ""
	}
	name := fmt.Sprintf("nameddisputed%d-%s", fam, shortHash(k.name+"/"+k.proto.String()))
	if _, ok := c.sets[name]; !ok {
		c.sets[name] = &ruleset.Set{Name: name, Key: ruleset.AddrProtoPortKey(fam), Elements: elems,
			Comment: truncate("named port " + k.proto.String() + "/" + k.name + " where its claimants disagree")}
	}
	return name
}

// nodesShareAddrs reports whether two Nodes list one address no pod holds
// (from the node conflicts of this compile, see nodeConflicts).
func (c *compiler) nodesShareAddrs() bool {
	for _, cf := range c.cc.nodeClaims {
		if len(cf.Nodes) > 1 && len(cf.Pods) == 0 {
			return true
		}
	}
	return false
}

// disputedSet returns the set of the disputed addresses of family fam of
// a pods or nodes peer, creating it on first use; "" when it has none.
func (c *compiler) disputedSet(peer *cluster.Peer, fam int) string {
	addrs := c.disputedAddrs(peer, fam)
	if len(addrs) == 0 {
		return ""
	}
	name := fmt.Sprintf("disputed%d-%s", fam, shortHash(peer.Key))
	if _, ok := c.sets[name]; !ok {
		s := &ruleset.Set{Name: name, Key: ruleset.AddrKey(fam), Comment: truncate("claimants disputed by " + peer.Key)}
		s.Addrs, _ = ruleset.PackAddrs(fam, addrs)
		c.sets[name] = s
	}
	return name
}

// nodeConflicts returns, sorted by address, the addresses that a Node's
// status.addresses list and that a (non-hostNetwork) pod holds too, or that
// two or more Nodes list, with a fingerprint naming them all. nodeAddrs
// resolves each so: the pod's address stays the pod's, and an address
// Nodes share matches the strictest way.
func nodeConflicts(nodes []*cluster.Node, own map[netip.Addr]*cluster.Pod, claims map[netip.Addr][]*cluster.Pod) (string, []Conflict) {
	byAddr := map[netip.Addr][]string{}
	for _, n := range nodes {
		for _, a := range n.IPs {
			if !slices.Contains(byAddr[a], n.Name) {
				byAddr[a] = append(byAddr[a], n.Name)
			}
		}
	}
	var out []Conflict
	var fp strings.Builder
	for _, a := range slices.SortedFunc(maps.Keys(byAddr), netip.Addr.Compare) {
		names := byAddr[a]
		p, held := own[a]
		if !held && len(names) < 2 {
			continue
		}
		slices.Sort(names)
		cf := Conflict{Addr: a, Nodes: names}
		switch {
		case p != nil:
			cf.Pods = []string{p.Key()}
		case held:
			for _, q := range claims[a] {
				cf.Pods = append(cf.Pods, q.Key())
			}
		}
		out = append(out, cf)
		fmt.Fprintf(&fp, "%s=%s+%s,", a, strings.Join(cf.Pods, "+"), strings.Join(names, "+"))
	}
	return fp.String(), out
}
