package cluster

// Addresses and CIDRs, read as the API server reads them and returned only
// in a form the kernel takes. Every address and prefix that leaves this
// package (pod IPs, Node addresses and pod CIDRs, ipBlocks, networks peers,
// Service and endpoint addresses) passes through one of these functions, so
// nothing compile puts in a set can be refused by the kernel:
//
//   - an IPv6 zone ("fd00::9%eth0") is refused: netip accepts it, the API
//     server's parser does not, and the kernel has no zones in set elements;
//   - an IPv4-mapped IPv6 address, dotted or hex ("::ffff:10.0.0.9",
//     "::ffff:a00:9"), is the IPv4 address, as net.IP and every Kubernetes
//     component read it; the kernel never sees an IPv6 packet from such an
//     address. A mapped prefix is refused in an ipBlock (ambiguous: an IPv4
//     or an IPv6 rule?) and read as the IPv4 prefix in a Node's podCIDRs;
//   - IPv4 octets and prefix lengths with leading zeros ("010.0.0.1",
//     "10.0.0.0/08") are decimal, as the API server's legacy parser reads
//     them (with StrictIPCIDRValidation off, its default up to 1.34);
//   - a CIDR with bits set past its length ("10.0.0.1/8") is its network;
//   - everything else (white space, a prefix length out of range, a
//     non-address) is an error.

import (
	"errors"
	"fmt"
	"net/netip"

	netutils "k8s.io/utils/net"
)

// ParseIP parses an IP address as the API server reads its address fields
// (pod IPs, Service and endpoint addresses): leading zeros in IPv4 octets
// are decimal, an IPv4-mapped IPv6 address is the IPv4 address, and an IPv6
// zone is an error. The result is an IPv4 address, or an IPv6 one that is
// not IPv4-mapped, without a zone.
func ParseIP(s string) (netip.Addr, error) {
	ip := netutils.ParseIPSloppy(s)
	if ip == nil {
		if a, err := netip.ParseAddr(s); err == nil && a.Zone() != "" {
			return netip.Addr{}, fmt.Errorf("%q has an IPv6 zone (%%%s), which an address in the API never has", s, a.Zone())
		}
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	a = a.Unmap()
	if err := kernelAddr(a); err != nil {
		return netip.Addr{}, fmt.Errorf("%q: %w", s, err)
	}
	return a, nil
}

// ParseCIDR parses a CIDR as the API server reads a NetworkPolicy ipBlock
// (leading zeros are decimal: 010.0.0.0/8 is 10.0.0.0/8; bits past the
// prefix length are dropped). An IPv4-mapped IPv6 prefix, dotted
// (::ffff:10.0.0.0/104) or hex (::ffff:a00:0/104), is refused: the API
// accepts it, but whether it means IPv4 or IPv6 traffic is ambiguous.
func ParseCIDR(s string) (netip.Prefix, error) {
	p, mapped, err := parseCIDRSloppy(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if mapped {
		return netip.Prefix{}, fmt.Errorf("an IPv4-mapped IPv6 prefix is ambiguous (IPv4 or IPv6 traffic?): write the IPv4 CIDR %s", p)
	}
	return p, nil
}

// parsePodCIDR parses a Node's pod CIDR as the API server and
// kube-controller-manager read it; an IPv4-mapped prefix is its IPv4 prefix
// (::ffff:10.244.4.0/120 is 10.244.4.0/24).
func parsePodCIDR(s string) (netip.Prefix, error) {
	p, _, err := parseCIDRSloppy(s)
	return p, err
}

var errNotCIDR = errors.New("not a CIDR (e.g. 10.0.0.0/8 or fd00::/64)")

// parseCIDRSloppy parses s with the API server's legacy CIDR parser and
// returns the masked prefix in the form the kernel takes: IPv4, or IPv6
// that is not IPv4-mapped. mapped says s was an IPv4-mapped IPv6 prefix,
// returned as its IPv4 equivalent.
func parseCIDRSloppy(s string) (p netip.Prefix, mapped bool, err error) {
	_, n, err := netutils.ParseCIDRSloppy(s)
	if err != nil {
		return netip.Prefix{}, false, errNotCIDR
	}
	addr, ok := netip.AddrFromSlice(n.IP)
	ones, total := n.Mask.Size()
	if !ok || total != addr.BitLen() {
		return netip.Prefix{}, false, errNotCIDR
	}
	if addr.Is4In6() {
		// A masked prefix keeps the ::ffff: marker only with 96 bits or
		// more; the check is for the reader.
		if ones < 96 {
			return netip.Prefix{}, false, errors.New("mixes IPv4-mapped and IPv6 addresses")
		}
		addr, ones, mapped = addr.Unmap(), ones-96, true
	}
	p = netip.PrefixFrom(addr, ones).Masked()
	if err := kernelPrefix(p); err != nil {
		return netip.Prefix{}, false, err
	}
	return p, mapped, nil
}

// kernelAddr checks that a is an address the kernel takes as a set
// element: valid, IPv4 or non-mapped IPv6, without a zone.
func kernelAddr(a netip.Addr) error {
	switch {
	case !a.IsValid():
		return fmt.Errorf("not an IP address")
	case a.Zone() != "":
		return fmt.Errorf("an IPv6 zone (%%%s) is not part of an address", a.Zone())
	case a.Is4In6():
		return fmt.Errorf("an IPv4-mapped IPv6 address")
	}
	return nil
}

// kernelPrefix checks that p is a prefix the kernel takes as an interval:
// a valid, masked prefix of an address kernelAddr accepts.
func kernelPrefix(p netip.Prefix) error {
	if !p.IsValid() {
		return fmt.Errorf("not a valid prefix")
	}
	if err := kernelAddr(p.Addr()); err != nil {
		return err
	}
	if p != p.Masked() {
		return fmt.Errorf("bits set past the prefix length")
	}
	return nil
}
