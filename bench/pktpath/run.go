package pktpath

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"time"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/policy/trace"
)

// Options sizes one benchmark run.
type Options struct {
	// Pods, Policies and Namespaces size the synthetic cluster.
	Pods, Policies, Namespaces int
	// Seed seeds the synthetic cluster.
	Seed int64
	// Duration is the length of one measurement of one kind of traffic.
	Duration time.Duration
	// Rounds is how many times each configuration is measured; the rounds
	// interleave the configurations (a, ct, f, b, …, a, ct, f, b, …).
	Rounds int
	// ClusterPolicies adds configuration (b+cnp): the compiled table with
	// this many Admin and as many Baseline ClusterNetworkPolicies
	// (Scenario.ClusterPolicies); 0 leaves it out.
	ClusterPolicies int
	// CurvePolicies and CurvePods are the curve: configuration (b) compiled
	// for Pods pods and each of CurvePolicies policies, and for each of
	// CurvePods pods and Policies policies (a point equal to the main
	// scenario is (b) itself). Both empty leave the curve out.
	CurvePolicies, CurvePods []int
	// CurveRounds is how many rounds (the first ones, at most Rounds) the
	// curve is measured in; only CurveTraffic is measured for it.
	CurveRounds int
	// Instances is how many topologies each configuration's table is
	// loaded into (at least 1); round r measures instance r mod
	// Instances.
	Instances int
	// Profile, when not nil, profiles the sending thread after the
	// rounds: ProfileRounds interleaved rounds of ProfileDuration per
	// configuration of ProfiledIDs and traffic of ProfiledTraffic.
	Profile         *Profiler
	ProfileRounds   int
	ProfileDuration time.Duration
	// FlowSockets is Topology.FlowSockets (0: DefaultFlowSockets).
	FlowSockets int
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// CurveTraffic is what the curve measures: the two kinds of traffic that
// are judged as new flows, where the table's cost shows.
var CurveTraffic = []Traffic{TCPConnect, UDPFlows}

// DefaultNamespaces is the number of namespaces the synthetic cluster gets
// for pods pods unless told otherwise: one per 50 pods, at least 2.
func DefaultNamespaces(pods int) int { return max(2, pods/50) }

// The drop-logging options of (b+log) and (b+log-allowed): the agent's
// defaults, a group no one reads (the kernel still does the work of
// counting, rate-limiting and handing packets to nfnetlink_log, which is
// what is measured).
var (
	LogDrops   = compile.LogOptions{Drops: true, Group: 100, Rate: 100, Burst: 200}
	LogAllowed = compile.LogOptions{Drops: true, Allowed: true, Group: 100, Rate: 100, Burst: 200}
)

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
	// IngressRules and EgressRules rules; IngressVia and EgressVia name that
	// chain when it is the one the group chain's port dispatch sends the
	// benchmark flow to ("" when the group chain itself holds the rule).
	IngressPolicies, EgressPolicies int
	IngressAllowAt, IngressRules    int
	EgressAllowAt, EgressRules      int
	IngressVia, EgressVia           string
	// SrcSelection and DstSelection count the policies of each kind that
	// select pod A and pod B in (b+cnp).
	SrcSelection, DstSelection Selection
	// LinearRules counts the per-peer rules of configuration (c).
	LinearRules int
	// Curve lists the points of the curve, in the order of Options.
	Curve []CurvePoint
	// Results holds the configurations in the order they are measured in
	// each round: (a), (ct), then the rest.
	Results []*Measurement
	// ConntrackPeak is the most entries the node's conntrack table held
	// after a measurement, ConntrackMax its limit.
	ConntrackPeak, ConntrackMax int
	// Setup is how long building and compiling the scenarios took; Elapsed
	// the whole run.
	Setup, Elapsed time.Duration
}

