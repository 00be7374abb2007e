package runner

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/conformance/lab"
	"github.com/policyd/policyd/nflog"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/decider"
	"github.com/policyd/policyd/policy/explain"
	"github.com/policyd/policyd/policy/model"
	"github.com/policyd/policyd/verdicts"
)

// Verdicts: with Config.Verdicts every node's table logs what it drops (and,
// with Config.LogAllowed, the new connections its rules admit) to
// nfnetlink_log group LogGroup, every packet (no rate limit). The runner
// reads each node's group in that node's network namespace (nfnetlink_log
// is per namespace), binds every probe to a source port of its own, and
// matches each probe to the records whose flow is its packet as policyd's
// chains see it: after DNAT (the kube-proxy-like table rewrites in
// prerouting and output, before policyd's postrouting and input hooks),
// before any masquerade, with the entry node's address as the source where
// explain says the backend sees that (externalTrafficPolicy Cluster, on
// another node). The first record of the flow is the probe's first packet.
// The decider the record names is compared, as a value, with the one
// policyd explain names for the same query (model.Direction.Decider).

// LogGroup is the nfnetlink_log group the lab's tables log to. Groups are
// per network namespace, so it never meets another lab's or the host's.
const LogGroup = 100

// Source ports the runner gives probes with Config.Verdicts, lab.Attempts
// a probe: below lab.PinPortBase; ports a pod serves are skipped. Nothing
// else in the lab's namespaces takes ephemeral ports (servers answer from
// their listening port), so these never clash. 41,000 ports last 20,500
// probes, longer than a connection stays in TIME_WAIT (60 s) in any suite.
const (
	srcPortFirst = 20000
	srcPortLast  = lab.PinPortBase - 1
)

// logDrainWait bounds how long after a step's last probe its records may
// still arrive: nfnetlink_log batches messages and flushes a batch at the
// latest one second (its default flush timeout) after its first message.
const logDrainWait = 1200 * time.Millisecond

// KernelRecord is the decider of one kernel record (Cell.Kernel): what its
// id stands for in the rulesets the run committed (the zero Decider, kind
// "invalid", when none had the id), the node whose table logged the packet
// and the log prefix. Its JSON form is the decider's with node and id added,
// documented in docs/explain-json.md ("policyd lab -o jsonl").
type KernelRecord struct {
	decider.Decider
	Node string `json:"node,omitempty"`
	ID   string `json:"id,omitempty"`
}

// String renders k for people: "ingress default deny of x/a,x/b on node-1".
func (k *KernelRecord) String() string {
	if k == nil {
		return "none"
	}
	if k.Kind == decider.KindInvalid {
		return "unknown id " + k.ID + " on " + k.Node
	}
	return k.Decider.String() + " on " + k.Node
}

// VerdictTally counts the probes of one verdict (denied or allowed, as
// observed) whose kernel records were checked against explain. Agree,
// Disagree and Missing add up to Probes.
type VerdictTally struct {
	// Probes is the probed TCP and UDP cells with this observed verdict.
	Probes int
	// Decided is those that explain names a decider for (every denied one;
	// allowed ones when a rule, not the default, admitted them).
	Decided int
	// Recorded is those with at least one kernel record.
	Recorded int
	// Agree: the kernel's records name exactly the deciders explain names
	// (for an allowed probe no decider is no record). Disagree: a record
	// names another decider, or one explain does not name. Missing: no
	// disagreeing record, but one explain names is absent.
	Agree, Disagree, Missing int
}

func (t *VerdictTally) add(o VerdictTally) {
	t.Probes += o.Probes
	t.Decided += o.Decided
	t.Recorded += o.Recorded
	t.Agree += o.Agree
	t.Disagree += o.Disagree
	t.Missing += o.Missing
}

// Verdict check outcomes (Cell.VerdictCheck).
const (
	VerdictAgree    = "agree"
	VerdictDisagree = "disagree"
	VerdictMissing  = "missing"
)

// VerdictStats sums what a run's verdict checks found.
type VerdictStats struct {
	Denied, Allowed VerdictTally
	// Overruns counts the times a node's log socket overflowed (records
	// lost), UnknownIDs the records whose prefix no committed ruleset had.
	Overruns, UnknownIDs int
}

// Add sums o into s.
func (s *VerdictStats) Add(o VerdictStats) {
	s.Denied.add(o.Denied)
	s.Allowed.add(o.Allowed)
	s.Overruns += o.Overruns
	s.UnknownIDs += o.UnknownIDs
}

