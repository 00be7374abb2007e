package quarantine_test

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/quarantine"
)

// TestSnapshot_StripsOnlyTheNodesObjects: a node's snapshot holds the
// objects quarantined there in their fail-closed forms and everything else
// as it is; another node's is the snapshot itself.
func TestSnapshot_StripsOnlyTheNodesObjects(t *testing.T) {
	np := &cluster.Policy{Namespace: "t", Name: "big", PodSelector: labels.Everything(), IsolatesIngress: true, IsolatesEgress: true,
		IngressRules: []cluster.Rule{{AllPeers: true, AllPorts: true}}, EgressRules: []cluster.Rule{{AllPeers: true, AllPorts: true}}}
	other := &cluster.Policy{Namespace: "t", Name: "small", PodSelector: labels.Everything(), IsolatesIngress: true, IngressRules: []cluster.Rule{{AllPeers: true, AllPorts: true}}}
	cnp := &cluster.ClusterPolicy{Name: "admin", Tier: cluster.TierAdmin, Priority: 3, SubjectNamespaces: labels.Everything(),
		Ingress: []cluster.ClusterRule{{Action: cluster.ActionAccept, Peers: []cluster.Peer{{Kind: cluster.PeerPods}}}, {Action: cluster.ActionPass, MatchAll: false}}}
	snap := &cluster.Snapshot{Policies: []*cluster.Policy{np, other}, ClusterPolicies: []*cluster.ClusterPolicy{cnp}}
	var set quarantine.Set
	set.Add(quarantine.Decision{Object: quarantine.PolicyObject(np), Node: "n1", Reason: quarantine.OverObjectBudget,
		Figure: quarantine.Figure{Dimension: "rules", Cost: 9000, Budget: 4096}, ObjectCost: 9000})
	set.Add(quarantine.Decision{Object: quarantine.ClusterPolicyObject(cnp), Node: "n1", Reason: quarantine.KernelRefused, Detail: "invalid argument"})

	got := set.Snapshot(snap, "n1")
	if got.Policies[0].Key() != "t/big" || len(got.Policies[0].IngressRules)+len(got.Policies[0].EgressRules) != 0 ||
		!got.Policies[0].IsolatesIngress || !got.Policies[0].IsolatesEgress {
		t.Fatalf("a quarantined NetworkPolicy keeps isolating, with no rules: %+v", got.Policies[0])
	}
	if got.Policies[1] != other {
		t.Fatal("an object not quarantined is shared as it is")
	}
	c := got.ClusterPolicies[0]
	if c.Tier != cluster.TierAdmin || c.Priority != 3 || len(c.Ingress) != 1 || !c.Ingress[0].MatchAll || c.Ingress[0].Action != cluster.ActionDeny || c.Egress != nil {
		t.Fatalf("a quarantined ClusterNetworkPolicy denies everything in its directions, at its tier and priority: %+v", c)
	}
	if set.Snapshot(snap, "n2") != snap {
		t.Fatal("another node's snapshot is the snapshot itself")
	}
	if np.IngressRules == nil || cnp.Ingress[0].Action != cluster.ActionAccept {
		t.Fatal("stripping changed the original objects")
	}
	msg := set.Node("n1")[0].Message()
	for _, want := range []string{"NetworkPolicy t/big", "node n1", "9000 rules", "per-object budget of 4096"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if n := set.Len(); n != 2 {
		t.Fatalf("Len %d", n)
	}
}
