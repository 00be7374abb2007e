package model

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"

	"github.com/policyd/policyd/cluster"
)

// PortProto is a destination port and L4 protocol: what a connection is
// judged on besides its endpoints, and the key of one truth table of a
// matrix.
type PortProto struct {
	Port     int32
	Protocol cluster.Protocol
}

// String renders "TCP/80".
func (pp PortProto) String() string { return pp.Protocol.String() + "/" + strconv.Itoa(int(pp.Port)) }

// ParsePortProto parses "TCP/80" (protocol case-insensitive).
func ParsePortProto(s string) (PortProto, error) {
	proto, port, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return PortProto{}, fmt.Errorf("port %q: want PROTOCOL/PORT, e.g. TCP/80", s)
	}
	p, err := cluster.ParseProtocol(proto)
	if err != nil {
		return PortProto{}, fmt.Errorf("port %q: %w", s, err)
	}
	n, err := strconv.ParseInt(port, 10, 32)
	if err != nil || n < 1 || n > 65535 {
		return PortProto{}, fmt.Errorf("port %q: port must be a number in 1-65535", s)
	}
	return PortProto{Port: int32(n), Protocol: p}, nil
}

// Compare orders by port, then by protocol number (TCP, UDP, SCTP); it
// returns -1, 0 or +1 like cmp.Compare, for slices.SortFunc.
func (pp PortProto) Compare(o PortProto) int {
	if c := cmp.Compare(pp.Port, o.Port); c != 0 {
		return c
	}
	return cmp.Compare(pp.Protocol, o.Protocol)
}

// Less orders by port, then by protocol number (TCP, UDP, SCTP).
func (pp PortProto) Less(o PortProto) bool { return pp.Compare(o) < 0 }
