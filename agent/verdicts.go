package agent

// Live verdicts. With VerdictConfig.Log on, the compiled table sends the
// packets it drops (and, with Allowed, the new connections it admits)
// through per-decider log chains that count them and log them, behind a
// rate limit, to an nfnetlink_log group. The agent
//
//   - learns each ruleset's deciders (log id -> policy and rule) before
//     committing it, so that the first packet logged under a new id resolves;
//   - reads the group in the Backend's network namespace, one goroutine,
//     turning packets into records (verdicts.Resolver: pods of both ends
//     from addrs, deduplicated per flow and second), which it streams on
//     /verdicts and writes to its log at VerdictConfig.RecordLevel;
//   - reads the log chains' counters at scrape time into
//     policyd_policy_packets_total and _bytes_total, and counts what it
//     read, lost and what the kernel's rate limit kept from it.

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/nflog"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/decider"
	"github.com/policyd/policyd/policy/nft"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/verdicts"
)

// VerdictConfig configures live verdicts.
type VerdictConfig struct {
	// Log chooses what the table counts and logs (compile.Options.Log).
	// When it logs neither drops nor allowed connections the table has no
	// log chains and the agent reads nothing.
	Log compile.LogOptions
	// NetNS is the network namespace the Backend programs (its
	// nft.Options.NetNS): the nflog socket is opened there. 0 is the
	// agent's own.
	NetNS int
	// RecordLevel, when set, is the level at which the agent writes each
	// record to its log; nil writes none.
	RecordLevel slog.Leveler
	// MaxStreams caps the /verdicts streams served at once; 0 means
	// verdicts.DefaultMaxStreams.
	MaxStreams int
}

// Defaults of policyd run's verdict flags: a group clear of the low numbers
// ulogd setups take, and a per-node log rate that keeps every distinct
// denied flow visible on a quiet node while a flood costs the reader about
// a hundred messages a second (the counters still count every packet).
const (
	DefaultLogGroup = 100
	DefaultLogRate  = 100
	DefaultLogBurst = 200
)

func (c VerdictConfig) enabled() bool { return c.Log.Drops || c.Log.Allowed }

// Timing of the verdict reader.
const (
	// nflogRetry is how long the reader waits before binding the group
	// again after a failure.
	nflogRetry = 30 * time.Second
	// nflogReadBuffer is the socket buffer asked for (the kernel caps it
	// at net.core.rmem_max): seconds of logging at the default rate.
	nflogReadBuffer = 1 << 20
	// overrunLogEvery spaces the warnings about a full socket.
	overrunLogEvery = time.Minute
	// counterTimeout bounds one read of the kernel counters.
	counterTimeout = 5 * time.Second
)

// counterReader is the part of nft.Backend that reads the log chains'
// counters; a Backend without it (the fake) exports no policy counters.
type counterReader interface {
	LogCounters(ctx context.Context) (map[string]nft.Counter, error)
}

// verdictState is the agent's live-verdict machinery (nil when off).
type verdictState struct {
	resolver *verdicts.Resolver
	// streams serves /verdicts, capped.
	streams  *verdicts.Streams
	addrs    *podAddrs
	counters *policyCounters
	// deciders is what the last compiled ruleset logged under; a sync
	// that removes one reads the counters first (see beforeSync).
	deciders map[string]decider.Decider
}

func newVerdictState(node string, backend nft.Interface, maxStreams int) *verdictState {
	addrs := newPodAddrs()
	r := verdicts.NewResolver(node, addrs.lookup)
	cr, _ := backend.(counterReader)
	return &verdictState{resolver: r, streams: r.Streams(maxStreams), addrs: addrs, counters: newPolicyCounters(cr, r)}
}

// Resolver returns the agent's verdict resolver, nil when verdicts are off.
func (a *Agent) Resolver() *verdicts.Resolver {
	if a.verdicts == nil {
		return nil
	}
	return a.verdicts.resolver
}

// learn runs under a.mu right after a successful compile, before the
// commit: the resolver learns rs's ids (their deciders name the
// ClusterNetworkPolicy rules as compiled). It reports whether the sync
// removes a decider (its log chain, and the counts since the last read).
func (v *verdictState) learn(rs *ruleset.Ruleset) bool {
	v.resolver.Learn(rs)
	removed := false
	for id := range v.deciders {
		if _, ok := rs.Deciders[id]; !ok {
			removed = true
			break
		}
	}
	v.deciders = rs.Deciders
	return removed
}

