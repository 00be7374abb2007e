package pktpath

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/policyd/policyd/internal/netnsutil"
)

// NetnsPrefix starts the name of every network namespace the benchmark
// creates. The full name is NetnsPrefix + "<pid>-<role>", so that leftovers of
// a dead run can be told from the namespaces of a run still going.
const NetnsPrefix = "pdbench-"

// Topology is three network namespaces: pod A (the source), the node and pod
// B (the destination), joined by the veth pairs A eth0 <-> node vetha and
// node vethb <-> B eth0. The pods route everything to their node-side
// gateway; the node forwards between them with a /32 route per pod.
type Topology struct {
	// PodA, Node and PodB are the network namespace names.
	PodA, Node, PodB string
	// Src and Dst are the addresses of pod A and pod B.
	Src, Dst netip.Addr
	// FlowSockets is how many sockets UDPFlows sends from, one datagram
	// each per pass (0: DefaultFlowSockets). Set it before the first
	// UDPFlows.
	FlowSockets int

	// Profile, when set, is called by the sending thread of UDPFlows and
	// TCP with its thread id before it starts, and what it returns is
	// called when it has stopped: a profiler of that thread (see
	// Profiler).
	Profile func(tid int) (stop func() error)

	// pool holds the UDPFlows sockets once made; ct is the node's
	// conntrack table, opened on first use.
	pool []int
	ct   *conntrack.Conn
}

// DefaultFlowSockets is the default Topology.FlowSockets: enough datagrams per
// pass that the flush between passes is rare, few enough to stay well inside
// a 20,000 file descriptor limit and far below nf_conntrack_max.
const DefaultFlowSockets = 16384

// FlowPortBase is the source port of the first UDPFlows socket; the others
// follow it.
const FlowPortBase = 20000

// NewTopology creates the three namespaces for the pod addresses src and dst
// (IPv4, in 10.0.0.0/8). On error, whatever was created is removed again; on
// success the caller must call Close.
func NewTopology(src, dst netip.Addr) (t *Topology, err error) {
	return NewTopologyTagged(src, dst, "")
}

// NewTopologyTagged is NewTopology with tag in the namespace names, so that
// several topologies (one per configuration, each keeping its table) can
// exist at once: NetnsPrefix + "<pid>-<tag>-<role>".
func NewTopologyTagged(src, dst netip.Addr, tag string) (t *Topology, err error) {
	ten := netip.MustParsePrefix("10.0.0.0/8")
	if !ten.Contains(src) || !ten.Contains(dst) || src == dst {
		return nil, fmt.Errorf("topology: pod addresses must be two distinct 10.x IPv4 addresses, got %s and %s", src, dst)
	}
	base := NetnsPrefix + strconv.Itoa(os.Getpid()) + "-"
	if tag != "" {
		base += tag + "-"
	}
	t = &Topology{PodA: base + "a", Node: base + "node", PodB: base + "b", Src: src, Dst: dst}
	defer func() {
		if err != nil {
			err = errors.Join(err, t.Close())
			t = nil
		}
	}()
	for _, ns := range []string{t.PodA, t.Node, t.PodB} {
		if err := run("ip", "netns", "add", ns); err != nil {
			return t, err
		}
	}
	type side struct {
		pod, peer string
		addr, gw  netip.Addr
	}
	for _, s := range []side{{t.PodA, "vetha", src, gatewayA}, {t.PodB, "vethb", dst, gatewayB}} {
		cmds := [][]string{
			{"ip", "-n", s.pod, "link", "add", "eth0", "type", "veth", "peer", "name", s.peer, "netns", t.Node},
			{"ip", "-n", s.pod, "link", "set", "lo", "up"},
			{"ip", "-n", s.pod, "link", "set", "eth0", "up"},
			{"ip", "-n", s.pod, "addr", "add", s.addr.String() + "/32", "dev", "eth0"},
			{"ip", "-n", s.pod, "route", "add", s.gw.String(), "dev", "eth0", "scope", "link"},
			{"ip", "-n", s.pod, "route", "add", "default", "via", s.gw.String(), "dev", "eth0"},
			{"ip", "-n", t.Node, "link", "set", s.peer, "up"},
			{"ip", "-n", t.Node, "addr", "add", s.gw.String() + "/32", "dev", s.peer},
			{"ip", "-n", t.Node, "route", "add", s.addr.String() + "/32", "dev", s.peer},
		}
		for _, c := range cmds {
			if err := run(c[0], c[1:]...); err != nil {
				return t, err
			}
		}
	}
	if err := run("ip", "-n", t.Node, "link", "set", "lo", "up"); err != nil {
		return t, err
	}
	if err := run("ip", "netns", "exec", t.Node, "sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
		return t, err
	}
	return t, nil
}

// ReleaseFlowSockets closes the UDPFlows sockets; the next UDPFlows makes
// them again.
func (t *Topology) ReleaseFlowSockets() {
	for _, fd := range t.pool {
		unix.Close(fd)
	}
	t.pool = nil
}

