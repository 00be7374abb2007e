package explain

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/model"
)

// resolveService reports whether dst names a Service: "svc/namespace/name",
// or one of a Service's addresses (ClusterIP, external IP, load-balancer IP).
func resolveService(snap *cluster.Snapshot, dst string) (*cluster.Service, netip.Addr, bool, error) {
	if rest, ok := strings.CutPrefix(dst, "svc/"); ok {
		s := snap.Service(rest)
		if s == nil {
			return nil, netip.Addr{}, false, usageErrorf("service %s not found in the manifests (give svc/NAMESPACE/NAME)", rest)
		}
		return s, netip.Addr{}, true, nil
	}
	if a, err := netip.ParseAddr(dst); err == nil {
		if s := snap.ServiceByAddr(a.Unmap()); s != nil && snap.PodByIP(a.Unmap()) == nil {
			return s, a.Unmap(), true, nil
		}
	}
	return nil, netip.Addr{}, false, nil
}

// explainService explains a connection from src to a Service: for each
// service port in question, every backend the port leads to, judged as
// the packet kube-proxy delivers (the backend's address and target port),
// with the source address the backend's policies see.
func explainService(snap *cluster.Snapshot, q Query, src model.Endpoint, svc *cluster.Service, addr netip.Addr) ([]Result, error) {
	if svc.Type == corev1.ServiceTypeExternalName {
		return nil, usageErrorf("service %s is of type ExternalName: it has no backends in the cluster to explain", svc.Key())
	}
	var ports []cluster.ServicePort
	for _, sp := range svc.Ports {
		if q.Port != 0 && sp.Port != q.Port || q.PortName != "" && sp.Name != q.PortName {
			continue
		}
		if q.Protocol != "" && !strings.EqualFold(q.Protocol, sp.Protocol.String()) {
			continue
		}
		ports = append(ports, sp)
	}
	if len(ports) == 0 {
		var have []string
		for _, sp := range svc.Ports {
			have = append(have, sp.String())
		}
		want := portText(q.Port)
		if q.PortName != "" {
			want = "named " + q.PortName
		}
		return nil, usageErrorf("service %s has no port %s%s (it has %s)", svc.Key(), want, protoSuffix(q.Protocol), strings.Join(have, ", "))
	}
	fam := 4
	if src.IP.IsValid() && src.IP.Is6() || !src.IP.IsValid() && src.Pod != nil && !hasFamily(src.Pod, 4) {
		fam = 6
	}
	if addr.IsValid() {
		fam = 6
		if addr.Is4() {
			fam = 4
		}
	}
	external := src.Pod == nil && len(snap.NodesByIP(src.IP)) == 0
	if external && svc.Type != corev1.ServiceTypeNodePort && svc.Type != corev1.ServiceTypeLoadBalancer && !slices.Contains(svc.ExternalIPs, addr) && !slices.Contains(svc.LoadBalancerIPs, addr) {
		return nil, usageErrorf("%s is outside the cluster and service %s is of type %s: outside clients reach a Service through a NodePort, a LoadBalancer or an external IP", src.IP, svc.Key(), svc.Type)
	}
	var out []Result
	for _, sp := range ports {
		backends := snap.Backends(svc, sp, fam)
		path := ServicePath{Service: svc.Key(), Port: sp.Port, Protocol: sp.Protocol.String(), Backends: len(backends), Path: "pod"}
		if addr.IsValid() {
			path.Address = addr.String()
		}
		switch {
		case external && svc.ExternalTrafficPolicyLocal:
			path.Path, path.Note = "external", "externalTrafficPolicy Local: the backend sees the client's own address (ipBlock peers decide), and only backends on the node the traffic enters serve it"
		case external:
			path.Path, path.Note = "node", "externalTrafficPolicy Cluster: the node the traffic enters masquerades it to its own address on the way out; from another node the backend sees that node's address, on the backend's own node policyd judges the packet before the masquerade, so by the client's own address (ipBlock peers decide either way)"
		case svc.Headless:
			path.Note = "headless Service: no virtual address, clients reach the backends at their own addresses"
		default:
			path.Note = "kube-proxy translates the service address to a backend; the source keeps its address"
		}
		var results []Result
		for _, b := range backends {
			if b.Ready {
				path.Ready++
			}
		}
		for _, b := range backends {
			if !b.Ready || b.Port == 0 {
				continue
			}
			dst := model.Endpoint{Pod: b.Pod, IP: b.Addr}
			for _, s := range sourcesFor(snap, src, b, external, svc.ExternalTrafficPolicyLocal) {
				pkt := model.Packet{Src: s.ep, Dst: dst, Protocol: sp.Protocol, Port: b.Port}
				if !pkt.Src.IP.IsValid() {
					ip, ok := addrOf(pkt.Src, fam)
					if !ok {
						return nil, usageErrorf("%s has no IPv%d address to reach %s", endpointName(src), fam, svc.Key())
					}
					pkt.Src.IP = ip
				}
				// A pod reaching its own address through the Service left
				// the pod for the service address: the node judges its
				// egress to itself and its ingress from itself.
				pkt.Hairpin = pkt.Src.IP.Unmap() == dst.IP.Unmap() || pkt.Src.Pod != nil && pkt.Src.Pod == dst.Pod
				markNodeTraffic(snap, &pkt.Src, dst)
				d := q.evaluate(snap, pkt)
				p := path
				if s.note != "" {
					p.Note = s.note
				}
				if pkt.Hairpin {
					p.Note = "the backend is the client itself: the packet leaves it for the service address and comes back (a hairpin), so its node judges the pod's egress to its own address and its ingress from it (kube-proxy's masquerade of hairpin traffic comes after policyd's chain)"
				}
				p.Entry = s.entry
				results = append(results, Result{From: endpointName(src), To: endpointName(dst), Port: b.Port, Protocol: sp.Protocol.String(),
					Allowed: d.Allowed, Egress: d.Egress, Ingress: d.Ingress, Service: &p})
				if q.Trace {
					rulesets, err := q.compileNodes(snap, pkt.Src, dst)
					if err != nil {
						return nil, err
					}
					if results[len(results)-1].Trace, err = CheckTrace(rulesets, pkt, d); err != nil {
						return nil, err
					}
				}
			}
		}
		allowed := 0
		for _, r := range results {
			if r.Allowed {
				allowed++
			}
		}
		for i := range results {
			results[i].Service.Allowed = allowed
		}
		if len(results) == 0 {
			// No backend to reach: the connection fails. Say so as a denied
			// result, so that scripts see a non-zero exit.
			why := "has no ready backend for this port"
			if len(backends) > 0 {
				why = fmt.Sprintf("has %d backends, none ready or declaring the target port (%s)", len(backends), backends[0].Why)
			}
			reason := fmt.Sprintf("denied: service %s %s: connections to it fail before any policy applies", svc.Key(), why)
			results = append(results, Result{From: endpointName(src), To: "svc/" + svc.Key(), Port: sp.Port, Protocol: sp.Protocol.String(),
				Egress:  model.Direction{Direction: "egress", Reason: reason},
				Ingress: model.Direction{Direction: "ingress", Reason: reason}, Service: &path})
		}
		out = append(out, results...)
	}
	return out, nil
}

