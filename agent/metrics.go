package agent

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/verdicts"
)

// Metrics are the agent's Prometheus metrics, all prefixed policyd_.
type Metrics struct {
	registry     *prometheus.Registry
	syncDuration prometheus.Histogram
	syncErrors   prometheus.Counter
	ctCut        *prometheus.CounterVec
	ctPass       prometheus.Histogram
	ctErrors     prometheus.Counter
	syncs        *prometheus.CounterVec
	syncOps      prometheus.Counter
	objects      *prometheus.GaugeVec
	programmed   *prometheus.GaugeVec
	latency      prometheus.Histogram
	lastSuccess  prometheus.Gauge
	conflicts    prometheus.Gauge
	// quarantined counts the objects quarantined on this node, by kind;
	// quarantineDecisions the decisions, by kind and reason; cost the
	// node's table as the budget counts it, and budget its per-node budget,
	// by dimension.
	quarantined         *prometheus.GaugeVec
	quarantineDecisions *prometheus.CounterVec
	cost, budget        *prometheus.GaugeVec
	// events counts informer events by kind and effect: applied (the
	// index changed, a sync follows) or ignored (an update that changes
	// nothing policyd uses).
	events *prometheus.CounterVec
	// bypassed is 1 while the node's pod traffic is seen not to pass
	// through the table (bypass.go).
	bypassed prometheus.Gauge
	// verdictReaderUp is 1 while the verdict reader has the nflog group.
	verdictReaderUp prometheus.Gauge
	// cnpDiscoveryErrors counts discovery failures (other than 404) when
	// asking which version serves ClusterNetworkPolicies.
	cnpDiscoveryErrors prometheus.Counter
	// cnpVersion is 1 for the version the agent reads them in.
	cnpVersion *prometheus.GaugeVec
	// probes logs why /healthz or /readyz fail (their bodies say only
	// "not ok"); the agent sets its logger.
	probes probeLog
	// failing reports how long syncs have been failing; the agent sets it
	// once it exists (metrics are created before the agent).
	failing func() float64
}

// NewMetrics registers the metrics with reg; nil means a new registry that
// also carries the Go and process collectors.
func NewMetrics(reg *prometheus.Registry) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	buckets := []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	m := &Metrics{
		registry: reg,
		syncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "policyd_sync_duration_seconds", Help: "Time to compile the node's ruleset and commit the difference to the kernel.", Buckets: buckets,
		}),
		ctCut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "policyd_conntrack_cut_total", Help: "Conntrack flows strict mode ended, by the direction that denies them (egress, ingress, unknown-source, unknown-destination).",
		}, []string{"reason"}),
		ctPass: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "policyd_conntrack_pass_duration_seconds", Help: "Duration of one strict-mode pass over the marked conntrack flows.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		ctErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "policyd_conntrack_pass_errors_total", Help: "Strict-mode passes or flows that failed (dump, judgement or delete).",
		}),
		syncErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "policyd_sync_errors_total", Help: "Syncs that failed (the next one is a full resync), and batches the kernel refused once and took on the immediate retry.",
		}),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "policyd_syncs_total", Help: "Committed syncs, by kind: partial (diff against the last commit) or full (diff against the table read back from the kernel).",
		}, []string{"kind"}),
		syncOps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "policyd_sync_operations_total", Help: "Netlink operations written (set, chain, rule and element changes).",
		}),
		objects: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "policyd_objects", Help: "Objects known to the agent, by kind (pods, networkpolicies, invalid_networkpolicies, clusternetworkpolicies, invalid_clusternetworkpolicies, nodes).",
		}, []string{"kind"}),
		programmed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "policyd_programmed", Help: "What the last committed table holds, by kind (sets, maps, elements, chains, rules).",
		}, []string{"kind"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "policyd_programming_latency_seconds", Help: "From an API event reaching the agent to its effect being committed in the kernel.", Buckets: buckets,
		}),
	}
	m.lastSuccess = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "policyd_last_successful_sync_timestamp_seconds", Help: "When a sync last committed (Unix time); 0 before the first.",
	})
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "policyd_events_total", Help: "API events by kind and effect: applied (the index changed and a sync follows) or ignored (an update that changes nothing policyd uses: a pod's readiness, restarts, conditions).",
	}, []string{"kind", "effect"})
	m.bypassed = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "policyd_datapath_bypassed", Help: "1 while this node's pods send traffic that netfilter, and so policyd's table, never sees (an eBPF or OVS datapath, a bridge without br_netfilter): nothing is enforced here.",
	})
	m.conflicts = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "policyd_address_conflicts", Help: "Addresses that two or more pods claim in the API; each is policed as the strictest of its claimants.",
	})
	m.quarantined = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "policyd_quarantined_objects", Help: "Policy objects quarantined on this node (over their budget, picked to bring the node under its budget, or refused by the kernel), by kind: their subjects fail closed.",
	}, []string{"kind"})
	m.quarantineDecisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "policyd_quarantine_decisions_total", Help: "Quarantine decisions made on this node (an object newly quarantined, or for another reason), by kind and reason (object-budget, node-budget, kernel-refused).",
	}, []string{"kind", "reason"})
	m.cost = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "policyd_table_cost", Help: "What the last compile counted for this node's table before building it, quarantined objects stripped, by dimension (rules, elements, chains).",
	}, []string{"dimension"})
	m.budget = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "policyd_table_budget", Help: "The per-node budget, by dimension (rules, elements, chains); 0 is unbounded.",
	}, []string{"dimension"})
	m.verdictReaderUp = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "policyd_verdict_reader_up", Help: "1 while the agent reads the nflog group its table logs verdicts to (0 with verdicts on means no records and no rate-limit accounting; the log says why).",
	})
	m.cnpDiscoveryErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "policyd_cnp_discovery_errors_total", Help: "Discovery failures (other than 404) asking which version serves ClusterNetworkPolicies; the agent keeps the informer that runs, and at start waits.",
	})
	m.cnpVersion = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "policyd_cnp_api_version", Help: "1 for the policy.networking.k8s.io version the agent reads ClusterNetworkPolicies in (none: not served).",
	}, []string{"version"})
	failing := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "policyd_sync_failing_seconds", Help: "How long every sync has been failing (0 while the last sync committed); /readyz turns unready past --unready-after.",
	}, func() float64 {
		if m.failing == nil {
			return 0
		}
		return m.failing()
	})
	reg.MustRegister(m.ctCut, m.ctPass, m.ctErrors, m.syncDuration, m.syncErrors, m.syncs, m.syncOps, m.objects, m.programmed, m.latency, m.lastSuccess, m.conflicts, m.events, m.bypassed, m.verdictReaderUp, m.cnpDiscoveryErrors, m.cnpVersion, failing,
		m.quarantined, m.quarantineDecisions, m.cost, m.budget)
	return m
}