// readVerdicts binds the nflog group and reads it until ctx ends, binding
// again after failures. Enforcement never waits for it.
func (a *Agent) readVerdicts(ctx context.Context) {
	cfg := a.cfg.Verdicts
	var lastErr string
	for ctx.Err() == nil {
		conn, err := nflog.Listen(nflog.Config{Group: cfg.Log.Group, NetNS: cfg.NetNS, ReadBuffer: nflogReadBuffer})
		if err != nil {
			a.metrics.verdictReaderUp.Set(0)
			if err.Error() != lastErr {
				a.log.Error("verdicts: cannot read the nflog group; enforcement goes on, but no records and no rate-limit accounting", "group", cfg.Log.Group, "err", err, "retry", nflogRetry)
				lastErr = err.Error()
			}
			select {
			case <-ctx.Done():
			case <-time.After(nflogRetry):
			}
			continue
		}
		lastErr = ""
		a.metrics.verdictReaderUp.Set(1)
		a.log.Info("verdicts: reading the nflog group", "group", cfg.Log.Group, "drops", cfg.Log.Drops, "allowed", cfg.Log.Allowed, "rate", cfg.Log.Rate, "burst", cfg.Log.Burst)
		// Kernel counts from before the socket was bound were never
		// logged to it: rate-limit accounting starts here.
		cctx, cancel := context.WithTimeout(ctx, counterTimeout)
		a.verdicts.counters.bind(cctx)
		cancel()
		err = a.readFrom(ctx, conn)
		_ = conn.Close()
		a.metrics.verdictReaderUp.Set(0)
		if ctx.Err() == nil {
			a.log.Error("verdicts: reading the nflog group failed; binding it again", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// readFrom reads conn until it fails or ctx ends.
func (a *Agent) readFrom(ctx context.Context, conn *nflog.Conn) error {
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() }) // interrupts Receive
	defer stop()
	r := a.verdicts.resolver
	level := a.cfg.Verdicts.RecordLevel
	var lost uint64
	var lastWarn time.Time
	for {
		pkts, err := conn.Receive()
		if st := conn.Stats(); st.Lost > lost {
			r.Lost(st.Lost - lost)
			lost = st.Lost
		}
		if errors.Is(err, nflog.ErrOverrun) {
			r.Overrun()
			if time.Since(lastWarn) >= overrunLogEvery {
				lastWarn = time.Now()
				a.log.Warn("verdicts: the nflog socket overflowed and the kernel dropped logged packets; lower --log-rate or see policyd_verdict_lost_total")
			}
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		for _, p := range pkts {
			rec, ok := r.Handle(p)
			if ok && level != nil {
				a.log.Log(ctx, level.Level(), "verdict", recordAttrs(&rec)...)
			}
		}
	}
}

func recordAttrs(rec *verdicts.Record) []any {
	return []any{
		"src", rec.Src.String(), "dst", rec.Dst.String(), "protocol", rec.Protocol, "port", rec.Port,
		"direction", rec.Direction, "verdict", rec.Verdict, "kind", rec.Kind, "policies", rec.Policies,
		"decider", rec.DeciderText, "id", rec.ID,
	}
}

// podAddrs maps addresses to the pods holding them, for records: every pod
// the agent knows, of any node (a record's other end is often remote).
// hostNetwork pods are left out: their address is their node's. It is
// updated by the pod handlers and read by the verdict reader.
type podAddrs struct {
	mu sync.RWMutex
	// owner is the pod an address is recorded as: of several claimants,
	// the one that owns it (cluster.Pod.OwnsAddressOver: the newest).
	owner map[netip.Addr]*cluster.Pod
	// claims holds every claimant of the addresses two or more pods claim.
	claims map[netip.Addr][]*cluster.Pod
}

func newPodAddrs() *podAddrs {
	return &podAddrs{owner: map[netip.Addr]*cluster.Pod{}, claims: map[netip.Addr][]*cluster.Pod{}}
}

// update replaces pod old (nil: none) by pod p (nil: deleted); both have
// the same key.
func (m *podAddrs) update(old, p *cluster.Pod) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old != nil && !old.HostNetwork {
		for _, ip := range old.IPs {
			m.remove(ip, old.Key())
		}
	}
	if p != nil && !p.HostNetwork {
		for _, ip := range p.IPs {
			m.add(ip, p)
		}
	}
}

func (m *podAddrs) add(ip netip.Addr, p *cluster.Pod) {
	if cs, ok := m.claims[ip]; ok {
		m.claims[ip] = append(withoutPod(cs, p.Key()), p)
		m.owner[ip] = ownerOf(m.claims[ip])
		return
	}
	if o := m.owner[ip]; o != nil && o.Key() != p.Key() {
		m.claims[ip] = []*cluster.Pod{o, p}
		m.owner[ip] = ownerOf(m.claims[ip])
		return
	}
	m.owner[ip] = p
}

func (m *podAddrs) remove(ip netip.Addr, key string) {
	if cs, ok := m.claims[ip]; ok {
		cs = withoutPod(cs, key)
		if len(cs) == 1 {
			delete(m.claims, ip)
			m.owner[ip] = cs[0]
			return
		}
		m.claims[ip] = cs
		m.owner[ip] = ownerOf(cs)
		return
	}
	if o := m.owner[ip]; o != nil && o.Key() == key {
		delete(m.owner, ip)
	}
}

func withoutPod(cs []*cluster.Pod, key string) []*cluster.Pod {
	out := cs[:0:0]
	for _, c := range cs {
		if c.Key() != key {
			out = append(out, c)
		}
	}
	return out
}

func ownerOf(cs []*cluster.Pod) *cluster.Pod {
	best := cs[0]
	for _, c := range cs[1:] {
		if c.OwnsAddressOver(best) {
			best = c
		}
	}
	return best
}

// lookup is a verdicts.PodLookup.
func (m *podAddrs) lookup(a netip.Addr) (ns, name string, ok bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	p := m.owner[a.Unmap()]
	if p == nil {
		p = m.owner[a]
	}
	if p == nil {
		return "", "", false
	}
	return p.Namespace, p.Name, true
}

// policyLabels are the labels of policyd_policy_packets_total.
type policyLabels struct {
	kind, namespace, name, direction, verdict string
}

func labelsOf(d decider.Decider) policyLabels {
	ns, name := verdicts.PolicyLabels(d)
	return policyLabels{kind: d.Kind.String(), namespace: ns, name: name, direction: d.Direction, verdict: d.Verdict.String()}
}

// policyCounters turns the kernel's log-chain counters into monotonic
// Prometheus counters, and accounts for what the rate limit kept from the
// reader. It is a prometheus.Collector: the kernel is read at scrape time.
//
// A log chain that a sync recreates starts again from zero: a counter
// lower than the last read is a reset, and all of it is new. Counts a chain
// made between the last read and its removal would be lost, so a sync that
// removes a decider reads the counters first.
type policyCounters struct {
	backend  counterReader
	resolver *verdicts.Resolver

	packets, bytes, readErrors *prometheus.Desc
	read, lost, overruns       *prometheus.Desc
	limitedDesc, dropped       *prometheus.Desc
	observers                  *prometheus.Desc

	mu     sync.Mutex
	last   map[string]nft.Counter // id -> the kernel's count at the last read
	totals map[policyLabels]nft.Counter
	// bound: the nflog socket is bound, and since (per id) is the kernel's
	// packets counted since then, which the reader could have been sent.
	bound       bool
	since       map[string]uint64
	rateLimited uint64
	errors      uint64
}

func newPolicyCounters(b counterReader, r *verdicts.Resolver) *policyCounters {
	labels := []string{"kind", "namespace", "name", "direction", "verdict"}
	const which = " Labels: kind (NetworkPolicy, ClusterNetworkPolicy, ct-invalid), direction, verdict (allow, deny), namespace and name: for a NetworkPolicy default deny the namespace and the comma-joined names of every policy isolating the pod in that direction (one series per such set, so sums never double count); for a ClusterNetworkPolicy its name and no namespace (its rules summed). Read from the kernel's counters at scrape time."
	return &policyCounters{
		backend: b, resolver: r,
		packets:     prometheus.NewDesc("policyd_policy_packets_total", "Packets the table decided through a logged verdict: drops, and with --log-allowed the new connections allowed."+which, labels, nil),
		bytes:       prometheus.NewDesc("policyd_policy_bytes_total", "Bytes of the packets in policyd_policy_packets_total."+which, labels, nil),
		readErrors:  prometheus.NewDesc("policyd_policy_counter_read_errors_total", "Scrapes at which the kernel's log counters could not be read (the policy counters then repeat their last values).", nil, nil),
		read:        prometheus.NewDesc("policyd_verdict_packets_total", "Logged packets read from the nflog group, by outcome: recorded (a record was made), deduplicated (a repeat of a flow recorded less than a second before), unknown_id (a log prefix no committed ruleset had).", []string{"outcome"}, nil),
		lost:        prometheus.NewDesc("policyd_verdict_lost_total", "Packets the kernel logged that never reached the agent (gaps in nflog sequence numbers: the socket buffer was full).", nil, nil),
		overruns:    prometheus.NewDesc("policyd_verdict_socket_overruns_total", "Times the nflog socket's buffer overflowed (ENOBUFS); policyd_verdict_lost_total says how many packets that cost.", nil, nil),
		limitedDesc: prometheus.NewDesc("policyd_verdict_rate_limited_total", "Packets counted by a logged verdict that the kernel's --log-rate limit kept from the log, since the agent bound the nflog group: per decider, counted minus read, less the packets lost. It can run ahead of the truth by the packets in flight at a scrape (a 50 ms batch).", nil, nil),
		observers:   prometheus.NewDesc("policyd_verdict_observers", "Clients reading /verdicts (policyd observe) now.", nil, nil),
		dropped:     prometheus.NewDesc("policyd_verdict_stream_dropped_total", "Records that observers of /verdicts missed by reading too slowly.", nil, nil),
		last:        map[string]nft.Counter{}, totals: map[policyLabels]nft.Counter{}, since: map[string]uint64{},
	}
}

// bind starts rate-limit accounting: the kernel's counts up to now were
// not logged to the socket just bound.
func (pc *policyCounters) bind(ctx context.Context) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.bound = false
	_ = pc.pollLocked(ctx)
	pc.bound = true
}

// poll reads the kernel's counters into the totals.
func (pc *policyCounters) poll(ctx context.Context) error {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return pc.pollLocked(ctx)
}

func (pc *policyCounters) pollLocked(ctx context.Context) error {
	if pc.backend == nil {
		return nil
	}
	raw, err := pc.backend.LogCounters(ctx)
	if err != nil {
		pc.errors++
		return err
	}
	for id, c := range raw {
		prev, seen := pc.last[id]
		delta := c
		if seen && c.Packets >= prev.Packets && c.Bytes >= prev.Bytes {
			delta = nft.Counter{Packets: c.Packets - prev.Packets, Bytes: c.Bytes - prev.Bytes}
		}
		pc.last[id] = c
		d, ok := pc.resolver.Decider(id)
		if !ok {
			continue // a chain of a table this run has not committed yet
		}
		l := labelsOf(d)
		t := pc.totals[l]
		pc.totals[l] = nft.Counter{Packets: t.Packets + delta.Packets, Bytes: t.Bytes + delta.Bytes}
		if pc.bound {
			pc.since[id] += delta.Packets
		}
	}
	for id := range pc.last {
		if _, ok := raw[id]; !ok {
			delete(pc.last, id) // its chain is gone; a new one starts at zero
		}
	}
	pc.account()
	return nil
}

// account updates rateLimited; it runs under pc.mu after a read.
func (pc *policyCounters) account() {
	read := pc.resolver.ReadCounts()
	var sum uint64
	for id, n := range pc.since {
		r, ok := read[id]
		if !ok {
			delete(pc.since, id) // forgotten by the resolver: no longer comparable
			continue
		}
		if n > r {
			sum += n - r
		}
	}
	lost := pc.resolver.Stats().Lost
	if sum > lost {
		sum -= lost
	} else {
		sum = 0
	}
	pc.rateLimited = max(pc.rateLimited, sum)
}

// Describe implements prometheus.Collector.
func (pc *policyCounters) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{pc.packets, pc.bytes, pc.readErrors, pc.read, pc.lost, pc.overruns, pc.limitedDesc, pc.dropped, pc.observers} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: it reads the kernel's counters.
func (pc *policyCounters) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), counterTimeout)
	defer cancel()
	pc.mu.Lock()
	_ = pc.pollLocked(ctx) // on failure the last totals stand, and the error is counted
	for l, t := range pc.totals {
		lv := []string{l.kind, l.namespace, l.name, l.direction, l.verdict}
		ch <- prometheus.MustNewConstMetric(pc.packets, prometheus.CounterValue, float64(t.Packets), lv...)
		ch <- prometheus.MustNewConstMetric(pc.bytes, prometheus.CounterValue, float64(t.Bytes), lv...)
	}
	errs, limited := pc.errors, pc.rateLimited
	pc.mu.Unlock()
	st := pc.resolver.Stats()
	counter := func(d *prometheus.Desc, v uint64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), lv...)
	}
	counter(pc.readErrors, errs)
	counter(pc.read, st.Recorded, "recorded")
	counter(pc.read, st.Deduplicated, "deduplicated")
	counter(pc.read, st.UnknownID, "unknown_id")
	counter(pc.lost, st.Lost)
	counter(pc.overruns, st.Overruns)
	counter(pc.limitedDesc, limited)
	counter(pc.dropped, st.Dropped)
	ch <- prometheus.MustNewConstMetric(pc.observers, prometheus.GaugeValue, float64(pc.resolver.Subscribers()))
}

// errVerdictsOff answers /verdicts when the table logs nothing.
var errVerdictsOff = errors.New("verdict logging is off on this agent (policyd run --log-drops=false --log-allowed=false)")