type source struct {
	ep    model.Endpoint
	note  string
	entry string // the node the traffic enters, when it matters
}

// sourcesFor returns the source addresses the backend's policies may see:
// the pod's own (kube-proxy does not SNAT pod traffic to a ClusterIP), the
// outside client's (externalTrafficPolicy Local), or, under Cluster, per
// node the traffic enters: on the backend's own node the client's own
// address (kube-proxy masquerades in postrouting at srcnat, 100, after
// policyd's postrouting chain at 95 has judged the packet), and, when the
// snapshot knows another node's address, that node's (the masquerade
// happened there, before the packet reached the backend's node).
func sourcesFor(snap *cluster.Snapshot, src model.Endpoint, b cluster.Backend, external, local bool) []source {
	if !external || local {
		return []source{{ep: src}}
	}
	node := ""
	if b.Pod != nil {
		node = b.Pod.NodeName
	}
	const before = "policyd's postrouting chain (priority 95) judges the packet before kube-proxy's masquerade (srcnat, 100): the client's own address"
	var out []source
	own := false
	for _, n := range snap.Nodes {
		for _, a := range n.IPs {
			if a.Is4() != b.Addr.Is4() {
				continue
			}
			if n.Name == node {
				own = true
				out = append(out, source{ep: src, entry: n.Name, note: fmt.Sprintf("entering at %s, the backend's node: %s", n.Name, before)})
			} else if len(out) < 2 {
				out = append(out, source{ep: model.Endpoint{IP: a}, entry: n.Name, note: fmt.Sprintf("entering at %s: masqueraded to that node's address %s", n.Name, a)})
			}
			break
		}
	}
	if !own {
		// No Node object gives the address of the backend's node; what
		// enters there is still judged by the client's address.
		out = append([]source{{ep: src, entry: node, note: "entering at the backend's node: " + before}}, out...)
	}
	return out
}

func hasFamily(p *cluster.Pod, fam int) bool {
	_, ok := p.IP(fam)
	return ok
}

func portText(p int32) string {
	if p == 0 {
		return "(any)"
	}
	return fmt.Sprint(p)
}

// ServiceCell is one cell of the matrix of connections from pods to
// Services: may From open a connection to the Service To on its port, and
// to how many of the port's backends.
type ServiceCell struct {
	From     string `json:"from"`
	To       string `json:"to"` // svc/NAMESPACE/NAME
	Port     int32  `json:"port"`
	Protocol string `json:"protocol"`
	// Allowed: the port has a ready backend and every one is allowed.
	Allowed bool `json:"allowed"`
	// Backends and AllowedBackends count the results explain gives (one per
	// backend and source path) and the allowed ones.
	Backends        int `json:"backends"`
	AllowedBackends int `json:"allowedBackends"`
}

