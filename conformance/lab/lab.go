package lab

import (
	"context"
	"errors"
	"fmt"
	"github.com/policyd/policyd/internal/netnsutil"
	"maps"
	"net/netip"
	"os/exec"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"

	"github.com/policyd/policyd/policy/model"
)

// CNI is the shape of the pod network. The zero value is invalid.
type CNI string

// CNI values; see the package documentation.
const (
	CNIRouted  CNI = "routed"
	CNIBridged CNI = "bridged"
)

// Defaults for Config fields left zero.
const (
	DefaultProbeTimeout = 400 * time.Millisecond
	DefaultParallelism  = 256
)

// Config says what lab to build.
type Config struct {
	// CNI is required.
	CNI CNI
	// Nodes are the node names, in order (node i gets the addresses of index
	// i). When empty, the sorted distinct spec.nodeName values of the pods
	// are used; it is an error if there are none.
	Nodes []string
	// DNAT gives every pod a ClusterIP and installs the kube-proxy-like table
	// in every node (see KubeProxyTable).
	DNAT bool
	// External adds the external client (ExternalClient): a network
	// namespace outside the cluster on the underlay, which probes reach
	// Services' NodePorts and external IPs from.
	External bool
	// IPv6 makes the lab dual-stack: every pod also gets an IPv6 address.
	IPv6 bool
	// RunID names the run's namespaces (pdlab-<RunID>-...): 1-12 lower-case
	// letters and digits. When empty a random one is chosen.
	RunID string
	// ProbeTimeout bounds each probe attempt (connect and answer); zero means
	// DefaultProbeTimeout.
	ProbeTimeout time.Duration
	// Parallelism is how many probes run at once; zero means
	// DefaultParallelism. Each running probe holds one OS thread.
	Parallelism int
}

// normalize validates cfg and fills the defaults.
func (cfg Config) normalize(pods []*corev1.Pod) (Config, error) {
	switch cfg.CNI {
	case CNIRouted, CNIBridged:
	default:
		return cfg, fmt.Errorf("config.CNI: %q is not %q or %q", cfg.CNI, CNIRouted, CNIBridged)
	}
	if len(cfg.Nodes) == 0 {
		seen := map[string]bool{}
		for _, p := range pods {
			if p != nil && p.Spec.NodeName != "" && !seen[p.Spec.NodeName] {
				seen[p.Spec.NodeName] = true
				cfg.Nodes = append(cfg.Nodes, p.Spec.NodeName)
			}
		}
		sort.Strings(cfg.Nodes)
		if len(cfg.Nodes) == 0 {
			return cfg, errors.New("config.Nodes: empty, and no pod has spec.nodeName to take node names from")
		}
	} else {
		cfg.Nodes = append([]string(nil), cfg.Nodes...)
	}
	if len(cfg.Nodes) > MaxNodes {
		return cfg, fmt.Errorf("config.Nodes: %d nodes, at most %d", len(cfg.Nodes), MaxNodes)
	}
	seen := map[string]bool{}
	for i, n := range cfg.Nodes {
		if n == "" {
			return cfg, fmt.Errorf("config.Nodes[%d]: empty name", i)
		}
		if seen[n] {
			return cfg, fmt.Errorf("config.Nodes[%d]: %q given twice", i, n)
		}
		seen[n] = true
	}
	if cfg.RunID == "" {
		cfg.RunID = newRunID()
	} else if !runIDPattern.MatchString(cfg.RunID) {
		return cfg, fmt.Errorf("config.RunID: %q is not 1-12 lower-case letters and digits", cfg.RunID)
	}
	if cfg.ProbeTimeout < 0 || cfg.Parallelism < 0 {
		return cfg, errors.New("config.ProbeTimeout and config.Parallelism must not be negative")
	}
	if cfg.ProbeTimeout == 0 {
		cfg.ProbeTimeout = DefaultProbeTimeout
	}
	if cfg.Parallelism == 0 {
		cfg.Parallelism = DefaultParallelism
	}
	return cfg, nil
}

