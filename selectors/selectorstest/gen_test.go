package selectorstest

import (
	"fmt"
	"net/netip"
	"reflect"
	"testing"

	"github.com/policyd/policyd/cluster"
)

func TestSynthetic_Shape(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pods, policies, namespaces int
	}{
		{pods: 0, policies: 0, namespaces: 0},
		{pods: 10, policies: 3, namespaces: 1},
		{pods: 1000, policies: 200, namespaces: 10},
		{pods: 2000, policies: 400, namespaces: 100},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d/%d/%d", tt.pods, tt.policies, tt.namespaces), func(t *testing.T) {
			t.Parallel()
			s := Synthetic(tt.pods, tt.policies, tt.namespaces, 7)
			if len(s.Pods) != tt.pods || len(s.Policies) != tt.policies || len(s.Namespaces) != tt.namespaces {
				t.Fatalf("Synthetic made %d pods, %d policies, %d namespaces; want %d, %d, %d",
					len(s.Pods), len(s.Policies), len(s.Namespaces), tt.pods, tt.policies, tt.namespaces)
			}
			seen := map[netip.Addr]string{}
			named := 0
			for i, p := range s.Pods {
				if i > 0 && s.Pods[i-1].Key() >= p.Key() {
					t.Errorf("pods not sorted with unique keys: %s before %s", s.Pods[i-1].Key(), p.Key())
				}
				if _, ok := s.Namespaces[p.Namespace]; !ok {
					t.Errorf("pod %s is in no generated namespace", p.Key())
				}
				var node int
				if _, err := fmt.Sscanf(p.NodeName, "node-%d", &node); err != nil || node < 0 || node >= Nodes {
					t.Errorf("pod %s on node %q, want node-0 … node-%d", p.Key(), p.NodeName, Nodes-1)
				}
				if len(p.IPs) == 0 {
					t.Errorf("pod %s has no address", p.Key())
				}
				for _, a := range p.IPs {
					if a.Is4() && a.As4()[0] != 10 {
						t.Errorf("pod %s address %s is not in 10.0.0.0/8", p.Key(), a)
					}
					if other, dup := seen[a]; dup {
						t.Errorf("pods %s and %s share address %s", other, p.Key(), a)
					}
					seen[a] = p.Key()
				}
				for _, cp := range p.Ports {
					if cp.Name != "" {
						named++
					}
				}
			}
			if tt.pods > 0 && named == 0 {
				t.Error("no pod declares a named port")
			}
			for _, p := range s.Policies {
				if len(p.Errors) > 0 {
					t.Errorf("policy %s has errors: %v", p.Key(), p.Errors)
				}
				if n := len(p.IngressRules) + len(p.EgressRules); n < 1 || n > 3 {
					t.Errorf("policy %s has %d rules, want 1-3", p.Key(), n)
				}
			}
		})
	}
}

func TestSynthetic_MixesPeersAndPorts(t *testing.T) {
	t.Parallel()
	s := Synthetic(1000, 300, 20, 3)
	kinds := map[string]int{}
	for _, p := range s.Policies {
		for _, r := range append(append([]cluster.Rule{}, p.IngressRules...), p.EgressRules...) {
			for _, pr := range r.Peers {
				switch {
				case pr.Kind == cluster.PeerIPBlock:
					kinds["ipBlock"]++
				case pr.NamespaceSelector != nil && pr.PodSelector != nil:
					kinds["namespace+pod"]++
				case pr.NamespaceSelector != nil:
					kinds["namespace"]++
				default:
					kinds["pod"]++
				}
			}
			for _, pt := range r.Ports {
				switch {
				case pt.Name != "":
					kinds["named port"]++
				case pt.Port == 0:
					kinds["protocol only"]++
				case pt.EndPort != pt.Port:
					kinds["range"]++
				default:
					kinds["port"]++
				}
			}
		}
	}
	for _, k := range []string{"ipBlock", "namespace+pod", "namespace", "pod", "named port", "protocol only", "range", "port"} {
		if kinds[k] == 0 {
			t.Errorf("no %s in 300 policies: %v", k, kinds)
		}
	}
	hostNetwork := 0
	for _, p := range s.Pods {
		if p.HostNetwork {
			hostNetwork++
		}
	}
	if hostNetwork == 0 {
		t.Error("no hostNetwork pod")
	}
}

func TestSynthetic_Deterministic(t *testing.T) {
	t.Parallel()
	a, b := Synthetic(500, 100, 10, 42), Synthetic(500, 100, 10, 42)
	if !reflect.DeepEqual(podKeys(a), podKeys(b)) || !reflect.DeepEqual(a.Pods, b.Pods) {
		t.Error("the same seed gave different pods")
	}
	for i := range a.Policies {
		if a.Policies[i].Key() != b.Policies[i].Key() || a.Policies[i].PodSelectorKey != b.Policies[i].PodSelectorKey {
			t.Fatalf("the same seed gave different policies: %s vs %s", a.Policies[i].Key(), b.Policies[i].Key())
		}
	}
	if c := Synthetic(500, 100, 10, 43); reflect.DeepEqual(a.Pods, c.Pods) {
		t.Error("seeds 42 and 43 gave the same pods")
	}
}

func podKeys(s *cluster.Snapshot) []string {
	var out []string
	for _, p := range s.Pods {
		out = append(out, p.Key())
	}
	return out
}
