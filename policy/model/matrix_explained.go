package model

import (
	"iter"
	"sort"

	"github.com/policyd/policyd/cluster"
)

// ExplainedMatrix is Matrix with the reasons: the pods probed, the ports each
// declares, and every cell together with the Decision that produced it.
type ExplainedMatrix struct {
	// Pods are the probed pods (not hostNetwork, with an address), sorted by
	// key.
	Pods []MatrixPod
	// Cells are Matrix(s)'s cells in the same order, each with its Decision.
	Cells []ExplainedCell
}

// MatrixPod is one probed pod of a matrix.
type MatrixPod struct {
	// Key is "namespace/name".
	Key       string
	Namespace string
	Name      string
	// Ports are the pod's distinct valid containerPorts, sorted; the matrix
	// probes the pod as a destination on exactly these.
	Ports []PortProto
}

// ExplainedCell is one matrix cell and the model's Decision on it, with
// the reasons of both directions (as Evaluate gives them).
type ExplainedCell struct {
	Cell
	Decision Decision
}

// ExplainMatrix evaluates the same probes as Matrix, in the same order, but
// keeps each cell's Decision with its reasons (policy and rule that admitted
// it, the deciding ClusterNetworkPolicy rule, or the nearest miss). It is
// slower than Matrix, which skips building reasons.
func ExplainMatrix(s *cluster.Snapshot) ExplainedMatrix {
	pods, cells := ExplainMatrixCells(s)
	out := ExplainedMatrix{Pods: pods}
	for c := range cells {
		out.Cells = append(out.Cells, c)
	}
	return out
}

// ExplainMatrixCells returns the pods of ExplainMatrix(s) and its cells, in
// the same order, as a sequence that evaluates each cell when it is drawn: a
// caller that folds the cells into something smaller (a page, counts) never
// holds them all. A large cluster's explained cells take gigabytes (a
// thousand pods make about two million cells, each with the reasons of both
// directions). Each drawing of the sequence evaluates the cells again.
func ExplainMatrixCells(s *cluster.Snapshot) ([]MatrixPod, iter.Seq[ExplainedCell]) {
	var pods []*cluster.Pod
	for _, p := range s.Pods {
		if !p.HostNetwork && len(p.IPs) > 0 {
			pods = append(pods, p)
		}
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Key() < pods[j].Key() })
	var out []MatrixPod
	for _, p := range pods {
		out = append(out, MatrixPod{Key: p.Key(), Namespace: p.Namespace, Name: p.Name, Ports: declaredPorts(p)})
	}
	seq := func(yield func(ExplainedCell) bool) {
		e := newEvaluator(s)
		for i, from := range pods {
			for j, to := range pods {
				if i == j {
					continue
				}
				src, dst, ok := commonFamily(from, to)
				if !ok {
					continue
				}
				for _, k := range out[j].Ports {
					d := e.evaluate(Packet{Src: src, Dst: dst, Protocol: k.Protocol, Port: k.Port}, true)
					c := ExplainedCell{
						Cell:     Cell{From: out[i].Key, To: out[j].Key, Port: k.Port, Protocol: k.Protocol, Allowed: d.Allowed},
						Decision: d,
					}
					if !yield(c) {
						return
					}
				}
			}
		}
	}
	return out, seq
}