// CurvePoint is configuration (b) compiled for another cluster size.
type CurvePoint struct {
	// Pods and Policies size the synthetic cluster (Namespaces as in
	// DefaultNamespaces, or Options.Namespaces at Options.Pods).
	Pods, Policies, Namespaces int
	// ID is the point's configuration in Report.Results: "b" for the main
	// scenario's size.
	ID string
	// Curve is "policies" (Pods fixed at Options.Pods) or "pods" (Policies
	// fixed at Options.Policies).
	Curve string
	// NodePods counts the pods on the compiled node; Compiled describes the
	// table.
	NodePods int
	Compiled Stats
	// IngressAllowAt/IngressRules and EgressAllowAt/EgressRules are as in
	// Report.
	IngressAllowAt, IngressRules, EgressAllowAt, EgressRules int
}

// Result returns the measurement with the given ID, or nil.
func (rep *Report) Result(id string) *Measurement {
	for _, m := range rep.Results {
		if m.ID == id {
			return m
		}
	}
	return nil
}

// Run builds the scenarios and the topology, measures every configuration
// opts.Rounds times, interleaved, and removes the topology again. It returns
// early, still cleaning up, when ctx is cancelled. A measurement that gets
// nothing through is an error: the benchmark flow must be allowed in every
// configuration.
func Run(ctx context.Context, opts Options) (rep *Report, err error) {
	t0 := time.Now()
	logw := opts.Log
	if logw == nil {
		logw = io.Discard
	}
	if opts.Rounds < 1 || opts.Duration <= 0 || opts.CurveRounds < 0 {
		return nil, fmt.Errorf("run: need rounds >= 1, duration > 0 and curve rounds >= 0, got %d, %s and %d", opts.Rounds, opts.Duration, opts.CurveRounds)
	}
	opts.CurveRounds = min(opts.CurveRounds, opts.Rounds)
	if err := RemoveLeftovers(); err != nil {
		return nil, fmt.Errorf("remove leftover namespaces: %w", err)
	}
	opts.Log = logw

	rep, err = prepare(opts)
	if err != nil {
		return nil, err
	}
	rep.Setup = time.Since(t0)
	defer func() { rep.Elapsed = time.Since(t0) }()

	// Every configuration gets topologies of its own (three namespaces,
	// pods and node alike) with its table loaded once, so the rounds
	// switch between configurations without reloading a table: a round
	// is short and the configurations interleave finely, which is what
	// keeps slow drifts of a shared machine out of the comparison. With
	// several instances, round r measures instance r mod Instances: the
	// same table loaded twice costs a packet up to ±12% apart (the hash
	// seeds of its sets put the one benchmark flow's keys in shorter or
	// longer bucket chains), and real traffic, many flows, sees the
	// average.
	n := max(1, opts.Instances)
	topos := make([][]*Topology, len(rep.Results))
	defer func() {
		for _, ts := range topos {
			for _, t := range ts {
				err = errors.Join(err, t.Close())
			}
		}
	}()
	for i, m := range rep.Results {
		for inst := range n {
			t, err := NewTopologyTagged(rep.Src, rep.Dst, fmt.Sprintf("%d.%d", i, inst))
			if err != nil {
				return rep, fmt.Errorf("configuration (%s): %w", m.ID, err)
			}
			topos[i] = append(topos[i], t)
			t.FlowSockets = opts.FlowSockets
			start := time.Now()
			if err := t.SetRuleset(m.Text); err != nil {
				return rep, fmt.Errorf("configuration (%s): %w", m.ID, err)
			}
			load := time.Since(start)
			m.Load = max(m.Load, load)
			// Warm up (neighbour entries, caches) and check that the
			// flow gets through at all.
			for _, k := range m.Traffic {
				s, err := t.Measure(k, warmup)
				t.ReleaseFlowSockets()
				if err != nil || s.Count == 0 {
					return rep, fmt.Errorf("warm-up of (%s): no %s got through (%d lost): %v", m.ID, k, s.Lost, err) //nolint:errorlint // %v, not %w: err may be nil here, which %w prints as %!w(<nil>)
				}
			}
			fmt.Fprintf(logw, "configuration (%s) loaded in %s into %s\n", m.ID, load.Round(time.Millisecond), t.Node)
		}
	}
	topo := func(i, round int) *Topology { return topos[i][(round-1)%n] }

	for round := 1; round <= opts.Rounds; round++ {
		for i, m := range rep.Results {
			if m.Rounds > 0 && round > m.Rounds {
				continue
			}
			if err := rep.measure(ctx, topo(i, round), m, round, logw); err != nil {
				return rep, err
			}
		}
	}
	if opts.Profile == nil {
		return rep, nil
	}
	for round := 1; round <= opts.ProfileRounds; round++ {
		for i, m := range rep.Results {
			if !profiled(m.ID) {
				continue
			}
			if err := rep.profile(ctx, topo(i, round), m, round, logw); err != nil {
				return rep, err
			}
		}
	}
	return rep, nil
}

