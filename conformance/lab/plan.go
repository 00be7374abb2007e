package lab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/model"
)

// Family is an IP family. Where a Family is optional (Probe.Family), the zero
// value means IPv4.
type Family uint8

// Family values.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// MaxNodes is the largest number of nodes a lab can have.
const MaxNodes = 200

// Address plan; see the package documentation.
var (
	underlay4 = netip.MustParsePrefix("10.255.0.0/24")
	underlay6 = netip.MustParsePrefix("fd00:255::/64")
	services4 = netip.MustParsePrefix("10.96.0.0/16")
	services6 = netip.MustParsePrefix("fd00:10:96::/112")
	allowed4  = netip.MustParsePrefix("10.0.0.0/8")
	allowed6  = netip.MustParsePrefix("fd00::/8")
)

// fam is an index into per-family arrays: 0 for IPv4, 1 for IPv6.
type fam int

const (
	v4 fam = 0
	v6 fam = 1
)

func (f fam) Family() Family {
	if f == v6 {
		return IPv6
	}
	return IPv4
}

func famOf(a netip.Addr) fam {
	if a.Is4() {
		return v4
	}
	return v6
}

// addOffset returns a + n; n only touches the low 32 bits, which the plan never
// overflows.
func addOffset(a netip.Addr, n uint32) netip.Addr {
	if a.Is4() {
		b := a.As4()
		binary.BigEndian.PutUint32(b[:], binary.BigEndian.Uint32(b[:])+n)
		return netip.AddrFrom4(b)
	}
	b := a.As16()
	binary.BigEndian.PutUint32(b[12:], binary.BigEndian.Uint32(b[12:])+n)
	return netip.AddrFrom16(b)
}

// nodeAddr is node i's underlay address.
func nodeAddr(i int, f fam) netip.Addr {
	if f == v6 {
		return addOffset(underlay6.Addr(), uint32(10+i))
	}
	return addOffset(underlay4.Addr(), uint32(10+i))
}

// NodeAddr returns the underlay address of the lab's node i (in Config.Nodes
// order) of family f: where its hostNetwork pods live and what a caller
// should give as the node's InternalIP.
func NodeAddr(i int, f Family) netip.Addr { return nodeAddr(i, famIndex(f)) }

// underlayPrefix is node i's underlay address with the underlay prefix length.
func underlayPrefix(i int, f fam) netip.Prefix {
	if f == v6 {
		return netip.PrefixFrom(nodeAddr(i, f), underlay6.Bits())
	}
	return netip.PrefixFrom(nodeAddr(i, f), underlay4.Bits())
}

// nodeSubnet is node i's pod range: 10.240.i.0/24 or fd00:10:240:i::/64.
func nodeSubnet(i int, f fam) netip.Prefix {
	if f == v6 {
		var b [16]byte
		copy(b[:], netip.MustParseAddr("fd00:10:240::").AsSlice())
		binary.BigEndian.PutUint16(b[6:], uint16(i))
		return netip.PrefixFrom(netip.AddrFrom16(b), 64)
	}
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 240, byte(i), 0}), 24)
}

// nodeGateway is the first address of node i's pod range.
func nodeGateway(i int, f fam) netip.Addr { return addOffset(nodeSubnet(i, f).Addr(), 1) }

// serviceIP is the k-th ClusterIP.
func serviceIP(k int, f fam) netip.Addr {
	if f == v6 {
		return addOffset(services6.Addr(), uint32(10+k))
	}
	return addOffset(services4.Addr(), uint32(10+k))
}

// maxServices is how many ClusterIPs a family's range holds after the offset.
func maxServices(f fam) int {
	if f == v6 {
		return 1<<(128-services6.Bits()) - 11
	}
	return 1<<(32-services4.Bits()) - 11
}

// checkPodAddr reports why a given pod address cannot be used in a lab.
func checkPodAddr(a netip.Addr, nodes int) error {
	f := famOf(a)
	allowed, underlay, services := allowed4, underlay4, services4
	if f == v6 {
		allowed, underlay, services = allowed6, underlay6, services6
	}
	switch {
	case !allowed.Contains(a):
		return fmt.Errorf("%s is outside %s, the only range a lab uses", a, allowed)
	case underlay.Contains(a):
		return fmt.Errorf("%s is inside the underlay range %s", a, underlay)
	case services.Contains(a):
		return fmt.Errorf("%s is inside the ClusterIP range %s", a, services)
	}
	for i := 0; i < nodes; i++ {
		if a == nodeGateway(i, f) || a == nodeSubnet(i, f).Addr() {
			return fmt.Errorf("%s is reserved for node %d's gateway", a, i)
		}
	}
	return nil
}

