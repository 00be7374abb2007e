package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/ti-mo/conntrack"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/conformance/lab"
	"github.com/policyd/policyd/internal/netnstest"
	"github.com/policyd/policyd/selectors"
)

// TestBypassDetector: pods sending with nothing tracked, window after
// window, is a bypass; one tracked flow is enforcing; windows without
// enough traffic are no evidence either way.
func TestBypassDetector(t *testing.T) {
	t.Parallel()
	d := &bypassDetector{minPackets: 100, windows: 2}
	step := func(packets uint64, tracked int) datapathState {
		s, _ := d.observe(DatapathSample{PodPackets: packets, TrackedFlows: tracked})
		return s
	}
	assert.Equal(t, datapathUnknown, step(1000, 0), "the first sample is no window")
	assert.Equal(t, datapathUnknown, step(1050, 0), "50 packets is not evidence")
	assert.Equal(t, datapathUnknown, step(1200, 0), "one window of evidence is not enough")
	assert.Equal(t, datapathBypassed, step(1400, 0))
	assert.Equal(t, datapathBypassed, step(1410, 0), "a quiet window changes nothing")
	assert.Equal(t, datapathEnforcing, step(1420, 3), "a tracked flow: the table is on the path")
	assert.Equal(t, datapathEnforcing, step(1620, 0), "one window without flows is not enough")
	assert.Equal(t, datapathEnforcing, step(10, 0), "an interface went away: no window")
	assert.Equal(t, datapathBypassed, step(210, 0), "the second window of evidence in a row")
}

type fakeDatapath struct {
	mu      sync.Mutex
	samples []DatapathSample
	local   [][]netip.Addr
}

func (f *fakeDatapath) Sample(_ context.Context, local []netip.Addr) (DatapathSample, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.local = append(f.local, local)
	if len(f.samples) == 0 {
		return DatapathSample{}, fmt.Errorf("no more samples")
	}
	s := f.samples[0]
	f.samples = f.samples[1:]
	return s, nil
}

// TestWatchDatapath_ReportsNotEnforcing: a bypass is a Warning Event
// NotEnforcing on the Node, the metric at 1 and a log line; enforcing again
// sets the metric back. The sampler is asked about this node's pods only.
func TestWatchDatapath_ReportsNotEnforcing(t *testing.T) {
	t.Parallel()
	ix := selectors.New()
	ix.UpsertPod(&cluster.Pod{Namespace: "x", Name: "here", NodeName: "node-1", IPs: []netip.Addr{netip.MustParseAddr("10.1.0.5")}})
	ix.UpsertPod(&cluster.Pod{Namespace: "x", Name: "there", NodeName: "node-2", IPs: []netip.Addr{netip.MustParseAddr("10.1.1.5")}})
	var samples []DatapathSample
	for i := range 4 {
		samples = append(samples, DatapathSample{PodPackets: uint64(1000 * i)})
	}
	fake := &fakeDatapath{samples: samples}
	rec := record.NewFakeRecorder(10)
	var logs strings.Builder
	var logMu sync.Mutex
	a := &Agent{
		cfg:     Config{NodeName: "node-1", Recorder: rec, Datapath: fake, DatapathInterval: time.Millisecond},
		log:     slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, nil)),
		metrics: NewMetrics(nil),
		index:   ix,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.watchDatapath(ctx) }()
	defer func() { cancel(); <-done }()
	require.Eventually(t, func() bool { return gaugeValue(a.metrics.bypassed) == 1 }, 10*time.Second, time.Millisecond, "the metric never said bypassed")
	fake.mu.Lock()
	fake.samples = append(fake.samples, DatapathSample{PodPackets: 5000, TrackedFlows: 1})
	fake.mu.Unlock()
	require.Eventually(t, func() bool { return gaugeValue(a.metrics.bypassed) == 0 }, 10*time.Second, time.Millisecond, "a tracked flow sets it back")
	select {
	case e := <-rec.Events:
		assert.Contains(t, e, "Warning NotEnforcing policyd on node node-1")
	default:
		t.Fatal("no NotEnforcing Event")
	}
	logMu.Lock()
	assert.Contains(t, logs.String(), "NotEnforcing")
	logMu.Unlock()
	fake.mu.Lock()
	assert.Equal(t, []netip.Addr{netip.MustParseAddr("10.1.0.5")}, fake.local[0], "only this node's pods")
	fake.mu.Unlock()
}

