package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/policyd/policyd/internal/netnsutil"
)

// Link names inside the lab's namespaces. They live in private namespaces,
// so they need no prefix and never clash with the host's.
const (
	underlayBridge = "br0"
	podBridge      = "cni0"
	uplink         = "eth0" // a node's link to the underlay, and a pod's link to its node
)

// nsNode is a named network namespace with an open handle and a netlink
// handle inside it.
type nsNode struct {
	name string
	ns   netns.NsHandle
	nl   *netlink.Handle
}

// openNS creates a namespace with IPv6 duplicate address detection turned
// off (lab addresses are unique by construction; DAD would keep them
// tentative for a second) and loopback up.
func openNS(name string, extra ...sysctl) (*nsNode, error) {
	h, err := netnsutil.CreateNamed(name)
	if err != nil {
		return nil, err
	}
	n := &nsNode{name: name, ns: h}
	settings := append([]sysctl{
		{"net/ipv6/conf/all/accept_dad", "0"},
		{"net/ipv6/conf/default/accept_dad", "0"},
	}, extra...)
	if err := setSysctls(h, settings...); err != nil {
		_ = n.close() // the setup error is the one to report
		return nil, fmt.Errorf("network namespace %s: %w", name, err)
	}
	if n.nl, err = netlink.NewHandleAt(h); err != nil {
		_ = n.close() // the setup error is the one to report
		return nil, fmt.Errorf("network namespace %s: netlink: %w", name, err)
	}
	if err := n.up("lo"); err != nil {
		_ = n.close() // the setup error is the one to report
		return nil, err
	}
	return n, nil
}

// close drops the handles and removes the name; the kernel then destroys the
// namespace once no socket refers to it. Safe on a partly opened namespace.
func (n *nsNode) close() error {
	if n == nil {
		return nil
	}
	if n.nl != nil {
		n.nl.Close()
		n.nl = nil
	}
	if n.ns.IsOpen() {
		n.ns.Close()
	}
	n.ns = netns.None()
	if n.name == "" {
		return nil
	}
	err := netnsutil.DeleteNamed(n.name)
	n.name = ""
	return err
}

func (n *nsNode) link(name string) (netlink.Link, error) {
	l, err := n.nl.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("%s: link %s: %w", n.name, name, err)
	}
	return l, nil
}

func (n *nsNode) up(name string) error {
	l, err := n.link(name)
	if err != nil {
		return err
	}
	if err := n.nl.LinkSetUp(l); err != nil {
		return fmt.Errorf("%s: setting %s up: %w", n.name, name, err)
	}
	return nil
}

// addAddr adds a to the link; IPv6 addresses skip DAD.
func (n *nsNode) addAddr(link string, a netip.Prefix) error {
	l, err := n.link(link)
	if err != nil {
		return err
	}
	addr := &netlink.Addr{IPNet: ipNet(a)}
	if a.Addr().Is6() {
		addr.Flags = unix.IFA_F_NODAD
	}
	if err := n.nl.AddrAdd(l, addr); err != nil {
		return fmt.Errorf("%s: adding %s to %s: %w", n.name, a, link, err)
	}
	return nil
}

// addVeth creates a veth pair whose first end, name, is in n and whose peer,
// peerName, is created directly in peer's namespace: nothing ever appears in
// the root namespace. Both ends are set up.
func (n *nsNode) addVeth(name string, peer *nsNode, peerName string) error {
	v := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: name},
		PeerName:      peerName,
		PeerNamespace: netlink.NsFd(peer.ns),
	}
	if err := n.nl.LinkAdd(v); err != nil {
		return fmt.Errorf("%s: adding veth %s to %s/%s: %w", n.name, name, peer.name, peerName, err)
	}
	if err := n.up(name); err != nil {
		return err
	}
	return peer.up(peerName)
}

// route is a route in plain data: a destination prefix out of a link, either
// directly (Gw invalid: scope link) or via a gateway.
type route struct {
	Dst  netip.Prefix
	Link string
	Gw   netip.Addr
	Src  netip.Addr // preferred source, optional
}

func (n *nsNode) nlRoute(r route) (*netlink.Route, error) {
	l, err := n.link(r.Link)
	if err != nil {
		return nil, err
	}
	nr := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipNet(r.Dst)}
	if r.Gw.IsValid() {
		nr.Gw = r.Gw.AsSlice()
		nr.Flags = int(netlink.FLAG_ONLINK)
	} else {
		nr.Scope = netlink.SCOPE_LINK
	}
	if r.Src.IsValid() {
		nr.Src = r.Src.AsSlice()
	}
	return nr, nil
}

func (n *nsNode) addRoute(r route) error {
	nr, err := n.nlRoute(r)
	if err != nil {
		return err
	}
	if err := n.nl.RouteAdd(nr); err != nil {
		return fmt.Errorf("%s: adding route %s dev %s via %v: %w", n.name, r.Dst, r.Link, r.Gw, err)
	}
	return nil
}

// delRoute removes a route; a missing route or link is not an error.
func (n *nsNode) delRoute(r route) error {
	nr, err := n.nlRoute(r)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return err
	}
	if err := n.nl.RouteDel(nr); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("%s: deleting route %s dev %s: %w", n.name, r.Dst, r.Link, err)
	}
	return nil
}

// pinNeighbour adds a permanent neighbour entry, so the pod never has to
// resolve its gateway.
func (n *nsNode) pinNeighbour(link string, ip netip.Addr, mac net.HardwareAddr) error {
	l, err := n.link(link)
	if err != nil {
		return err
	}
	family := netlink.FAMILY_V4
	if ip.Is6() {
		family = netlink.FAMILY_V6
	}
	err = n.nl.NeighSet(&netlink.Neigh{
		LinkIndex:    l.Attrs().Index,
		Family:       family,
		State:        netlink.NUD_PERMANENT,
		IP:           ip.AsSlice(),
		HardwareAddr: mac,
	})
	if err != nil {
		return fmt.Errorf("%s: neighbour %s on %s: %w", n.name, ip, link, err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func hostPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }
