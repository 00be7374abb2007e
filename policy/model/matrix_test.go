package model

import (
	"sort"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/policyd/policyd/cluster"
)

func TestMatrix(t *testing.T) {
	t.Parallel()
	nss, pods := baseObjects()
	// A pod with no address yet and one declaring a duplicate port are
	// added to the base cluster.
	pending := newPod("z", "pending", nil)
	dup := newPod("z", "dup", map[string]string{"app": "a"}, "10.0.2.9")
	dup.Spec.Containers[0].Ports = []corev1.ContainerPort{
		{Name: "a", ContainerPort: 80}, {Name: "b", ContainerPort: 80, Protocol: corev1.ProtocolTCP}, {Name: "c", ContainerPort: 80, Protocol: corev1.ProtocolUDP},
	}
	pods = append(pods, pending, dup)
	policies := []*networkingv1.NetworkPolicy{
		np("x", "only-y-to-a", selecting("app", "a"), ingress(in(peers(nsPeer(labelsSel("ns", "y"))), port(tcp, 80)))),
	}
	s, errs := cluster.NewSnapshot(nss, pods, policies)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	cells := Matrix(s)

	if !sort.SliceIsSorted(cells, func(i, j int) bool {
		a, b := cells[i], cells[j]
		if a.From != b.From {
			return a.From < b.From
		}
		if a.To != b.To {
			return a.To < b.To
		}
		if a.Port != b.Port {
			return a.Port < b.Port
		}
		return a.Protocol < b.Protocol
	}) {
		t.Errorf("cells not sorted")
	}
	// 6 probed pods: x/a x/b y/a y/b z/c z/dup. Pairs to the five base pods
	// carry 6 ports each (the named http duplicates a declared number), pairs
	// to z/dup 2 (TCP/80 once, UDP/80).
	if want := 5*5*6 + 5*2; len(cells) != want {
		t.Errorf("len(cells) = %d, want %d", len(cells), want)
	}
	seen := map[[2]string]bool{}
	for _, c := range cells {
		if c.From == c.To {
			t.Errorf("self cell %+v", c)
		}
		for _, k := range []string{c.From, c.To} {
			if k == "x/host" || k == "z/pending" {
				t.Errorf("cell with a pod that must be skipped: %+v", c)
			}
		}
		seen[[2]string{c.From, c.To}] = true
		// Every cell agrees with Evaluate on the pods' primary addresses.
		from, to := s.Pod(c.From), s.Pod(c.To)
		d := Evaluate(s, Packet{Src: Endpoint{Pod: from, IP: from.IPs[0]}, Dst: Endpoint{Pod: to, IP: to.IPs[0]}, Protocol: c.Protocol, Port: c.Port})
		if d.Allowed != c.Allowed {
			t.Errorf("cell %+v disagrees with Evaluate: %s / %s", c, d.Egress.Reason, d.Ingress.Reason)
		}
	}
	if len(seen) != 30 {
		t.Errorf("%d ordered pairs, want 30", len(seen))
	}
	want := map[Cell]bool{
		{From: "y/b", To: "x/a", Port: 80, Protocol: tcp}: true,
		{From: "y/b", To: "x/a", Port: 81, Protocol: tcp}: false,
		{From: "z/c", To: "x/a", Port: 80, Protocol: tcp}: false,
		{From: "x/b", To: "x/a", Port: 80, Protocol: udp}: false,
		{From: "x/a", To: "x/b", Port: 80, Protocol: udp}: true,
	}
	for _, c := range cells {
		key := c
		key.Allowed = false
		if w, ok := want[key]; ok {
			if c.Allowed != w {
				t.Errorf("%+v: Allowed = %v, want %v", key, c.Allowed, w)
			}
			delete(want, key)
		}
	}
	for k := range want {
		t.Errorf("cell %+v missing", k)
	}
}

// TestMatrix_DualStackUsesCommonFamily checks that a pair is probed over the
// family both pods have: x/a (dual stack) to y/a (dual stack) over IPv4 (the
// destination's primary), and an IPv6-only destination over IPv6.
func TestMatrix_DualStackUsesCommonFamily(t *testing.T) {
	t.Parallel()
	nss, _ := baseObjects()
	pods := []*corev1.Pod{
		newPod("x", "a", nil, "10.0.0.1", "fd00::1"),
		newPod("x", "v6", nil, "fd00::2"),
		newPod("x", "v4", nil, "10.0.0.3"),
	}
	// Only IPv6 sources may reach x/a: decided by family, so the cell shows
	// which family was used.
	policies := []*networkingv1.NetworkPolicy{np("x", "v6-only", ingress(in(peers(ipPeer("fd00::/64")))))}
	s, errs := cluster.NewSnapshot(nss, pods, policies)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	got := map[[2]string]bool{}
	for _, c := range Matrix(s) {
		if c.Port == 80 && c.Protocol == tcp {
			got[[2]string{c.From, c.To}] = c.Allowed
		}
	}
	want := map[[2]string]bool{
		{"x/a", "x/v6"}: true,  // IPv6 is the only common family
		{"x/v6", "x/a"}: true,  // x/a's IPv4 first, but x/v6 has no IPv4: IPv6
		{"x/v4", "x/a"}: false, // IPv4
		{"x/a", "x/v4"}: false, // IPv4; x/v4 is isolated too
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			t.Errorf("%s -> %s: got %v (present %v), want %v", k[0], k[1], g, ok, w)
		}
	}
	for _, k := range [][2]string{{"x/v4", "x/v6"}, {"x/v6", "x/v4"}} {
		if _, ok := got[k]; ok {
			t.Errorf("%s -> %s probed without a common family", k[0], k[1])
		}
	}
}
