package pktpath

import (
	"fmt"
	"math"
	"runtime"
	"strings"
	"time"
)

// Ratios are the comparisons the report makes for every kind of traffic, as
// [numerator, denominator] configuration IDs.
var Ratios = [][2]string{
	{"b", "ct"}, {"b", "f"}, {"b", "a"}, {"f", "ct"}, {"b+cnp", "ct"}, {"b+log", "b"}, {"b+log-allowed", "b"}, {"c", "ct"},
}

// describe explains a configuration in a line or two.
func (rep *Report) describe(m *Measurement) string {
	switch m.ID {
	case "a":
		return "no nftables table: the physical limit of this path; the node tracks no connection."
	case "ct":
		return "one rule, `ct state established,related accept`: the conntrack every node running kube-proxy pays anyway. The baseline."
	case "f":
		return fmt.Sprintf("the floor, written by hand: (ct), then `ip saddr vmap` sends pod A to a chain with one `ip daddr . meta l4proto . th dport` lookup in a set holding pod B on TCP and UDP %d, and `ip daddr vmap` sends pod B to the same lookup of pod A; anything else is dropped. Every set and map has a size, so the kernel gives it its fixed-size hash, the cheaper lookup (as in (b)). The least a table that judges this packet can do.", Port)
	case "b":
		return fmt.Sprintf("policyd's table as compiled for the node (%d sets, %d verdict maps).", rep.Compiled.Sets, rep.Compiled.Maps)
	case "b+cnp":
		return fmt.Sprintf("as (b), compiled with %d Admin and %d Baseline ClusterNetworkPolicies added; the packet walks the Admin rules of those selecting its pods before its NetworkPolicies admit it.", rep.Options.ClusterPolicies, rep.Options.ClusterPolicies)
	case "b+log":
		return fmt.Sprintf("as (b), compiled with drop logging (nflog group %d, limit %d/s burst %d): the allowed packet's path is (b)'s, so this is what having logging on costs traffic that is allowed.", LogDrops.Group, LogDrops.Rate, LogDrops.Burst)
	case "b+log-allowed":
		return "as (b+log), and every allowed new connection also logged: each judged packet goes through a log chain (counter, the shared named limit, log to a group nothing reads; the kernel does the work all the same)."
	case "c":
		return fmt.Sprintf("pod B's ingress allow-list as one rule per peer address (%d rules, pod A's last), the iptables style the sets replace.", rep.LinearRules)
	}
	return m.Label + "; only new TCP connections and UDP new flows are measured, for the curve."
}

