package selectors_test

import (
	"maps"
	"testing"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/selectors"
	"github.com/policyd/policyd/selectors/selectorstest"
)

// The benchmark cluster: 10,000 pods, 2,000 policies, 100 namespaces.
const (
	benchPods       = 10000
	benchPolicies   = 2000
	benchNamespaces = 100
)

func benchCluster(b *testing.B) *cluster.Snapshot {
	b.Helper()
	return selectorstest.Synthetic(benchPods, benchPolicies, benchNamespaces, 1)
}

// distinctPeers returns one pod-selecting peer per distinct key, in policy order.
func distinctPeers(s *cluster.Snapshot) []*cluster.Peer {
	seen := map[string]bool{}
	var out []*cluster.Peer
	for _, p := range s.Policies {
		for _, r := range append(append([]cluster.Rule{}, p.IngressRules...), p.EgressRules...) {
			for i := range r.Peers {
				if pr := &r.Peers[i]; pr.Kind == cluster.PeerPods && !seen[pr.Key] {
					seen[pr.Key] = true
					out = append(out, pr)
				}
			}
		}
	}
	return out
}

// queryAll asks what a compile of every node would: each pod's policies and
// each peer's pods.
func queryAll(ix *selectors.Index, s *cluster.Snapshot, peers []*cluster.Peer) int {
	n := 0
	for _, p := range s.Pods {
		n += len(ix.PoliciesFor(p.Namespace, p.Name))
	}
	for _, pr := range peers {
		n += len(ix.PeerPods(pr))
	}
	return n
}

func BenchmarkFromSnapshot(b *testing.B) {
	s := benchCluster(b)
	peers := distinctPeers(s)
	b.Run("build", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			selectors.FromSnapshot(s)
		}
	})
	b.Run("build+query-all", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			queryAll(selectors.FromSnapshot(s), s, peers)
		}
	})
}

func BenchmarkPodRelabel(b *testing.B) {
	s := benchCluster(b)
	peers := distinctPeers(s)
	// A pod of a mid-cluster namespace gains and loses a label, as in a canary
	// rollout: each relabel creates a label group and drops one.
	base := s.Pods[len(s.Pods)/2]
	canary := *base
	canary.Labels = labels.Set(maps.Clone(base.Labels))
	canary.Labels["canary"] = "true"
	variants := []*cluster.Pod{&canary, base}

	b.Run("upsert", func(b *testing.B) {
		ix := selectors.FromSnapshot(s)
		queryAll(ix, s, peers)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			ix.UpsertPod(variants[i%2])
			i++
		}
	})
	b.Run("upsert+requery", func(b *testing.B) {
		ix := selectors.FromSnapshot(s)
		queryAll(ix, s, peers)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			p := variants[i%2]
			ix.UpsertPod(p)
			ix.PoliciesFor(p.Namespace, p.Name)
			for _, pr := range peers {
				ix.PeerPods(pr)
			}
			i++
		}
	})
}

func BenchmarkPeerPods(b *testing.B) {
	s := benchCluster(b)
	peers := distinctPeers(s)
	ix := selectors.FromSnapshot(s)
	queryAll(ix, s, peers)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ix.PeerPods(peers[i%len(peers)])
		i++
	}
}
