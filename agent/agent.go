// Package agent is policyd's node agent: it watches Pods, Namespaces,
// NetworkPolicies, Nodes and (when the CRD is installed, see cnp.go)
// ClusterNetworkPolicies through client-go informers, keeps the selector index up to
// date event by event, and runs a coalescing, bounded-frequency sync loop that
// compiles the node's ruleset and applies the difference to the kernel.
//
// Lifecycle (fail closed):
//   - On start the kernel keeps whatever table a previous run left, so
//     enforcement never pauses; the first sync, once the informers have
//     synced, adopts that table with a diff (policy/nft reads it back).
//   - The agent is ready only after that first sync has committed.
//   - On stop it leaves the table in place: enforcement continues across
//     restarts and upgrades. `policyd cleanup` removes it.
//   - While the API server is away the informers retry and the kernel keeps
//     enforcing the last committed state; periodic syncs still repair a table
//     someone else changed. When informers come back from a gap one by one,
//     syncs are held until all are back (gate.go).
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	npaclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/internal/cnpapi"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/ctcut"
	"github.com/policyd/policyd/policy/nft"
	"github.com/policyd/policyd/policy/quarantine"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/selectors"
)

// Defaults for Config.
const (
	DefaultMinSyncInterval = 100 * time.Millisecond
	DefaultMaxSyncInterval = 60 * time.Second
	// DefaultUnreadyAfter is how long syncs may keep failing before the
	// agent reports itself unready.
	DefaultUnreadyAfter = 30 * time.Second
	retryInterval       = time.Second
	// DefaultFlowMark is the conntrack mark bit of strict mode.
	DefaultFlowMark = 0x00100000
	// DefaultCutMark is the conntrack mark bit of the UDP and SCTP flows
	// strict mode cut (compile.Options.CutMark).
	DefaultCutMark = DefaultFlowMark << 1
)

// Config configures an Agent.
type Config struct {
	// NodeName is the node whose pods this agent enforces; required.
	NodeName string
	// Client talks to the API server; required.
	Client kubernetes.Interface
	// CNPClient reads ClusterNetworkPolicies (policy.networking.k8s.io
	// v1beta1 or v1alpha2), whether or not their CRD is installed yet (see
	// cnp.go); nil means the agent does not enforce them.
	CNPClient npaclient.Interface
	// CRDCheckInterval is how often the agent asks discovery which version
	// serves ClusterNetworkPolicies. Zero means DefaultCRDCheckInterval.
	CRDCheckInterval time.Duration
	// Backend programs the kernel; required.
	Backend nft.Interface
	// MinSyncInterval is the coalescing delay: at most one sync starts per
	// interval, and a burst of events within it becomes one sync.
	MinSyncInterval time.Duration
	// MaxSyncInterval bounds the time between syncs when nothing happens;
	// each sync also detects and repairs a table changed by someone else.
	MaxSyncInterval time.Duration
	// UnreadyAfter is how long every sync may fail (the kernel refusing the
	// batch, a compile error) before /readyz turns unready; the last table
	// committed stays in force meanwhile. Zero means DefaultUnreadyAfter.
	UnreadyAfter time.Duration
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
	// Metrics receives the agent's metrics; nil means a private registry.
	Metrics *Metrics
	// Recorder, when set, receives a Warning Event for each invalid policy.
	Recorder record.EventRecorder
	// PodNetwork adds CIDRs to the pod network, which is otherwise the
	// union of every Node's spec.podCIDRs (see podnet.go). Addresses inside
	// it that no known pod holds are dropped (compile.Options.PodNetwork): a
	// new pod gets no traffic before policyd knows which policies apply to it.
	PodNetwork []netip.Prefix
	// PodNetworkExempt lists ranges inside the pod network that are never
	// a pod's (a CNI's gateway or tunnel addresses its Nodes do not
	// publish, see podnet.go): the closing leaves them alone
	// (compile.Options.PodNetworkExempt).
	PodNetworkExempt []netip.Prefix
	// CutEstablished, when set, is strict mode (--cut-established): the
	// table marks the flows of this node's pods with FlowMark, and after
	// each commit that changed the table the agent ends the marked flows
	// the new table would not admit as new connections (policy/ctcut).
	CutEstablished ctcut.Table
	// FlowMark is the conntrack mark bit strict mode uses; zero means
	// DefaultFlowMark.
	FlowMark uint32
	// CutMark is the conntrack mark bit of the flows strict mode cut and
	// keeps (UDP, SCTP), which the table drops; zero means DefaultCutMark.
	// It must not share a bit with FlowMark.
	CutMark uint32
	// Verdicts configures live verdicts (verdicts.go): what the table
	// logs, where the agent reads it and whether records go to its log.
	// The zero value logs nothing.
	Verdicts VerdictConfig
	// OnCommit, when set, is called after each successful sync (tests and
	// benchmarks use it to measure programming latency).
	OnCommit func(Commit)
	// Budget bounds what one policy object and the node's whole table may
	// cost (compile.Budget); objects over it are quarantined (quarantine.go).
	// The zero Budget means compile.DefaultBudget of the DaemonSet's
	// memory limit.
	Budget compile.Budget
	// Datapath, when set, is sampled every DatapathInterval to find out
	// whether the node's pod traffic passes through the table at all
	// (bypass.go); a datapath that bypasses it is reported (NotEnforcing).
	Datapath DatapathSampler
	// DatapathInterval is the sampling window; zero means 30 s.
	DatapathInterval time.Duration
}

