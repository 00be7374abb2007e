package model

import (
	"slices"
	"sort"

	"github.com/policyd/policyd/cluster"
)

// Matrix evaluates every ordered pair of distinct pods of s against every
// (port, protocol) the destination pod declares in its containerPorts, the way
// the upstream e2e netpol suite probes a cluster. hostNetwork pods and pods
// without an address are left out.
//
// Each pair is probed over the first address family both pods have, in the
// order of the destination's IPs (its primary family first); a pair with no
// common family is left out. Cells are sorted by From, To, Port, Protocol.
func Matrix(s *cluster.Snapshot) []Cell {
	e := newEvaluator(s)
	type probed struct {
		pod   *cluster.Pod
		key   string
		ports []PortProto
	}
	var pods []probed
	for _, p := range s.Pods {
		if !p.HostNetwork && len(p.IPs) > 0 {
			pods = append(pods, probed{pod: p, key: p.Key(), ports: declaredPorts(p)})
		}
	}
	// Iterating in key order over sorted ports yields sorted cells.
	sort.Slice(pods, func(i, j int) bool { return pods[i].key < pods[j].key })
	total := 0
	for _, to := range pods {
		total += len(to.ports) * (len(pods) - 1)
	}
	cells := make([]Cell, 0, total)
	for _, from := range pods {
		for _, to := range pods {
			if from.pod == to.pod {
				continue
			}
			src, dst, ok := commonFamily(from.pod, to.pod)
			if !ok {
				continue
			}
			for _, k := range to.ports {
				d := e.evaluate(Packet{Src: src, Dst: dst, Protocol: k.Protocol, Port: k.Port}, false)
				cells = append(cells, Cell{From: from.key, To: to.key, Port: k.Port, Protocol: k.Protocol, Allowed: d.Allowed})
			}
		}
	}
	return cells
}

// declaredPorts returns the pod's distinct valid container ports, sorted by
// port then protocol.
func declaredPorts(p *cluster.Pod) []PortProto {
	seen := map[PortProto]bool{}
	var out []PortProto
	for _, cp := range p.Ports {
		k := PortProto{Port: cp.Port, Protocol: cp.Protocol}
		if cp.Port < 1 || cp.Port > 65535 || cp.Protocol == cluster.ProtocolInvalid || seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, k)
	}
	slices.SortFunc(out, PortProto.Compare) // distinct, so any sort gives one order
	return out
}

// commonFamily picks the endpoints of a probe from -> to: the destination's
// first address whose family the source also has.
func commonFamily(from, to *cluster.Pod) (src, dst Endpoint, ok bool) {
	for _, dip := range to.IPs {
		fam := 6
		if dip.Is4() {
			fam = 4
		}
		if sip, found := from.IP(fam); found {
			return Endpoint{Pod: from, IP: sip}, Endpoint{Pod: to, IP: dip}, true
		}
	}
	return Endpoint{}, Endpoint{}, false
}
