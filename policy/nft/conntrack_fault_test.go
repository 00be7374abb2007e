package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/ti-mo/conntrack"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/policyd/policyd/conformance/lab"
	"github.com/policyd/policyd/internal/netnstest"
	"github.com/policyd/policyd/internal/netnsutil"
)

// fillerMark is the conntrack mark of the entries that fill the table.
const fillerMark = 0x0f11f111

// TestFault_ConntrackTableFull fills the conntrack table of a lab node (its
// own network namespace: the count is per namespace, so the global
// nf_conntrack_max, read-only outside the initial namespace, is not
// touched) with assured, established entries that no early drop may evict,
// and requires:
//
//   - while full, no new connection opens, allowed or denied (the kernel
//     drops a packet it cannot track before any of policyd's chains sees
//     it), before and after a policy change committed meanwhile, and an
//     established stream between allowed pods flows on, as conntrack keeps
//     its entry;
//   - once room returns, every pod pair does what the policies committed
//     while full say, and the stream (established before the change, not
//     cut without strict mode) has lost no record;
//   - traffic conntrack does not track at all (notrack, as another
//     component might configure) is judged like a new connection: a pair
//     the policies deny stays denied.
func TestFault_ConntrackTableFull(t *testing.T) {
	fl := newFaultLab(t, "server", "client", "stranger", "other")
	before := fl.state(allowFrom("server", "client"))
	after := fl.state(allowFrom("server", "stranger"))
	mustSync(t, fl.b, fl.compile(before))
	fl.check("policy in force", before)

	info := map[string]lab.PodInfo{}
	for _, p := range fl.lab.Pods() {
		info[p.Key] = p
	}
	server, client := info[faultNS+"/server"], info[faultNS+"/client"]
	st := startRecordStream(t, server.NetNS, client.NetNS, netip.AddrPortFrom(server.IPs[0], 9000))
	require.Eventually(t, func() bool { return st.received.Load() > 20 }, 5*time.Second, 10*time.Millisecond, "the stream never flowed")

	h, ok := fl.lab.NodeNetNSHandle(faultNode)
	require.True(t, ok)
	ct, err := conntrack.Dial(&netlink.Config{NetNS: int(h)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = ct.Close() }) // only reads and deletes went through it
	// Only the stream's entry stays: the probes' entries (time-wait,
	// unreplied) are what the kernel may evict to make room, and would let
	// a few new connections through a table that is not quite full.
	flows, err := ct.Dump(nil)
	require.NoError(t, err)
	for _, f := range flows {
		if f.TupleOrig.Proto.DestinationPort == 9000 {
			continue
		}
		if err := ct.Delete(f); err != nil && !isENOENT(err) {
			t.Fatalf("delete conntrack entry: %v", err)
		}
	}
	fillStart := time.Now()
	ctMax := fillConntrack(t, fl.ns, h)
	t.Logf("conntrack table of the node filled to its %d entries in %v", ctMax, time.Since(fillStart).Round(time.Millisecond))
	flushed := false
	defer func() {
		if !flushed {
			_ = ct.FlushFilter(conntrack.NewFilter().Mark(fillerMark).MarkMask(0xffffffff))
		}
	}()

	probes := fl.probes()
	nothing := map[lab.Probe]bool{}
	mid := st.received.Load()
	if bad := fl.mismatches(probes, nothing); len(bad) > 0 {
		t.Fatalf("with the conntrack table full, new connections opened:\n%s", strings.Join(bad, "\n"))
	}
	stats := mustSync(t, fl.b, fl.compile(after))
	require.Positive(t, stats.Ops, "the policy change wrote nothing")
	if bad := fl.mismatches(probes, nothing); len(bad) > 0 {
		t.Fatalf("with the conntrack table full, after a policy change, new connections opened:\n%s", strings.Join(bad, "\n"))
	}
	assert.Equal(t, strconv.Itoa(ctMax), conntrackCount(t, fl.ns), "the table did not stay full")
	assert.Greater(t, st.received.Load(), mid+50, "the established stream stalled while the table was full")

	require.NoError(t, ct.FlushFilter(conntrack.NewFilter().Mark(fillerMark).MarkMask(0xffffffff)))
	flushed = true
	t.Logf("room again: %s conntrack entries", conntrackCount(t, fl.ns))
	fl.check("room again: the policies committed while full", after)
	mid = st.received.Load()
	require.Eventually(t, func() bool { return st.received.Load() > mid+50 }, 5*time.Second, 10*time.Millisecond, "the stream stalled once room returned")

	// Not tracked at all: the packets of pod "other" skip conntrack.
	other := info[faultNS+"/other"].IPs[0]
	applyText(t, fl.ns, fmt.Sprintf("table inet pdfault-raw {\n\tchain pre {\n\t\ttype filter hook prerouting priority raw; policy accept;\n\t\tip saddr %s notrack\n\t\tip daddr %s notrack\n\t}\n}\n", other, other))
	want := fl.expected(after, probes)
	var falseAllows []string
	for _, r := range fl.lab.ProbeAll(t.Context(), probes) {
		require.Empty(t, r.Err)
		if r.Observed && !want[r.Probe] {
			falseAllows = append(falseAllows, r.Probe.String())
		}
		if !r.Observed && want[r.Probe] {
			// Replies into an isolated pod are judged too, and may be
			// dropped: fail closed, never open.
			t.Logf("untracked: %s allowed by the policies, not observed (%s)", r.Probe, r.Detail)
		}
	}
	assert.Empty(t, falseAllows, "untracked packets opened connections the policies deny")
	netnstest.MustExec(t, fl.ns, "nft", "delete", "table", "inet", "pdfault-raw")

	st.close()
	require.NoError(t, st.failure(), "the established stream lost or reordered records")
	assert.Equal(t, st.sent.Load(), st.received.Load(), "every record sent arrived")
}

