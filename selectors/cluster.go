package selectors

import (
	"slices"
	"strings"

	"github.com/policyd/policyd/cluster"
)

// clusterPolicyEntry holds a ClusterNetworkPolicy and references on the
// peers its pod-selecting rules use, so that their pod sets are kept
// incrementally like those of NetworkPolicy peers.
type clusterPolicyEntry struct {
	pol   *cluster.ClusterPolicy
	peers []*peerEntry
}

// UpsertClusterPolicy adds a ClusterNetworkPolicy or replaces the one with
// its name. A nil p is ignored.
func (ix *Index) UpsertClusterPolicy(p *cluster.ClusterPolicy) {
	if p == nil {
		return
	}
	ce := &clusterPolicyEntry{pol: p}
	for _, d := range []cluster.Direction{cluster.Ingress, cluster.Egress} {
		for _, r := range p.Rules(d) {
			ce.peers = ix.refPodPeers(ce.peers, r.Peers)
		}
	}
	if ix.clusterPolicies == nil {
		ix.clusterPolicies = map[string]*clusterPolicyEntry{}
	}
	old := ix.clusterPolicies[p.Name]
	ix.clusterPolicies[p.Name] = ce
	ix.allClusterValid = false
	if old != nil {
		ix.releaseClusterPolicy(old)
	}
}

// DeleteClusterPolicy forgets a ClusterNetworkPolicy. Unknown names are
// ignored.
func (ix *Index) DeleteClusterPolicy(name string) {
	old := ix.clusterPolicies[name]
	if old == nil {
		return
	}
	delete(ix.clusterPolicies, name)
	ix.allClusterValid = false
	ix.releaseClusterPolicy(old)
}

func (ix *Index) releaseClusterPolicy(ce *clusterPolicyEntry) {
	for _, p := range ce.peers {
		p.refs--
		ix.releasePeer(p)
	}
}

// ClusterPolicies returns every ClusterNetworkPolicy in evaluation order
// (cluster.SortClusterPolicies). The slice is shared: do not modify it.
func (ix *Index) ClusterPolicies() []*cluster.ClusterPolicy {
	if !ix.allClusterValid {
		ix.allCluster = ix.allCluster[:0:0]
		for _, ce := range ix.clusterPolicies {
			ix.allCluster = append(ix.allCluster, ce.pol)
		}
		cluster.SortClusterPolicies(ix.allCluster)
		ix.allClusterValid = true
	}
	return ix.allCluster
}

// ClusterPolicyCount returns the number of ClusterNetworkPolicies.
func (ix *Index) ClusterPolicyCount() int { return len(ix.clusterPolicies) }

// UpsertNode adds a node or replaces the one with its name (for
// ClusterNetworkPolicy nodes peers). A nil n is ignored.
func (ix *Index) UpsertNode(n *cluster.Node) {
	if n == nil {
		return
	}
	if ix.nodeObjs == nil {
		ix.nodeObjs = map[string]*cluster.Node{}
	}
	ix.nodeObjs[n.Name] = n
	ix.allNodesValid = false
}

// DeleteNode forgets a node.
func (ix *Index) DeleteNode(name string) {
	delete(ix.nodeObjs, name)
	ix.allNodesValid = false
}

// Nodes returns every node, sorted by name. The slice is shared.
func (ix *Index) Nodes() []*cluster.Node {
	if !ix.allNodesValid {
		ix.allNodes = ix.allNodes[:0:0]
		for _, n := range ix.nodeObjs {
			ix.allNodes = append(ix.allNodes, n)
		}
		slices.SortFunc(ix.allNodes, func(a, b *cluster.Node) int { return strings.Compare(a.Name, b.Name) })
		ix.allNodesValid = true
	}
	return ix.allNodes
}

// refPodPeers takes a reference on the entry of each pod-selecting peer of
// peers and appends the entries to held.
func (ix *Index) refPodPeers(held []*peerEntry, peers []cluster.Peer) []*peerEntry {
	for i := range peers {
		if peers[i].Kind != cluster.PeerPods {
			continue
		}
		pr := ix.acquirePeer(&peers[i])
		pr.refs++
		held = append(held, pr)
	}
	return held
}