// profile measures m's ProfiledTraffic once each with the sending thread
// profiled.
func (rep *Report) profile(ctx context.Context, topo *Topology, m *Measurement, round int, logw io.Writer) error {
	p := rep.Options.Profile
	fmt.Fprintf(logw, "profile round %d (%s):", round, m.ID)
	defer fmt.Fprintln(logw)
	for _, k := range ProfiledTraffic {
		if err := ctx.Err(); err != nil {
			return err
		}
		topo.Profile = p.Start
		s, err := measureOnce(topo, k, rep.Options.ProfileDuration)
		topo.Profile = nil
		if err != nil {
			return fmt.Errorf("profile round %d, configuration (%s), %s: %w", round, m.ID, k, err)
		}
		samples, nft, err := p.Count()
		if err != nil {
			return fmt.Errorf("profile round %d, configuration (%s), %s: %w", round, m.ID, k, err)
		}
		if m.Profiles == nil {
			m.Profiles = map[Traffic][]ProfileSample{}
		}
		ps := ProfileSample{Sample: s, Samples: samples, Nft: nft}
		m.Profiles[k] = append(m.Profiles[k], ps)
		ns, _, _ := NftNs([]ProfileSample{ps}, p.Hz)
		fmt.Fprintf(logw, " %s %s/CPU-s, %d samples, %d in nftables (%.0f ns per judged packet);", k, thousands(k.display(s.PerCPU())), samples, nft, ns)
	}
	return nil
}

// measure measures each of m's kinds of traffic once, in topo, which holds
// m's table.
func (rep *Report) measure(ctx context.Context, topo *Topology, m *Measurement, round int, logw io.Writer) error {
	fmt.Fprintf(logw, "round %d (%s):", round, m.ID)
	for _, k := range m.Traffic {
		if err := ctx.Err(); err != nil {
			fmt.Fprintln(logw)
			return err
		}
		s, err := measureOnce(topo, k, rep.Options.Duration)
		if err != nil {
			fmt.Fprintln(logw)
			return fmt.Errorf("round %d, configuration (%s), %s: %w", round, m.ID, k, err)
		}
		entries, limit, err := topo.ConntrackEntries()
		if err != nil {
			return err
		}
		rep.ConntrackPeak, rep.ConntrackMax = max(rep.ConntrackPeak, entries), limit
		if m.Samples == nil {
			m.Samples = map[Traffic][]Sample{}
		}
		m.Samples[k] = append(m.Samples[k], s)
		fmt.Fprintf(logw, " %s %s %s/CPU-s (%d lost, cpu %s);", k, thousands(k.display(s.Rate())), thousands(k.display(s.PerCPU())), s.Lost, s.CPU.Round(time.Millisecond))
	}
	fmt.Fprintln(logw)
	return nil
}

// measureOnce measures k in topo for d, from an empty conntrack table so
// that no measurement pays for the entries an earlier one left, and fails
// when nothing got through: the benchmark flow is allowed in every
// configuration.
func measureOnce(topo *Topology, k Traffic, d time.Duration) (Sample, error) {
	if err := topo.FlushConntrack(); err != nil {
		return Sample{}, err
	}
	s, err := topo.Measure(k, d)
	// The flow sockets go again: the topologies of all configurations
	// together would need more open files than the limit allows.
	topo.ReleaseFlowSockets()
	if err != nil {
		return s, err
	}
	if s.Count == 0 {
		return s, fmt.Errorf("the benchmark flow was blocked (%d lost)", s.Lost)
	}
	return s, nil
}

// warmup is the length of the unmeasured runs before the rounds.
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