func gaugeValue(g prometheus.Gauge) float64 {
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		return -1
	}
	return m.GetGauge().GetValue()
}

type lockedWriter struct {
	w  *strings.Builder
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestLab_DatapathBypassIsDetected: two pods on one bridged lab node talk.
// With br_netfilter passing bridged traffic to the IP hooks, netfilter
// tracks their flows and the detector says enforcing; with
// bridge-nf-call-iptables=0 (a datapath that goes around the host's
// netfilter) the pods keep sending, nothing is tracked, and it says
// bypassed.
func TestLab_DatapathBypassIsDetected(t *testing.T) {
	netnstest.RequireRoot(t)
	ctx := context.Background()
	pod := func(name string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: name, Labels: map[string]string{"app": name}},
			Spec: corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "c", Image: "i",
				Ports: []corev1.ContainerPort{{ContainerPort: 80, Protocol: corev1.ProtocolTCP}}}}},
		}
	}
	l, err := lab.New(ctx, lab.Config{CNI: lab.CNIBridged, Nodes: []string{"node-1"}, RunID: fmt.Sprintf("bp%d", os.Getpid()%1000000)}, []*corev1.Pod{pod("a"), pod("b")})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, l.Close()) })
	// Conntrack hooks a namespace once something there uses it, as
	// policyd's table and kube-proxy do.
	_, err = l.ExecInNode(ctx, "node-1", []byte("table inet bypasstest {\n chain f {\n  type filter hook forward priority 0; ct state established accept\n }\n}\n"), "nft", "-f", "-")
	require.NoError(t, err)
	h, ok := l.NodeNetNSHandle("node-1")
	require.True(t, ok)
	k := NewKernelDatapath(int(h))
	local := []netip.Addr{l.PodIP("x/a"), l.PodIP("x/b")}
	traffic := func() {
		t.Helper()
		var probes []lab.Probe
		for range 20 {
			probes = append(probes, lab.Probe{From: "x/a", To: "x/b", Port: 80, Protocol: cluster.ProtocolTCP}, lab.Probe{From: "x/b", To: "x/a", Port: 80, Protocol: cluster.ProtocolTCP})
		}
		for _, r := range l.ProbeAll(ctx, probes) {
			require.True(t, r.Probed && r.Observed, "%s: %v", r.Probe, r.Err)
		}
	}
	run := func(d *bypassDetector, windows int) DatapathSample {
		t.Helper()
		var s DatapathSample
		for range windows + 1 {
			traffic()
			s, err = k.Sample(ctx, local)
			require.NoError(t, err)
			d.observe(s)
		}
		return s
	}

	d := &bypassDetector{minPackets: 20, windows: 2}
	s := run(d, 2)
	assert.Equal(t, datapathEnforcing, d.state, "bridged traffic through br_netfilter: %+v", s)
	assert.Positive(t, s.TrackedFlows)

	require.NoError(t, l.DoInNode("node-1", func() error {
		return os.WriteFile("/proc/sys/net/bridge/bridge-nf-call-iptables", []byte("0"), 0o644)
	}))
	// The flows tracked so far would count for minutes: start clean.
	conn, err := conntrack.Dial(&netlink.Config{NetNS: int(h)})
	require.NoError(t, err)
	require.NoError(t, conn.Flush())
	require.NoError(t, conn.Close())
	d = &bypassDetector{minPackets: 20, windows: 2}
	s = run(d, 2)
	assert.Equal(t, datapathBypassed, d.state, "bridged traffic around netfilter: %+v", s)
	assert.Zero(t, s.TrackedFlows)
}
