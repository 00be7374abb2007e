package agent

// The pod network closes the window between a pod getting its address and
// the commit that learns its policies (compile.Options.PodNetwork: an
// address inside it that no known pod holds is dropped both ways). The
// agent takes it, on every sync, from the union of every Node's
// spec.podCIDRs (spec.podCIDR on older nodes) plus --pod-network, which
// adds to it (a cluster CIDR that the nodes' ranges do not cover, or a
// CNI's range when the nodes publish none); a Node added or removed moves
// it with the next sync. Reading Nodes needs no RBAC beyond the
// get/list/watch the agent already has for ClusterNetworkPolicy node
// peers.
//
// What stays open: a CNI that allocates addresses itself (Calico IPAM,
// Cilium cluster-pool, AWS VPC CNI...) leaves spec.podCIDRs empty; pods on
// such nodes, outside every published range and --pod-network, are
// unpoliced until their commit, as without this feature. The agent warns,
// once per change, when no pod network is known at all or some nodes
// publish no pod CIDRs.
//
// Whoever can write a Node's spec.podCIDRs (set once, by the node IPAM
// controller) can make addresses policyd drops: the failure is closed,
// never open.
//
// The closing leaves alone what is known not to be an unknown pod: every
// pod address, every Node's own addresses (status.addresses) and the
// gateway addresses CNIs give nodes inside the pod network
// (cluster.Node.Gateways: the Calico and Cilium annotations, the network
// and first addresses of each pod CIDR for flannel and bridge CNIs), which
// compile reads from the Nodes on every sync, and --pod-network-exempt for
// any other. A node's traffic to a pod on another node leaves through such
// a device with its address as the source (the API server calling a
// webhook pod, a kubelet's or the CNI's health checks); without the
// exemption it would be dropped as a pod policyd does not know. Whoever can
// annotate a Node can exempt an address from the closing: for a pod not
// yet known at that address, the window is open as without the closing,
// never wider; a pod's address stays the pod's.

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/compile"
)

// podNetworkState is what the last sync compiled the pod network from.
type podNetworkState struct {
	network []netip.Prefix
	bare    []string // nodes that publish no pod CIDRs, sorted
}

func (s podNetworkState) fingerprint() string {
	var b strings.Builder
	for _, p := range s.network {
		b.WriteString(p.String() + ",")
	}
	b.WriteString("|" + strings.Join(s.bare, ","))
	return b.String()
}

// podNetwork returns the union of flag and every node's pod CIDRs, with
// prefixes another covers removed (compile rejects overlapping ones; two
// CIDR prefixes overlap only when one contains the other), and the names
// of the nodes that publish none.
func podNetwork(flag []netip.Prefix, nodes []*cluster.Node) podNetworkState {
	all := slices.Clone(flag)
	var bare []string
	for _, n := range nodes {
		if len(n.PodCIDRs) == 0 {
			bare = append(bare, n.Name)
		}
		all = append(all, n.PodCIDRs...)
	}
	for i := range all {
		all[i] = all[i].Masked()
	}
	slices.SortFunc(all, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	var out []netip.Prefix
	for _, p := range all {
		// Sorted by address, then shorter first: a kept prefix covering p
		// covers everything between it and p, so it is the last one kept.
		if k := len(out); k > 0 && out[k-1].Bits() <= p.Bits() && out[k-1].Contains(p.Addr()) {
			continue
		}
		out = append(out, p)
	}
	slices.Sort(bare)
	return podNetworkState{network: out, bare: bare}
}

// reportPodNetwork logs the pod network when it changed: a warning while
// new pods (all of them, or those of nodes without pod CIDRs when
// --pod-network does not stand in for them) are unpoliced until their
// commit.
func (a *Agent) reportPodNetwork(s podNetworkState) {
	names := s.bare
	if len(names) > 5 {
		names = append(slices.Clone(names[:5]), "...")
	}
	switch {
	case len(s.network) == 0:
		a.log.Warn("no pod network known (no Node publishes spec.podCIDRs and --pod-network is not set): a new pod is unpoliced until the commit that learns it", "nodes_without_pod_cidrs", len(s.bare))
	case len(s.bare) > 0 && len(a.cfg.PodNetwork) == 0:
		a.log.Warn("some Nodes publish no spec.podCIDRs: their new pods, outside the pod network, are unpoliced until the commit that learns them", "pod_network", s.network, "nodes_without_pod_cidrs", len(s.bare), "nodes", names)
	default:
		a.log.Info("pod network: addresses in it that no known pod holds are dropped", "pod_network", s.network)
	}
}

// reportNodeConflict warns, once per change, about an address a Node's
// status.addresses list that a pod holds too (it stays the pod's: no nodes
// peer matches it) or that several Nodes list (a nodes peer matches it
// the strictest way), with a Warning Event on each Node.
func (a *Agent) reportNodeConflict(cf compile.Conflict) {
	var msg string
	if len(cf.Pods) > 0 {
		msg = fmt.Sprintf("status.addresses lists %s, which pod %s holds: the address is judged as the pod's, and no ClusterNetworkPolicy nodes peer matches it", cf.Addr, strings.Join(cf.Pods, ", "))
		a.log.Warn("a Node claims a pod's address: it stays the pod's", "address", cf.Addr, "nodes", cf.Nodes, "pods", cf.Pods)
	} else {
		msg = fmt.Sprintf("status.addresses lists %s, which Nodes %s all list: a nodes peer of an Accept or Pass rule matches it only when it selects every one of them, of a Deny rule when it selects any", cf.Addr, strings.Join(cf.Nodes, ", "))
		a.log.Warn("Nodes claim the same address: nodes peers match it the strictest way", "address", cf.Addr, "nodes", cf.Nodes)
	}
	if a.cfg.Recorder == nil {
		return
	}
	for _, name := range cf.Nodes {
		ref := &corev1.Node{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"}, ObjectMeta: metav1.ObjectMeta{Name: name}}
		a.cfg.Recorder.Eventf(ref, corev1.EventTypeWarning, "AddressConflict", "%s", msg)
	}
}