// podPlan is where one pod goes and which addresses it has.
type podPlan struct {
	Key string
	// Raw is a deep copy of the pod as given.
	Raw *corev1.Pod
	// Pod is the converted pod; its IPs are the lab's addresses.
	Pod         *cluster.Pod
	Node        int
	HostNetwork bool
	// IPs and ClusterIPs are indexed by fam; an invalid address means none.
	IPs        [2]netip.Addr
	Allocated  [2]bool
	ClusterIPs [2]netip.Addr
	// Ports are the distinct port numbers served, sorted.
	Ports []int32
	// Listen is what the pod's servers listen on, sorted: every container
	// port on TCP and UDP whatever protocol the pod declares, or exactly the
	// TCP and UDP entries of ServesAnnotation.
	Listen []model.PortProto
}

// ServesAnnotation is the annotation that, on a pod given to the lab, lists exactly what the pod's
// servers listen on, as comma-separated PROTOCOL/port entries
// ("TCP/80,UDP/53"), instead of every containerPort on both TCP and UDP. SCTP
// entries are accepted and not served: this kernel has no SCTP sockets, and
// SCTP probes are never run.
const ServesAnnotation = "lab.policyd.io/serves"

// listenOf returns what pod p, converted as conv, listens on.
func listenOf(key string, p *corev1.Pod, conv *cluster.Pod) ([]model.PortProto, []error) {
	var out []model.PortProto
	var errs []error
	seen := map[model.PortProto]bool{}
	add := func(pp model.PortProto) {
		if !seen[pp] {
			seen[pp] = true
			out = append(out, pp)
		}
	}
	if s, ok := p.Annotations[ServesAnnotation]; ok {
		for _, e := range strings.Split(s, ",") {
			pp, err := model.ParsePortProto(e)
			if err != nil {
				errs = append(errs, fmt.Errorf("pod %s: annotation %s: %w", key, ServesAnnotation, err))
				continue
			}
			if pp.Protocol != cluster.ProtocolSCTP {
				add(pp)
			}
		}
	} else {
		for _, cp := range conv.Ports {
			if cp.Port < 1 || cp.Port > 65535 {
				errs = append(errs, fmt.Errorf("pod %s: containerPort %d is not in 1-65535", key, cp.Port))
				continue
			}
			add(model.PortProto{Port: cp.Port, Protocol: cluster.ProtocolTCP})
			add(model.PortProto{Port: cp.Port, Protocol: cluster.ProtocolUDP})
		}
	}
	slices.SortFunc(out, model.PortProto.Compare)
	return out, errs
}

// sameTopology reports whether a and b need the same namespaces, links,
// routes and servers (labels may differ).
func (a *podPlan) sameTopology(b *podPlan) bool {
	return a.Node == b.Node && a.HostNetwork == b.HostNetwork && a.IPs == b.IPs && slices.Equal(a.Listen, b.Listen)
}

// families returns the families the lab uses.
func families(ipv6 bool) []fam {
	if ipv6 {
		return []fam{v4, v6}
	}
	return []fam{v4}
}

