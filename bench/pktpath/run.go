package pktpath

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/ruleset"
)

// Options sizes one benchmark run.
type Options struct {
	// Pods, Policies and Namespaces size the synthetic cluster.
	Pods, Policies, Namespaces int
	// Seed seeds the synthetic cluster.
	Seed int64
	// Duration is the length of one UDP and of one TCP measurement.
	Duration time.Duration
	// Rounds is how many times each configuration is measured; the rounds
	// interleave the configurations (a, b, c, a, b, c, …).
	Rounds int
	// ClusterPolicies adds configuration (b+cnp): the compiled table with
	// this many Admin and as many Baseline ClusterNetworkPolicies
	// (Scenario.ClusterPolicies); 0 leaves it out.
	ClusterPolicies int
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Configuration is one state of the node's nftables ruleset.
type Configuration struct {
	// ID is "a", "b", "b+cnp", "c" or "ct"; Label says what it is.
	ID, Label string
	// Text is the `nft -f` input loaded into the node ("" for no table).
	Text string
}

// Measurement is one configuration's figures over all rounds.
type Measurement struct {
	Configuration
	UDP []UDPResult
	TCP []TCPResult
	// Load is the longest time `nft -f` took to load Text.
	Load time.Duration
}

// MedianPPS returns the median of the rounds' UDP packets per second.
func (m *Measurement) MedianPPS() float64 { return medianUDP(m.UDP, UDPResult.PPS) }

// MedianUDPPerCPU returns the median of the rounds' UDP packets per second of
// sender CPU time.
func (m *Measurement) MedianUDPPerCPU() float64 { return medianUDP(m.UDP, UDPResult.PerCPU) }

// MedianCPS returns the median of the rounds' TCP connections per second.
func (m *Measurement) MedianCPS() float64 { return medianTCP(m.TCP, TCPResult.CPS) }

// MedianTCPPerCPU returns the median of the rounds' TCP connections per second
// of client CPU time.
func (m *Measurement) MedianTCPPerCPU() float64 { return medianTCP(m.TCP, TCPResult.PerCPU) }

func medianUDP(rs []UDPResult, f func(UDPResult) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	return median(v)
}

func medianTCP(rs []TCPResult, f func(TCPResult) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	return median(v)
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

// Report is the outcome of Run.
type Report struct {
	Options Options
	// Node is the compiled node; NodePods counts the pods (of the synthetic
	// cluster and the benchmark) that run on it.
	Node     string
	NodePods int
	Src, Dst netip.Addr
	// Compiled describes configuration (b).
	Compiled Stats
	// IngressPolicies and EgressPolicies count the policies isolating Dst for
	// ingress and Src for egress; IngressAllowAt and EgressAllowAt are the
	// 1-based positions of the allowing rule in their chains, of
	// IngressRules and EgressRules rules.
	IngressPolicies, EgressPolicies int
	IngressAllowAt, IngressRules    int
	EgressAllowAt, EgressRules      int
	// LinearRules counts the per-peer rules of configuration (c).
	LinearRules int
	// Results holds the configurations in the order they are measured in
	// each round; the first is the baseline (a).
	Results []*Measurement
}

// Run builds the scenario and the topology, measures every configuration
// opts.Rounds times, interleaved, and removes the topology again. It returns
// early, still cleaning up, when ctx is cancelled. A measurement that gets
// nothing through is an error: the benchmark flow must be allowed in every
// configuration.
func Run(ctx context.Context, opts Options) (rep *Report, err error) {
	logw := opts.Log
	if logw == nil {
		logw = io.Discard
	}
	if opts.Rounds < 1 || opts.Duration <= 0 {
		return nil, fmt.Errorf("run: need rounds >= 1 and duration > 0, got %d and %s", opts.Rounds, opts.Duration)
	}
	if err := RemoveLeftovers(); err != nil {
		return nil, fmt.Errorf("remove leftover namespaces: %w", err)
	}

	t0 := time.Now()
	sc, err := NewScenario(opts.Pods, opts.Policies, opts.Namespaces, opts.Seed)
	if err != nil {
		return nil, err
	}
	rs, err := sc.Compile()
	if err != nil {
		return nil, err
	}
	src, dst := sc.Src.IPs[0], sc.Dst.IPs[0]
	lin, err := LinearAllowList(rs, src, dst)
	if err != nil {
		return nil, err
	}
	rep = &Report{Options: opts, Node: sc.Node, Src: src, Dst: dst, Compiled: RulesetStats(rs), LinearRules: lin.Rules}
	for _, p := range sc.Snapshot.Pods {
		if p.NodeName == sc.Node {
			rep.NodePods++
		}
	}
	if err := rep.describeGroups(sc, rs); err != nil {
		return nil, err
	}
	fmt.Fprintf(logw, "scenario built and compiled in %s: %d sets, %d elements, %d chains; linear: %d rules\n",
		time.Since(t0).Round(time.Millisecond), rep.Compiled.Sets+rep.Compiled.Maps, rep.Compiled.Elements, rep.Compiled.Chains, lin.Rules)

	rep.Results = []*Measurement{
		{Configuration: Configuration{ID: "a", Label: "no nftables table"}},
		{Configuration: Configuration{ID: "ct", Label: "conntrack only (ct state established,related accept)", Text: ConntrackOnlyText}},
		{Configuration: Configuration{ID: "b", Label: "compiled policyd table (sets, vmaps)", Text: rs.Text()}},
		{Configuration: Configuration{ID: "c", Label: "linear allow-list, one rule per peer", Text: lin.Text}},
	}
	if opts.ClusterPolicies > 0 {
		crs, err := sc.CompileWithClusterPolicies(opts.ClusterPolicies)
		if err != nil {
			return nil, err
		}
		cnp := &Measurement{Configuration: Configuration{ID: "b+cnp",
			Label: fmt.Sprintf("compiled, plus %d Admin + %d Baseline ClusterNetworkPolicies (%d of each select both pods)", opts.ClusterPolicies, opts.ClusterPolicies, (opts.ClusterPolicies+4)/5),
			Text:  crs.Text()}}
		rep.Results = slices.Insert(rep.Results, 3, cnp)
	}

	topo, err := NewTopology(src, dst)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, topo.Close()) }()

	// Warm up (neighbour entries, caches) without a table, and check that the
	// topology carries the flow at all.
	if u, err := topo.UDP(warmup); err != nil || u.Received == 0 {
		return rep, fmt.Errorf("warm-up: no UDP datagram got through without any table (%d sent): %v", u.Sent, err) //nolint:errorlint // %v, not %w: err may be nil here, which %w prints as %!w(<nil>)
	}
	if c, err := topo.TCP(warmup); err != nil || c.Connected == 0 {
		return rep, fmt.Errorf("warm-up: no TCP connection got through without any table (%d failed): %v", c.Failed, err) //nolint:errorlint // %v, not %w: err may be nil here, which %w prints as %!w(<nil>)
	}

	for round := 1; round <= opts.Rounds; round++ {
		for _, m := range rep.Results {
			if err := ctx.Err(); err != nil {
				return rep, err
			}
			start := time.Now()
			if err := topo.SetRuleset(m.Text); err != nil {
				return rep, fmt.Errorf("round %d, configuration (%s): %w", round, m.ID, err)
			}
			load := time.Since(start)
			m.Load = max(m.Load, load)
			u, err := topo.UDP(opts.Duration)
			if err != nil {
				return rep, fmt.Errorf("round %d, configuration (%s): %w", round, m.ID, err)
			}
			if err := ctx.Err(); err != nil {
				return rep, err
			}
			c, err := topo.TCP(opts.Duration)
			if err != nil {
				return rep, fmt.Errorf("round %d, configuration (%s): %w", round, m.ID, err)
			}
			if u.Received == 0 || c.Connected == 0 {
				return rep, fmt.Errorf("round %d, configuration (%s): the benchmark flow was blocked (%d datagrams received, %d connections)", round, m.ID, u.Received, c.Connected)
			}
			m.UDP, m.TCP = append(m.UDP, u), append(m.TCP, c)
			fmt.Fprintf(logw, "round %d (%s): udp %.0f pkt/s, %.0f per CPU-s (%d sent, %d received, cpu %s), tcp %.0f conn/s, %.0f per CPU-s (%d failed, cpu %s), load %s\n",
				round, m.ID, u.PPS(), u.PerCPU(), u.Sent, u.Received, u.CPU.Round(time.Millisecond), c.CPS(), c.PerCPU(), c.Failed, c.CPU.Round(time.Millisecond), load.Round(time.Millisecond))
		}
	}
	if err := topo.SetRuleset(""); err != nil {
		return rep, err
	}
	return rep, nil
}

