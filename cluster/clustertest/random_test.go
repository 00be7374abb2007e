package clustertest

import (
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestRandom_Deterministic(t *testing.T) {
	t.Parallel()
	opts := Options{IPv6: true, HostNetwork: true, Unscheduled: true, ExtraNamespaces: 1}
	// Many seeds: a generator that ranges over a map while drawing numbers
	// only diverges now and then.
	for seed := range uint64(200) {
		a := RandomObjects(rand.New(rand.NewPCG(seed, 7)), opts)
		b := RandomObjects(rand.New(rand.NewPCG(seed, 7)), opts)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("seed %d gave different clusters", seed)
		}
	}
	a := RandomObjects(rand.New(rand.NewPCG(7, 7)), opts)
	c := RandomObjects(rand.New(rand.NewPCG(8, 8)), opts)
	if reflect.DeepEqual(a, c) {
		t.Fatalf("different seeds gave the same cluster")
	}
}

// TestRandom_ValidAndVaried converts many random clusters (Snapshot panics on
// any conversion error) and checks that every feature the differential tests
// rely on shows up.
func TestRandom_ValidAndVaried(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	want := []string{
		"op In", "op NotIn", "op Exists", "op DoesNotExist", "empty podSelector",
		"peer pods only", "peer namespaces only", "peer both", "ipBlock v4", "ipBlock v6", "except",
		"numeric port", "named port", "endPort", "protocol only", "default protocol",
		"rule lists absent", "rule lists empty", "peers absent", "peers empty", "ports absent", "ports empty",
		"policyTypes absent", "policyTypes egress only", "hostNetwork pod", "pod without IP", "dual stack pod",
		"extra namespace",
	}
	sel := func(s *metav1.LabelSelector) {
		if s == nil {
			return
		}
		if len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0 {
			seen["empty podSelector"] = true
		}
		for _, r := range s.MatchExpressions {
			seen["op "+string(r.Operator)] = true
		}
	}
	peers := func(ps []networkingv1.NetworkPolicyPeer) {
		if ps == nil {
			seen["peers absent"] = true
		} else if len(ps) == 0 {
			seen["peers empty"] = true
		}
		for _, p := range ps {
			sel(p.PodSelector)
			sel(p.NamespaceSelector)
			switch {
			case p.IPBlock != nil:
				if len(p.IPBlock.Except) > 0 {
					seen["except"] = true
				}
				if strings.Contains(p.IPBlock.CIDR, ":") {
					seen["ipBlock v6"] = true
				} else {
					seen["ipBlock v4"] = true
				}
			case p.PodSelector != nil && p.NamespaceSelector != nil:
				seen["peer both"] = true
			case p.PodSelector != nil:
				seen["peer pods only"] = true
			default:
				seen["peer namespaces only"] = true
			}
		}
	}
	ports := func(ps []networkingv1.NetworkPolicyPort) {
		if ps == nil {
			seen["ports absent"] = true
		} else if len(ps) == 0 {
			seen["ports empty"] = true
		}
		for _, p := range ps {
			if p.Protocol == nil {
				seen["default protocol"] = true
			}
			switch {
			case p.Port == nil:
				seen["protocol only"] = true
			case p.Port.Type == intstr.String:
				seen["named port"] = true
			case p.EndPort != nil:
				seen["endPort"] = true
			default:
				seen["numeric port"] = true
			}
		}
	}
	for i := range 300 {
		rng := rand.New(rand.NewPCG(uint64(i), 1))
		objs := RandomObjects(rng, Options{IPv6: true, HostNetwork: true, Unscheduled: true, ExtraNamespaces: 1})
		s := objs.Snapshot()
		if len(s.Pods) != len(objs.Pods) || len(s.Policies) != len(objs.Policies) {
			t.Fatalf("seed %d: snapshot lost objects", i)
		}
		if len(s.Namespaces) == 4 {
			seen["extra namespace"] = true
		}
		for _, p := range s.Pods {
			switch {
			case p.HostNetwork:
				seen["hostNetwork pod"] = true
			case len(p.IPs) == 0:
				seen["pod without IP"] = true
			case len(p.IPs) == 2:
				seen["dual stack pod"] = true
			}
		}
		for _, np := range objs.Policies {
			sel(&np.Spec.PodSelector)
			switch {
			case len(np.Spec.PolicyTypes) == 0:
				seen["policyTypes absent"] = true
			case len(np.Spec.PolicyTypes) == 1 && np.Spec.PolicyTypes[0] == networkingv1.PolicyTypeEgress:
				seen["policyTypes egress only"] = true
			}
			if np.Spec.Ingress == nil && np.Spec.Egress == nil {
				seen["rule lists absent"] = true
			}
			if np.Spec.Ingress != nil && len(np.Spec.Ingress) == 0 {
				seen["rule lists empty"] = true
			}
			for _, r := range np.Spec.Ingress {
				peers(r.From)
				ports(r.Ports)
			}
			for _, r := range np.Spec.Egress {
				peers(r.To)
				ports(r.Ports)
			}
		}
	}
	for _, w := range want {
		if !seen[w] {
			t.Errorf("300 random clusters never produced %q", w)
		}
	}
}

func TestRandom_Defaults(t *testing.T) {
	t.Parallel()
	s, pols := Random(rand.New(rand.NewPCG(1, 2)), Options{MaxPolicies: -1})
	if len(pols) != 0 || len(s.Policies) != 0 {
		t.Errorf("MaxPolicies -1 produced %d policies", len(pols))
	}
	for _, ns := range []string{"x", "y", "z"} {
		if s.Namespaces[ns] == nil {
			t.Errorf("namespace %s missing", ns)
		}
	}
	nodes := map[string]bool{"node-1": true, "node-2": true, "node-3": true}
	for _, p := range s.Pods {
		if !nodes[p.NodeName] {
			t.Errorf("pod %s on unexpected node %q", p.Key(), p.NodeName)
		}
		if len(p.IPs) != 1 || !p.IPs[0].Is4() || !PodPrefix4.Contains(p.IPs[0]) {
			t.Errorf("pod %s IPs = %v, want one address in %s", p.Key(), p.IPs, PodPrefix4)
		}
	}
}