// Failed reports whether any check disagreed or missed a record.
func (s VerdictStats) Failed() bool {
	return s.Denied.Disagree+s.Denied.Missing+s.Allowed.Disagree+s.Allowed.Missing > 0
}

// logRecord is one logged packet as read on one node.
type logRecord struct {
	node string
	pkt  nflog.Packet
	read time.Time
}

// flowKey is what a probe's packet looks like in a record, without its
// source address, which masquerading may have replaced.
type flowKey struct {
	proto        uint8
	sport, dport uint16
	dst          netip.Addr
}

// kernelLog reads every node's log group and keeps the records by flow.
type kernelLog struct {
	conns   []*nflog.Conn
	wg      sync.WaitGroup
	closing atomic.Bool

	mu       sync.Mutex
	byFlow   map[flowKey][]*logRecord
	overruns int
	err      error
}

// openKernelLog binds a log socket in every node's namespace.
func openKernelLog(l *lab.Lab, nodes []string) (*kernelLog, error) {
	k := &kernelLog{byFlow: map[flowKey][]*logRecord{}}
	for _, n := range nodes {
		h, ok := l.NodeNetNSHandle(n)
		if !ok {
			k.close()
			return nil, fmt.Errorf("lab has no netns for node %s", n)
		}
		c, err := nflog.Listen(nflog.Config{Group: LogGroup, NetNS: int(h), ReadBuffer: 8 << 20})
		if err != nil {
			k.close()
			return nil, fmt.Errorf("node %s: reading nfnetlink_log group %d: %w", n, LogGroup, err)
		}
		k.conns = append(k.conns, c)
		k.wg.Add(1)
		go k.read(n, c)
	}
	return k, nil
}

func (k *kernelLog) read(node string, c *nflog.Conn) {
	defer k.wg.Done()
	for {
		pkts, err := c.Receive()
		now := time.Now()
		if errors.Is(err, nflog.ErrOverrun) {
			k.mu.Lock()
			k.overruns++
			k.mu.Unlock()
			continue
		}
		if err != nil {
			if !k.closing.Load() {
				k.mu.Lock()
				k.err = errors.Join(k.err, fmt.Errorf("node %s: reading the log: %w", node, err))
				k.mu.Unlock()
			}
			return
		}
		k.mu.Lock()
		for _, p := range pkts {
			f := p.Flow
			key := flowKey{proto: f.Protocol, sport: f.SrcPort, dport: f.DstPort, dst: f.Dst.Unmap()}
			k.byFlow[key] = append(k.byFlow[key], &logRecord{node: node, pkt: p, read: now})
		}
		k.mu.Unlock()
	}
}

func (k *kernelLog) close() {
	if k == nil {
		return
	}
	k.closing.Store(true)
	for _, c := range k.conns {
		_ = c.Close()
	}
	k.wg.Wait()
}

// has reports whether some record of key comes from one of srcs.
func (k *kernelLog) has(key flowKey, srcs []netip.Addr) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, r := range k.byFlow[key] {
		if slices.Contains(srcs, r.pkt.Flow.Src.Unmap()) {
			return true
		}
	}
	return false
}

// take returns the records of key from one of srcs, in the order they were
// read, and removes them unless keep is set (a flow other probes share).
func (k *kernelLog) take(key flowKey, srcs []netip.Addr, keep bool) []*logRecord {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out, rest []*logRecord
	for _, r := range k.byFlow[key] {
		if slices.Contains(srcs, r.pkt.Flow.Src.Unmap()) {
			out = append(out, r)
		} else {
			rest = append(rest, r)
		}
	}
	switch {
	case keep:
	case len(rest) == 0:
		delete(k.byFlow, key)
	default:
		k.byFlow[key] = rest
	}
	return out
}

// anyPort returns, without removing them, the records from one of srcs
// with key's protocol, destination and port, whatever their source port,
// in the order they were read.
func (k *kernelLog) anyPort(key flowKey, srcs []netip.Addr) []*logRecord {
	k.mu.Lock()
	var keys []flowKey
	for fk := range k.byFlow {
		if fk.proto == key.proto && fk.dst == key.dst && fk.dport == key.dport {
			keys = append(keys, fk)
		}
	}
	k.mu.Unlock()
	var out []*logRecord
	for _, fk := range keys {
		out = append(out, k.take(fk, srcs, true)...)
	}
	slices.SortStableFunc(out, func(a, b *logRecord) int { return a.read.Compare(b.read) })
	return out
}