// Change is one API event that a sync committed.
type Change struct {
	// Kind is "Pod", "Namespace", "NetworkPolicy", "ClusterNetworkPolicy"
	// or "Node"; Key is "ns/name", or the name of a cluster-scoped object.
	Kind, Key string
	// ResourceVersion of the object as the informer delivered it ("" for a delete).
	ResourceVersion string
	// Observed is when the informer delivered the event.
	Observed time.Time
}

// Commit describes one successful sync.
type Commit struct {
	Time    time.Time
	Changes []Change
	Stats   nft.SyncStats
}

// Agent is one node's enforcement loop.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	metrics *Metrics

	mu       sync.Mutex // guards index, compiler, pending, invalid, invalidCNP, cnp, ambiguous, podNet
	index    *selectors.Index
	compiler *compile.Compiler // reused across syncs: unchanged sets are not rebuilt
	release  releaser          // returns a big compile's freed pages to the OS
	pending  []Change
	invalid  map[string]string // policy key -> errors it was last reported with
	// invalidCNP is invalid for ClusterNetworkPolicies, by name.
	invalidCNP map[string]string
	// cnp is the ClusterNetworkPolicy informers' state (see cnp.go).
	cnp cnpState
	// ambiguous is the same-tier, same-priority groups of CNPs last
	// reported: "tier/priority" -> names.
	ambiguous map[string]string
	bg        sync.WaitGroup // informers started outside the factory
	// conflicts is the fingerprint of the address conflicts last reported.
	conflicts string
	// podNet is the fingerprint of the pod network last reported.
	podNet string
	// verdicts is nil unless Config.Verdicts logs something.
	verdicts *verdictState
	// gate holds syncs across a watch gap (gate.go).
	gate *watchGate
	// refused holds the objects the kernel refused (quarantine.go), under
	// mu; quarantine the decisions last reported (sync loop only).
	refused    map[quarantine.Object]refusal
	quarantine map[quarantine.Object]quarantine.Decision

	trigger chan struct{}
	// podLabels shares one labels.Set among pods with identical labels,
	// selectors one parsed selector among policies.
	podLabels interner[labels.Set]
	selectors interner[labels.Selector]

	stateMu      sync.Mutex
	ready        bool
	lastLoop     time.Time
	lastError    error
	failingSince time.Time // first failure since the last successful sync
	lastSuccess  time.Time
}