// Lab is a running lab. Its methods are safe for concurrent use.
type Lab struct {
	cfg  Config
	fams []fam
	lock *runLock

	// mu guards everything below. ProbeAll, DoInNode and ExecInNode hold it
	// for reading while they use namespaces; UpdatePods and Close for writing.
	mu       sync.RWMutex
	closed   bool
	underlay *nsNode
	nodes    []*labNode
	byName   map[string]*labNode
	pods     map[string]*labPod
	seq      int
	// ext is the external client (Config.External), nil without it.
	ext *nsNode
	// svcs are the Services of SetServices; nil before the first call.
	svcs []Service
}

type labNode struct {
	name string
	idx  int
	ns   *nsNode
}

type labPod struct {
	plan *podPlan
	// ns is the pod's namespace; for a hostNetwork pod it is the node's (not
	// owned by the pod).
	ns       *nsNode
	hostVeth string // the node end of the pod's veth; "" for hostNetwork
	srv      *servers
}

// New removes leftovers of crashed runs (CleanupLeftovers), builds the
// topology for cfg and pods, and starts every pod's servers. On error,
// everything built so far is torn down and New returns a nil Lab (on which
// Close is a no-op).
func New(ctx context.Context, cfg Config, pods []*corev1.Pod) (_ *Lab, err error) {
	cfg, err = cfg.normalize(pods)
	if err != nil {
		return nil, err
	}
	if cfg.DNAT || cfg.External {
		if _, err := exec.LookPath("nft"); err != nil {
			return nil, fmt.Errorf("config.DNAT and config.External need the nft binary: %w", err)
		}
	}
	plans, err := planPods(cfg.Nodes, cfg.IPv6, cfg.DNAT, nil, pods)
	if err != nil {
		return nil, err
	}
	if err := CleanupLeftovers(); err != nil {
		return nil, fmt.Errorf("cleaning up leftovers of earlier runs: %w", err)
	}
	lock, err := acquireRunLock(cfg.RunID)
	if err != nil {
		return nil, err
	}
	l := &Lab{
		cfg:    cfg,
		fams:   families(cfg.IPv6),
		lock:   lock,
		byName: map[string]*labNode{},
		pods:   map[string]*labPod{},
	}
	defer func() {
		if err != nil {
			_ = l.Close()
		}
	}()
	if err := l.buildUnderlay(); err != nil {
		return nil, err
	}
	if cfg.External {
		if err := l.buildExternal(); err != nil {
			return nil, err
		}
	}
	for i, name := range cfg.Nodes {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := l.addNode(i, name); err != nil {
			return nil, err
		}
	}
	for _, pp := range plans {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := l.addPod(pp); err != nil {
			return nil, err
		}
	}
	if err := l.syncKubeProxy(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

// nsName is the name of one of the run's namespaces.
func (l *Lab) nsName(role string) string { return Prefix + l.cfg.RunID + "-" + role }

func (l *Lab) buildUnderlay() error {
	u, err := openNS(l.nsName("underlay"),
		sysctl{"net/bridge/bridge-nf-call-iptables", "0"},
		sysctl{"net/bridge/bridge-nf-call-ip6tables", "0"},
		sysctl{"net/bridge/bridge-nf-call-arptables", "0"})
	if err != nil {
		return err
	}
	l.underlay = u
	return addBridge(u, underlayBridge)
}

// addBridge adds an STP-less bridge without multicast snooping (so neighbour
// discovery never depends on MLD state) and sets it up.
func addBridge(n *nsNode, name string) error {
	off := false
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}, MulticastSnooping: &off}
	if err := n.nl.LinkAdd(br); err != nil {
		return fmt.Errorf("%s: adding bridge %s: %w", n.name, name, err)
	}
	return n.up(name)
}

func (n *nsNode) setMaster(link, master string) error {
	l, err := n.link(link)
	if err != nil {
		return err
	}
	m, err := n.link(master)
	if err != nil {
		return err
	}
	if err := n.nl.LinkSetMaster(l, m); err != nil {
		return fmt.Errorf("%s: attaching %s to %s: %w", n.name, link, master, err)
	}
	return nil
}