// purge drops the records read before t: they belong to no probe that
// started at t or later.
func (k *kernelLog) purge(t time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for key, rs := range k.byFlow {
		rs = slices.DeleteFunc(rs, func(r *logRecord) bool { return r.read.Before(t) })
		if len(rs) == 0 {
			delete(k.byFlow, key)
		} else {
			k.byFlow[key] = rs
		}
	}
}

// stats returns the overruns so far and any read error.
func (k *kernelLog) stats() (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.overruns, k.err
}

// srcPorts hands out the probes' source ports, skipping ports the lab's
// pods serve.
type srcPorts struct {
	next int
	skip map[int]bool
}

// take returns the first of n consecutive free ports.
func (p *srcPorts) take(n int) int {
	for {
		if p.next < srcPortFirst || p.next+n-1 > srcPortLast {
			p.next = srcPortFirst
		}
		first := p.next
		p.next += n
		free := true
		for port := first; port < first+n; port++ {
			free = free && !p.skip[port]
		}
		if free {
			return first
		}
	}
}

// verdictRef is what the verdict check needs to know of one cell's probe:
// how its packet looks to policyd's chains, and what explain says of it.
type verdictRef struct {
	// srcPorts are the source ports of the probe's attempts (none: the
	// kernel chose them, and the probe cannot be matched); pinned says the
	// one port is a Service backend's pin, which probes of other Services
	// share.
	srcPorts []int
	pinned   bool
	// dst is the destination policyd judges (the backend after DNAT).
	dst netip.Addr
	// srcs are the source addresses policyd may judge it by: the probe's
	// own, and the entry node's where explain says the backend sees that.
	srcs []netip.Addr
	// decision is explain's, when the plan already has it (Services);
	// else query is asked of explain.
	decision *model.Decision
	query    explain.Query
}

// verdictStep is a step whose probes have run and whose records are being
// collected.
//
// Pinned probes (through a Service) bind the same source port in every
// step, so their flows repeat from step to step, and a pinned probe may
// take the records of any source port (see resolveVerdicts). So a step with
// Services starts only once every record of the steps before it is in
// (awaitLog), and its resolution purges them; it waits the whole
// logDrainWait itself, so every record of it is in before the next step
// starts, and the next step's purge removes what it did not take.
type verdictStep struct {
	res        StepResult
	snap       *cluster.Snapshot
	refs       []verdictRef
	start, end time.Time
	pinned     bool
	// decisions are explain's, per cell (nil: not checked), once asked.
	decisions []*model.Decision
}