// New checks cfg and returns an Agent; Run starts it.
func New(cfg Config) (*Agent, error) {
	switch {
	case cfg.NodeName == "":
		return nil, errors.New("agent: NodeName is required")
	case cfg.Client == nil:
		return nil, errors.New("agent: Client is required")
	case cfg.Backend == nil:
		return nil, errors.New("agent: Backend is required")
	}
	if cfg.MinSyncInterval <= 0 {
		cfg.MinSyncInterval = DefaultMinSyncInterval
	}
	if cfg.MaxSyncInterval <= 0 {
		cfg.MaxSyncInterval = DefaultMaxSyncInterval
	}
	if cfg.UnreadyAfter <= 0 {
		cfg.UnreadyAfter = DefaultUnreadyAfter
	}
	if cfg.CRDCheckInterval <= 0 {
		cfg.CRDCheckInterval = DefaultCRDCheckInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.FlowMark == 0 {
		cfg.FlowMark = DefaultFlowMark
	}
	if cfg.CutMark == 0 {
		cfg.CutMark = DefaultCutMark
	}
	if cfg.FlowMark&cfg.CutMark != 0 {
		return nil, fmt.Errorf("agent: flow mark %#x and cut mark %#x share bits", cfg.FlowMark, cfg.CutMark)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	a := &Agent{
		cfg:        cfg,
		log:        cfg.Logger.With("node", cfg.NodeName),
		metrics:    cfg.Metrics,
		index:      selectors.New(),
		compiler:   &compile.Compiler{},
		invalid:    map[string]string{},
		invalidCNP: map[string]string{},
		trigger:    make(chan struct{}, 1),
		refused:    map[quarantine.Object]refusal{},
	}
	a.compiler.Options.Budget = budgetOf(cfg)
	a.compiler.Options.PodNetworkExempt = cfg.PodNetworkExempt
	if cfg.CutEstablished != nil {
		a.compiler.Options.FlowMark = cfg.FlowMark
		a.compiler.Options.CutMark = cfg.CutMark
	}
	if cfg.Verdicts.enabled() {
		if cfg.Verdicts.Log.Rate == 0 {
			// No limit: a burst without a rate is a limit the kernel
			// refuses (policyd run --log-rate 0 keeps --log-burst's default).
			cfg.Verdicts.Log.Burst = 0
		}
		a.cfg.Verdicts = cfg.Verdicts
		a.compiler.Options.Log = cfg.Verdicts.Log
		a.verdicts = newVerdictState(cfg.NodeName, cfg.Backend, cfg.Verdicts.MaxStreams)
		if err := a.metrics.registry.Register(a.verdicts.counters); err != nil {
			return nil, fmt.Errorf("agent: registering the policy counters: %w", err)
		}
		if err := a.metrics.registerStreams(a.verdicts.streams); err != nil {
			return nil, fmt.Errorf("agent: registering the stream metrics: %w", err)
		}
	}
	a.metrics.failing = func() float64 { return a.Status().FailingFor.Seconds() }
	a.metrics.probes.log = a.log
	a.gate = newWatchGate(a.log, a.Trigger)
	return a, nil
}

// Ready reports whether the first sync has committed and syncs have not
// been failing for longer than Config.UnreadyAfter.
func (a *Agent) Ready() bool { return a.Status().Ready }

// Status is the agent's sync state, as /readyz and /healthz report it.
type Status struct {
	// Ready: the first sync has committed and syncs have not kept failing
	// for longer than Config.UnreadyAfter.
	Ready bool
	// Committed: at least one sync has committed.
	Committed bool
	// LastError is the error of the last sync, nil when it succeeded.
	LastError error
	// FailingFor is how long syncs have been failing (zero when the last
	// one succeeded).
	FailingFor time.Duration
	// LastSuccess is when the last sync committed (zero before the first).
	LastSuccess time.Time
}

// Status returns the agent's sync state.
func (a *Agent) Status() Status {
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	st := Status{Committed: a.ready, LastError: a.lastError, LastSuccess: a.lastSuccess}
	if !a.failingSince.IsZero() {
		st.FailingFor = time.Since(a.failingSince)
	}
	st.Ready = st.Committed && (st.LastError == nil || st.FailingFor <= a.cfg.UnreadyAfter)
	return st
}

// Healthy reports whether the sync loop is alive: it has run within twice
// the maximum sync interval (plus slack for a slow sync).
func (a *Agent) Healthy() error {
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	if a.lastLoop.IsZero() {
		return nil // still starting: informers are syncing
	}
	if age := time.Since(a.lastLoop); age > 2*a.cfg.MaxSyncInterval+30*time.Second {
		return fmt.Errorf("sync loop last ran %s ago", age.Round(time.Second))
	}
	return nil
}

// Run starts the informers, waits for their caches, then syncs until ctx is
// done. It never removes the table: enforcement outlives the agent.
func (a *Agent) Run(ctx context.Context) error {
	factory := informers.NewSharedInformerFactory(a.cfg.Client, 0)
	// No indexers: the factory's default namespace index (a set of keys per
	// namespace, 2.5 MB at 50k pods) serves listers, which the agent does
	// not use; the selector index is its index.
	noIndex := cache.Indexers{}
	// Their requests pass through the gate (gate.go), which holds syncs
	// while informers come back from a gap one by one.
	pods := factory.InformerFor(&corev1.Pod{}, func(c kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
		return a.gate.podInformer(c, resync, noIndex)
	})
	nss := factory.InformerFor(&corev1.Namespace{}, func(c kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
		return a.gate.namespaceInformer(c, resync, noIndex)
	})
	pols := factory.InformerFor(&networkingv1.NetworkPolicy{}, func(c kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
		return a.gate.policyInformer(c, resync, noIndex)
	})
	nodes := factory.InformerFor(&corev1.Node{}, func(c kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
		return a.gate.nodeInformer(c, resync, noIndex)
	})
	for _, set := range []struct {
		inf cache.SharedIndexInformer
	}{{pods}, {nss}, {pols}, {nodes}} {
		if err := set.inf.SetTransform(a.toCached); err != nil {
			return fmt.Errorf("agent: setting informer transform: %w", err)
		}
	}
	handlers := []struct {
		inf cache.SharedIndexInformer
		h   cache.ResourceEventHandlerFuncs
	}{
		{pods, a.podHandlers()},
		{nss, a.namespaceHandlers()},
		{pols, a.policyHandlers()},
		{nodes, a.nodeHandlers()},
	}
	// Wait for the handlers, not just the informers: an informer's cache can
	// be full while its handler has yet to deliver part of it, and a first
	// sync from a partial index would replace a good table with a partial one.
	var synced []cache.InformerSynced
	for _, h := range handlers {
		reg, err := h.inf.AddEventHandler(h.h)
		if err != nil {
			return fmt.Errorf("agent: adding event handler: %w", err)
		}
		synced = append(synced, reg.HasSynced)
	}
	// Informers started outside the factory stop with ctx; Run returns
	// after them.
	ctx, cancel := context.WithCancel(ctx)
	defer func() { cancel(); factory.Shutdown(); a.bg.Wait() }()
	if a.cfg.Datapath != nil {
		a.bg.Add(1)
		go func() { defer a.bg.Done(); a.watchDatapath(ctx) }()
	}
	if a.verdicts != nil {
		// Bound before the first sync, so the first packets its table logs
		// are read; they resolve once that sync has learned their ids.
		a.bg.Add(1)
		go func() { defer a.bg.Done(); a.readVerdicts(ctx) }()
	}
	cnpAtStart := cnpapi.None
	if a.cfg.CNPClient != nil {
		var err error
		if cnpAtStart, err = a.cnpVersionAtStart(ctx); err != nil {
			return err // ctx ended
		}
		if cnpAtStart != cnpapi.None {
			cnpSynced, err := a.startCNPInformer(ctx, cnpAtStart, false)
			if err != nil {
				return err
			}
			synced = append(synced, cnpSynced)
		} else {
			a.log.Info("ClusterNetworkPolicies are not served (no CRD serves policy.networking.k8s.io v1beta1 or v1alpha2); checking again periodically", "interval", a.cfg.CRDCheckInterval)
		}
		a.bg.Add(1)
		go func() { defer a.bg.Done(); a.watchCNPAPI(ctx) }()
	}
	factory.Start(ctx.Done())
	a.log.Info("waiting for informer caches; the table a previous run left stays in force meanwhile")
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return ctx.Err()
	}
	a.log.Info("informer caches synced", "pods", len(pods.GetStore().ListKeys()), "namespaces", len(nss.GetStore().ListKeys()), "networkpolicies", len(pols.GetStore().ListKeys()), "nodes", len(nodes.GetStore().ListKeys()), "clusternetworkpolicies_version", cnpAtStart.String())
	a.loop(ctx)
	a.log.Info("stopping; nftables rules stay in place (policyd cleanup removes them)")
	return nil
}

// Trigger asks for a sync soon (coalesced with other requests).
func (a *Agent) Trigger() {
	select {
	case a.trigger <- struct{}{}:
	default:
	}
}

func (a *Agent) loop(ctx context.Context) {
	var lastStart time.Time
	timer := time.NewTimer(0) // first sync right away
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.trigger:
		case <-timer.C:
		}
		// Coalesce: never start two syncs closer than MinSyncInterval; events
		// arriving meanwhile join this sync.
		if wait := a.cfg.MinSyncInterval - time.Since(lastStart); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		lastStart = time.Now()
		err := a.syncOnce(ctx)
		next := a.cfg.MaxSyncInterval
		if err != nil && ctx.Err() == nil {
			next = retryInterval
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
	}
}

