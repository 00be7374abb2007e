package pktpath

import (
	"fmt"
	"slices"
	"time"
)

// Traffic is one kind of benchmark traffic, a closed set.
type Traffic int

const (
	// TrafficInvalid is the zero value, no traffic.
	TrafficInvalid Traffic = iota
	// TCPConnect opens new TCP connections one after another (Topology.TCP):
	// one judged packet, the SYN, per connection.
	TCPConnect
	// UDPFlows sends 64-byte datagrams each from a source port of its own
	// (Topology.UDPFlows): one new conntrack entry and one judged packet per
	// datagram.
	UDPFlows
	// UDPStream sends 64-byte datagrams of one unanswered flow (Topology.UDP):
	// one conntrack entry, but every datagram stays in state new and is
	// judged.
	UDPStream
	// TCPBulk writes over one established connection (Topology.TCPStream):
	// nothing is judged after its SYN.
	TCPBulk
)

// AllTraffic lists every kind of traffic in the order it is measured and
// reported.
var AllTraffic = []Traffic{TCPConnect, UDPFlows, UDPStream, TCPBulk}

// String returns the traffic's short name.
func (k Traffic) String() string {
	switch k {
	case TCPConnect:
		return "tcp-conn"
	case UDPFlows:
		return "udp-flows"
	case UDPStream:
		return "udp-stream"
	case TCPBulk:
		return "tcp-stream"
	}
	return "invalid"
}

// Title returns the traffic's name in the report's tables.
func (k Traffic) Title() string {
	switch k {
	case TCPConnect:
		return "new TCP conn"
	case UDPFlows:
		return "UDP, new flow each"
	case UDPStream:
		return "UDP, one flow"
	case TCPBulk:
		return "TCP stream"
	}
	return "invalid"
}

// Unit returns the unit of the traffic's rates as the report prints them.
func (k Traffic) Unit() string {
	switch k {
	case TCPConnect:
		return "conn/s"
	case UDPFlows, UDPStream:
		return "pkt/s"
	case TCPBulk:
		return "MB/s"
	}
	return ""
}

// display scales a rate of k (per second of what Sample counts) to Unit.
func (k Traffic) display(rate float64) float64 {
	if k == TCPBulk {
		return rate / 1e6
	}
	return rate
}

// CostUnit names what the nft cost figure of k is per: a judged packet, or
// for the stream, which has none, a MiB moved.
func (k Traffic) CostUnit() string {
	if k == TCPBulk {
		return "MiB"
	}
	return "judged packet"
}

// costPer is how many of what Sample counts make one CostUnit.
func (k Traffic) costPer() float64 {
	if k == TCPBulk {
		return 1 << 20
	}
	return 1
}

// Description says in a line or two what the traffic is and what in it is
// judged.
func (k Traffic) Description() string {
	switch k {
	case TCPConnect:
		return "connect + close with SO_LINGER 0 in a loop, pod B accepts and closes; only each SYN is judged, so a connection is one judged packet."
	case UDPFlows:
		return fmt.Sprintf("one 64-byte datagram from each of a pool of connected sockets bound to consecutive source ports (from %d), pass after pass, the node's conntrack table flushed before each pass (not timed): every datagram creates a conntrack entry and is judged as a new flow.", FlowPortBase)
	case UDPStream:
		return "one connected socket writes 64-byte datagrams in a tight loop; nothing answers, so all stay in conntrack state new in one entry, and every datagram is judged."
	case TCPBulk:
		return fmt.Sprintf("one connection, %d KiB writes for the whole measurement; after the SYN every packet is established and accepted by the first rule, so it must equal (ct).", streamChunk>>10)
	}
	return ""
}

// Sample is one measurement of one kind of traffic.
type Sample struct {
	// Count is what got through: connections, datagrams received, bytes read.
	Count uint64
	// Lost is what did not: failed connects, datagrams sent but not received.
	Lost uint64
	// Elapsed is how long the sender sent; CPU the CPU time its thread used
	// meanwhile, the softirq work of the whole path included.
	Elapsed, CPU time.Duration
}