// prepare builds the main scenario and the curve's, compiles every
// configuration and fills in the report's inputs.
func prepare(opts Options) (*Report, error) {
	t0 := time.Now()
	logw := opts.Log
	if logw == nil {
		logw = io.Discard
	}
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
	rep := &Report{Options: opts, Node: sc.Node, Src: src, Dst: dst, Compiled: RulesetStats(rs), LinearRules: lin.Rules, NodePods: nodePods(sc)}
	if err := rep.describeGroups(sc, rs); err != nil {
		return nil, err
	}
	if rep.SrcSelection, rep.DstSelection, err = sc.Selections(opts.ClusterPolicies); err != nil {
		return nil, err
	}

	compiled := func(id, label string, ropts compile.Options, cnps int) (*Measurement, error) {
		crs := rs
		if id != "b" {
			if crs, err = sc.CompileWith(ropts, cnps); err != nil {
				return nil, err
			}
		}
		path, err := pathRules(crs, src, dst)
		if err != nil {
			return nil, fmt.Errorf("configuration (%s): %w", id, err)
		}
		return &Measurement{Configuration: Configuration{ID: id, Label: label, Text: crs.Text(), Traffic: AllTraffic, PathRules: path}}, nil
	}
	rep.Results = []*Measurement{
		{Configuration: Configuration{ID: "a", Label: "no nftables table", Traffic: AllTraffic}},
		{Configuration: Configuration{ID: "ct", Label: "conntrack only (ct state established,related accept)", Text: ConntrackOnlyText, Traffic: AllTraffic, PathRules: 1}},
		{Configuration: Configuration{ID: "f", Label: "floor: conntrack + one address dispatch + one set lookup per direction", Text: FloorText(src, dst), Traffic: AllTraffic, PathRules: FloorRules}},
	}
	add := func(id, label string, ropts compile.Options, cnps int) error {
		m, err := compiled(id, label, ropts, cnps)
		if err != nil {
			return err
		}
		rep.Results = append(rep.Results, m)
		return nil
	}
	if err := add("b", "policyd as compiled (sets, vmaps)", compile.Options{}, 0); err != nil {
		return nil, err
	}
	if err := rep.addCurve(sc, logw); err != nil {
		return nil, err
	}
	if opts.ClusterPolicies > 0 {
		label := fmt.Sprintf("(b) plus %d Admin + %d Baseline ClusterNetworkPolicies", opts.ClusterPolicies, opts.ClusterPolicies)
		if err := add("b+cnp", label, compile.Options{}, opts.ClusterPolicies); err != nil {
			return nil, err
		}
	}
	if err := add("b+log", "(b) with drop logging (nflog group 100, limit 100/s burst 200)", compile.Options{Log: LogDrops}, 0); err != nil {
		return nil, err
	}
	if err := add("b+log-allowed", "(b+log) and allowed new connections logged too", compile.Options{Log: LogAllowed}, 0); err != nil {
		return nil, err
	}
	rep.Results = append(rep.Results, &Measurement{Configuration: Configuration{ID: "c", Label: "linear allow-list, one rule per peer", Text: lin.Text, Traffic: AllTraffic, PathRules: 1 + lin.Rules}})
	fmt.Fprintf(logw, "scenarios built and compiled in %s: (b) %d sets, %d elements, %d chains; linear: %d rules; curve: %d points\n",
		time.Since(t0).Round(time.Millisecond), rep.Compiled.Sets+rep.Compiled.Maps, rep.Compiled.Elements, rep.Compiled.Chains, lin.Rules, len(rep.Curve))
	return rep, nil
}