// syncOnce compiles and applies. A failure keeps the pending changes for the
// next attempt; the backend itself falls back to a full resync after an error.
func (a *Agent) syncOnce(ctx context.Context) error {
	start := time.Now()
	if a.holdSync(start) {
		return nil // pending changes wait for the hold to end
	}
	a.mu.Lock()
	pending := a.pending
	a.pending = nil
	podNet := podNetwork(a.cfg.PodNetwork, a.index.Nodes())
	a.compiler.Options.PodNetwork = podNet.network
	reportPodNet := podNet.fingerprint() != a.podNet
	a.podNet = podNet.fingerprint()
	standing := a.refusedSet()
	a.compiler.Options.Quarantine = standing
	rs, err := a.compiler.Compile(a.index, a.cfg.NodeName)
	compileErr := err
	decisions, candidates := a.compiler.Quarantined(), a.compiler.Objects()
	a.metrics.observeCost(a.compiler.LastCost(), a.compiler.Options.Budget.Node)
	// Learned before the commit, so the first packet logged under a new id
	// resolves (ids are content hashes: a commit that fails teaches nothing
	// wrong).
	removesDecider := false
	if err == nil && a.verdicts != nil {
		removesDecider = a.verdicts.learn(rs)
	}
	counts := a.objectCounts()
	var conflicts []compile.Conflict
	if fp := a.compiler.ConflictsFingerprint(); err == nil && fp != a.conflicts {
		a.conflicts = fp
		conflicts = a.compiler.Conflicts()
		a.metrics.conflicts.Set(float64(len(conflicts)))
	}
	ambiguous := a.noteAmbiguous()
	a.mu.Unlock()
	if reportPodNet {
		a.reportPodNetwork(podNet)
	}
	a.reportConflicts(conflicts)
	a.reportAmbiguous(ambiguous)
	a.podLabels.setObjects(counts["pods"])
	a.selectors.setObjects(counts["networkpolicies"])

	a.stateMu.Lock()
	a.lastLoop = start
	a.stateMu.Unlock()
	for k, v := range counts {
		a.metrics.objects.WithLabelValues(k).Set(float64(v))
	}

	if removesDecider {
		// The commit deletes log chains: keep what they counted since the
		// last scrape.
		cctx, cancel := context.WithTimeout(ctx, counterTimeout)
		_ = a.verdicts.counters.poll(cctx)
		cancel()
	}
	var stats nft.SyncStats
	if err == nil {
		stats, err = a.cfg.Backend.Sync(ctx, rs)
	}
	if err != nil && compileErr == nil && ctx.Err() == nil {
		// Once more, from the table read back (the backend does so after
		// an error): a transient failure costs no bisection.
		var retryErr error
		if stats, retryErr = a.cfg.Backend.Sync(ctx, rs); retryErr == nil {
			// Not silent: the refusal is counted and logged.
			a.metrics.syncErrors.Inc()
			a.log.Warn("the kernel refused the sync's batch once; the retry committed it", "err", err)
			err = nil
		}
	}
	if err != nil && compileErr == nil && ctx.Err() == nil {
		// The kernel refused the batch twice: find the policies whose part
		// it refuses, quarantine them and commit the rest (quarantine.go).
		var b nft.SyncStats
		var brs *ruleset.Ruleset
		var bd []quarantine.Decision
		if b, brs, bd, err = a.bisect(ctx, err, candidates, standing.Node(a.cfg.NodeName)); err == nil {
			stats, rs, decisions = b, brs, bd
		}
	}
	now := time.Now()
	a.metrics.syncDuration.Observe(now.Sub(start).Seconds())
	if err != nil {
		a.mu.Lock()
		a.pending = append(pending, a.pending...)
		a.mu.Unlock()
		a.metrics.syncErrors.Inc()
		a.stateMu.Lock()
		a.lastError = err
		if a.failingSince.IsZero() {
			a.failingSince = now
		}
		a.stateMu.Unlock()
		a.log.Error("sync failed; will retry with a full resync", "err", err)
		return err
	}
	kind := "partial"
	if stats.Full {
		kind = "full"
	}
	a.metrics.syncs.WithLabelValues(kind).Inc()
	a.metrics.syncOps.Add(float64(stats.Ops))
	a.reportQuarantine(decisions)
	a.observeProgrammed(rs)
	for _, c := range pending {
		a.metrics.latency.Observe(now.Sub(c.Observed).Seconds())
	}
	a.stateMu.Lock()
	first := !a.ready
	a.ready = true
	a.lastError = nil
	a.failingSince = time.Time{}
	a.lastSuccess = now
	a.stateMu.Unlock()
	a.metrics.lastSuccess.Set(float64(now.UnixNano()) / 1e9)
	if first {
		// The first sync's transient allocations (the initial lists as
		// decoded, the first full compile) leave freed pages resident
		// until the background scavenger returns them at its slow pace:
		// at 50,000 pods tens of MB for minutes. Return them now; a
		// later sync's go back when they are many (releaser).
		go debug.FreeOSMemory()
		a.release.released(now)
	} else {
		a.release.afterSync(now)
	}
	level := slog.LevelDebug
	if first || stats.Full {
		level = slog.LevelInfo
	}
	a.log.Log(ctx, level, "sync committed", "full", stats.Full, "ops", stats.Ops, "changes", len(pending), "duration", now.Sub(start))
	if a.cfg.CutEstablished != nil && stats.Ops > 0 {
		a.cutEstablished(ctx, rs)
	}
	if a.cfg.OnCommit != nil {
		a.cfg.OnCommit(Commit{Time: now, Changes: pending, Stats: stats})
	}
	return nil
}