func isENOENT(err error) bool {
	var oe *netlink.OpError
	return errors.As(err, &oe) && errors.Is(oe.Err, unix.ENOENT)
}

// conntrackCount is nf_conntrack_count of the named namespace.
func conntrackCount(t *testing.T, ns string) string {
	t.Helper()
	return strings.TrimSpace(netnstest.MustExec(t, ns, "cat", "/proc/sys/net/netfilter/nf_conntrack_count"))
}

// fillConntrack creates assured, established TCP entries marked fillerMark
// in namespace h until its table holds nf_conntrack_max entries, and
// returns that maximum. The entries are sent as batches of ctnetlink
// messages without acknowledgements (one by one would take seconds more).
func fillConntrack(t *testing.T, ns string, h netns.NsHandle) int {
	t.Helper()
	ctMax, err := strconv.Atoi(strings.TrimSpace(netnstest.MustExec(t, ns, "cat", "/proc/sys/net/netfilter/nf_conntrack_max")))
	require.NoError(t, err)
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(h)})
	require.NoError(t, err)
	defer c.Close()
	const per = 500 // messages per sendmsg, well within the socket buffer
	src := netip.MustParseAddr("10.250.0.1")
	status := uint32(conntrack.StatusAssured | conntrack.StatusSeenReply | conntrack.StatusConfirmed)
	for round := 0; round < 3; round++ {
		count, err := strconv.Atoi(conntrackCount(t, ns))
		require.NoError(t, err)
		if count >= ctMax {
			return ctMax
		}
		missing := ctMax - count + per
		base := round * (ctMax + per)
		for lo := 0; lo < missing; lo += per {
			msgs := make([]netlink.Message, 0, per)
			for j := base + lo; j < base+min(lo+per, missing); j++ {
				// 10.251.0.0/16 and up, 256 source ports per address.
				dst := netip.AddrFrom4([4]byte{10, 251 + byte(j>>24), byte(j >> 16), byte(j >> 8)})
				msgs = append(msgs, ctNewMessage(src, dst, uint16(1024+j&0xff), 80, status, fillerMark))
			}
			_, err := c.SendMessages(msgs)
			require.NoError(t, err)
		}
	}
	count, err := strconv.Atoi(conntrackCount(t, ns))
	require.NoError(t, err)
	require.GreaterOrEqual(t, count, ctMax, "the conntrack table did not fill up")
	return ctMax
}