// warmup is the length of the unmeasured UDP and TCP runs before the rounds.
const warmup = 200 * time.Millisecond

// ConntrackOnlyText is the "conntrack only" configuration: a table whose one
// rule makes the kernel track connections in the node, as every Kubernetes
// node does anyway (kube-proxy's NAT needs it), and nothing else. It
// separates the cost of connection tracking from the cost of the policy
// lookups.
const ConntrackOnlyText = `table inet pdbench_ct {
	chain postrouting {
		type filter hook postrouting priority 95; policy accept;
		ct state established,related accept
	}
}
`

// describeGroups fills in the policy group facts of the report.
func (rep *Report) describeGroups(sc *Scenario, rs *ruleset.Ruleset) error {
	ix := sc.Snapshot
	count := func(p *cluster.Pod, d cluster.Direction) int {
		n := 0
		for _, pol := range ix.Policies {
			if pol.Namespace == p.Namespace && pol.PodSelector.Matches(p.Labels) && pol.Isolates(d) {
				n++
			}
		}
		return n
	}
	rep.IngressPolicies, rep.EgressPolicies = count(sc.Dst, cluster.Ingress), count(sc.Src, cluster.Egress)
	var err error
	rep.IngressAllowAt, rep.IngressRules, err = allowPosition(rs, cluster.Ingress, rep.Dst, ServerNamespace+"/"+IngressAllowPolicy)
	if err != nil {
		return err
	}
	rep.EgressAllowAt, rep.EgressRules, err = allowPosition(rs, cluster.Egress, rep.Src, ClientNamespace+"/"+EgressAllowPolicy)
	return err
}