// addCurve builds, compiles and appends the curve's configurations (main is
// the main scenario, whose size is (b) and is not compiled again), and
// lists the points.
func (rep *Report) addCurve(main *Scenario, logw io.Writer) error {
	o := rep.Options
	if o.CurveRounds == 0 {
		return nil
	}
	b := rep.Result("b")
	built := map[string]CurvePoint{}
	for _, p := range CurvePoints(o) {
		t0 := time.Now()
		if p.Pods == o.Pods && p.Policies == o.Policies {
			p.ID = "b"
			p.NodePods, p.Compiled = rep.NodePods, rep.Compiled
			p.IngressAllowAt, p.IngressRules, p.EgressAllowAt, p.EgressRules = rep.IngressAllowAt, rep.IngressRules, rep.EgressAllowAt, rep.EgressRules
			rep.Curve = append(rep.Curve, p)
			continue
		}
		if q, ok := built[p.ID]; ok {
			q.Curve = p.Curve
			rep.Curve = append(rep.Curve, q)
			continue
		}
		m, pt, err := curveConfiguration(p, o, main)
		if err != nil {
			return err
		}
		m.Rounds = o.CurveRounds
		if b != nil && m.PathRules != b.PathRules {
			return fmt.Errorf("curve point %s: a judged packet meets %d rules, in (b) %d: the points would not be comparable", m.ID, m.PathRules, b.PathRules)
		}
		rep.Results = append(rep.Results, m)
		rep.Curve = append(rep.Curve, pt)
		built[pt.ID] = pt
		fmt.Fprintf(logw, "curve point (%s) built and compiled in %s: %d elements\n", m.ID, time.Since(t0).Round(time.Millisecond), pt.Compiled.Elements)
	}
	return nil
}

// CurvePoints returns the curve's points for opts, without their
// measurements: Pods pods with each of CurvePolicies policies (curve
// "policies"), then each of CurvePods pods with Policies policies (curve
// "pods"). A size in both curves is one configuration, measured once.
func CurvePoints(opts Options) []CurvePoint {
	var out []CurvePoint
	add := func(pods, policies int, curve string) {
		ns := DefaultNamespaces(pods)
		if pods == opts.Pods {
			ns = opts.Namespaces
		}
		out = append(out, CurvePoint{Pods: pods, Policies: policies, Namespaces: ns, Curve: curve, ID: fmt.Sprintf("b@%s/%s", short(pods), short(policies))})
	}
	for _, n := range opts.CurvePolicies {
		add(opts.Pods, n, "policies")
	}
	for _, n := range opts.CurvePods {
		add(n, opts.Policies, "pods")
	}
	return out
}

// curveConfiguration builds and compiles the scenario of p, checks that its
// benchmark pods are main's (same addresses, so the same topology carries
// it) and returns its configuration and the completed point.
func curveConfiguration(p CurvePoint, o Options, main *Scenario) (*Measurement, CurvePoint, error) {
	sc, err := NewScenario(p.Pods, p.Policies, p.Namespaces, o.Seed)
	if err != nil {
		return nil, p, fmt.Errorf("curve point %s: %w", p.ID, err)
	}
	if sc.Src.IPs[0] != main.Src.IPs[0] || sc.Dst.IPs[0] != main.Dst.IPs[0] {
		return nil, p, fmt.Errorf("curve point %s: benchmark pods at %s and %s, not %s and %s", p.ID, sc.Src.IPs[0], sc.Dst.IPs[0], main.Src.IPs[0], main.Dst.IPs[0])
	}
	rs, err := sc.Compile()
	if err != nil {
		return nil, p, fmt.Errorf("curve point %s: %w", p.ID, err)
	}
	var r Report
	r.Src, r.Dst = sc.Src.IPs[0], sc.Dst.IPs[0]
	if err := r.describeGroups(sc, rs); err != nil {
		return nil, p, fmt.Errorf("curve point %s: %w", p.ID, err)
	}
	path, err := pathRules(rs, r.Src, r.Dst)
	if err != nil {
		return nil, p, fmt.Errorf("curve point %s: %w", p.ID, err)
	}
	p.NodePods, p.Compiled = nodePods(sc), RulesetStats(rs)
	p.IngressAllowAt, p.IngressRules, p.EgressAllowAt, p.EgressRules = r.IngressAllowAt, r.IngressRules, r.EgressAllowAt, r.EgressRules
	m := &Measurement{Configuration: Configuration{
		ID:    p.ID,
		Label: fmt.Sprintf("(b) for %s pods / %s policies", thousands(float64(p.Pods)), thousands(float64(p.Policies))),
		Text:  rs.Text(), Traffic: CurveTraffic, PathRules: path,
	}}
	return m, p, nil
}

