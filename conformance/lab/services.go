package lab

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/policyd/policyd/cluster"
)

// ServiceRange is where callers should take the ClusterIPs of Services that
// have none (SetServices accepts any free lab address): 10.97.0.0/16, beside
// the per-pod ClusterIPs of DNAT mode in 10.96.0.0/16.
var ServiceRange = netip.MustParsePrefix("10.97.0.0/16")

// ServiceAddr returns the k-th address of ServiceRange, from 10.97.0.10.
func ServiceAddr(k int) netip.Addr { return addOffset(ServiceRange.Addr(), uint32(10+k)) }

// ExternalClient is the From of a probe sent by the lab's external client
// (Config.External): a network namespace outside the cluster, on the
// underlay beside the nodes, with address ExternalClientAddr. It is no
// pod's and no node's address, so policies see it as an ipBlock address.
const ExternalClient = "(external)"

// ExternalClientAddr is the external client's address.
var ExternalClientAddr = netip.MustParseAddr("10.255.0.250")

// PinPortBase is the first pin port: a probe whose source port is
// PinPortBase+i is sent by the kube-proxy-like table to backend i of the
// service it addresses (Probe.Pin). The range is above the kernel's
// ephemeral ports (32768-60999), so no other connection uses it.
const PinPortBase = 61000

// Service is one port of a Service as the kube-proxy-like table translates
// it: plain data, resolved by the caller (the runner uses
// cluster.Snapshot.Backends, as explain does). Only IPv4 is translated.
type Service struct {
	// Name is for people and nft comments ("shop/frontend TCP/80").
	Name     string
	Protocol cluster.Protocol
	Port     int32
	// ClusterIPs are translated for every client, the source kept (pod
	// traffic to a ClusterIP is not masqueraded).
	ClusterIPs []netip.Addr
	// ExternalIPs (external and load-balancer IPs) and NodePort (on every
	// node's address; 0 for none) are the external paths: the
	// externalTrafficPolicy applies.
	ExternalIPs []netip.Addr
	NodePort    int32
	// Local is externalTrafficPolicy Local: on the external paths a node
	// sends only to its own backends and keeps the client's address (and
	// drops the connection when it has none). Otherwise (Cluster) the node
	// masquerades the connection to its own address: its underlay address
	// towards another node, its pods' gateway towards its own pods.
	Local bool
	// Backends are where connections go, in pin order (Probe.Pin). Without
	// a pin a backend is chosen at random, as kube-proxy does.
	Backends []ServiceBackend
}

// ServiceBackend is one destination of a Service.
type ServiceBackend struct {
	// Pod is the backend pod's key, "" for an address that is no lab pod's.
	Pod  string
	Addr netip.Addr
	Port int32
}

// LoadBalancerNode is the node (index in Config.Nodes) the external client
// routes a Service's external IPs to: the node of its first backend that
// is a lab pod, as a load balancer that health-checks the nodes would
// choose, else node 0.
func (l *Lab) loadBalancerNode(s Service) int {
	for _, b := range s.Backends {
		if p, ok := l.pods[b.Pod]; ok {
			return p.plan.Node
		}
	}
	return 0
}

// LoadBalancerNode reports the node the external client sends s's external
// IPs to (see SetServices).
func (l *Lab) LoadBalancerNode(s Service) string {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.nodes[l.loadBalancerNode(s)].name
}

// SetServices replaces the Services the kube-proxy-like table translates in
// every node (also without Config.DNAT), and routes their external IPs from
// the external client to their load-balancer node (LoadBalancerNode).
// Addresses must be IPv4 and no pod's, node's or per-pod ClusterIP.
func (l *Lab) SetServices(ctx context.Context, svcs []Service) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return fmt.Errorf("lab is closed")
	}
	taken := map[netip.Addr]string{}
	for k, p := range l.pods {
		for _, a := range p.plan.IPs {
			taken[a] = "pod " + k
		}
		for _, a := range p.plan.ClusterIPs {
			taken[a] = "the ClusterIP of pod " + k
		}
	}
	for _, n := range l.nodes {
		for _, f := range l.fams {
			taken[nodeAddr(n.idx, f)] = "node " + n.name
			taken[nodeGateway(n.idx, f)] = "node " + n.name
		}
	}
	taken[ExternalClientAddr] = "the external client"
	for _, s := range svcs {
		for _, a := range slices.Concat(s.ClusterIPs, s.ExternalIPs) {
			if !a.Is4() {
				return fmt.Errorf("service %s: %s: the lab translates IPv4 only", s.Name, a)
			}
			if who, ok := taken[a]; ok {
				return fmt.Errorf("service %s: %s is already the address of %s", s.Name, a, who)
			}
		}
		if s.Protocol != cluster.ProtocolTCP && s.Protocol != cluster.ProtocolUDP && s.Protocol != cluster.ProtocolSCTP {
			return fmt.Errorf("service %s: invalid protocol %v", s.Name, s.Protocol)
		}
		if len(s.Backends) > 1000 {
			return fmt.Errorf("service %s: %d backends, the lab pins at most 1000", s.Name, len(s.Backends))
		}
	}
	if len(svcs) > 0 && !l.cfg.External && hasExternal(svcs) {
		return fmt.Errorf("services with external paths need Config.External (the external client)")
	}
	if len(svcs) == 0 && l.svcs == nil {
		return nil // never had any: no table to write
	}
	old := l.svcs
	l.svcs = append([]Service{}, svcs...)
	if err := l.syncKubeProxy(ctx); err != nil {
		return err
	}
	return l.routeExternal(old)
}