// Markdown renders the report: what each configuration and traffic is, the
// medians per sender CPU-s, the ratios, the nft cost over (ct), the curve,
// wall-clock medians, every round, and the inputs.
func (rep *Report) Markdown() string {
	var b strings.Builder
	o := rep.Options
	fmt.Fprintf(&b, "### Packet path: pod A (%s) -> node -> pod B (%s)\n\n", rep.Src, rep.Dst)
	ct := rep.Result("ct")
	if ct == nil || len(ct.Samples[TCPConnect]) == 0 {
		b.WriteString("No measurement completed.\n")
		return b.String()
	}
	rounds := len(ct.Samples[TCPConnect])
	plural := "s"
	if rounds == 1 {
		plural = ""
	}
	inst := "a topology of its own"
	if o.Instances > 1 {
		inst = fmt.Sprintf("%d topologies of its own, round r measuring instance r mod %d", o.Instances, o.Instances)
	}
	fmt.Fprintf(&b, "One run: every configuration in %s (pod A, node, pod B namespaces), its table loaded once; %d interleaved round%s (", inst, rounds, plural)
	for i, m := range rep.Results {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(m.ID)
	}
	fmt.Fprintf(&b, ", repeated) of %s per figure", o.Duration)
	if len(rep.Curve) > 0 {
		fmt.Fprintf(&b, "; the curve's points in %s, new TCP connections and UDP new flows only", roundsText(o.CurveRounds))
	}
	fmt.Fprintf(&b, "; medians, on a %d-CPU machine. The run took %s, %s of it building and compiling the scenarios.\n\n",
		runtime.NumCPU(), rep.Elapsed.Round(time.Second), rep.Setup.Round(time.Second))

	b.WriteString("Configurations (the node's whole nftables state; every table hooks postrouting at priority 95, which each forwarded packet passes):\n\n")
	for _, m := range rep.Results {
		fmt.Fprintf(&b, "- (%s) %s\n", m.ID, rep.describe(m))
	}
	b.WriteString("\nTraffic, pod A to pod B port " + fmt.Sprint(Port) + ":\n\n")
	for _, k := range AllTraffic {
		fmt.Fprintf(&b, "- %s: %s\n", k.Title(), k.Description())
	}
	b.WriteString("\nPer sender CPU-s: the count divided by the CPU time of the sending (connecting) thread, which runs the whole\n")
	b.WriteString("veth/forwarding path in softirq; it is what one idle CPU would reach, and far less disturbed by other work on a\n")
	b.WriteString("shared machine than the wall-clock rate.\n\n")

	main := rep.mainResults()
	b.WriteString("#### Per sender CPU-s, medians\n\n| configuration | rules on the path |")
	for _, k := range AllTraffic {
		fmt.Fprintf(&b, " %s (%s) | %% of (ct) |", k.Title(), k.Unit())
	}
	b.WriteString("\n|---|---:|" + strings.Repeat("---:|---:|", len(AllTraffic)) + "\n")
	for _, m := range main {
		path := "-"
		if m.PathRules > 0 {
			path = fmt.Sprint(m.PathRules)
		}
		fmt.Fprintf(&b, "| (%s) %s | %s |", m.ID, m.Label, path)
		for _, k := range AllTraffic {
			fmt.Fprintf(&b, " %s | %s |", thousands(k.display(m.MedianPerCPU(k))), pct(m.MedianPerCPU(k), ct.MedianPerCPU(k)))
		}
		b.WriteString("\n")
	}

	b.WriteString("\n#### Ratios, per sender CPU-s medians\n\n| ratio |")
	for _, k := range AllTraffic {
		fmt.Fprintf(&b, " %s |", k.Title())
	}
	b.WriteString("\n|---|" + strings.Repeat("---:|", len(AllTraffic)) + "\n")
	for _, r := range Ratios {
		num, den := rep.Result(r[0]), rep.Result(r[1])
		if num == nil || den == nil {
			continue
		}
		fmt.Fprintf(&b, "| (%s)/(%s) |", r[0], r[1])
		for _, k := range AllTraffic {
			fmt.Fprintf(&b, " %s |", pct(num.MedianPerCPU(k), den.MedianPerCPU(k)))
		}
		b.WriteString("\n")
	}

	b.WriteString("\nIssue 16 asks (b)/(ct) ≥ 95% for new TCP connections and UDP new flows, with and without ClusterNetworkPolicies\n")
	b.WriteString("((b+cnp)/(ct)); the TCP stream must be 100% in every configuration but (a), within noise.\n")
	b.WriteString("\n#### nft cost over (ct), ns\n\n")
	b.WriteString("Per judged packet (for the stream, which has none after its SYN, per MiB moved): the median over the rounds of\n")
	b.WriteString("1/rate − 1/rate(ct) in ns, per sender CPU-s rates, each round against the same round's (ct). Compare these across\n")
	b.WriteString("runs and changes; negative means cheaper than (ct), which only (a) can honestly be.\n\n| configuration |")
	for _, k := range AllTraffic {
		fmt.Fprintf(&b, " %s (per %s) |", k.Title(), k.CostUnit())
	}
	b.WriteString("\n|---|" + strings.Repeat("---:|", len(AllTraffic)) + "\n")
	for _, m := range main {
		if m.ID == "ct" {
			continue
		}
		fmt.Fprintf(&b, "| (%s) |", m.ID)
		for _, k := range AllTraffic {
			fmt.Fprintf(&b, " %s |", nsText(m.CostOver(ct, k, 0)))
		}
		b.WriteString("\n")
	}

	rep.profileMarkdown(&b, ct)
	rep.curveMarkdown(&b, ct)

	b.WriteString("\n#### Wall-clock medians\n\n| configuration |")
	for _, k := range AllTraffic {
		fmt.Fprintf(&b, " %s (%s) |", k.Title(), k.Unit())
	}
	b.WriteString("\n|---|" + strings.Repeat("---:|", len(AllTraffic)) + "\n")
	for _, m := range rep.Results {
		fmt.Fprintf(&b, "| (%s) |", m.ID)
		for _, k := range AllTraffic {
			if len(m.Samples[k]) == 0 {
				b.WriteString(" - |")
				continue
			}
			fmt.Fprintf(&b, " %s |", thousands(k.display(m.Median(k, Sample.Rate))))
		}
		b.WriteString("\n")
	}

	b.WriteString("\n#### Every round, per sender CPU-s (lost: failed connects or datagrams not received)\n\n| configuration | traffic |")
	for i := range rounds {
		fmt.Fprintf(&b, " round %d |", i+1)
	}
	b.WriteString(" nft -f load |\n|---|---|" + strings.Repeat("---:|", rounds) + "---:|\n")
	for _, m := range rep.Results {
		for j, k := range m.Traffic {
			fmt.Fprintf(&b, "| (%s) | %s |", m.ID, k)
			for i := range rounds {
				s := m.Samples[k]
				switch {
				case i >= len(s):
					b.WriteString(" - |")
				case s[i].Lost > 0:
					fmt.Fprintf(&b, " %s (%d lost) |", thousands(k.display(s[i].PerCPU())), s[i].Lost)
				default:
					fmt.Fprintf(&b, " %s |", thousands(k.display(s[i].PerCPU())))
				}
			}
			if j == 0 {
				fmt.Fprintf(&b, " %s |\n", m.Load.Round(time.Millisecond))
			} else {
				b.WriteString(" |\n")
			}
		}
	}

	rep.inputsMarkdown(&b)
	return b.String()
}

