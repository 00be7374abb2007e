//go:build linux

package nflog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Conn is a socket bound to one nfnetlink_log group. Receive must not be
// called concurrently; Stats and Close may be called from any goroutine.
type Conn struct {
	c     *netlink.Conn
	group uint16

	// next is the sequence number expected next, valid once seqd is set;
	// only Receive touches them.
	next uint32
	seqd bool

	overruns, lost atomic.Uint64
}

// Stats counts what the kernel could not deliver to a Conn.
type Stats struct {
	// Overruns is the times the socket's receive buffer overflowed.
	Overruns uint64
	// Lost is the messages the kernel logged but the socket never
	// received: the gaps in their sequence numbers. It is exact: each
	// logged packet gets the next number, whether or not it is delivered.
	Lost uint64
}

// DefaultFlushTimeout is how long the kernel holds logged packets to send
// them in one batch when Config.FlushTimeout is zero. The kernel's own
// default is a second, which delays every record by up to that much.
const DefaultFlushTimeout = 50 * time.Millisecond

// Config configures Listen.
type Config struct {
	// Group is the nfnetlink_log group.
	Group uint16
	// NetNS is a network namespace file descriptor; 0 is the current one.
	NetNS int
	// ReadBuffer sets the socket's receive buffer (bytes); 0 keeps the
	// default. The kernel caps it at net.core.rmem_max.
	ReadBuffer int
	// FlushTimeout is the longest the kernel batches logged packets before
	// sending them (10 ms steps); 0 means DefaultFlushTimeout.
	FlushTimeout time.Duration
}

// Listen binds a socket to cfg.Group and asks for packet copies.
func Listen(cfg Config) (*Conn, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: cfg.NetNS})
	if err != nil {
		return nil, fmt.Errorf("nflog: dial: %w", err)
	}
	if cfg.ReadBuffer > 0 {
		_ = c.SetReadBuffer(cfg.ReadBuffer)
	}
	// ENOBUFS is how the kernel says it dropped messages; report it.
	_ = c.SetOption(netlink.NoENOBUFS, false)
	l := &Conn{c: c, group: cfg.Group}
	mode := make([]byte, 6)
	binary.BigEndian.PutUint32(mode[0:4], copyRange)
	mode[4] = copyPacket
	flags := make([]byte, 2)
	binary.BigEndian.PutUint16(flags, cfgFlagSeq)
	flush := cfg.FlushTimeout
	if flush <= 0 {
		flush = DefaultFlushTimeout
	}
	timeout := make([]byte, 4)
	binary.BigEndian.PutUint32(timeout, uint32(max(flush/(10*time.Millisecond), 1)))
	for _, attrs := range [][]netlink.Attribute{
		{{Type: cfgCmd, Data: []byte{cmdBind}}},
		{{Type: cfgMode, Data: mode}},
		{{Type: cfgFlags, Data: flags}},
		{{Type: cfgTimeout, Data: timeout}},
	} {
		if err := l.config(attrs); err != nil {
			c.Close()
			return nil, fmt.Errorf("nflog: bind group %d: %w", cfg.Group, err)
		}
	}
	return l, nil
}

func (l *Conn) config(attrs []netlink.Attribute) error {
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	for _, a := range attrs {
		ae.Bytes(a.Type, a.Data)
	}
	b, err := ae.Encode()
	if err != nil {
		return err
	}
	hdr := []byte{unix.AF_UNSPEC, nfnlVersion, 0, 0}
	binary.BigEndian.PutUint16(hdr[2:], l.group)
	_, err = l.c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(subsysULog<<8 | msgConfig), Flags: netlink.Request | netlink.Acknowledge},
		Data:   append(hdr, b...),
	})
	return err
}

// ErrOverrun is returned by Receive when the socket's buffer overflowed and
// the kernel dropped messages; the Conn stays usable.
var ErrOverrun = errors.New("nflog: socket buffer overrun, messages lost")

// SetDeadline sets the read deadline.
func (l *Conn) SetDeadline(t time.Time) error { return l.c.SetReadDeadline(t) }

// Receive blocks for the next batch of logged packets. It returns
// ErrOverrun once after the socket's buffer overflowed (the messages lost
// are counted in Stats.Lost when the next one arrives).
func (l *Conn) Receive() ([]Packet, error) {
	msgs, err := l.c.Receive()
	if err != nil {
		var oe *netlink.OpError
		if errors.As(err, &oe) && errors.Is(oe.Err, unix.ENOBUFS) {
			l.overruns.Add(1)
			return nil, ErrOverrun
		}
		return nil, err
	}
	var out []Packet
	for _, m := range msgs {
		if m.Header.Type != netlink.HeaderType(subsysULog<<8|msgPacket) || len(m.Data) < nfgenHeaderLen {
			continue
		}
		p, err := ParseMessage(m.Data[nfgenHeaderLen:])
		if err != nil {
			continue
		}
		if p.Time.IsZero() {
			p.Time = time.Now()
		}
		if p.HasSeq {
			l.sequence(p.Seq)
		}
		out = append(out, p)
	}
	return out, nil
}

// sequence counts the messages missing before seq.
func (l *Conn) sequence(seq uint32) {
	if l.seqd {
		// uint32 arithmetic: a gap wraps around like the counter. A number
		// from behind (no kernel sends one) is taken as a new start.
		if gap := seq - l.next; gap != 0 && gap < 1<<31 {
			l.lost.Add(uint64(gap))
		}
	}
	l.next, l.seqd = seq+1, true
}

// Stats returns what the kernel could not deliver so far.
func (l *Conn) Stats() Stats {
	return Stats{Overruns: l.overruns.Load(), Lost: l.lost.Load()}
}

// Close closes the socket.
func (l *Conn) Close() error { return l.c.Close() }
