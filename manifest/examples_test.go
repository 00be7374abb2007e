package manifest

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/policyd/policyd/cluster"
)

// TestLoadPath_Examples loads the shop example under examples/ and checks that
// it decodes into the objects it describes and converts without errors.
func TestLoadPath_Examples(t *testing.T) {
	t.Parallel()
	dir := filepath.Join("..", "examples")
	o, err := LoadPath(dir)
	if err != nil {
		t.Fatalf("LoadPath(%s): %v", dir, err)
	}
	if len(o.Namespaces) != 2 || len(o.Pods) != 5 || len(o.Policies) != 6 {
		t.Errorf("got %d namespaces, %d pods, %d policies; want 2, 5, 6", len(o.Namespaces), len(o.Pods), len(o.Policies))
	}
	if len(o.Notes) != 0 || len(o.Services) != 1 || len(o.ClusterPolicies) != 1 {
		t.Errorf("notes %q, %d services, %d cluster network policies; want none, 1, 1", o.Notes, len(o.Services), len(o.ClusterPolicies))
	}

	snap, errs := o.Snapshot()
	if len(errs) != 0 {
		t.Fatalf("Snapshot errors: %v", errs)
	}
	var pods, policies []string
	for _, p := range snap.Pods {
		pods = append(pods, p.Key())
	}
	for _, p := range snap.Policies {
		policies = append(policies, p.Key())
	}
	wantPods := []string{"monitoring/prometheus", "shop/api", "shop/db", "shop/frontend-1", "shop/frontend-2"}
	wantPolicies := []string{"shop/allow-dns", "shop/allow-prometheus", "shop/api", "shop/db", "shop/default-deny", "shop/frontend"}
	if !slices.Equal(pods, wantPods) {
		t.Errorf("pods = %v, want %v", pods, wantPods)
	}
	if !slices.Equal(policies, wantPolicies) {
		t.Errorf("policies = %v, want %v", policies, wantPolicies)
	}

	nodes := map[string]bool{}
	dualStack := 0
	for _, p := range snap.Pods {
		nodes[p.NodeName] = true
		if _, ok := p.IP(4); !ok {
			t.Errorf("pod %s has no IPv4 address", p.Key())
		}
		if a, ok := p.IP(6); ok {
			dualStack++
			if !strings.HasPrefix(a.String(), "fd00:") {
				t.Errorf("pod %s IPv6 %s is not in fd00::/8 as documented", p.Key(), a)
			}
		}
		if p.Namespace == "shop" {
			if port, ok := p.ResolvePort("metrics", cluster.ProtocolTCP); !ok || port != 9100 {
				t.Errorf("pod %s: named port metrics = %d, %v; want 9100", p.Key(), port, ok)
			}
		}
	}
	if len(nodes) != 2 || !nodes["node-a"] || !nodes["node-b"] {
		t.Errorf("nodes = %v, want node-a and node-b", nodes)
	}
	if dualStack == 0 {
		t.Error("no dual-stack pod in the example")
	}
	for _, tc := range []struct {
		pod, port string
		want      int32
	}{
		{"shop/frontend-1", "http", 8080},
		{"shop/api", "api", 9090},
		{"shop/db", "postgres", 5432},
	} {
		if got, ok := snap.Pod(tc.pod).ResolvePort(tc.port, cluster.ProtocolTCP); !ok || got != tc.want {
			t.Errorf("pod %s: named port %s = %d, %v; want %d", tc.pod, tc.port, got, ok, tc.want)
		}
	}
	if got := snap.NamespaceLabels("monitoring")["kubernetes.io/metadata.name"]; got != "monitoring" {
		t.Errorf("namespace monitoring has kubernetes.io/metadata.name=%q", got)
	}
	for _, p := range snap.Policies {
		if p.Key() == "shop/default-deny" && !(p.IsolatesIngress && p.IsolatesEgress && len(p.IngressRules) == 0 && len(p.EgressRules) == 0) {
			t.Errorf("shop/default-deny does not deny both directions: %+v", p)
		}
	}
}