// awaitLog waits until every record of the steps resolved so far has been
// read: logDrainWait after their last probe.
func (e *enforcer) awaitLog(ctx context.Context) {
	t := time.NewTimer(time.Until(e.lastProbes.Add(logDrainWait)))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// logOptions are the compile options of the lab's tables.
func logOptions(cfg Config) compile.Options {
	if !cfg.Verdicts {
		return compile.Options{}
	}
	return compile.Options{Log: compile.LogOptions{Drops: true, Allowed: cfg.LogAllowed, Group: LogGroup}}
}

// verdictRefs fills in, for each cell, the source port its probe used and
// the addresses policyd judges it by.
func (e *enforcer) verdictRefs(cells []Cell, refs []verdictRef, results []lab.Result) {
	for i, r := range results {
		c, ref := &cells[i], &refs[i]
		ref.srcPorts, ref.pinned = r.SrcPorts, r.Pin > 0
		fam := lab.IPv4
		if c.Family == 6 {
			fam = lab.IPv6
		}
		if !ref.dst.IsValid() {
			ref.dst = e.lab.PodAddr(c.To, fam)
		}
		src := e.lab.PodAddr(c.From, fam)
		if c.From == lab.ExternalClient {
			src = lab.ExternalClientAddr
		}
		if src.IsValid() {
			ref.srcs = append(ref.srcs, src)
		}
		if ref.query.Src == "" && ref.decision == nil {
			ref.query = explain.Query{Src: c.From, Dst: c.To, Port: c.Port, Protocol: c.Proto}
			if c.Family == 6 {
				ref.query.Src, ref.query.Dst = src.String(), ref.dst.String()
			}
		}
	}
}

// wantDeciders returns the deciders explain names for a cell, in path
// order: for a denied probe the denying direction (egress is judged first),
// after, with logAllowed, the egress rule that let it out; for an allowed
// one each direction a rule decided.
func wantDeciders(c *Cell, d model.Decision, logAllowed bool) []*decider.Decider {
	var dirs []model.Direction
	switch {
	case c.Observed:
		dirs = []model.Direction{d.Egress, d.Ingress}
	case !d.Egress.Allowed:
		dirs = []model.Direction{d.Egress}
	case !d.Ingress.Allowed && logAllowed:
		dirs = []model.Direction{d.Egress, d.Ingress}
	case !d.Ingress.Allowed:
		dirs = []model.Direction{d.Ingress}
	}
	var out []*decider.Decider
	for _, dir := range dirs {
		if x, ok := dir.Decider(); ok {
			out = append(out, &x)
		}
	}
	return out
}

// checked reports whether the verdict check covers c.
func checked(cfg Config, c *Cell) bool {
	if !c.Probed || c.Err != "" || c.Protocol == cluster.ProtocolSCTP {
		return false
	}
	return !c.Observed || cfg.LogAllowed
}

// explainVerdicts asks explain about every checked probe of vs, once.
func (e *enforcer) explainVerdicts(cfg Config, vs *verdictStep) {
	if vs.decisions != nil {
		return
	}
	res := &vs.res
	vs.decisions = make([]*model.Decision, len(res.Cells))
	for i := range res.Cells {
		c, ref := &res.Cells[i], &vs.refs[i]
		if !checked(cfg, c) {
			continue
		}
		if ref.decision != nil {
			vs.decisions[i] = ref.decision
			continue
		}
		rs, err := explain.Explain(vs.snap, ref.query)
		if err != nil || len(rs) != 1 {
			res.Invalid = append(res.Invalid, fmt.Sprintf("verdicts: explain %s -> %s %s/%d: %v (%d results)", ref.query.Src, ref.query.Dst, ref.query.Protocol, ref.query.Port, err, len(rs)))
			continue
		}
		vs.decisions[i] = &model.Decision{Allowed: rs[0].Allowed, Egress: rs[0].Egress, Ingress: rs[0].Ingress}
	}
}

// recordKeys are the flows of a probe's attempts as records show them.
func recordKeys(c *Cell, ref *verdictRef) []flowKey {
	var out []flowKey
	for _, p := range slices.Compact(slices.Clone(ref.srcPorts)) { // a pin is every attempt's port
		out = append(out, flowKey{proto: uint8(c.Protocol), sport: uint16(p), dport: uint16(c.Port), dst: ref.dst})
	}
	return out
}

// verdictsReady reports whether vs can be resolved now: logDrainWait has
// passed since its last probe, or (unless it has pinned probes, which wait
// the whole time) every probe that should have a record has one.
func (e *enforcer) verdictsReady(cfg Config, vs *verdictStep) bool {
	if !time.Now().Before(vs.end.Add(logDrainWait)) {
		return true
	}
	if vs.pinned {
		return false
	}
	e.explainVerdicts(cfg, vs)
	for i := range vs.res.Cells {
		c, ref, d := &vs.res.Cells[i], &vs.refs[i], vs.decisions[i]
		if d == nil || len(ref.srcPorts) == 0 {
			continue
		}
		// The first attempt's record is the one that counts.
		if (!c.Observed || len(wantDeciders(c, *d, cfg.LogAllowed)) > 0) && !e.klog.has(recordKeys(c, ref)[0], ref.srcs) {
			return false
		}
	}
	return true
}

// resolveVerdicts waits until vs is ready (verdictsReady), then matches
// the records to its probes and compares them with explain.
func (e *enforcer) resolveVerdicts(ctx context.Context, cfg Config, vs *verdictStep) {
	res := &vs.res
	for !e.verdictsReady(cfg, vs) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	e.explainVerdicts(cfg, vs)
	decisions := vs.decisions
	e.klog.purge(vs.start)
	// A pinned probe's flow may be another probe's too (two Services, or
	// a NodePort and an external IP, reaching one backend from one
	// source): its records are shared, not taken; the next step's purge
	// removes them. Two such probes at once cannot both keep their source
	// port, as conntrack's NAT gives the second another one: a pinned
	// probe without a record of its own port takes those of the same
	// addresses, protocol and destination port. The policies' verdict
	// does not depend on the source port, so these name its decider.
	recs := make([][]*logRecord, len(res.Cells))
	for i := range res.Cells {
		c, ref := &res.Cells[i], &vs.refs[i]
		if !checked(cfg, c) || len(ref.srcPorts) == 0 {
			continue
		}
		keys := recordKeys(c, ref)
		for _, k := range keys {
			recs[i] = append(recs[i], e.klog.take(k, ref.srcs, ref.pinned)...)
		}
		if ref.pinned && len(recs[i]) == 0 {
			recs[i] = e.klog.anyPort(keys[0], ref.srcs)
		}
		// In the order read: the first attempt's first.
		slices.SortStableFunc(recs[i], func(a, b *logRecord) int { return a.read.Compare(b.read) })
	}
	var st VerdictStats
	for i := range res.Cells {
		c := &res.Cells[i]
		if !checked(cfg, c) {
			continue
		}
		tally := &st.Denied
		if c.Observed {
			tally = &st.Allowed
		}
		tally.Probes++
		if decisions[i] == nil {
			tally.Disagree++
			c.VerdictCheck = VerdictDisagree
			continue
		}
		want := wantDeciders(c, *decisions[i], cfg.LogAllowed)
		if len(want) > 0 {
			tally.Decided++
		}
		got := e.firstRecords(recs[i], &st)
		if len(got) > 0 {
			tally.Recorded++
		}
		fillVerdict(c, want, got)
		switch c.VerdictCheck {
		case VerdictAgree:
			tally.Agree++
		case VerdictMissing:
			tally.Missing++
		default:
			tally.Disagree++
		}
	}
	st.Overruns, _ = e.klog.stats()
	st.Overruns -= e.overrunsSeen
	e.overrunsSeen += st.Overruns
	res.Verdicts = st
}

// firstRecords returns the deciders of the first record of each direction
// (a probe's retries and a UDP probe's repeats log the same flow again).
func (e *enforcer) firstRecords(recs []*logRecord, st *VerdictStats) []*KernelRecord {
	var out []*KernelRecord
	seen := map[string]bool{}
	for _, r := range recs {
		d, ok := e.resolver.Decider(r.pkt.Prefix)
		if !ok {
			st.UnknownIDs++
		}
		k := &KernelRecord{Decider: d, Node: r.node, ID: r.pkt.Prefix}
		if seen[k.Direction] {
			continue
		}
		seen[k.Direction] = true
		out = append(out, k)
	}
	return out
}

// fillVerdict sets c's kernel and explain deciders and the outcome of
// comparing them, as values. The first of want and got is the deciding one
// (the deny, or an allow's ingress when both ends logged one); the second,
// an allow's egress, goes to the Egress fields.
func fillVerdict(c *Cell, want []*decider.Decider, got []*KernelRecord) {
	c.Kernel, c.KernelEgress = pick(got, func(k *KernelRecord) string { return k.Direction })
	c.Explained, c.ExplainedEgress = pick(want, func(d *decider.Decider) string { return d.Direction })
	w := map[string]*decider.Decider{}
	for _, d := range want {
		w[d.Direction] = d
	}
	g := map[string]*KernelRecord{}
	for _, k := range got {
		g[k.Direction] = k
	}
	c.VerdictCheck = VerdictAgree
	for dir, gd := range g {
		// A rule's name is not part of the id the kernel logs (renaming a
		// rule keeps its id), so a record names the rule as the resolver
		// last learned it, which a step that renames the rule can move
		// either way: the kernel's decision is everything but the name.
		kd, wd := gd.Decider, w[dir]
		if wd != nil {
			named := *wd
			named.RuleName = kd.RuleName
			wd = &named
		}
		if wd == nil || !kd.Equal(*wd) {
			c.VerdictCheck = VerdictDisagree
			return
		}
	}
	for dir := range w {
		if g[dir] == nil {
			c.VerdictCheck = VerdictMissing
		}
	}
	if !c.Observed && len(got) == 0 {
		c.VerdictCheck = VerdictMissing // denied, and not one record
	}
}

// pick returns the deciding one of ds and, when both directions are there,
// the egress one apart. Both directions are there only when egress allowed
// (an egress drop ends the packet), so the ingress one decided: the drop, or
// the allow that let the packet in.
func pick[T any](ds []*T, direction func(*T) string) (main, egress *T) {
	switch len(ds) {
	case 0:
		return nil, nil
	case 1:
		return ds[0], nil
	}
	var in, eg *T
	for _, d := range ds {
		if direction(d) == cluster.Ingress.String() {
			in = d
		} else {
			eg = d
		}
	}
	if in == nil || eg == nil {
		return ds[0], nil // cannot happen: one decider per direction
	}
	return in, eg
}

// newVerdictResolver returns the map from log ids to the deciders of every
// ruleset the run commits (ids are content hashes: one meaning for good).
func newVerdictResolver() *verdicts.Resolver { return verdicts.NewResolver("", nil) }
