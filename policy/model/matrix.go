package model

import (
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
	var pods []*cluster.Pod
	for _, p := range s.Pods {
		if !p.HostNetwork && len(p.IPs) > 0 {
			pods = append(pods, p)
		}
	}
	type pp struct {
		port  int32
		proto cluster.Protocol
	}
	var cells []Cell
	for _, to := range pods {
		seen := map[pp]bool{}
		var ports []pp
		for _, cp := range to.Ports {
			k := pp{cp.Port, cp.Protocol}
			if cp.Port < 1 || cp.Port > 65535 || cp.Protocol == cluster.ProtocolInvalid || seen[k] {
				continue
			}
			seen[k] = true
			ports = append(ports, k)
		}
		for _, from := range pods {
			if from == to {
				continue
			}
			var src, dst Endpoint
			found := false
			for _, dip := range to.IPs {
				fam := 6
				if dip.Is4() {
					fam = 4
				}
				if sip, ok := from.IP(fam); ok {
					src, dst, found = Endpoint{Pod: from, IP: sip}, Endpoint{Pod: to, IP: dip}, true
					break
				}
			}
			if !found {
				continue
			}
			for _, k := range ports {
				d := e.evaluate(Packet{Src: src, Dst: dst, Protocol: k.proto, Port: k.port}, false)
				cells = append(cells, Cell{From: from.Key(), To: to.Key(), Port: k.port, Protocol: k.proto, Allowed: d.Allowed})
			}
		}
	}
	sort.Slice(cells, func(i, j int) bool {
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
	})
	return cells
}
