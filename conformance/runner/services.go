package runner

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/conformance/lab"
	"github.com/policyd/policyd/policy/explain"
	"github.com/policyd/policyd/policy/model"
)

// ServiceExpect is a scenario's own verdict on connections to a Service
// port: every backend the connection may reach must agree with it, as must
// explain.
type ServiceExpect struct {
	// Service is "namespace/name".
	Service  string
	Port     int32
	Protocol cluster.Protocol
	// External: from the lab's external client (lab.ExternalClient), through
	// the NodePort and external IPs; otherwise from pods to the ClusterIP.
	External bool
	Allowed  bool
}

// prepareServices returns deep copies of svcs with the addresses the lab
// needs filled in: a ClusterIP (lab.ServiceAddr) for a Service that has none
// and is not headless, and a NodePort (30000 + 10*service + port) for a
// NodePort or LoadBalancer Service's port without one. The snapshot and
// explain see the same values as the packets.
func prepareServices(svcs []*corev1.Service) []*corev1.Service {
	var out []*corev1.Service
	for k, s := range svcs {
		s = s.DeepCopy()
		if s.Spec.ClusterIP == "" && len(s.Spec.ClusterIPs) == 0 && s.Spec.Type != corev1.ServiceTypeExternalName {
			s.Spec.ClusterIP = lab.ServiceAddr(k).String()
		}
		if s.Spec.Type == corev1.ServiceTypeNodePort || s.Spec.Type == corev1.ServiceTypeLoadBalancer {
			for j := range s.Spec.Ports {
				if s.Spec.Ports[j].NodePort == 0 {
					s.Spec.Ports[j].NodePort = int32(30000 + 10*k + j)
				}
			}
		}
		out = append(out, s)
	}
	return out
}

// labNodeObjects returns Node objects for the lab's nodes whose InternalIP
// is the lab's node address (nodes given keep their labels; the others are
// added without labels), so that the source address explain expects from a
// masquerading node is the one the packets carry.
func (e *enforcer) labNodeObjects(given []*corev1.Node) []*corev1.Node {
	byName := map[string]*corev1.Node{}
	for _, n := range given {
		byName[n.Name] = n
	}
	var out []*corev1.Node
	for i, name := range e.nodes {
		n := &corev1.Node{}
		if g := byName[name]; g != nil {
			n = g.DeepCopy()
		}
		n.Name = name
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: lab.NodeAddr(i, lab.IPv4).String()}}
		out = append(out, n)
	}
	return out
}

// labService is one service port as the lab translates it, with what the
// planner needs to name its backends.
type labService struct {
	svc  *cluster.Service
	port cluster.ServicePort
	lab  lab.Service
	pin  map[string]int // backend "to" (pod key or address) + port -> pin
}

// servicesOf resolves every service port of snap to its lab form, as
// explain resolves it (cluster.Snapshot.Backends): ready backends with a
// target port, IPv4. Headless and ExternalName Services have no virtual
// address and are left out.
func servicesOf(snap *cluster.Snapshot) []labService {
	var out []labService
	for _, s := range snap.Services {
		if s.Headless || s.Type == corev1.ServiceTypeExternalName {
			continue
		}
		for _, sp := range s.Ports {
			ls := labService{svc: s, port: sp, pin: map[string]int{}, lab: lab.Service{
				Name: s.Key() + " " + sp.String(), Protocol: sp.Protocol, Port: sp.Port,
				Local: s.ExternalTrafficPolicyLocal,
			}}
			for _, a := range s.ClusterIPs {
				if a.Is4() {
					ls.lab.ClusterIPs = append(ls.lab.ClusterIPs, a)
				}
			}
			for _, a := range append(append([]netip.Addr(nil), s.ExternalIPs...), s.LoadBalancerIPs...) {
				if a.Is4() {
					ls.lab.ExternalIPs = append(ls.lab.ExternalIPs, a)
				}
			}
			if s.Type == corev1.ServiceTypeNodePort || s.Type == corev1.ServiceTypeLoadBalancer {
				ls.lab.NodePort = sp.NodePort
			}
			for _, b := range snap.Backends(s, sp, 4) {
				if !b.Ready || b.Port == 0 {
					continue
				}
				lb := lab.ServiceBackend{Addr: b.Addr, Port: b.Port}
				to := b.Addr.String()
				if b.Pod != nil {
					lb.Pod, to = b.Pod.Key(), b.Pod.Key()
				}
				ls.lab.Backends = append(ls.lab.Backends, lb)
				ls.pin[fmt.Sprintf("%s %d", to, b.Port)] = len(ls.lab.Backends)
			}
			out = append(out, ls)
		}
	}
	return out
}