// short writes n as 200, 2k, 10k, 1.5k.
func short(n int) string {
	if n >= 1000 && n%100 == 0 {
		if n%1000 == 0 {
			return fmt.Sprintf("%dk", n/1000)
		}
		return fmt.Sprintf("%.1fk", float64(n)/1000)
	}
	return fmt.Sprint(n)
}

func nodePods(sc *Scenario) int {
	n := 0
	for _, p := range sc.Snapshot.Pods {
		if p.NodeName == sc.Node {
			n++
		}
	}
	return n
}

// pathRules returns how many rules the benchmark flow's first packet meets
// in rs on its way through the node, UDP and TCP alike, as the tracer walks
// them; it fails when the two protocols differ or the flow is not allowed.
func pathRules(rs *ruleset.Ruleset, src, dst netip.Addr) (int, error) {
	n := -1
	for _, proto := range []uint8{17, 6} {
		res, err := trace.Trace(rs, ruleset.HookPostrouting, trace.Packet{Src: src, Dst: dst, Protocol: proto, Port: Port})
		if err != nil {
			return 0, err
		}
		if !res.Allowed() {
			return 0, fmt.Errorf("protocol %d: the benchmark flow is dropped:\n%s", proto, res)
		}
		if n >= 0 && n != len(res.Steps) {
			return 0, fmt.Errorf("the benchmark flow meets %d rules in UDP and %d in TCP", n, len(res.Steps))
		}
		n = len(res.Steps)
	}
	return n, nil
}

// describeGroups fills in the policy group facts of the report.
func (rep *Report) describeGroups(sc *Scenario, rs *ruleset.Ruleset) error {
	s, d, err := sc.Selections(0)
	if err != nil {
		return err
	}
	rep.IngressPolicies, rep.EgressPolicies = d.NetworkPolicies, s.NetworkPolicies
	rep.IngressAllowAt, rep.IngressRules, rep.IngressVia, err = allowPosition(rs, cluster.Ingress, rep.Dst, ServerNamespace+"/"+IngressAllowPolicy)
	if err != nil {
		return err
	}
	rep.EgressAllowAt, rep.EgressRules, rep.EgressVia, err = allowPosition(rs, cluster.Egress, rep.Src, ClientNamespace+"/"+EgressAllowPolicy)
	return err
}

// allowPosition returns the 1-based position of the allowing rule of policy
// (rule AllowRuleIndex) in the chain that admits the benchmark flow for d at
// addr, and that chain's length: addr's group chain, or, when the group
// chain dispatches on the port, the chain UDP Port is dispatched to (via
// then names it).
func allowPosition(rs *ruleset.Ruleset, d cluster.Direction, addr netip.Addr, policy string) (at, of int, via string, err error) {
	c, err := GroupChain(rs, d, addr)
	if err != nil {
		return 0, 0, "", err
	}
	want := fmt.Sprintf("%s %s[%d]", policy, d, AllowRuleIndex)
	find := func(c *ruleset.Chain) int {
		for i, r := range c.Rules {
			if ar, ok := r.(*ruleset.AllowRule); ok && ar.Family != 6 && ar.Comment == want {
				return i + 1
			}
		}
		return 0
	}
	if i := find(c); i > 0 {
		return i, len(c.Rules), "", nil
	}
	if pc, entry := PortChain(rs, c, 17, Port); pc != nil {
		if i := find(pc); i > 0 {
			return i, len(pc.Rules), fmt.Sprintf("%s (entry %s of the port dispatch of %s)", pc.Name, entry, c.Name), nil
		}
	}
	return 0, 0, "", fmt.Errorf("chain %s of %s has no rule commented %q, nor has the chain its port dispatch sends udp %d to", c.Name, addr, want, Port)
}

// curveIDs returns the IDs of the curve's points of curve ("policies" or
// "pods"), in order.
func (rep *Report) curveIDs(curve string) []string {
	var ids []string
	for _, p := range rep.Curve {
		if p.Curve == curve && !slices.Contains(ids, p.ID) {
			ids = append(ids, p.ID)
		}
	}
	return ids
}