// cutEstablished is strict mode's pass after a commit that changed the
// table: the marked flows the committed table would not admit are ended.
func (a *Agent) cutEstablished(ctx context.Context, rs *ruleset.Ruleset) {
	start := time.Now()
	res, err := ctcut.Pass(ctx, a.cfg.CutEstablished, rs, a.cfg.NodeName, a.cfg.FlowMark, a.cfg.CutMark)
	a.metrics.ctPass.Observe(time.Since(start).Seconds())
	if err != nil {
		a.metrics.ctErrors.Inc()
		a.log.Error("strict mode: conntrack pass failed; established flows the policies deny may continue", "err", err)
		return
	}
	for _, c := range res.Cuts {
		a.metrics.ctCut.WithLabelValues(c.Verdict.Reason).Inc()
		a.log.Info("strict mode: established flow cut", "flow", c.Flow.String(), "denied_by", c.Verdict.Reason, "rule", c.Verdict.Rule)
	}
	for _, e := range res.Errors {
		a.metrics.ctErrors.Inc()
		a.log.Warn("strict mode: flow not judged or not cut", "err", e)
	}
	if res.Restored > 0 {
		a.log.Info("strict mode: flows cut earlier are admitted again", "flows", res.Restored)
	}
	a.log.Debug("strict mode pass", "judged", res.Judged, "cut", len(res.Cuts), "restored", res.Restored, "duration", time.Since(start))
}