// planServices lists the probes through the step's Services, each cell
// expecting exactly what explain.Explain answers for the same query:
//
//   - every pod (not hostNetwork; the backend itself too, a hairpin) to each ClusterIP,
//     once per backend explain lists, pinned to that backend;
//   - from the external client, per backend and per source address explain
//     lists: under Local through the NodePort of the backend's node, under
//     Cluster through the NodePort of the entry node explain names; and
//     through each external IP when the load balancer sends it to that
//     node (lab.Lab.LoadBalancerNode).
//
// Explain errors are returned as invalid-input lines.
//
// The verdict references carry explain's decision and the source addresses
// the backend's policies see (the entry node's under Cluster, on another
// node).
func (e *enforcer) planServices(snap *cluster.Snapshot, svcs []labService, expect []ServiceExpect) ([]lab.Probe, []Cell, []verdictRef, []string) {
	var probes []lab.Probe
	var cells []Cell
	var refs []verdictRef
	var invalid []string
	nodeIdx := map[string]int{}
	for i, n := range e.nodes {
		nodeIdx[n] = i
	}
	caseOf := func(key string, port int32, proto cluster.Protocol, external bool) *bool {
		for _, x := range expect {
			if x.Service == key && x.Port == port && x.Protocol == proto && x.External == external {
				v := x.Allowed
				return &v
			}
		}
		return nil
	}
	add := func(ls labService, from string, r explain.Result, target netip.AddrPort, via string) {
		pin, ok := ls.pin[fmt.Sprintf("%s %d", r.To, r.Port)]
		if !ok {
			return
		}
		c := Cell{From: from, To: r.To, Port: r.Port, Protocol: ls.port.Protocol, Proto: ls.port.Protocol.String(), Expected: r.Allowed,
			Via: fmt.Sprintf("%s %s via %s", ls.svc.Key(), ls.port, via), Case: caseOf(ls.svc.Key(), ls.port.Port, ls.port.Protocol, from == lab.ExternalClient)}
		cells = append(cells, c)
		probes = append(probes, lab.Probe{From: from, To: r.To, Port: r.Port, Protocol: ls.port.Protocol, Target: target, Pin: pin})
		ref := verdictRef{decision: &model.Decision{Allowed: r.Allowed, Egress: r.Egress, Ingress: r.Ingress}}
		if a, err := netip.ParseAddr(r.To); err == nil {
			ref.dst = a // a backend that is no pod
		}
		if s := r.Service; s != nil && s.Path == "node" {
			if i, ok := nodeIdx[s.Entry]; ok {
				ref.srcs = append(ref.srcs, lab.NodeAddr(i, lab.IPv4))
			}
		}
		refs = append(refs, ref)
	}
	query := func(src, dst string, ls labService) []explain.Result {
		rs, err := explain.Explain(snap, explain.Query{Src: src, Dst: dst, Port: ls.port.Port, Protocol: ls.port.Protocol.String()})
		if err != nil {
			var ue *explain.UsageError
			if !errors.As(err, &ue) {
				invalid = append(invalid, fmt.Sprintf("explain %s -> %s: %v", src, dst, err))
			}
			return nil
		}
		return rs
	}
	for _, ls := range svcs {
		for _, vip := range ls.lab.ClusterIPs {
			for _, p := range snap.Pods {
				if p.HostNetwork || len(p.IPs) == 0 {
					continue
				}
				if _, ok := p.IP(4); !ok {
					continue
				}
				for _, r := range query(p.Key(), vip.String(), ls) {
					add(ls, p.Key(), r, netip.AddrPortFrom(vip, uint16(ls.port.Port)), "ClusterIP "+vip.String())
				}
			}
		}
		if ls.lab.NodePort == 0 && len(ls.lab.ExternalIPs) == 0 {
			continue
		}
		lbNode := e.lab.LoadBalancerNode(ls.lab)
		for _, r := range query(lab.ExternalClientAddr.String(), "svc/"+ls.svc.Key(), ls) {
			if r.Service == nil {
				continue
			}
			entry := r.Service.Entry
			if r.Service.Path == "external" {
				if p := snap.Pod(r.To); p != nil {
					entry = p.NodeName
				}
			}
			i, ok := nodeIdx[entry]
			if !ok {
				continue
			}
			if ls.lab.NodePort != 0 {
				a := lab.NodeAddr(i, lab.IPv4)
				add(ls, lab.ExternalClient, r, netip.AddrPortFrom(a, uint16(ls.lab.NodePort)), fmt.Sprintf("NodePort %s:%d (%s)", a, ls.lab.NodePort, entry))
			}
			if entry == lbNode {
				for _, a := range ls.lab.ExternalIPs {
					add(ls, lab.ExternalClient, r, netip.AddrPortFrom(a, uint16(ls.port.Port)), fmt.Sprintf("external IP %s (to %s)", a, entry))
				}
			}
		}
	}
	return probes, cells, refs, invalid
}

// setServices installs the step's Services in the lab.
func (e *enforcer) setServices(ctx context.Context, svcs []labService) error {
	var ls []lab.Service
	for _, s := range svcs {
		ls = append(ls, s.lab)
	}
	return e.lab.SetServices(ctx, ls)
}