func (l *Lab) addNode(i int, name string) error {
	bridged := "0"
	if l.cfg.CNI == CNIBridged {
		bridged = "1"
	}
	settings := []sysctl{
		{"net/ipv4/ip_forward", "1"},
		{"net/ipv4/conf/all/rp_filter", "0"},
		{"net/ipv4/conf/default/rp_filter", "0"},
		{"net/bridge/bridge-nf-call-iptables", bridged},
		{"net/bridge/bridge-nf-call-ip6tables", bridged},
		{"net/bridge/bridge-nf-call-arptables", "0"},
	}
	if l.cfg.IPv6 {
		settings = append(settings, sysctl{"net/ipv6/conf/all/forwarding", "1"})
	}
	ns, err := openNS(l.nsName(fmt.Sprintf("n%d", i)), settings...)
	if err != nil {
		return fmt.Errorf("node %s: %w", name, err)
	}
	n := &labNode{name: name, idx: i, ns: ns}
	l.nodes = append(l.nodes, n)
	l.byName[name] = n

	port := fmt.Sprintf("n%d", i)
	if err := l.underlay.addVeth(port, ns, uplink); err != nil {
		return fmt.Errorf("node %s: %w", name, err)
	}
	if err := l.underlay.setMaster(port, underlayBridge); err != nil {
		return fmt.Errorf("node %s: %w", name, err)
	}
	for _, f := range l.fams {
		if err := ns.addAddr(uplink, underlayPrefix(i, f)); err != nil {
			return fmt.Errorf("node %s: %w", name, err)
		}
	}
	switch l.cfg.CNI {
	case CNIRouted:
		for _, f := range l.fams {
			if err := ns.addAddr("lo", hostPrefix(nodeGateway(i, f))); err != nil {
				return fmt.Errorf("node %s: %w", name, err)
			}
		}
	case CNIBridged:
		if err := addBridge(ns, podBridge); err != nil {
			return fmt.Errorf("node %s: %w", name, err)
		}
		for _, f := range l.fams {
			gw := netip.PrefixFrom(nodeGateway(i, f), nodeSubnet(i, f).Bits())
			if err := ns.addAddr(podBridge, gw); err != nil {
				return fmt.Errorf("node %s: %w", name, err)
			}
		}
	}
	return nil
}

func defaultRoute(f fam) netip.Prefix {
	if f == v6 {
		return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	}
	return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
}

// addPod builds one pod: namespace, veth, addresses, routes on every node,
// servers. The pod is registered before anything is built, so a failure
// half-way is cleaned up by removePod or Close.
func (l *Lab) addPod(pp *podPlan) error {
	node := l.nodes[pp.Node]
	if pp.HostNetwork {
		p := &labPod{plan: pp, ns: node.ns}
		l.pods[pp.Key] = p
		var err error
		p.srv, err = startServers(node.ns.ns, pp.Key, pp.Pod.IPs, pp.Listen)
		return err
	}
	l.seq++
	ns, err := openNS(l.nsName(fmt.Sprintf("p%d", l.seq)))
	if err != nil {
		return fmt.Errorf("pod %s: %w", pp.Key, err)
	}
	p := &labPod{plan: pp, ns: ns, hostVeth: fmt.Sprintf("pv%d", l.seq)}
	l.pods[pp.Key] = p
	if err := l.wirePod(p, node); err != nil {
		return fmt.Errorf("pod %s: %w", pp.Key, err)
	}
	p.srv, err = startServers(ns.ns, pp.Key, pp.Pod.IPs, pp.Listen)
	return err
}

