package nflog

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// packetMsg is an NFULNL_MSG_PACKET as the kernel sends it: the nfgenmsg
// header, then big-endian attributes.
func packetMsg(t *testing.T, prefix string, seq uint32) netlink.Message {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	ae.String(attrPrefix, prefix)
	ae.Uint32(attrSeq, seq)
	ae.Bytes(attrPayload, []byte{0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 3, 0x0f, 0xa0, 0x1f, 0x90, 0, 8, 0, 0})
	b, err := ae.Encode()
	require.NoError(t, err)
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(subsysULog<<8 | msgPacket)},
		Data:   append([]byte{unix.AF_INET, nfnlVersion, 0, 0}, b...),
	}
}

// TestConn_CountsSequenceGapsAndOverruns: the messages missing between two
// sequence numbers are counted as lost, exactly; an ENOBUFS from the socket
// is an overrun, and the Conn keeps reading.
func TestConn_CountsSequenceGapsAndOverruns(t *testing.T) {
	t.Parallel()
	batches := [][]uint32{{0, 1, 2}, nil, {5}, {6, 9}}
	i := 0
	nc := nltest.Dial(func([]netlink.Message) ([]netlink.Message, error) {
		defer func() { i++ }()
		if batches[i] == nil {
			return nil, unix.ENOBUFS
		}
		var out []netlink.Message
		for _, s := range batches[i] {
			out = append(out, packetMsg(t, "pd:0123456789abcdef", s))
		}
		return out, nil
	})
	c := &Conn{c: nc, group: 1}
	defer func() { _ = c.Close() }()
	var seqs []uint32
	for range batches {
		pkts, err := c.Receive()
		if errors.Is(err, ErrOverrun) {
			continue
		}
		require.NoError(t, err)
		for _, p := range pkts {
			require.True(t, p.HasSeq)
			assert.Equal(t, "pd:0123456789abcdef", p.Prefix)
			assert.Equal(t, uint16(8080), p.Flow.DstPort)
			seqs = append(seqs, p.Seq)
		}
	}
	assert.Equal(t, []uint32{0, 1, 2, 5, 6, 9}, seqs)
	assert.Equal(t, Stats{Overruns: 1, Lost: 4}, c.Stats(), "3 and 4 lost in the overrun, 7 and 8 later")
}

// TestConn_SequenceWraps: the counter wrapping around is not a loss.
func TestConn_SequenceWraps(t *testing.T) {
	t.Parallel()
	c := &Conn{}
	for _, s := range []uint32{1<<32 - 2, 1<<32 - 1, 0, 2} {
		c.sequence(s)
	}
	assert.Equal(t, uint64(1), c.Stats().Lost)
}