// Close deletes the three namespaces (and with them the veth pairs and any
// nftables state in them). It is safe to call more than once and on a
// partly built topology.
func (t *Topology) Close() error {
	var errs []error
	t.ReleaseFlowSockets()
	if t.ct != nil {
		errs = append(errs, t.ct.Close())
		t.ct = nil
	}
	for _, ns := range []string{t.PodA, t.Node, t.PodB} {
		if !netnsExists(ns) {
			continue
		}
		if err := run("ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// SetRuleset replaces the node's whole nftables state with text (`nft -f`
// input); an empty text leaves the node without any table.
func (t *Topology) SetRuleset(text string) error {
	if err := runInput("", "ip", "netns", "exec", t.Node, "nft", "flush", "ruleset"); err != nil {
		return err
	}
	if text == "" {
		return nil
	}
	return runInput(text, "ip", "netns", "exec", t.Node, "nft", "-f", "-")
}

// conntrack returns the node's conntrack table, opening it on first use.
func (t *Topology) conntrack() (*conntrack.Conn, error) {
	if t.ct != nil {
		return t.ct, nil
	}
	ns, err := netns.GetFromName(t.Node)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", t.Node, err)
	}
	defer ns.Close() // the netlink socket keeps the namespace it was made in
	c, err := conntrack.Dial(&netlink.Config{NetNS: int(ns)})
	if err != nil {
		return nil, fmt.Errorf("conntrack in %s: %w", t.Node, err)
	}
	t.ct = c
	return c, nil
}

// FlushConntrack deletes every conntrack entry of the node.
func (t *Topology) FlushConntrack() error {
	c, err := t.conntrack()
	if err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("flush conntrack in %s: %w", t.Node, err)
	}
	return nil
}

// ConntrackEntries returns how many entries the node's conntrack table
// holds, and its limit (nf_conntrack_max), as the node's
// /proc/sys/net/netfilter shows them. (ctnetlink's global statistics
// request, conntrack.Conn.StatsGlobal, never answers on some kernels.)
func (t *Topology) ConntrackEntries() (entries, limit int, err error) {
	err = netnsutil.DoNamed(t.Node, func() error {
		var err error
		if entries, err = readSysctlInt("/proc/sys/net/netfilter/nf_conntrack_count"); err != nil {
			return err
		}
		limit, err = readSysctlInt("/proc/sys/net/netfilter/nf_conntrack_max")
		return err
	})
	return entries, limit, err
}

func readSysctlInt(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

// flowSockets returns the UDPFlows sockets, creating them on first use: in
// pod A, FlowSockets UDP sockets bound to the ports from FlowPortBase on and
// connected to pod B's Port.
func (t *Topology) flowSockets() ([]int, error) {
	if t.pool != nil {
		return t.pool, nil
	}
	n := t.FlowSockets
	if n == 0 {
		n = DefaultFlowSockets
	}
	if n < 1 || FlowPortBase+n-1 > 65535 {
		return nil, fmt.Errorf("udp flows: need 1 to %d sockets, got %d", 65535-FlowPortBase+1, n)
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(n)+256 {
		return nil, fmt.Errorf("udp flows: %d sockets need more open files than the limit of %d (ulimit -n)", n, lim.Cur)
	}
	pool := make([]int, 0, n)
	dst := &unix.SockaddrInet4{Port: Port, Addr: t.Dst.As4()}
	err := netnsutil.DoNamed(t.PodA, func() error {
		for i := range n {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("socket %d: %w", i, err)
			}
			pool = append(pool, fd)
			if err := unix.Bind(fd, &unix.SockaddrInet4{Port: FlowPortBase + i, Addr: t.Src.As4()}); err != nil {
				return fmt.Errorf("bind %s:%d: %w", t.Src, FlowPortBase+i, err)
			}
			if err := unix.Connect(fd, dst); err != nil {
				return fmt.Errorf("connect %s:%d: %w", t.Dst, Port, err)
			}
		}
		return nil
	})
	if err != nil {
		for _, fd := range pool {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("udp flow sockets in %s: %w", t.PodA, err)
	}
	t.pool = pool
	return pool, nil
}

// RemoveLeftovers deletes the network namespaces named NetnsPrefix<pid>-…
// whose process no longer runs: what an earlier run that was killed left
// behind. Namespaces of runs still going are kept.
func RemoveLeftovers() error {
	entries, err := os.ReadDir("/var/run/netns")
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list network namespaces: %w", err)
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		rest, ok := strings.CutPrefix(name, NetnsPrefix)
		if !ok {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		if pid, err := strconv.Atoi(pidText); err == nil && pid > 0 && processAlive(pid) {
			continue
		}
		if err := run("ip", "netns", "del", name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func netnsExists(name string) bool {
	_, err := os.Stat("/var/run/netns/" + name)
	return err == nil
}

func run(name string, args ...string) error { return runInput("", name, args...) }

func runInput(stdin, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if len(msg) > 2000 {
			msg = msg[:2000] + "…"
		}
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
	}
	return nil
}