// Rate returns Count per second.
func (s Sample) Rate() float64 { return perSecond(s.Count, s.Elapsed) }

// PerCPU returns Count per second of sender CPU time.
func (s Sample) PerCPU() float64 { return perSecond(s.Count, s.CPU) }

// Measure runs one measurement of k for d.
func (t *Topology) Measure(k Traffic, d time.Duration) (Sample, error) {
	switch k {
	case TCPConnect:
		r, err := t.TCP(d)
		return Sample{Count: r.Connected, Lost: r.Failed, Elapsed: r.Elapsed, CPU: r.CPU}, err
	case UDPFlows, UDPStream:
		f := t.UDP
		if k == UDPFlows {
			f = t.UDPFlows
		}
		r, err := f(d)
		return Sample{Count: r.Received, Lost: r.Sent - r.Received, Elapsed: r.Elapsed, CPU: r.CPU}, err
	case TCPBulk:
		r, err := t.TCPStream(d)
		return Sample{Count: r.Received, Elapsed: r.Elapsed, CPU: r.CPU}, err
	}
	return Sample{}, fmt.Errorf("measure: invalid traffic %d", int(k))
}

// Configuration is one state of the node's nftables ruleset and what is
// measured in it.
type Configuration struct {
	// ID is "a", "ct", "f", "b", "b+cnp", "b+log", "b+log-allowed", "c", or
	// "b@<pods>/<policies>" for a point of the curve; Label says what it is.
	ID, Label string
	// Text is the `nft -f` input loaded into the node ("" for no table).
	Text string
	// Traffic lists the kinds of traffic measured in it.
	Traffic []Traffic
	// Rounds, when not 0, measures it in the first Rounds rounds only.
	Rounds int
	// PathRules counts the rules a judged packet of the benchmark flow
	// meets in the node (UDP; TCP is the same in every configuration here),
	// -1 when unknown.
	PathRules int
}

// Measurement is one configuration's figures over all rounds.
type Measurement struct {
	Configuration
	// Samples holds, per kind of traffic, one sample per round measured,
	// round 1 first.
	Samples map[Traffic][]Sample
	// Profiles holds the profiled measurements (Options.Profile), by
	// traffic.
	Profiles map[Traffic][]ProfileSample
	// Load is the time `nft -f` took to load Text into its topology.
	Load time.Duration
}

// Median returns the median of f over the samples of k (0 when none).
func (m *Measurement) Median(k Traffic, f func(Sample) float64) float64 {
	s := m.Samples[k]
	v := make([]float64, len(s))
	for i, x := range s {
		v[i] = f(x)
	}
	return median(v)
}

// MedianPerCPU returns the median per-CPU-s rate of k.
func (m *Measurement) MedianPerCPU(k Traffic) float64 { return m.Median(k, Sample.PerCPU) }

// CostOver returns the nft cost of one CostUnit of k in m over base, in ns:
// the median, over the first rounds rounds both measured (0: all), of each
// round's 1/rate(m) − 1/rate(base), with per-CPU-s rates. Pairing each round
// with the same round's base keeps drift between rounds out of the figure.
// ok is false when no round has both.
func (m *Measurement) CostOver(base *Measurement, k Traffic, rounds int) (ns float64, ok bool) {
	a, b := m.Samples[k], base.Samples[k]
	n := min(len(a), len(b))
	if rounds > 0 {
		n = min(n, rounds)
	}
	var d []float64
	for i := range n {
		ra, rb := a[i].PerCPU(), b[i].PerCPU()
		if ra == 0 || rb == 0 {
			continue
		}
		d = append(d, 1e9*k.costPer()*(1/ra-1/rb))
	}
	if len(d) == 0 {
		return 0, false
	}
	return median(d), true
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