func hasExternal(svcs []Service) bool {
	for _, s := range svcs {
		if len(s.ExternalIPs) > 0 || s.NodePort != 0 {
			return true
		}
	}
	return false
}

// routeExternal replaces the external client's routes to external IPs.
func (l *Lab) routeExternal(old []Service) error {
	if l.ext == nil {
		return nil
	}
	for _, s := range old {
		for _, a := range s.ExternalIPs {
			if err := l.ext.delRoute(route{Dst: hostPrefix(a), Link: uplink, Gw: nodeAddr(l.loadBalancerNode(s), v4)}); err != nil {
				return err
			}
		}
	}
	for _, s := range l.svcs {
		for _, a := range s.ExternalIPs {
			if err := l.ext.addRoute(route{Dst: hostPrefix(a), Link: uplink, Gw: nodeAddr(l.loadBalancerNode(s), v4)}); err != nil {
				return err
			}
		}
	}
	return nil
}

// buildExternal creates the external client's namespace on the underlay.
func (l *Lab) buildExternal() error {
	ext, err := openNS(l.nsName("ext"))
	if err != nil {
		return err
	}
	l.ext = ext
	if err := l.underlay.addVeth("ext", ext, uplink); err != nil {
		return err
	}
	if err := l.underlay.setMaster("ext", underlayBridge); err != nil {
		return err
	}
	return ext.addAddr(uplink, netip.PrefixFrom(ExternalClientAddr, underlay4.Bits()))
}

// masqMark marks connections that entered a node on an external path of a
// Service with externalTrafficPolicy Cluster: postrouting masquerades them.
const masqMark = "0x4000"

// serviceText renders the Service part of node's ip table: the svc verdict
// map from address . protocol . port to a chain per service (pinning by
// source port, then numgen random, as kube-proxy), per backend chains that
// DNAT, and external chains that mark for masquerade (Cluster) or keep only
// the node's own backends (Local). The output is deterministic.
func serviceText(svcs []Service, node int, nodeOf func(pod string) (int, bool)) (maps []string, chains string) {
	var b strings.Builder
	for i, s := range svcs {
		proto := strings.ToLower(s.Protocol.String())
		chain := fmt.Sprintf("svc%d", i)
		var pins, rnd, localPins, localRnd []string
		for j, be := range s.Backends {
			ep := fmt.Sprintf("%s-ep%d", chain, j)
			fmt.Fprintf(&b, "\tchain %s {\n\t\tmeta l4proto %s dnat to %s:%d comment %q\n\t}\n", ep, proto, be.Addr, be.Port, s.Name+" -> "+cmp(be.Pod, be.Addr.String()))
			pins = append(pins, fmt.Sprintf("%d : goto %s", PinPortBase+j, ep))
			rnd = append(rnd, fmt.Sprintf("%d : goto %s", j, ep))
			if n, ok := nodeOf(be.Pod); ok && n == node {
				localPins = append(localPins, fmt.Sprintf("%d : goto %s", PinPortBase+j, ep))
				localRnd = append(localRnd, fmt.Sprintf("%d : goto %s", len(localRnd), ep))
			}
		}
		pick := func(pins, rnd []string) string {
			if len(pins) == 0 {
				return "\t\tdrop\n"
			}
			return fmt.Sprintf("\t\tth sport vmap { %s }\n\t\tth sport >= %d drop\n\t\tnumgen random mod %d vmap { %s }\n",
				strings.Join(pins, ", "), PinPortBase, len(rnd), strings.Join(rnd, ", "))
		}
		fmt.Fprintf(&b, "\tchain %s {\n%s\t}\n", chain, pick(pins, rnd))
		ext := chain + "-ext"
		if s.Local {
			fmt.Fprintf(&b, "\tchain %s {\n%s\t}\n", ext, pick(localPins, localRnd))
		} else {
			fmt.Fprintf(&b, "\tchain %s {\n\t\tmeta mark set meta mark | %s\n\t\tgoto %s\n\t}\n", ext, masqMark, chain)
		}
		for _, a := range s.ClusterIPs {
			maps = append(maps, fmt.Sprintf("%s . %s . %d : goto %s", a, proto, s.Port, chain))
		}
		for _, a := range s.ExternalIPs {
			maps = append(maps, fmt.Sprintf("%s . %s . %d : goto %s", a, proto, s.Port, ext))
		}
		if s.NodePort != 0 {
			maps = append(maps, fmt.Sprintf("%s . %s . %d : goto %s", nodeAddr(node, v4), proto, s.NodePort, ext))
		}
	}
	slices.Sort(maps)
	return maps, b.String()
}

func cmp(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