func (l *Lab) wirePod(p *labPod, node *labNode) error {
	pp, ns := p.plan, p.ns
	if err := node.ns.addVeth(p.hostVeth, ns, uplink); err != nil {
		return err
	}
	nodeLink := p.hostVeth
	if l.cfg.CNI == CNIBridged {
		nodeLink = podBridge
		if err := node.ns.setMaster(p.hostVeth, podBridge); err != nil {
			return err
		}
		// A pod reaching itself through its ClusterIP: br_netfilter DNATs
		// the frame and bridges it back out of the port it came in on,
		// which the bridge only does with hairpin mode (as the bridge CNI
		// plugin's hairpinMode).
		hv, err := node.ns.link(p.hostVeth)
		if err != nil {
			return err
		}
		if err := node.ns.nl.LinkSetHairpin(hv, true); err != nil {
			return fmt.Errorf("%s: hairpin mode on %s: %w", node.ns.name, p.hostVeth, err)
		}
	}
	hv, err := node.ns.link(p.hostVeth)
	if err != nil {
		return err
	}
	for _, f := range l.fams {
		ip, gw := pp.IPs[f], nodeGateway(node.idx, f)
		if err := ns.addAddr(uplink, hostPrefix(ip)); err != nil {
			return err
		}
		if err := ns.addRoute(route{Dst: hostPrefix(gw), Link: uplink}); err != nil {
			return err
		}
		if l.cfg.CNI == CNIRouted {
			if err := ns.pinNeighbour(uplink, gw, hv.Attrs().HardwareAddr); err != nil {
				return err
			}
		}
		if err := ns.addRoute(route{Dst: defaultRoute(f), Link: uplink, Gw: gw}); err != nil {
			return err
		}
		if err := node.ns.addRoute(route{Dst: hostPrefix(ip), Link: nodeLink, Src: gw}); err != nil {
			return err
		}
		for _, other := range l.nodes {
			if other != node {
				if err := other.ns.addRoute(route{Dst: hostPrefix(ip), Link: uplink, Gw: nodeAddr(node.idx, f)}); err != nil {
					return err
				}
			}
		}
		if l.cfg.CNI == CNIBridged {
			// Same-node pods are on-link: switched by the bridge.
			for _, q := range l.pods {
				if q == p || q.hostVeth == "" || q.plan.Node != pp.Node || !q.plan.IPs[f].IsValid() {
					continue
				}
				if err := ns.addRoute(route{Dst: hostPrefix(q.plan.IPs[f]), Link: uplink}); err != nil {
					return err
				}
				if err := q.ns.addRoute(route{Dst: hostPrefix(ip), Link: uplink}); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// removePod undoes addPod, also after a partial addPod.
func (l *Lab) removePod(p *labPod) error {
	p.srv.close()
	delete(l.pods, p.plan.Key)
	if p.hostVeth == "" {
		return nil
	}
	var errs []error
	node := l.nodes[p.plan.Node]
	for _, f := range l.fams {
		ip := p.plan.IPs[f]
		for _, other := range l.nodes {
			if other != node {
				errs = append(errs, other.ns.delRoute(route{Dst: hostPrefix(ip), Link: uplink, Gw: nodeAddr(node.idx, f)}))
			}
		}
		if l.cfg.CNI == CNIBridged {
			errs = append(errs, node.ns.delRoute(route{Dst: hostPrefix(ip), Link: podBridge, Src: nodeGateway(node.idx, f)}))
			for _, q := range l.pods {
				if q.hostVeth != "" && q.plan.Node == p.plan.Node {
					errs = append(errs, q.ns.delRoute(route{Dst: hostPrefix(ip), Link: uplink}))
				}
			}
		}
	}
	// Deleting the node end destroys the pair and the routes through it now,
	// not when the kernel gets round to the pod's namespace.
	if hv, err := node.ns.nl.LinkByName(p.hostVeth); err == nil {
		if err := node.ns.nl.LinkDel(hv); err != nil {
			errs = append(errs, fmt.Errorf("%s: deleting %s: %w", node.ns.name, p.hostVeth, err))
		}
	}
	errs = append(errs, p.ns.close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("pod %s: %w", p.plan.Key, err)
	}
	return nil
}

// syncKubeProxy replaces the DNAT table in every node; a no-op without DNAT
// and Services.
func (l *Lab) syncKubeProxy(ctx context.Context) error {
	if !l.cfg.DNAT && l.svcs == nil {
		return nil
	}
	for _, n := range l.nodes {
		var svcs []service
		for _, p := range l.pods {
			for _, f := range l.fams {
				hairpin := p.plan.Node == n.idx && !p.plan.HostNetwork
				if !l.cfg.DNAT {
					// Services only: no per-pod ClusterIP, but a pod of this
					// node reaching itself through a Service is SNATed too.
					if hairpin {
						svcs = append(svcs, service{PodIP: p.plan.IPs[f], Hairpin: true})
					}
					continue
				}
				svcs = append(svcs, service{
					ClusterIP: p.plan.ClusterIPs[f],
					PodIP:     p.plan.IPs[f],
					Hairpin:   hairpin,
				})
			}
		}
		var gw [2]netip.Addr
		for _, f := range l.fams {
			gw[f] = nodeGateway(n.idx, f)
		}
		var nat serviceNAT
		if l.svcs != nil {
			nat.addr = nodeAddr(n.idx, v4)
			nat.maps, nat.chains = serviceText(l.svcs, n.idx, func(pod string) (int, bool) {
				p, ok := l.pods[pod]
				if !ok {
					return 0, false
				}
				return p.plan.Node, true
			})
		}
		text := kubeProxyText(svcs, gw, l.fams, nat)
		if _, err := execInNetNS(ctx, n.ns.ns, []byte(text), "nft", "-f", "-"); err != nil {
			return fmt.Errorf("node %s: installing %s: %w", n.name, KubeProxyTable, err)
		}
	}
	return nil
}

// UpdatePods brings the lab to a new pod list. Pods whose node, addresses
// (given or earlier allocated) and ports are unchanged keep their namespace
// and servers; only their labels and other metadata are replaced, so label
// changes never touch the topology. New pods are built, pods that are gone
// are torn down, and changed pods are rebuilt. With DNAT the tables are
// rewritten. On error the lab may be partly updated; Close still removes
// everything.
func (l *Lab) UpdatePods(ctx context.Context, pods []*corev1.Pod) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("lab is closed")
	}
	prev := make(map[string]*podPlan, len(l.pods))
	for k, p := range l.pods {
		prev[k] = p.plan
	}
	plans, err := planPods(l.cfg.Nodes, l.cfg.IPv6, l.cfg.DNAT, prev, pods)
	if err != nil {
		return err
	}
	next := make(map[string]*podPlan, len(plans))
	for _, pp := range plans {
		next[pp.Key] = pp
	}
	for _, key := range slices.Sorted(maps.Keys(l.pods)) {
		p := l.pods[key]
		if np, ok := next[key]; !ok || !p.plan.sameTopology(np) {
			if err := l.removePod(p); err != nil {
				return err
			}
		}
	}
	for _, pp := range plans {
		if p, ok := l.pods[pp.Key]; ok {
			p.plan = pp
			continue
		}
		if err := l.addPod(pp); err != nil {
			return err
		}
	}
	return l.syncKubeProxy(ctx)
}

// Close stops every server and removes every namespace of the lab, then
// releases the run's lock. It is idempotent, safe on a nil Lab, and waits for
// running probes.
func (l *Lab) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	var errs []error
	for _, key := range slices.Sorted(maps.Keys(l.pods)) {
		p := l.pods[key]
		p.srv.close()
		if p.hostVeth != "" {
			errs = append(errs, p.ns.close())
		}
	}
	l.pods = map[string]*labPod{}
	for _, n := range l.nodes {
		errs = append(errs, n.ns.close())
	}
	errs = append(errs, l.ext.close(), l.underlay.close())
	// Namespaces first, lock last: until the lock is gone, no
	// CleanupLeftovers touches this run.
	errs = append(errs, l.lock.release())
	return errors.Join(errs...)
}

// RunID returns the run id in the names of the lab's namespaces.
func (l *Lab) RunID() string { return l.cfg.RunID }

// Config returns the lab's configuration with defaults filled in.
func (l *Lab) Config() Config {
	c := l.cfg
	c.Nodes = append([]string(nil), c.Nodes...)
	return c
}

func (l *Lab) node(name string) (*labNode, error) {
	if l.closed {
		return nil, errors.New("lab is closed")
	}
	n, ok := l.byName[name]
	if !ok {
		return nil, fmt.Errorf("no node %q", name)
	}
	return n, nil
}

// NodeNetNS returns the name of node's network namespace (a file in
// /run/netns, so `ip netns exec NAME ...` works), or false for an unknown node.
func (l *Lab) NodeNetNS(node string) (string, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	n, err := l.node(node)
	if err != nil {
		return "", false
	}
	return n.ns.name, true
}

// NodeNetNSHandle returns an open handle to node's network namespace, for
// netlink or nftables connections inside it (for example
// nftables.New(nftables.WithNetNSFd(int(h)))). The lab owns the handle: do
// not close it; it is valid until Close.
func (l *Lab) NodeNetNSHandle(node string) (netns.NsHandle, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	n, err := l.node(node)
	if err != nil {
		return netns.None(), false
	}
	return n.ns.ns, true
}

// DoInNode runs fn on a fresh OS thread inside node's network namespace and
// returns its error; the thread is discarded afterwards. fn must not call
// the Lab's methods (it runs under the lab's read lock) and must not start
// goroutines that expect to be in the namespace.
func (l *Lab) DoInNode(node string, fn func() error) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	n, err := l.node(node)
	if err != nil {
		return err
	}
	return netnsutil.Do(n.ns.ns, fn)
}

