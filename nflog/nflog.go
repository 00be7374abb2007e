// Package nflog reads packets the kernel logs to an nfnetlink_log group
// (nft `log group N`) and decodes the parts policyd's verdict records need:
// the log prefix and the addresses, protocol and ports of the IP header of
// the payload. It owns the netlink socket and nothing else: mapping a
// prefix to a policy is the caller's business.
//
// The socket (Conn, Listen) exists on Linux only; the decoding (Packet,
// Flow, ParseMessage, ParseIP) builds everywhere, so that the verdict
// records it feeds can be read by a CLI on any system.
package nflog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/mdlayher/netlink"
)

// nfnetlink_log constants (linux/netfilter/nfnetlink_log.h).
const (
	subsysULog     = 4 // NFNL_SUBSYS_ULOG
	msgPacket      = 0 // NFULNL_MSG_PACKET
	msgConfig      = 1 // NFULNL_MSG_CONFIG
	cfgCmd         = 1 // NFULA_CFG_CMD
	cfgMode        = 2 // NFULA_CFG_MODE
	cfgTimeout     = 4 // NFULA_CFG_TIMEOUT, in 1/100 s
	cfgFlags       = 6 // NFULA_CFG_FLAGS
	cmdBind        = 1 // NFULNL_CFG_CMD_BIND
	copyPacket     = 2 // NFULNL_COPY_PACKET
	cfgFlagSeq     = 1 // NFULNL_CFG_F_SEQ
	attrPacketHdr  = 1 // NFULA_PACKET_HDR
	attrTimestamp  = 3 // NFULA_TIMESTAMP
	attrPayload    = 9 // NFULA_PAYLOAD
	attrPrefix     = 10
	attrSeq        = 13 // NFULA_SEQ
	copyRange      = 96 // bytes of payload: an IPv6 header and a transport header
	nfnlVersion    = 0  // NFNETLINK_V0
	nfgenHeaderLen = 4
)

// IP protocol numbers (IANA), spelled out rather than taken from
// golang.org/x/sys/unix so that decoding builds on every system.
const (
	protoTCP  = 6
	protoUDP  = 17
	protoSCTP = 132
)

// Packet is one logged packet.
type Packet struct {
	// Time is the kernel's timestamp, or the time it was read.
	Time time.Time
	// Prefix is the log statement's prefix.
	Prefix string
	// Seq is the group-local sequence number, counted from 0 by the kernel
	// for each bound socket; HasSeq says the kernel sent one. Conn counts
	// the gaps (Stats.Lost).
	Seq    uint32
	HasSeq bool
	// Flow is decoded from the payload; its zero value when the payload is
	// not an IPv4 or IPv6 packet.
	Flow Flow
	// Len is the length of the payload copied.
	Len int
}

// Flow is what an IP header and its transport header say.
type Flow struct {
	Src, Dst         netip.Addr
	Protocol         uint8
	SrcPort, DstPort uint16
}

// ParseMessage decodes the attributes of one NFULNL_MSG_PACKET (after its
// nfgenmsg header).
func ParseMessage(b []byte) (Packet, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return Packet{}, err
	}
	ad.ByteOrder = binary.BigEndian
	var p Packet
	for ad.Next() {
		switch ad.Type() {
		case attrPrefix:
			p.Prefix = ad.String()
		case attrPayload:
			pl := ad.Bytes()
			p.Len = len(pl)
			p.Flow, _ = ParseIP(pl)
		case attrSeq:
			p.Seq, p.HasSeq = ad.Uint32(), true
		case attrTimestamp:
			if d := ad.Bytes(); len(d) == 16 {
				sec := binary.BigEndian.Uint64(d[0:8])
				usec := binary.BigEndian.Uint64(d[8:16])
				p.Time = time.Unix(int64(sec), int64(usec)*1000)
			}
		}
	}
	return p, ad.Err()
}

// ParseIP decodes an IPv4 or IPv6 header and, for TCP, UDP and SCTP, the
// ports after it. IPv6 extension headers are not walked: the protocol is
// then the first next-header value and the ports are zero.
func ParseIP(b []byte) (Flow, error) {
	if len(b) < 1 {
		return Flow{}, errors.New("nflog: empty payload")
	}
	var f Flow
	var l4 []byte
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return Flow{}, errors.New("nflog: short IPv4 header")
		}
		ihl := int(b[0]&0x0f) * 4
		f.Protocol = b[9]
		f.Src = netip.AddrFrom4([4]byte(b[12:16]))
		f.Dst = netip.AddrFrom4([4]byte(b[16:20]))
		if ihl >= 20 && len(b) >= ihl && binary.BigEndian.Uint16(b[6:8])&0x1fff == 0 {
			l4 = b[ihl:]
		}
	case 6:
		if len(b) < 40 {
			return Flow{}, errors.New("nflog: short IPv6 header")
		}
		f.Protocol = b[6]
		f.Src = netip.AddrFrom16([16]byte(b[8:24]))
		f.Dst = netip.AddrFrom16([16]byte(b[24:40]))
		l4 = b[40:]
	default:
		return Flow{}, fmt.Errorf("nflog: IP version %d", b[0]>>4)
	}
	switch f.Protocol {
	case protoTCP, protoUDP, protoSCTP:
		if len(l4) >= 4 {
			f.SrcPort = binary.BigEndian.Uint16(l4[0:2])
			f.DstPort = binary.BigEndian.Uint16(l4[2:4])
		}
	}
	return f, nil
}
