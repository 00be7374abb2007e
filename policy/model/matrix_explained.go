package model

import (
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
	e := newEvaluator(s)
	var pods []*cluster.Pod
	for _, p := range s.Pods {
		if !p.HostNetwork && len(p.IPs) > 0 {
			pods = append(pods, p)
		}
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Key() < pods[j].Key() })
	var out ExplainedMatrix
	for _, p := range pods {
		out.Pods = append(out.Pods, MatrixPod{Key: p.Key(), Namespace: p.Namespace, Name: p.Name, Ports: declaredPorts(p)})
	}
	for i, from := range pods {
		for j, to := range pods {
			if i == j {
				continue
			}
			src, dst, ok := commonFamily(from, to)
			if !ok {
				continue
			}
			for _, k := range out.Pods[j].Ports {
				d := e.evaluate(Packet{Src: src, Dst: dst, Protocol: k.Protocol, Port: k.Port}, true)
				out.Cells = append(out.Cells, ExplainedCell{
					Cell:     Cell{From: out.Pods[i].Key, To: out.Pods[j].Key, Port: k.Port, Protocol: k.Protocol, Allowed: d.Allowed},
					Decision: d,
				})
			}
		}
	}
	return out
}
