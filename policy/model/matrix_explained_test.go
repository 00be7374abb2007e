package model

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	networkingv1 "k8s.io/api/networking/v1"
)

// TestExplainMatrix_AgreesWithMatrixAndEvaluate checks that ExplainMatrix
// probes exactly Matrix's cells, in Matrix's order, and that each cell's
// Decision is the one Evaluate gives for the same packet.
func TestExplainMatrix_AgreesWithMatrixAndEvaluate(t *testing.T) {
	t.Parallel()
	s := snapshot(t, []*networkingv1.NetworkPolicy{
		np("x", "only-y-to-a", selecting("app", "a"), ingress(in(peers(nsPeer(labelsSel("ns", "y"))), port(tcp, 80)))),
		np("y", "deny-egress", types(networkingv1.PolicyTypeEgress)),
	}, false)
	em := ExplainMatrix(s)
	var got []Cell
	for _, c := range em.Cells {
		got = append(got, c.Cell)
	}
	if diff := cmp.Diff(Matrix(s), got); diff != "" {
		t.Fatalf("ExplainMatrix cells differ from Matrix (-want +got):\n%s", diff)
	}
	if len(em.Pods) == 0 || len(em.Cells) == 0 {
		t.Fatalf("empty matrix: %d pods, %d cells", len(em.Pods), len(em.Cells))
	}
	byKey := map[string]MatrixPod{}
	for i, p := range em.Pods {
		if i > 0 && em.Pods[i-1].Key >= p.Key {
			t.Errorf("pods not sorted: %q before %q", em.Pods[i-1].Key, p.Key)
		}
		byKey[p.Key] = p
	}
	podOf := map[string]int{}
	for i, p := range s.Pods {
		podOf[p.Key()] = i
	}
	for _, c := range em.Cells {
		from, to := s.Pods[podOf[c.From]], s.Pods[podOf[c.To]]
		src, dst, ok := commonFamily(from, to)
		if !ok {
			t.Fatalf("cell %s -> %s has no common family", c.From, c.To)
		}
		want := Evaluate(s, Packet{Src: src, Dst: dst, Protocol: c.Protocol, Port: c.Port})
		if diff := cmp.Diff(want, c.Decision); diff != "" {
			t.Errorf("%s -> %s %s/%d: Decision differs from Evaluate (-want +got):\n%s", c.From, c.To, c.Protocol, c.Port, diff)
		}
		if c.Allowed != c.Decision.Allowed {
			t.Errorf("%s -> %s: Allowed %v but Decision.Allowed %v", c.From, c.To, c.Allowed, c.Decision.Allowed)
		}
		if _, ok := byKey[c.To]; !ok {
			t.Errorf("cell destination %s not in Pods", c.To)
		}
	}
}

// TestExplainMatrixCells_StopsAndRedraws checks that the sequence stops when
// its consumer does, and that a second drawing gives ExplainMatrix's cells.
func TestExplainMatrixCells_StopsAndRedraws(t *testing.T) {
	t.Parallel()
	s := snapshot(t, []*networkingv1.NetworkPolicy{
		np("y", "deny-egress", types(networkingv1.PolicyTypeEgress)),
	}, false)
	pods, cells := ExplainMatrixCells(s)
	n := 0
	for range cells {
		n++
		if n == 2 {
			break
		}
	}
	if n != 2 {
		t.Fatalf("drew %d cells before stopping, want 2", n)
	}
	var got []ExplainedCell
	for c := range cells {
		got = append(got, c)
	}
	em := ExplainMatrix(s)
	if diff := cmp.Diff(em, ExplainedMatrix{Pods: pods, Cells: got}); diff != "" {
		t.Errorf("a second drawing differs from ExplainMatrix (-want +got):\n%s", diff)
	}
}