// mainResults returns the measurements that are not curve points.
func (rep *Report) mainResults() []*Measurement {
	var out []*Measurement
	for _, m := range rep.Results {
		if !strings.HasPrefix(m.ID, "b@") {
			out = append(out, m)
		}
	}
	return out
}

// curveMarkdown writes the curve table and its max/min lines.
func (rep *Report) curveMarkdown(b *strings.Builder, ct *Measurement) {
	if len(rep.Curve) == 0 {
		return
	}
	o := rep.Options
	fmt.Fprintf(b, "\n#### Curve: (b) at other cluster sizes\n\n")
	fmt.Fprintf(b, "(b) compiled for each size, measured in %s beside the rest; the nft cost is over the same rounds'\n", roundsText(o.CurveRounds))
	b.WriteString("(ct), so the points compare with each other (the main scenario's point is (b) over those rounds). The benchmark pods,\n")
	b.WriteString("their policies and so the rules on the path are the same at every size; only the sets and maps grow.\n\n")
	b.WriteString("| curve | point | pods | policies | pods on node | set+map elements | chains | rules on the path |")
	for _, k := range CurveTraffic {
		fmt.Fprintf(b, " %s per CPU-s | ns over (ct) |", k.Title())
	}
	b.WriteString("\n|---|---|---:|---:|---:|---:|---:|---:|" + strings.Repeat("---:|---:|", len(CurveTraffic)) + "\n")
	for _, p := range rep.Curve {
		m := rep.Result(p.ID)
		if m == nil {
			continue
		}
		fmt.Fprintf(b, "| %s | (%s) | %s | %s | %d | %s | %d | %d |", p.Curve, p.ID, thousands(float64(p.Pods)), thousands(float64(p.Policies)), p.NodePods, thousands(float64(p.Compiled.Elements)), p.Compiled.Chains, m.PathRules)
		for _, k := range CurveTraffic {
			fmt.Fprintf(b, " %s | %s |", thousands(medianFirst(m, k, o.CurveRounds)), nsText(m.CostOver(ct, k, o.CurveRounds)))
		}
		b.WriteString("\n")
	}
	b.WriteString("\nmax/min of the nft cost within each curve (1.00 is flat; the acceptance asks ≤ 1.10):\n\n")
	rep.curveSpreads(b, CurveTraffic, func(m *Measurement, k Traffic) (float64, bool) {
		return m.CostOver(ct, k, o.CurveRounds)
	}, func(ns float64) string { return nsText(ns, true) })
	b.WriteString("\nmax/min of the whole per-packet cost (1 / per sender CPU-s rate, medians of the same rounds):\n\n")
	rep.curveSpreads(b, CurveTraffic, func(m *Measurement, k Traffic) (float64, bool) {
		r := medianFirst(m, k, o.CurveRounds)
		return 1e9 / r, r > 0
	}, wholeNs)
	if o.Profile == nil {
		return
	}
	b.WriteString("\nmax/min of the time in nftables per judged packet, by kernel profile (the section above):\n\n")
	rep.curveSpreads(b, ProfiledTraffic, func(m *Measurement, k Traffic) (float64, bool) {
		ps := m.Profiles[k]
		ns, _, _ := NftNs(ps, o.Profile.Hz)
		return ns, len(ps) > 0
	}, wholeNs)
}