// observeCost records a compile's count and the node's budget.
func (m *Metrics) observeCost(c, budget compile.Cost) {
	for _, d := range []struct {
		name      string
		cost, max int
	}{{"rules", c.Rules, budget.Rules}, {"elements", c.Elements, budget.Elements}, {"chains", c.Chains, budget.Chains}} {
		m.cost.WithLabelValues(d.name).Set(float64(d.cost))
		m.budget.WithLabelValues(d.name).Set(float64(d.max))
	}
}

// registerStreams adds the count of /verdicts requests refused beyond the
// cap (the streams open are policyd_verdict_observers).
func (m *Metrics) registerStreams(s *verdicts.Streams) error {
	return m.registry.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "policyd_verdict_observers_refused_total", Help: "/verdicts requests answered 429 because --max-verdict-streams streams were open (policyd_verdict_observers).",
	}, func() float64 { return float64(s.Refused()) }))
}

// setCNPVersion marks v (a cnpapi.Version's String) as the version read.
func (m *Metrics) setCNPVersion(v string) {
	m.cnpVersion.Reset()
	m.cnpVersion.WithLabelValues(v).Set(1)
}

// Handler serves /metrics, /healthz (the sync loop is alive), /readyz
// (the first sync has committed) and /verdicts (the stream of verdict
// records, see verdicts.Resolver.Handler; 404 when verdicts are off).
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.metrics.registry, promhttp.HandlerOpts{}))
	if a.verdicts != nil {
		mux.Handle(verdicts.Path, a.verdicts.streams)
	} else {
		mux.HandleFunc(verdicts.Path, func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, errVerdictsOff.Error(), http.StatusNotFound)
		})
	}
	// The probes answer "ok" or "not ok" and nothing else: they are served
	// without the token (the kubelet carries none), and a sync error names
	// policies and addresses. The detail goes to the log, once per change,
	// and to the metrics (policyd_sync_failing_seconds, _errors_total).
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		// Liveness is the loop running: a restart would not make the kernel
		// accept a batch it refuses.
		err := a.Healthy()
		a.metrics.probes.note("/healthz", err)
		probeAnswer(w, err == nil)
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		st := a.Status()
		var why error
		switch {
		case !st.Committed && st.LastError != nil:
			why = fmt.Errorf("waiting for the first sync to commit; syncs failing: %w", st.LastError)
		case !st.Committed:
			why = errors.New("waiting for the first sync to commit")
		case !st.Ready:
			why = fmt.Errorf("syncs have been failing for more than %s; the table committed at %s stays in force: %w",
				a.cfg.UnreadyAfter, st.LastSuccess.UTC().Format(time.RFC3339), st.LastError)
		}
		a.metrics.probes.note("/readyz", why)
		probeAnswer(w, why == nil)
	})
	return mux
}

// probeAnswer writes a probe's fixed answer: 200 "ok", or 503 "not ok".
func probeAnswer(w http.ResponseWriter, ok bool) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "not ok\n")
		return
	}
	_, _ = io.WriteString(w, "ok\n")
}

// probeLog logs why a probe fails, once each time the reason changes (the
// kubelet asks every few seconds), and when it passes again.
type probeLog struct {
	log  *slog.Logger
	mu   sync.Mutex
	last map[string]string
}

func (p *probeLog) note(path string, why error) {
	msg := ""
	if why != nil {
		msg = why.Error()
	}
	p.mu.Lock()
	changed := p.last[path] != msg
	if p.last == nil {
		p.last = map[string]string{}
	}
	p.last[path] = msg
	p.mu.Unlock()
	switch {
	case !changed || p.log == nil:
	case why != nil:
		p.log.Warn("health probe answers not ok", "probe", path, "why", msg)
	default:
		p.log.Info("health probe answers ok again", "probe", path)
	}
}
