package agent

import (
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policyd/policyd/cluster"
)

func TestPodNetwork_UnionOfNodesAndFlag(t *testing.T) {
	t.Parallel()
	pfx := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	node := func(name string, cidrs ...string) *cluster.Node {
		return &cluster.Node{Name: name, PodCIDRs: pfx(cidrs...)}
	}
	tests := []struct {
		name     string
		flag     []netip.Prefix
		nodes    []*cluster.Node
		want     string
		wantBare int
	}{
		{name: "nothing known", nodes: []*cluster.Node{node("a")}, want: "", wantBare: 1},
		{name: "nodes only", nodes: []*cluster.Node{node("b", "10.244.1.0/24", "fd00:1::/64"), node("a", "10.244.0.0/24")}, want: "10.244.0.0/24 10.244.1.0/24 fd00:1::/64"},
		{name: "flag adds", flag: pfx("10.96.0.0/16"), nodes: []*cluster.Node{node("a", "10.244.0.0/24")}, want: "10.96.0.0/16 10.244.0.0/24"},
		{name: "flag covers nodes: no overlap reaches compile", flag: pfx("10.244.0.0/16"), nodes: []*cluster.Node{node("a", "10.244.0.0/24"), node("b", "10.244.9.0/24"), node("c")}, want: "10.244.0.0/16", wantBare: 1},
		{name: "duplicate and nested node ranges", nodes: []*cluster.Node{node("a", "10.244.0.0/24"), node("b", "10.244.0.0/24"), node("c", "10.244.0.128/25")}, want: "10.244.0.0/24"},
		{name: "unmasked flag", flag: pfx("10.244.3.1/24"), want: "10.244.3.0/24"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := podNetwork(tt.flag, tt.nodes)
			s := ""
			for i, p := range got.network {
				if i > 0 {
					s += " "
				}
				s += p.String()
			}
			if s != tt.want || len(got.bare) != tt.wantBare {
				t.Errorf("podNetwork = %q, bare %v; want %q, %d bare", s, got.bare, tt.want, tt.wantBare)
			}
		})
	}
}

// TestSameNode_GatewayAnnotationIsAChange: a Node update that changes only
// a CNI gateway annotation changes what the pod network's closing exempts,
// so it is not dropped as a status-only update.
func TestSameNode_GatewayAnnotationIsAChange(t *testing.T) {
	t.Parallel()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Annotations: map[string]string{"projectcalico.org/IPv4VXLANTunnelAddr": "10.244.1.192"}}}
	a, errs := cluster.ConvertNode(n)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	n.Annotations["projectcalico.org/IPv4VXLANTunnelAddr"] = "10.244.1.193"
	b, _ := cluster.ConvertNode(n)
	if sameNode(a, b) {
		t.Error("a changed tunnel address is no change")
	}
	n.Annotations["projectcalico.org/IPv4VXLANTunnelAddr"] = "10.244.1.192"
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	c, _ := cluster.ConvertNode(n)
	if !sameNode(a, c) {
		t.Error("a condition change is a change")
	}
}