// ExecInNode runs a command (for example nft) inside node's network
// namespace and returns its standard output; stdin may be nil. The error
// includes the command's standard error.
func (l *Lab) ExecInNode(ctx context.Context, node string, stdin []byte, name string, args ...string) ([]byte, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	n, err := l.node(node)
	if err != nil {
		return nil, err
	}
	return execInNetNS(ctx, n.ns.ns, stdin, name, args...)
}

// AddNodeAddress gives node the address a, as a CNI gives a node its
// tunnel or router address (flannel.1, tunl0, cilium_host): a /32 (/128) on
// the node's loopback, unless a is local there already (its gateway), and
// a route to it from every other node via the node's underlay address, so
// the node's own traffic to a remote pod can come from a and the answers
// find their way back. The address goes with the lab.
func (l *Lab) AddNodeAddress(node string, a netip.Addr) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, err := l.node(node)
	if err != nil {
		return err
	}
	f := famOf(a)
	if !slices.Contains(l.fams, f) {
		return fmt.Errorf("node %s: %s: the lab has no IPv%d", node, a, map[fam]int{v4: 4, v6: 6}[f])
	}
	if a != nodeGateway(n.idx, f) {
		if err := n.ns.addAddr("lo", hostPrefix(a)); err != nil {
			return err
		}
	}
	for _, other := range l.nodes {
		if other != n {
			if err := other.ns.addRoute(route{Dst: hostPrefix(a), Link: uplink, Gw: nodeAddr(n.idx, f)}); err != nil {
				return err
			}
		}
	}
	return nil
}