// planPods places pods on nodes and gives them addresses and ClusterIPs. prev
// holds the previous plan by key (nil on the first call): a pod keeps the
// addresses and ClusterIPs the lab gave it before, so an update never moves a
// pod that did not change. The result is sorted by key. Pods in a terminal
// phase are left out, as they have no address.
func planPods(nodes []string, ipv6, dnat bool, prev map[string]*podPlan, pods []*corev1.Pod) ([]*podPlan, error) {
	if len(nodes) == 0 {
		return nil, errors.New("no nodes")
	}
	nodeIdx := make(map[string]int, len(nodes))
	for i, n := range nodes {
		nodeIdx[n] = i
	}
	sorted := make([]*corev1.Pod, 0, len(pods))
	for i, p := range pods {
		if p == nil {
			return nil, fmt.Errorf("pods[%d] is nil", i)
		}
		sorted = append(sorted, p)
	}
	sort.SliceStable(sorted, func(i, j int) bool {
		return sorted[i].Namespace+"/"+sorted[i].Name < sorted[j].Namespace+"/"+sorted[j].Name
	})

	var errs []error
	var out []*podPlan
	seen := map[string]bool{}
	unscheduled := 0
	for _, p := range sorted {
		key := p.Namespace + "/" + p.Name
		if p.Namespace == "" || p.Name == "" {
			errs = append(errs, fmt.Errorf("pod %q: metadata.namespace and metadata.name must both be set", key))
			continue
		}
		if seen[key] {
			errs = append(errs, fmt.Errorf("pod %s: given twice", key))
			continue
		}
		seen[key] = true
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		pp := &podPlan{Key: key, Raw: p.DeepCopy(), HostNetwork: p.Spec.HostNetwork}
		if p.Spec.NodeName == "" {
			pp.Node = unscheduled % len(nodes)
			unscheduled++
		} else {
			i, ok := nodeIdx[p.Spec.NodeName]
			if !ok {
				errs = append(errs, fmt.Errorf("pod %s: spec.nodeName %q is not a lab node (nodes: %s)", key, p.Spec.NodeName, strings.Join(nodes, ", ")))
				continue
			}
			pp.Node = i
		}
		// Converted as scheduled on its lab node: a pod with addresses and
		// no node holds none (cluster.ConvertPod).
		placed := p
		if p.Spec.NodeName == "" {
			placed = p.DeepCopy()
			placed.Spec.NodeName = nodes[pp.Node]
		}
		conv, cerrs := cluster.ConvertPod(placed)
		if len(cerrs) > 0 {
			errs = append(errs, cerrs...)
			continue
		}
		pp.Pod = conv
		listen, lerrs := listenOf(key, p, conv)
		if len(lerrs) > 0 {
			errs = append(errs, lerrs...)
			continue
		}
		pp.Listen = listen
		for _, l := range listen {
			if !slices.Contains(pp.Ports, l.Port) {
				pp.Ports = append(pp.Ports, l.Port) // listen is sorted by port
			}
		}

		if pp.HostNetwork {
			for _, f := range families(ipv6) {
				pp.IPs[f] = nodeAddr(pp.Node, f)
			}
		} else {
			for i, a := range conv.IPs {
				f := famOf(a)
				if f == v6 && !ipv6 {
					errs = append(errs, fmt.Errorf("pod %s: status.podIPs[%d]: %s is IPv6 but the lab is IPv4-only (Config.IPv6)", key, i, a))
					continue
				}
				if err := checkPodAddr(a, len(nodes)); err != nil {
					errs = append(errs, fmt.Errorf("pod %s: status.podIPs[%d]: %w", key, i, err))
					continue
				}
				pp.IPs[f] = a
			}
		}
		out = append(out, pp)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	// Addresses: given ones first, then the lab's earlier allocations, then
	// fresh ones, so that a kept pod never loses its address to a new pod.
	used := map[netip.Addr]string{}
	for _, pp := range out {
		if pp.HostNetwork {
			continue
		}
		for _, a := range pp.IPs {
			if !a.IsValid() {
				continue
			}
			if other, ok := used[a]; ok {
				errs = append(errs, fmt.Errorf("pod %s: status.podIPs: %s is also the address of pod %s", pp.Key, a, other))
				continue
			}
			used[a] = pp.Key
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for _, pp := range out {
		old, ok := prev[pp.Key]
		if pp.HostNetwork || !ok || old.HostNetwork || old.Node != pp.Node {
			continue
		}
		for _, f := range families(ipv6) {
			if pp.IPs[f].IsValid() || !old.Allocated[f] {
				continue
			}
			if _, taken := used[old.IPs[f]]; taken {
				continue
			}
			pp.IPs[f], pp.Allocated[f] = old.IPs[f], true
			used[old.IPs[f]] = pp.Key
		}
	}
	for _, pp := range out {
		if pp.HostNetwork {
			continue
		}
		for _, f := range families(ipv6) {
			if pp.IPs[f].IsValid() {
				continue
			}
			subnet := nodeSubnet(pp.Node, f)
			a := addOffset(subnet.Addr(), 2)
			for ; subnet.Contains(a); a = a.Next() {
				if _, taken := used[a]; !taken {
					break
				}
			}
			if !subnet.Contains(a) || (f == v4 && a == addOffset(subnet.Addr(), 255)) {
				return nil, fmt.Errorf("pod %s: node %s has no free address left in %s", pp.Key, nodes[pp.Node], subnet)
			}
			pp.IPs[f], pp.Allocated[f] = a, true
			used[a] = pp.Key
		}
	}

	if dnat {
		if err := planClusterIPs(out, prev, ipv6); err != nil {
			return nil, err
		}
	}
	for _, pp := range out {
		pp.Pod.IPs = nil
		for _, a := range pp.IPs {
			if a.IsValid() {
				pp.Pod.IPs = append(pp.Pod.IPs, a)
			}
		}
	}
	return out, nil
}

// planClusterIPs gives every pod one ClusterIP per family: the one it had, or
// the lowest free index.
func planClusterIPs(out []*podPlan, prev map[string]*podPlan, ipv6 bool) error {
	usedIdx := map[int]bool{}
	idxOf := func(a netip.Addr) int {
		base := serviceIP(0, famOf(a))
		if a.Is4() {
			return int(binary.BigEndian.Uint32(a.AsSlice()) - binary.BigEndian.Uint32(base.AsSlice()))
		}
		x, y := a.As16(), base.As16()
		return int(binary.BigEndian.Uint32(x[12:]) - binary.BigEndian.Uint32(y[12:]))
	}
	for _, pp := range out {
		if old, ok := prev[pp.Key]; ok && old.ClusterIPs[v4].IsValid() {
			k := idxOf(old.ClusterIPs[v4])
			if !usedIdx[k] {
				usedIdx[k] = true
				for _, f := range families(ipv6) {
					pp.ClusterIPs[f] = serviceIP(k, f)
				}
			}
		}
	}
	next := 0
	for _, pp := range out {
		if pp.ClusterIPs[v4].IsValid() {
			continue
		}
		for usedIdx[next] {
			next++
		}
		if next >= maxServices(v4) {
			return fmt.Errorf("pod %s: no free ClusterIP left in %s", pp.Key, services4)
		}
		usedIdx[next] = true
		for _, f := range families(ipv6) {
			pp.ClusterIPs[f] = serviceIP(next, f)
		}
	}
	return nil
}