// allowPosition returns the 1-based position of the allowing rule of policy
// (rule AllowRuleIndex) in addr's chain for d, and the chain's length.
func allowPosition(rs *ruleset.Ruleset, d cluster.Direction, addr netip.Addr, policy string) (at, of int, err error) {
	c, err := GroupChain(rs, d, addr)
	if err != nil {
		return 0, 0, err
	}
	want := fmt.Sprintf("%s %s[%d]", policy, d, AllowRuleIndex)
	for i, r := range c.Rules {
		if ar, ok := r.(*ruleset.AllowRule); ok && ar.Family != 6 && ar.Comment == want {
			return i + 1, len(c.Rules), nil
		}
	}
	return 0, 0, fmt.Errorf("chain %s of %s has no rule commented %q", c.Name, addr, want)
}

// Markdown renders the report as a markdown table of medians with the
// percentage of configuration (a), the raw rounds, and the input sizes.
func (rep *Report) Markdown() string {
	var b strings.Builder
	o := rep.Options
	fmt.Fprintf(&b, "## Packet path: pod A (%s) -> node -> pod B (%s)\n\n", rep.Src, rep.Dst)
	if len(rep.Results) == 0 || len(rep.Results[0].UDP) == 0 {
		b.WriteString("No measurement completed.\n")
		return b.String()
	}
	base := rep.Results[0]
	pct := func(v, of float64) string {
		if of == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f%%", 100*v/of)
	}
	b.WriteString("| configuration | UDP 64 B pkt/s | % of (a) | per sender CPU-s | % of (a) | TCP new conn/s | % of (a) | per client CPU-s | % of (a) |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, m := range rep.Results {
		fmt.Fprintf(&b, "| (%s) %s |", m.ID, m.Label)
		for _, f := range []func(*Measurement) float64{(*Measurement).MedianPPS, (*Measurement).MedianUDPPerCPU, (*Measurement).MedianCPS, (*Measurement).MedianTCPPerCPU} {
			fmt.Fprintf(&b, " %s | %s |", thousands(f(m)), pct(f(m), f(base)))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "\nMedians of %d interleaved rounds (", len(base.UDP))
	for i, m := range rep.Results {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(m.ID)
	}
	fmt.Fprintf(&b, ", repeated) of %s per figure, on a shared %d-CPU machine.\n", o.Duration, runtime.NumCPU())
	b.WriteString("UDP: one connected socket in pod A writes 64-byte payloads in a tight loop; pod B counts what it receives.\n")
	b.WriteString("Nothing answers, so every datagram stays in conntrack state new and is judged through the whole\n")
	b.WriteString("policy path (egress chain of pod A, then ingress chain of pod B), not only the first one.\n")
	b.WriteString("TCP: connect + close with SO_LINGER 0 in a loop; pod B accepts and closes; only each SYN is judged.\n")
	b.WriteString("Per CPU-s: the same count divided by the CPU time of the sending (connecting) thread, which runs the\n")
	b.WriteString("whole veth/forwarding path in softirq; it is what one idle CPU would reach and is far less disturbed by\n")
	b.WriteString("other work on a shared machine than the wall-clock rate.\n\n")

	b.WriteString("Rounds, pkt/s (per CPU-s) / conn/s (per CPU-s):\n\n| configuration |")
	for i := range base.UDP {
		fmt.Fprintf(&b, " round %d |", i+1)
	}
	b.WriteString(" nft -f load |\n|---|")
	for range base.UDP {
		b.WriteString("---:|")
	}
	b.WriteString("---:|\n")
	for _, m := range rep.Results {
		fmt.Fprintf(&b, "| (%s) |", m.ID)
		for i := range m.UDP {
			fmt.Fprintf(&b, " %s (%s) / %s (%s) |", thousands(m.UDP[i].PPS()), thousands(m.UDP[i].PerCPU()), thousands(m.TCP[i].CPS()), thousands(m.TCP[i].PerCPU()))
		}
		fmt.Fprintf(&b, " %s |\n", m.Load.Round(time.Millisecond))
	}

	st := rep.Compiled
	b.WriteString("\nInputs:\n\n")
	fmt.Fprintf(&b, "- cluster: %d synthetic pods + 2 benchmark pods, %d synthetic policies + 6 benchmark policies, %d namespaces + 2 (seed %d)\n",
		o.Pods, o.Policies, o.Namespaces, o.Seed)
	fmt.Fprintf(&b, "- compiled node %s: %d pods on it; pod A and pod B both run there\n", rep.Node, rep.NodePods)
	fmt.Fprintf(&b, "- (b): %d sets + %d verdict maps holding %d elements (%d dispatch entries), %d policy-group chains, %d rules in all\n",
		st.Sets, st.Maps, st.Elements, st.DispatchEntries, st.Chains, st.Rules)
	fmt.Fprintf(&b, "- pod B ingress: %d policies; the allowing rule is rule %d of %d in its chain\n", rep.IngressPolicies, rep.IngressAllowAt, rep.IngressRules)
	fmt.Fprintf(&b, "- pod A egress: %d policies; the allowing rule is rule %d of %d in its chain\n", rep.EgressPolicies, rep.EgressAllowAt, rep.EgressRules)
	fmt.Fprintf(&b, "- (c): %d per-peer rules (pod A's last) between a ct established,related accept and a drop for pod B,\n  in table inet %s, postrouting priority 95; it carries pod B's ingress allow-list only\n", rep.LinearRules, LinearTable)
	return b.String()
}

func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