// NodeInfo describes one node.
type NodeInfo struct {
	Name  string
	NetNS string
	// Addrs are the node's underlay addresses (IPv4, then IPv6).
	Addrs []netip.Addr
	// Gateways are the pods' gateway addresses on this node (on cni0, or on
	// the loopback in the routed shape). Hairpin DNAT traffic and traffic the
	// node itself sends to its pods come from them.
	Gateways []netip.Addr
	// Subnets are the ranges the lab allocates this node's pod addresses from.
	Subnets []netip.Prefix
}

// Nodes describes the nodes in Config.Nodes order.
func (l *Lab) Nodes() []NodeInfo {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var out []NodeInfo
	for _, n := range l.nodes {
		ni := NodeInfo{Name: n.name, NetNS: n.ns.name}
		for _, f := range l.fams {
			ni.Addrs = append(ni.Addrs, nodeAddr(n.idx, f))
			ni.Gateways = append(ni.Gateways, nodeGateway(n.idx, f))
			ni.Subnets = append(ni.Subnets, nodeSubnet(n.idx, f))
		}
		out = append(out, ni)
	}
	return out
}

// PodInfo describes one pod as the lab built it.
type PodInfo struct {
	Key         string
	Node        string
	NetNS       string
	HostNetwork bool
	// IPs are the pod's addresses (IPv4, then IPv6); Allocated those of them
	// the lab chose because status.podIPs had none of that family.
	IPs       []netip.Addr
	Allocated []netip.Addr
	// ClusterIPs are set in DNAT mode.
	ClusterIPs []netip.Addr
	// Ports are the distinct port numbers served; Listen says on which
	// protocols (see ServesAnnotation).
	Ports  []int32
	Listen []model.PortProto
}

