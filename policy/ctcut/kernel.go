package ctcut

import (
	"context"
	"errors"
	"net/netip"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Kernel is the conntrack table of one network namespace, over ctnetlink
// (github.com/ti-mo/conntrack).
type Kernel struct {
	conn *conntrack.Conn
	nl   *vnl.Handle
}

// NewKernel opens the conntrack table of the network namespace netnsFD (0:
// the caller's).
func NewKernel(netnsFD int) (*Kernel, error) {
	conn, err := conntrack.Dial(&netlink.Config{NetNS: netnsFD})
	if err != nil {
		return nil, err
	}
	var h *vnl.Handle
	if netnsFD > 0 {
		h, err = vnl.NewHandleAt(netns.NsHandle(netnsFD))
	} else {
		h, err = vnl.NewHandle()
	}
	if err != nil {
		_ = conn.Close() // the dial half-failed: nothing to flush
		return nil, err
	}
	return &Kernel{conn: conn, nl: h}, nil
}

// Close closes the netlink sockets.
func (k *Kernel) Close() error {
	k.nl.Close()
	return k.conn.Close()
}

// Conn is the ctnetlink connection (tests create entries with it).
func (k *Kernel) Conn() *conntrack.Conn { return k.conn }

// Flows implements Table with a kernel-side mark filter.
func (k *Kernel) Flows(_ context.Context, mark uint32) ([]Flow, error) {
	cf, err := k.conn.DumpFilter(conntrack.NewFilter().Mark(mark).MarkMask(mark), nil)
	if err != nil {
		return nil, err
	}
	out := make([]Flow, 0, len(cf))
	for i := range cf {
		c := &cf[i]
		out = append(out, Flow{
			Proto: c.TupleOrig.Proto.Protocol,
			Src:   c.TupleOrig.IP.SourceAddress.Unmap(), SrcPort: c.TupleOrig.Proto.SourcePort,
			Dst: c.TupleReply.IP.SourceAddress.Unmap(), DstPort: c.TupleReply.Proto.SourcePort,
			Mark: c.Mark,
			Ref:  conntrack.Flow{TupleOrig: c.TupleOrig, TupleReply: c.TupleReply, Zone: c.Zone, ID: c.ID},
		})
	}
	return out, nil
}

// Delete implements Table.
func (k *Kernel) Delete(_ context.Context, f Flow) error {
	cf, ok := f.Ref.(conntrack.Flow)
	if !ok {
		return errors.New("flow not from this table")
	}
	err := k.conn.Delete(cf)
	var oe *netlink.OpError
	if errors.As(err, &oe) && errors.Is(oe.Err, unix.ENOENT) {
		return nil // gone already
	}
	return err
}

// SetMark implements Table.
func (k *Kernel) SetMark(_ context.Context, f Flow, mark uint32) error {
	cf, ok := f.Ref.(conntrack.Flow)
	if !ok {
		return errors.New("flow not from this table")
	}
	u := conntrack.Flow{TupleOrig: cf.TupleOrig, TupleReply: cf.TupleReply, Zone: cf.Zone, Mark: mark}
	err := k.conn.Update(u)
	var oe *netlink.OpError
	if errors.As(err, &oe) && errors.Is(oe.Err, unix.ENOENT) {
		return nil // gone already
	}
	return err
}

// LocalAddrs implements Table.
func (k *Kernel) LocalAddrs(context.Context) (map[netip.Addr]bool, error) {
	addrs, err := k.nl.AddrList(nil, vnl.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	out := map[netip.Addr]bool{}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			out[ip.Unmap()] = true
		}
	}
	return out, nil
}
