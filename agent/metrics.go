package agent

import (
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the agent's Prometheus metrics, all prefixed policyd_.
type Metrics struct {
	registry     *prometheus.Registry
	syncDuration prometheus.Histogram
	syncErrors   prometheus.Counter
	syncs        *prometheus.CounterVec
	syncOps      prometheus.Counter
	objects      *prometheus.GaugeVec
	programmed   *prometheus.GaugeVec
	latency      prometheus.Histogram
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
		syncErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "policyd_sync_errors_total", Help: "Syncs that failed; the next one is a full resync.",
		}),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "policyd_syncs_total", Help: "Committed syncs, by kind: partial (diff against the last commit) or full (diff against the table read back from the kernel).",
		}, []string{"kind"}),
		syncOps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "policyd_sync_operations_total", Help: "Netlink operations written (set, chain, rule and element changes).",
		}),
		objects: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "policyd_objects", Help: "Objects known to the agent, by kind (pods, networkpolicies, invalid_networkpolicies).",
		}, []string{"kind"}),
		programmed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "policyd_programmed", Help: "What the last committed table holds, by kind (sets, maps, elements, chains, rules).",
		}, []string{"kind"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "policyd_programming_latency_seconds", Help: "From an API event reaching the agent to its effect being committed in the kernel.", Buckets: buckets,
		}),
	}
	reg.MustRegister(m.syncDuration, m.syncErrors, m.syncs, m.syncOps, m.objects, m.programmed, m.latency)
	return m
}

// Handler serves /metrics, /healthz (the sync loop is alive) and /readyz
// (the first sync has committed).
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.metrics.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := a.Healthy(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.Ready() {
			http.Error(w, "waiting for the first sync to commit", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}
