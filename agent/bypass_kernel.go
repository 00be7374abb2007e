package agent

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// KernelDatapath samples the datapath of one network namespace (the node's)
// over netlink: veth statistics and the conntrack table.
type KernelDatapath struct {
	netnsFD int
}

// NewKernelDatapath samples the network namespace netnsFD (0: the
// caller's).
func NewKernelDatapath(netnsFD int) *KernelDatapath { return &KernelDatapath{netnsFD: netnsFD} }

// Sample implements DatapathSampler.
func (k *KernelDatapath) Sample(_ context.Context, localPods []netip.Addr) (DatapathSample, error) {
	var h *vnl.Handle
	var err error
	if k.netnsFD > 0 {
		h, err = vnl.NewHandleAt(netns.NsHandle(k.netnsFD))
	} else {
		h, err = vnl.NewHandle()
	}
	if err != nil {
		return DatapathSample{}, fmt.Errorf("datapath: netlink: %w", err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return DatapathSample{}, fmt.Errorf("datapath: listing links: %w", err)
	}
	var s DatapathSample
	for _, l := range links {
		if l.Type() != "veth" || l.Attrs().Statistics == nil {
			continue
		}
		s.PodPackets += l.Attrs().Statistics.RxPackets
	}
	local := map[netip.Addr]bool{}
	addrs, err := h.AddrList(nil, vnl.FAMILY_ALL)
	if err != nil {
		return DatapathSample{}, fmt.Errorf("datapath: listing addresses: %w", err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			local[ip.Unmap()] = true
		}
	}
	pods := make(map[netip.Addr]bool, len(localPods))
	for _, a := range localPods {
		pods[a] = true
	}
	conn, err := conntrack.Dial(&netlink.Config{NetNS: k.netnsFD})
	if err != nil {
		return DatapathSample{}, fmt.Errorf("datapath: conntrack: %w", err)
	}
	defer func() { _ = conn.Close() }() // a netlink socket: nothing to flush
	flows, err := conn.Dump(nil)
	if err != nil {
		return DatapathSample{}, fmt.Errorf("datapath: dumping conntrack: %w", err)
	}
	for _, f := range flows {
		src, dst := f.TupleOrig.IP.SourceAddress.Unmap(), f.TupleOrig.IP.DestinationAddress.Unmap()
		if f.Zone != 0 || local[src] || !(pods[src] || pods[dst]) {
			continue
		}
		s.TrackedFlows++
	}
	return s, nil
}