func (a *Agent) observeProgrammed(rs *ruleset.Ruleset) {
	var sets, maps, elems, rules int
	for _, s := range rs.Sets {
		if s.Map {
			maps++
		} else {
			sets++
		}
		elems += s.Len()
	}
	for _, c := range rs.Chains {
		rules += len(c.Rules)
	}
	a.metrics.programmed.WithLabelValues("sets").Set(float64(sets))
	a.metrics.programmed.WithLabelValues("maps").Set(float64(maps))
	a.metrics.programmed.WithLabelValues("elements").Set(float64(elems))
	a.metrics.programmed.WithLabelValues("chains").Set(float64(len(rs.Chains)))
	a.metrics.programmed.WithLabelValues("rules").Set(float64(rules))
}

// objectCounts runs under a.mu.
func (a *Agent) objectCounts() map[string]int {
	invalid := func(m map[string]string) int {
		n := 0
		for _, v := range m {
			if v != "" {
				n++
			}
		}
		return n
	}
	return map[string]int{
		"pods":                           a.index.PodCount(),
		"networkpolicies":                a.index.PolicyCount(),
		"invalid_networkpolicies":        invalid(a.invalid),
		"clusternetworkpolicies":         a.index.ClusterPolicyCount(),
		"invalid_clusternetworkpolicies": invalid(a.invalidCNP),
		"nodes":                          len(a.index.Nodes()),
	}
}