// wholeNs writes a figure in whole nanoseconds.
func wholeNs(ns float64) string { return fmt.Sprintf("%.0f", ns) }

// curveSpreads writes, for each curve of two points or more, the max/min
// over its points of value (a point without one is left out) for each kind
// of traffic, with the range as text writes it.
func (rep *Report) curveSpreads(b *strings.Builder, traffic []Traffic, value func(*Measurement, Traffic) (float64, bool), text func(float64) string) {
	for _, curve := range []string{"policies", "pods"} {
		ids := rep.curveIDs(curve)
		if len(ids) < 2 {
			continue
		}
		var parts []string
		for _, k := range traffic {
			lo, hi := math.Inf(1), math.Inf(-1)
			for _, id := range ids {
				if v, ok := value(rep.Result(id), k); ok {
					lo, hi = min(lo, v), max(hi, v)
				}
			}
			parts = append(parts, fmt.Sprintf("%s %s (%s to %s ns)", k.Title(), maxMin(hi, lo), text(lo), text(hi)))
		}
		fmt.Fprintf(b, "- %s curve (%s): %s\n", curve, strings.Join(ids, ", "), strings.Join(parts, "; "))
	}
}

// inputsMarkdown writes what the benchmark ran on.
func (rep *Report) inputsMarkdown(b *strings.Builder) {
	o := rep.Options
	st := rep.Compiled
	b.WriteString("\n#### Inputs\n\n")
	fmt.Fprintf(b, "- cluster: %d synthetic pods + 2 benchmark pods, %d synthetic NetworkPolicies + 6 benchmark ones, %d namespaces + 2 (seed %d)\n",
		o.Pods, o.Policies, o.Namespaces, o.Seed)
	fmt.Fprintf(b, "- compiled node %s: %d pods on it; pod A and pod B both run there\n", rep.Node, rep.NodePods)
	fmt.Fprintf(b, "- (b): %d sets + %d verdict maps holding %d elements (%d dispatch entries), %d policy-group chains, %d rules in all\n",
		st.Sets, st.Maps, st.Elements, st.DispatchEntries, st.Chains, st.Rules)
	sel := func(name string, s Selection) string {
		out := fmt.Sprintf("%d NetworkPolicies isolate %s", s.NetworkPolicies, name)
		if o.ClusterPolicies > 0 {
			out += fmt.Sprintf("; in (b+cnp) %d Admin and %d Baseline ClusterNetworkPolicies select it too (the Baseline tier is never reached: NetworkPolicies isolate the pod)", s.Admin, s.Baseline)
		}
		return out
	}
	where := func(via string) string {
		if via == "" {
			return "in its chain"
		}
		return "in " + via
	}
	fmt.Fprintf(b, "- pod A, egress: %s; the allowing rule is rule %d of %d %s\n", sel("it for egress", rep.SrcSelection), rep.EgressAllowAt, rep.EgressRules, where(rep.EgressVia))
	fmt.Fprintf(b, "- pod B, ingress: %s; the allowing rule is rule %d of %d %s\n", sel("it for ingress", rep.DstSelection), rep.IngressAllowAt, rep.IngressRules, where(rep.IngressVia))
	b.WriteString("- rules on the path: every rule a judged packet of the flow is checked against in the node, UDP and TCP alike: for\n")
	b.WriteString("  the compiled tables as the tracer (policy/trace) walks them (base chain, pod A's egress chain and the chain its port dispatch\n  sends the flow to, the same for pod B's ingress,\n")
	fmt.Fprintf(b, "  log chains); (ct) its one rule; (f) %d by construction; (c) the conntrack rule and %d per-peer rules, pod A's last\n", FloorRules, rep.LinearRules)
	fmt.Fprintf(b, "- (c): in table inet %s, postrouting priority 95; it carries pod B's ingress allow-list only\n", LinearTable)
	flows := o.FlowSockets
	if flows == 0 {
		flows = DefaultFlowSockets
	}
	fmt.Fprintf(b, "- UDP new flows: %d sockets; conntrack in the node: flushed before every measurement and pass, at most %d entries\n  after a measurement (nf_conntrack_max %d)\n", flows, rep.ConntrackPeak, rep.ConntrackMax)
}