// Pods describes the pods, sorted by key.
func (l *Lab) Pods() []PodInfo {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var out []PodInfo
	for _, key := range slices.Sorted(maps.Keys(l.pods)) {
		p := l.pods[key]
		pi := PodInfo{
			Key:         key,
			Node:        l.nodes[p.plan.Node].name,
			NetNS:       p.ns.name,
			HostNetwork: p.plan.HostNetwork,
			Ports:       append([]int32(nil), p.plan.Ports...),
			Listen:      append([]model.PortProto(nil), p.plan.Listen...),
		}
		for _, f := range l.fams {
			if a := p.plan.IPs[f]; a.IsValid() {
				pi.IPs = append(pi.IPs, a)
				if p.plan.Allocated[f] {
					pi.Allocated = append(pi.Allocated, a)
				}
			}
			if a := p.plan.ClusterIPs[f]; a.IsValid() {
				pi.ClusterIPs = append(pi.ClusterIPs, a)
			}
		}
		out = append(out, pi)
	}
	return out
}

// PodObjects returns deep copies of the pods as given, sorted by key, with
// spec.nodeName and status.podIP(s) set to what the lab built: feed these,
// not the originals, to policyd.
func (l *Lab) PodObjects() []*corev1.Pod {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var out []*corev1.Pod
	for _, key := range slices.Sorted(maps.Keys(l.pods)) {
		p := l.pods[key]
		o := p.plan.Raw.DeepCopy()
		o.Spec.NodeName = l.nodes[p.plan.Node].name
		o.Status.PodIPs = nil
		for _, a := range p.plan.Pod.IPs {
			o.Status.PodIPs = append(o.Status.PodIPs, corev1.PodIP{IP: a.String()})
		}
		o.Status.PodIP = ""
		if len(o.Status.PodIPs) > 0 {
			o.Status.PodIP = o.Status.PodIPs[0].IP
		}
		if o.Status.Phase == "" {
			o.Status.Phase = corev1.PodRunning
		}
		out = append(out, o)
	}
	return out
}

// PodIP returns pod key's IPv4 address, or the zero Addr for an unknown pod.
func (l *Lab) PodIP(key string) netip.Addr { return l.PodAddr(key, IPv4) }

// PodAddr returns pod key's address of family f, or the zero Addr.
func (l *Lab) PodAddr(key string, f Family) netip.Addr {
	l.mu.RLock()
	defer l.mu.RUnlock()
	p, ok := l.pods[key]
	if !ok {
		return netip.Addr{}
	}
	return p.plan.IPs[famIndex(f)]
}

// ClusterIP returns pod key's ClusterIP of family f (DNAT mode), or the zero
// Addr.
func (l *Lab) ClusterIP(key string, f Family) netip.Addr {
	l.mu.RLock()
	defer l.mu.RUnlock()
	p, ok := l.pods[key]
	if !ok {
		return netip.Addr{}
	}
	return p.plan.ClusterIPs[famIndex(f)]
}

func famIndex(f Family) fam {
	if f == IPv6 {
		return v6
	}
	return v4
}
