package pktpath

import (
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// newTestTopology builds a topology for the benchmark pods' addresses and
// removes it when the test ends.
func newTestTopology(t *testing.T, src, dst netip.Addr) *Topology {
	t.Helper()
	require.NoError(t, RemoveLeftovers())
	topo, err := NewTopology(src, dst)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, topo.Close()) })
	return topo
}

// freshTable is ConntrackOnlyText with two counters in front: "fresh"
// counts the packets that create a conntrack entry (its first: the entry is
// not confirmed yet at this hook), "seen" those that found one.
const freshTable = `table inet pdbench_fresh {
	counter fresh {}
	counter seen {}
	chain postrouting {
		type filter hook postrouting priority 95; policy accept;
		ct status ! confirmed counter name "fresh"
		ct status confirmed counter name "seen"
		ct state established,related accept
	}
}
`

// freshCounts reads the counters of freshTable in topo's node.
func freshCounts(t *testing.T, topo *Topology) (fresh, seen uint64) {
	t.Helper()
	read := func(name string) uint64 {
		out, err := exec.Command("ip", "netns", "exec", topo.Node, "nft", "list", "counter", "inet", "pdbench_fresh", name).CombinedOutput()
		require.NoError(t, err, "%s", out)
		m := regexp.MustCompile(`packets (\d+)`).FindSubmatch(out)
		require.NotNil(t, m, "no packet count in %s", out)
		n, err := strconv.ParseUint(string(m[1]), 10, 64)
		require.NoError(t, err)
		return n
	}
	return read("fresh"), read("seen")
}

// TestUDPFlows_EveryDatagramIsANewFlow: each datagram UDPFlows gets through
// creates a conntrack entry of its own in the node (a distinct source port),
// also in the passes after the first, which reuse the ports once the table
// has been flushed; the table never holds more than one pass of entries.
// The one-flow stream, for contrast, creates one entry that every later
// datagram finds.
func TestUDPFlows_EveryDatagramIsANewFlow(t *testing.T) {
	skipUnlessRoot(t)
	sc, _ := newTestScenario(t)
	topo := newTestTopology(t, sc.Src.IPs[0], sc.Dst.IPs[0])
	const sockets = 500
	topo.FlowSockets = sockets

	require.NoError(t, topo.SetRuleset(freshTable))
	u, err := topo.UDPFlows(testDuration)
	require.NoError(t, err)
	fresh, seen := freshCounts(t, topo)
	t.Logf("udp flows: %d sent, %d received; %d datagrams created a conntrack entry, %d found one", u.Sent, u.Received, fresh, seen)
	require.Greater(t, u.Received, uint64(3*sockets), "too few datagrams for several passes over the sockets")
	assert.Equal(t, int64(u.Sent), int64(fresh), "datagrams that created a conntrack entry")
	assert.Zero(t, seen, "datagrams that found an entry of an earlier one")
	entries, limit, err := topo.ConntrackEntries()
	require.NoError(t, err)
	assert.LessOrEqual(t, entries, sockets, "the node's table holds more entries than one pass makes")
	assert.Greater(t, limit, sockets)

	require.NoError(t, topo.SetRuleset(freshTable))
	s, err := topo.UDP(testDuration)
	require.NoError(t, err)
	fresh, seen = freshCounts(t, topo)
	t.Logf("one-flow udp: %d sent, %d received; %d created an entry, %d found one", s.Sent, s.Received, fresh, seen)
	require.Greater(t, s.Received, uint64(1000))
	assert.Equal(t, int64(1), int64(fresh), "the one-flow stream created more than one entry")
	assert.Equal(t, int64(s.Sent-1), int64(seen), "datagrams that found the stream's entry")
}

// TestTCPStream_OneConnectionEstablished: the stream moves data over one
// connection, whose only packet without an entry is the first SYN, so no
// configuration judges anything after it.
func TestTCPStream_OneConnectionEstablished(t *testing.T) {
	skipUnlessRoot(t)
	sc, _ := newTestScenario(t)
	topo := newTestTopology(t, sc.Src.IPs[0], sc.Dst.IPs[0])
	require.NoError(t, topo.SetRuleset(freshTable))
	r, err := topo.TCPStream(testDuration)
	require.NoError(t, err)
	fresh, seen := freshCounts(t, topo)
	t.Logf("tcp stream: %d bytes written, %d read, %.0f MB/s per CPU-s; %d packets created an entry, %d found one", r.Written, r.Received, r.PerCPU()/1e6, fresh, seen)
	assert.Greater(t, r.Received, uint64(10<<20), "less than 10 MiB in %s", testDuration)
	assert.Equal(t, int64(r.Written), int64(r.Received))
	assert.Equal(t, int64(1), int64(fresh), "packets that created a conntrack entry")
	assert.Greater(t, seen, uint64(100))
}