// medianFirst returns the median per-CPU-s rate of k over the first rounds
// rounds of m.
func medianFirst(m *Measurement, k Traffic, rounds int) float64 {
	s := m.Samples[k]
	if rounds > 0 && len(s) > rounds {
		s = s[:rounds]
	}
	v := make([]float64, len(s))
	for i, x := range s {
		v[i] = x.PerCPU()
	}
	return median(v)
}

// roundsText names the first n rounds.
func roundsText(n int) string {
	if n == 1 {
		return "round 1"
	}
	return fmt.Sprintf("rounds 1 to %d", n)
}

func pct(v, of float64) string {
	if of == 0 || v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*v/of)
}

func nsText(ns float64, ok bool) string {
	if !ok || math.IsInf(ns, 0) {
		return "-"
	}
	return fmt.Sprintf("%.0f", ns)
}

// maxMin returns hi/lo, or a note when the ratio means nothing (a cost at or
// below zero: the table is lost in the noise of (ct)).
func maxMin(hi, lo float64) string {
	if math.IsInf(hi, 0) || math.IsInf(lo, 0) {
		return "-"
	}
	if lo <= 0 {
		return "n/a (a cost ≤ 0 ns)"
	}
	return fmt.Sprintf("%.2f", hi/lo)
}

func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// profileMarkdown writes the kernel profile's section, if one was taken.
func (rep *Report) profileMarkdown(b *strings.Builder, ct *Measurement) {
	o := rep.Options
	if o.Profile == nil || len(ct.Profiles) == 0 {
		return
	}
	fmt.Fprintf(b, "\n#### Time in nftables per judged packet, by kernel profile\n\n")
	fmt.Fprintf(b, "After the rounds, %s of %s per configuration and traffic, interleaved, with the sending thread sampled by\n", roundsText(o.ProfileRounds), o.ProfileDuration)
	fmt.Fprintf(b, "`perf record -e cpu-clock -F %d -g -t <thread>`: a sample is in nftables when `%s` is on its stack (rule\n", o.Profile.Hz, NftSymbol)
	b.WriteString("evaluation, set and map lookups, jumps, logging); ns = samples in nftables / frequency / datagrams (or connections: a TCP connection is a SYN judged plus its established packets).\n")
	b.WriteString("Unlike the throughput ratios this does not move with the rest of the path, so it is the narrow figure of what a\n")
	b.WriteString("table costs. \"% of (ct) if only nftables differs\" is P / (P + Δ), with P the sending thread's CPU per packet in (ct)\n")
	b.WriteString("(1 / its median per sender CPU-s rate of the rounds above: sampling slows the thread) and Δ the nftables time over (ct)'s: what the throughput ratio would be without noise.\n\n")
	b.WriteString("| configuration | traffic | samples | in nftables | ns in nftables per datagram or TCP connection (min–max of a run) | Δ over (ct), ns | CPU per packet while profiled, ns | % of (ct) if only nftables differs |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|\n")
	for _, k := range ProfiledTraffic {
		base, _, _ := NftNs(ct.Profiles[k], o.Profile.Hz)
		// P from the rounds, not the profiled runs: sampling slows the
		// thread, which would make P larger and the ratio kinder.
		p := 1e9 / ct.MedianPerCPU(k)
		for _, m := range rep.Results {
			ps := m.Profiles[k]
			if len(ps) == 0 {
				continue
			}
			samples, nft := 0, 0
			for _, s := range ps {
				samples += s.Samples
				nft += s.Nft
			}
			ns, lo, hi := NftNs(ps, o.Profile.Hz)
			fmt.Fprintf(b, "| (%s) | %s | %s | %s | %.0f (%.0f–%.0f) | %.0f | %.0f | %s |\n", m.ID, k.Title(), thousands(float64(samples)), thousands(float64(nft)),
				ns, lo, hi, ns-base, CPUNs(ps), pct(p, p+ns-base))
		}
	}
}