// ServiceMatrix explains, for every (non-hostNetwork) pod with an address
// and every port of every Service but ExternalName ones, the connection
// from the pod to the Service, as Explain does with svc/NAMESPACE/NAME.
// Cells are sorted by From, To, Port, Protocol.
func ServiceMatrix(snap *cluster.Snapshot) ([]ServiceCell, error) {
	var out []ServiceCell
	for _, p := range snap.Pods {
		if p.HostNetwork || len(p.IPs) == 0 {
			continue
		}
		for _, s := range snap.Services {
			if s.Type == corev1.ServiceTypeExternalName {
				continue
			}
			for _, sp := range s.Ports {
				rs, err := Explain(snap, Query{Src: p.Key(), Dst: "svc/" + s.Key(), Port: sp.Port, Protocol: sp.Protocol.String()})
				var ue *UsageError
				if errors.As(err, &ue) {
					continue // no common address family, say
				}
				if err != nil {
					return nil, err
				}
				c := ServiceCell{From: p.Key(), To: "svc/" + s.Key(), Port: sp.Port, Protocol: sp.Protocol.String()}
				for _, r := range rs {
					if r.Service != nil && r.Service.Ready > 0 && r.To != "svc/"+s.Key() {
						c.Backends++
						if r.Allowed {
							c.AllowedBackends++
						}
					}
				}
				c.Allowed = c.Backends > 0 && c.AllowedBackends == c.Backends
				out = append(out, c)
			}
		}
	}
	return out, nil
}

// explainHostPort reports whether q's destination is a node address and
// q's port a hostPort of a pod on that node, and if so explains the
// connection the node delivers to the pod: the CNI's portmap DNATs
// node:hostPort to pod:containerPort before policyd's chains, keeping the
// client's address, so the pod's policies judge the client.
func explainHostPort(snap *cluster.Snapshot, q Query, src model.Endpoint) ([]Result, bool, error) {
	a, err := netip.ParseAddr(q.Dst)
	if err != nil || q.Port == 0 || snap.PodByIP(a.Unmap()) != nil {
		return nil, false, nil
	}
	a = a.Unmap()
	node := ""
	if n := snap.NodeByIP(a); n != nil {
		node = n.Name
	}
	for _, p := range snap.Pods {
		if p.HostNetwork && node == "" && slices.Contains(p.IPs, a) {
			node = p.NodeName // a hostNetwork pod's address is its node's
		}
	}
	if node == "" {
		return nil, false, nil
	}
	proto := cluster.ProtocolTCP
	if q.Protocol != "" {
		if proto, err = cluster.ParseProtocol(q.Protocol); err != nil {
			return nil, true, usageErrorf("--protocol: %w", err)
		}
	}
	for _, p := range snap.Pods {
		if p.NodeName != node || p.HostNetwork {
			continue
		}
		for _, cp := range p.Ports {
			if int32(cp.HostPort) != q.Port || cp.Protocol != proto {
				continue
			}
			if sp := policyPodOf(src); sp != nil && sp.NodeName != node {
				// The source's node sees the packet before the DNAT, on its
				// way to the node address: its egress is judged against
				// that address, the pod's ingress against the pod.
				return nil, true, usageErrorf("%s runs on %s, not on %s: its egress is judged against %s:%d (before the node DNATs it to %s) and %s's ingress after it; ask the two halves: %s %s --port %d, and %s %s --port %d",
					sp.Key(), sp.NodeName, node, a, q.Port, p.Key(), p.Key(), endpointName(src), a, q.Port, endpointName(src), p.Key(), cp.Port)
			}
			ip, ok := p.IP(family(a))
			if !ok {
				continue
			}
			dst := model.Endpoint{Pod: p, IP: ip}
			s := src
			if !s.IP.IsValid() {
				if s.IP, ok = addrOf(s, family(a)); !ok {
					return nil, true, usageErrorf("%s has no IPv%d address", endpointName(src), family(a))
				}
			}
			markNodeTraffic(snap, &s, dst)
			// A pod reaching its own hostPort left the pod for the node's
			// address: a hairpin, judged both ways like any packet.
			pkt := model.Packet{Src: s, Dst: dst, Protocol: proto, Port: cp.Port, Hairpin: s.Pod == p}
			d := q.evaluate(snap, pkt)
			r := Result{From: endpointName(src), To: p.Key(), Port: cp.Port, Protocol: proto.String(), Allowed: d.Allowed, Egress: d.Egress, Ingress: d.Ingress,
				HostPort: &HostPortPath{Node: node, Address: a.String(), HostPort: q.Port,
					Note: fmt.Sprintf("hostPort %d on node %s: the node DNATs it to %s port %d, keeping the client's address", q.Port, node, p.Key(), cp.Port)}}
			if q.Trace {
				rulesets, err := q.compileNodes(snap, pkt.Src, dst)
				if err != nil {
					return nil, true, err
				}
				if r.Trace, err = CheckTrace(rulesets, pkt, d); err != nil {
					return nil, true, err
				}
			}
			return []Result{r}, true, nil
		}
	}
	return nil, false, nil
}

func family(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

// policyPodOf returns the endpoint's non-hostNetwork pod, or nil.
func policyPodOf(ep model.Endpoint) *cluster.Pod {
	if ep.Pod == nil || ep.Pod.HostNetwork || ep.Node {
		return nil
	}
	return ep.Pod
}
