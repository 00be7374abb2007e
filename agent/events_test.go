package agent

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/selectors"
)

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}

// TestHandlers_UpdatesThatChangeNothingUsedAreDropped: a pod update whose
// record is unchanged (a readiness flip, a restart: a new resourceVersion,
// the same labels, addresses, ports and node) neither changes the index nor
// asks for a sync; one that changes labels does. Namespaces likewise.
func TestHandlers_UpdatesThatChangeNothingUsedAreDropped(t *testing.T) {
	t.Parallel()
	a := &Agent{
		cfg:     Config{NodeName: "node-1"},
		log:     slog.New(slog.DiscardHandler),
		metrics: NewMetrics(nil),
		index:   selectors.New(),
		trigger: make(chan struct{}, 1),
	}
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	pod := func(rv string, lbls labels.Set, ip string) *cached {
		return &cached{resourceVersion: rv, pod: &cluster.Pod{Namespace: "x", Name: "a", NodeName: "node-1", Labels: lbls, Created: created,
			IPs: []netip.Addr{netip.MustParseAddr(ip)}, Ports: []cluster.ContainerPort{{Name: "http", Port: 80, Protocol: cluster.ProtocolTCP}}}}
	}
	h := a.podHandlers()
	v1 := pod("1", labels.Set{"app": "web"}, "10.1.0.5")
	h.AddFunc(v1)
	require.Len(t, a.pending, 1)

	h.UpdateFunc(v1, pod("2", labels.Set{"app": "web"}, "10.1.0.5"))
	assert.Len(t, a.pending, 1, "a readiness flip is no change")
	assert.Equal(t, float64(1), counterValue(t, a.metrics.events.WithLabelValues("Pod", "ignored")))

	h.UpdateFunc(v1, pod("3", labels.Set{"app": "db"}, "10.1.0.5"))
	assert.Len(t, a.pending, 2, "a label change is")
	h.UpdateFunc(v1, pod("4", labels.Set{"app": "web"}, "10.1.0.6"))
	assert.Len(t, a.pending, 3, "an address change is")
	assert.Equal(t, float64(3), counterValue(t, a.metrics.events.WithLabelValues("Pod", "applied")))
	assert.Equal(t, labels.Set{"app": "web"}, a.index.Pod("x", "a").Labels)

	nh := a.namespaceHandlers()
	ns := func(rv string, lbls labels.Set) *cached {
		return &cached{resourceVersion: rv, ns: &cluster.Namespace{Name: "x", Labels: lbls}}
	}
	nh.AddFunc(ns("1", labels.Set{"team": "a"}))
	nh.UpdateFunc(ns("1", labels.Set{"team": "a"}), ns("2", labels.Set{"team": "a"}))
	assert.Len(t, a.pending, 4, "a namespace annotation change is no change")
	nh.UpdateFunc(ns("2", labels.Set{"team": "a"}), ns("3", labels.Set{"team": "b"}))
	assert.Len(t, a.pending, 5)
}