// ctNewMessage is an IPCTNL_MSG_CT_NEW request creating an ESTABLISHED TCP
// entry src:sport -> dst:dport with status, a 10-minute timeout and mark.
func ctNewMessage(src, dst netip.Addr, sport, dport uint16, status, mark uint32) netlink.Message {
	const (
		ctaTupleOrig, ctaTupleReply, ctaStatus, ctaProtoinfo, ctaTimeout, ctaMark = 1, 2, 3, 4, 7, 8
		ctaTupleIP, ctaTupleProto                                                 = 1, 2
		ctaIPv4Src, ctaIPv4Dst                                                    = 1, 2
		ctaProtoNum, ctaProtoSrcPort, ctaProtoDstPort                             = 1, 2, 3
		ctaProtoinfoTCP, ctaProtoinfoTCPState                                     = 1, 1
		tcpEstablished                                                            = 3
		nested                                                                    = unix.NLA_F_NESTED
		ipctnlMsgCtNew                                                            = 0 // IPCTNL_MSG_CT_NEW
	)
	tuple := func(ae *netlink.AttributeEncoder, s, d netip.Addr, sp, dp uint16) {
		ae.Nested(ctaTupleIP|nested, func(ae *netlink.AttributeEncoder) error {
			s4, d4 := s.As4(), d.As4()
			ae.Bytes(ctaIPv4Src, s4[:])
			ae.Bytes(ctaIPv4Dst, d4[:])
			return nil
		})
		ae.Nested(ctaTupleProto|nested, func(ae *netlink.AttributeEncoder) error {
			ae.Uint8(ctaProtoNum, unix.IPPROTO_TCP)
			ae.Uint16(ctaProtoSrcPort, sp)
			ae.Uint16(ctaProtoDstPort, dp)
			return nil
		})
	}
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	ae.Nested(ctaTupleOrig|nested, func(ae *netlink.AttributeEncoder) error { tuple(ae, src, dst, sport, dport); return nil })
	ae.Nested(ctaTupleReply|nested, func(ae *netlink.AttributeEncoder) error { tuple(ae, dst, src, dport, sport); return nil })
	ae.Uint32(ctaStatus, status)
	ae.Uint32(ctaTimeout, 600)
	ae.Uint32(ctaMark, mark)
	ae.Nested(ctaProtoinfo|nested, func(ae *netlink.AttributeEncoder) error {
		ae.Nested(ctaProtoinfoTCP|nested, func(ae *netlink.AttributeEncoder) error {
			ae.Uint8(ctaProtoinfoTCPState, tcpEstablished)
			return nil
		})
		return nil
	})
	data, err := ae.Encode()
	if err != nil {
		panic(err) // only fixed-size attributes: cannot fail
	}
	return netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_CTNETLINK<<8 | ipctnlMsgCtNew),
			Flags: netlink.Request | netlink.Create | netlink.Excl,
		},
		Data: append([]byte{unix.AF_INET, unix.NFNETLINK_V0, 0, 0}, data...),
	}
}

// recordStream is a TCP connection carrying numbered 8-byte records every
// 5 ms; the reader checks that every record arrives, in order.
type recordStream struct {
	received, sent atomic.Int64
	err            atomic.Value
	stop           chan struct{}
	wg             sync.WaitGroup
}

func startRecordStream(t *testing.T, serverNS, clientNS string, addr netip.AddrPort) *recordStream {
	t.Helper()
	var ln net.Listener
	require.NoError(t, netnsutil.DoNamed(serverNS, func() (err error) { ln, err = net.Listen("tcp", addr.String()); return err }))
	var conn net.Conn
	require.NoError(t, netnsutil.DoNamed(clientNS, func() (err error) { conn, err = net.DialTimeout("tcp", addr.String(), 2*time.Second); return err }))
	srv, err := ln.Accept()
	require.NoError(t, err)
	ln.Close()
	s := &recordStream{stop: make(chan struct{})}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		buf := make([]byte, 8)
		for want := int64(0); ; want++ {
			if _, err := io.ReadFull(srv, buf); err != nil {
				if !errors.Is(err, io.EOF) {
					s.err.CompareAndSwap(nil, fmt.Errorf("read: %w", err))
				}
				return
			}
			if got := int64(binary.BigEndian.Uint64(buf)); got != want {
				s.err.CompareAndSwap(nil, fmt.Errorf("record %d arrived where %d was due", got, want))
				return
			}
			s.received.Add(1)
		}
	}()
	go func() {
		defer s.wg.Done()
		defer conn.Close()
		buf := make([]byte, 8)
		for seq := int64(0); ; seq++ {
			select {
			case <-s.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			binary.BigEndian.PutUint64(buf, uint64(seq))
			_ = conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
			if _, err := conn.Write(buf); err != nil {
				s.err.CompareAndSwap(nil, fmt.Errorf("write: %w", err))
				return
			}
			s.sent.Add(1)
		}
	}()
	t.Cleanup(func() { s.close(); srv.Close() })
	return s
}

func (s *recordStream) close() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.wg.Wait()
}

func (s *recordStream) failure() error {
	if e, ok := s.err.Load().(error); ok {
		return e
	}
	return nil
}