func (a *Agent) changed(kind, key, rv string) {
	a.metrics.events.WithLabelValues(kind, "applied").Inc()
	a.pending = append(a.pending, Change{Kind: kind, Key: key, ResourceVersion: rv, Observed: time.Now()})
	a.Trigger()
}

// skipUnchanged makes h drop an update whose record is the same as the
// old one in everything policyd uses (same says which): a readiness flip,
// a restart count or a new condition changes a pod's object but not its
// record, and must cost no index change and no sync. The dropped updates
// are counted as ignored.
func (a *Agent) skipUnchanged(h cache.ResourceEventHandlerFuncs, kind string, same func(o, r *cached) bool) cache.ResourceEventHandlerFuncs {
	apply := h.UpdateFunc
	h.UpdateFunc = func(oldObj, obj interface{}) {
		o, _ := oldObj.(*cached)
		r, _ := obj.(*cached)
		if o != nil && r != nil && same(o, r) && slices.Equal(errStrings(o.errs()), errStrings(r.errs())) {
			a.metrics.events.WithLabelValues(kind, "ignored").Inc()
			return
		}
		apply(oldObj, obj)
	}
	return h
}

func errStrings(errs []error) []string {
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = e.Error()
	}
	return out
}

// samePod reports whether two pod records agree on everything the index
// and the compiler read.
func samePod(a, b *cluster.Pod) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Namespace == b.Namespace && a.Name == b.Name && a.NodeName == b.NodeName && a.HostNetwork == b.HostNetwork &&
		maps.Equal(a.Labels, b.Labels) && slices.Equal(a.IPs, b.IPs) && slices.Equal(a.Ports, b.Ports) && a.Created.Equal(b.Created)
}

func (a *Agent) podHandlers() cache.ResourceEventHandlerFuncs {
	upsert := func(r *cached) {
		if r.pod == nil {
			return
		}
		for _, err := range r.errs() {
			a.log.Warn("pod field ignored", "err", err)
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.verdicts != nil {
			a.verdicts.addrs.update(a.index.Pod(r.pod.Namespace, r.pod.Name), r.pod)
		}
		a.index.UpsertPod(r.pod)
		a.changed("Pod", r.key(), r.resourceVersion)
	}
	return a.skipUnchanged(a.handlers(upsert, func(ns, name string) {
		if a.verdicts != nil {
			a.verdicts.addrs.update(a.index.Pod(ns, name), nil)
		}
		a.index.DeletePod(ns, name)
		a.changed("Pod", ns+"/"+name, "")
	}), "Pod", func(o, r *cached) bool { return samePod(o.pod, r.pod) })
}

func (a *Agent) namespaceHandlers() cache.ResourceEventHandlerFuncs {
	upsert := func(r *cached) {
		if r.ns == nil {
			return
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		a.index.UpsertNamespace(r.ns)
		a.changed("Namespace", r.key(), r.resourceVersion)
	}
	return a.skipUnchanged(a.handlers(upsert, func(_, name string) {
		a.index.DeleteNamespace(name)
		a.changed("Namespace", name, "")
	}), "Namespace", func(o, r *cached) bool {
		return o.ns != nil && r.ns != nil && o.ns.Name == r.ns.Name && maps.Equal(o.ns.Labels, r.ns.Labels)
	})
}

func (a *Agent) policyHandlers() cache.ResourceEventHandlerFuncs {
	upsert := func(r *cached) {
		if r.policy == nil {
			return
		}
		a.mu.Lock()
		a.index.UpsertPolicy(r.policy)
		a.changed("NetworkPolicy", r.key(), r.resourceVersion)
		report := noteInvalid(a.invalid, r.key(), r.errs())
		a.mu.Unlock()
		if report {
			a.reportInvalid(r)
		}
	}
	return a.handlers(upsert, func(ns, name string) {
		a.index.DeletePolicy(ns, name)
		delete(a.invalid, ns+"/"+name)
		a.changed("NetworkPolicy", ns+"/"+name, "")
	})
}

// handlers runs upsert for adds and updates, and del, under a.mu, for
// deletes (tombstones of missed deletes included).
func (a *Agent) handlers(upsert func(*cached), del func(ns, name string)) cache.ResourceEventHandlerFuncs {
	asRecord := func(obj interface{}) {
		if r, ok := obj.(*cached); ok {
			upsert(r)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    asRecord,
		UpdateFunc: func(_, obj interface{}) { asRecord(obj) },
		DeleteFunc: func(obj interface{}) {
			ns, name, ok := deletedKey(obj)
			if !ok {
				return
			}
			a.mu.Lock()
			defer a.mu.Unlock()
			del(ns, name)
		},
	}
}

// noteInvalid records in m a policy's validation errors and reports whether
// they changed since last time (so each problem is reported once, not on
// every resync). Runs under a.mu.
func noteInvalid(m map[string]string, key string, errs []error) bool {
	var msgs []string
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	sort.Strings(msgs)
	joined := strings.Join(msgs, "\n")
	if m[key] == joined {
		return false
	}
	m[key] = joined
	return joined != ""
}

// reportConflicts warns, once per change, about each address that several
// pods claim: the API is inconsistent (or someone wrote pods/status to take
// another pod's address), and the address is policed as the strictest of its
// claimants until it is resolved.
func (a *Agent) reportConflicts(conflicts []compile.Conflict) {
	for _, cf := range conflicts {
		if len(cf.Nodes) > 0 {
			a.reportNodeConflict(cf)
			continue
		}
		a.log.Warn("pods claim the same address: it is policed as the strictest of them (allowed only where each one's policies allow)", "address", cf.Addr, "pods", cf.Pods)
		if a.cfg.Recorder == nil {
			continue
		}
		for _, key := range cf.Pods {
			ns, name, _ := strings.Cut(key, "/")
			ref := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
			a.cfg.Recorder.Eventf(ref, corev1.EventTypeWarning, "AddressConflict",
				"address %s is also claimed by %s; policyd polices it as the strictest of these pods until only one holds it", cf.Addr, strings.Join(slices.DeleteFunc(slices.Clone(cf.Pods), func(k string) bool { return k == key }), ", "))
		}
	}
}

func (a *Agent) reportInvalid(r *cached) {
	for _, err := range r.errs() {
		a.log.Warn("invalid NetworkPolicy: enforced fail-closed (the invalid part matches nothing)", "policy", r.key(), "err", err)
		if a.cfg.Recorder != nil {
			a.cfg.Recorder.Eventf(r.policyRef(), corev1.EventTypeWarning, "InvalidNetworkPolicy",
				"%s; policyd enforces the rest of the policy and lets the invalid part match nothing", err)
		}
	}
}

func deletedKey(obj interface{}) (ns, name string, ok bool) {
	if t, isTomb := obj.(cache.DeletedFinalStateUnknown); isTomb {
		obj = t.Obj
	}
	key, err := cache.MetaNamespaceKeyFunc(obj)
	if err != nil {
		return "", "", false
	}
	ns, name, err = cache.SplitMetaNamespaceKey(key)
	return ns, name, err == nil
}
