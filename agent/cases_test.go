package agent_test

import (
	"context"
	"io"
	"net"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"

	"github.com/policyd/policyd/agent"
	"github.com/policyd/policyd/internal/apiservertest"
	"github.com/policyd/policyd/internal/netnstest"
	"github.com/policyd/policyd/policy/nft"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/policy/trace"
)

// fakeCluster is one namespace with a server pod on node-1 that only admits
// app=client pods on TCP/80, and an agent for node-1 whose backend is the
// in-memory Fake: these tests are about what the agent commits, and the
// tracer says what the committed table does to a packet.
type fakeCluster struct {
	t      *testing.T
	admin  kubernetes.Interface
	ns     string
	server *corev1.Pod
	fake   *nft.Fake
	agent  *testAgent
}

const serverIP = "10.77.0.10"

func newFakeCluster(t *testing.T, opts ...agentOption) *fakeCluster {
	t.Helper()
	return newFakeClusterWithConfig(t, agentRESTConfig(t, apiservertest.Shared(t)), opts...)
}

// allowed traces a new TCP/80 connection from src (a remote pod address) to
// dst (an address on node-1) through the committed table.
func (fc *fakeCluster) allowed(src, dst string) bool {
	fc.t.Helper()
	rs := fc.fake.Ruleset()
	require.NotNil(fc.t, rs)
	_, ok, err := trace.Path(map[string]*ruleset.Ruleset{"node-1": rs},
		trace.Endpoint{Addr: netip.MustParseAddr(src)}, // judged on node-1 only: its ingress
		trace.Endpoint{Addr: netip.MustParseAddr(dst), Node: "node-1"}, 6, 80)
	require.NoError(fc.t, err)
	return ok
}

func (fc *fakeCluster) dispatched(ip string) bool {
	for _, e := range fc.fake.Ruleset().Set("ingress4").Elements {
		if e.Addr.String() == ip {
			return true
		}
	}
	return false
}

// TestAgent_PodGetsItsAddressLater: a pod without an address is in no set and
// no map; the moment its address appears in the API, the next commit puts it
// in every set its labels select.
func TestAgent_PodGetsItsAddressLater(t *testing.T) {
	fc := newFakeCluster(t)
	client := createPod(t, fc.admin, newPod(fc.ns, "client", "node-2", map[string]string{"app": "client"}), "")
	fc.agent.waitFor("Pod", key(fc.ns, "client"), client.ResourceVersion)
	assert.False(t, fc.allowed("10.77.0.20", serverIP), "an address no pod holds yet is denied")

	client = setPodIP(t, fc.admin, client, "10.77.0.20")
	fc.agent.waitFor("Pod", key(fc.ns, "client"), client.ResourceVersion)
	assert.True(t, fc.allowed("10.77.0.20", serverIP), "once the client has its address it is admitted")

	// A new server pod without an address yet: nothing to dispatch; with it,
	// isolated from its first commit.
	late := createPod(t, fc.admin, newPod(fc.ns, "server-late", "node-1", map[string]string{"app": "server"}), "")
	fc.agent.waitFor("Pod", key(fc.ns, "server-late"), late.ResourceVersion)
	assert.False(t, fc.dispatched("10.77.0.11"))
	late = setPodIP(t, fc.admin, late, "10.77.0.11")
	fc.agent.waitFor("Pod", key(fc.ns, "server-late"), late.ResourceVersion)
	assert.True(t, fc.dispatched("10.77.0.11"), "the new server is isolated in the same commit that learns its address")
	assert.False(t, fc.allowed("10.77.0.99", "10.77.0.11"))
	assert.True(t, fc.allowed("10.77.0.20", "10.77.0.11"))
}

// TestAgent_CompletedPodAndAddressReuse: a completed pod's address leaves
// every set (it may be handed to another pod), and a new pod reusing it is
// judged by its own labels.
func TestAgent_CompletedPodAndAddressReuse(t *testing.T) {
	fc := newFakeCluster(t)
	old := createPod(t, fc.admin, newPod(fc.ns, "old-client", "node-2", map[string]string{"app": "client"}), "10.77.0.30")
	fc.agent.waitFor("Pod", key(fc.ns, "old-client"), old.ResourceVersion)
	require.True(t, fc.allowed("10.77.0.30", serverIP))

	old.Status.Phase = corev1.PodSucceeded
	old, err := fc.admin.CoreV1().Pods(fc.ns).UpdateStatus(context.Background(), old, metav1.UpdateOptions{})
	require.NoError(t, err)
	fc.agent.waitFor("Pod", key(fc.ns, "old-client"), old.ResourceVersion)
	assert.False(t, fc.allowed("10.77.0.30", serverIP), "a completed pod's address must not stay allowed")

	reuse := createPod(t, fc.admin, newPod(fc.ns, "new-other", "node-2", map[string]string{"app": "other"}), "10.77.0.30")
	fc.agent.waitFor("Pod", key(fc.ns, "new-other"), reuse.ResourceVersion)
	assert.False(t, fc.allowed("10.77.0.30", serverIP), "the address now belongs to an app=other pod")
}

// TestAgent_TerminatingPodStaysEnforced: a pod being deleted (deletion
// timestamp set, still running) keeps its isolation until it is gone.
func TestAgent_TerminatingPodStaysEnforced(t *testing.T) {
	fc := newFakeCluster(t)
	ctx := context.Background()
	p := newPod(fc.ns, "terminating", "node-1", map[string]string{"app": "server"})
	p.Finalizers = []string{"policyd.test/hold"}
	p = createPod(t, fc.admin, p, "10.77.0.12")
	fc.agent.waitFor("Pod", key(fc.ns, p.Name), p.ResourceVersion)
	require.NoError(t, fc.admin.CoreV1().Pods(fc.ns).Delete(ctx, p.Name, metav1.DeleteOptions{}))
	p, err := fc.admin.CoreV1().Pods(fc.ns).Get(ctx, p.Name, metav1.GetOptions{})
	require.NoError(t, err)
	require.NotNil(t, p.DeletionTimestamp)
	// The deletion timestamp changes nothing policyd uses, so the agent
	// drops that update (no sync); a pod created after it is committed
	// once the informer delivered both, in order.
	marker := createPod(t, fc.admin, newPod(fc.ns, "after-delete", "node-2", map[string]string{"app": "marker"}), "10.77.0.13")
	fc.agent.waitFor("Pod", key(fc.ns, "after-delete"), marker.ResourceVersion)
	assert.True(t, fc.dispatched("10.77.0.12"), "a terminating pod is still running: it stays isolated")
	assert.False(t, fc.allowed("10.77.0.99", "10.77.0.12"))

	p.Finalizers = nil
	_, err = fc.admin.CoreV1().Pods(fc.ns).Update(ctx, p, metav1.UpdateOptions{})
	require.NoError(t, err)
	// The kubelet ends a graceful deletion once the containers stopped; none
	// runs here, so end it as it would.
	require.NoError(t, fc.admin.CoreV1().Pods(fc.ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}))
	fc.agent.waitFor("Pod", key(fc.ns, p.Name), "")
	assert.False(t, fc.dispatched("10.77.0.12"), "a deleted pod's address leaves the maps")
}

// TestAgent_HostNetworkPodsAreNodeTraffic: a hostNetwork pod is never
// isolated and never a pod-selector peer, whatever its labels.
func TestAgent_HostNetworkPodsAreNodeTraffic(t *testing.T) {
	fc := newFakeCluster(t)
	hn := newPod(fc.ns, "host-client", "node-2", map[string]string{"app": "client"})
	hn.Spec.HostNetwork = true
	hn = createPod(t, fc.admin, hn, "10.99.0.2")
	hs := newPod(fc.ns, "host-server", "node-1", map[string]string{"app": "server"})
	hs.Spec.HostNetwork = true
	hs = createPod(t, fc.admin, hs, "10.99.0.1")
	fc.agent.waitFor("Pod", key(fc.ns, "host-client"), hn.ResourceVersion)
	fc.agent.waitFor("Pod", key(fc.ns, "host-server"), hs.ResourceVersion)
	assert.False(t, fc.allowed("10.99.0.2", serverIP), "a hostNetwork pod's node address does not match app=client")
	assert.False(t, fc.dispatched("10.99.0.1"), "a hostNetwork pod is never isolated")
}

// TestAgent_APIServerAwayAndBack cuts the agent's connection to the API
// server: the committed table stays as it was (enforcement continues), and
// when the connection returns the informers catch up and the change made
// meanwhile is committed.
func TestAgent_APIServerAwayAndBack(t *testing.T) {
	s := apiservertest.Shared(t)
	proxy := newCutProxy(t, s.URL())
	cfg := agentRESTConfig(t, s)
	cfg.Host = proxy.url
	cfg.Timeout = 5 * time.Second
	fc := newFakeClusterWithConfig(t, cfg)
	require.False(t, fc.allowed("10.77.0.40", serverIP))
	syncsBefore := fc.fake.Syncs()

	proxy.cut()
	client := createPod(t, fc.admin, newPod(fc.ns, "client-while-away", "node-2", map[string]string{"app": "client"}), "10.77.0.40")
	time.Sleep(2 * time.Second)
	assert.False(t, fc.allowed("10.77.0.40", serverIP), "the agent cannot have seen the new pod")
	assert.NotNil(t, fc.fake.Ruleset(), "the table stays while the API server is away")
	assert.True(t, fc.agent.a.Ready(), "readiness reflects the first sync, not the API connection")

	proxy.restore()
	fc.agent.waitFor("Pod", key(fc.ns, "client-while-away"), client.ResourceVersion)
	assert.True(t, fc.allowed("10.77.0.40", serverIP))
	assert.Greater(t, fc.fake.Syncs(), syncsBefore)
}

func newFakeClusterWithConfig(t *testing.T, cfg *rest.Config, opts ...agentOption) *fakeCluster {
	t.Helper()
	s := apiservertest.Shared(t)
	fc := &fakeCluster{t: t, admin: s.Client(), ns: s.Namespace(t), fake: nft.NewFake()}
	fc.server = createPod(t, fc.admin, newPod(fc.ns, "server", "node-1", map[string]string{"app": "server"}), serverIP)
	applyPolicy(t, fc.admin, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: fc.ns, Name: "server"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}}}},
				Ports: []networkingv1.NetworkPolicyPort{tcp80()},
			}},
		},
	})
	fc.agent = startAgent(t, cfg, "node-1", fc.fake, opts...)
	fc.agent.waitReady()
	return fc
}

// cutProxy forwards TCP to the API server until cut: then it drops every
// connection and refuses new ones until restored.
type cutProxy struct {
	url     string
	target  string
	ln      net.Listener
	mu      sync.Mutex
	down    bool
	conns   map[net.Conn]bool
	stopped bool
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &cutProxy{url: "https://" + ln.Addr().String(), target: strings.TrimPrefix(target, "https://"), ln: ln, conns: map[net.Conn]bool{}}
	go p.serve()
	t.Cleanup(func() { p.mu.Lock(); p.stopped = true; p.mu.Unlock(); ln.Close(); p.cut() })
	return p
}

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down || p.stopped {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); up.Close() }()
		go func() { _, _ = io.Copy(c, up); c.Close() }()
	}
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

func (p *cutProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// TestAgent_RepairsTableChangedBySomeoneElse runs the agent on the real
// kernel (in a test network namespace): an element deleted and a rule flushed
// behind its back are put back by the next sync.
func TestAgent_RepairsTableChangedBySomeoneElse(t *testing.T) {
	netnstest.RequireRoot(t)
	s := apiservertest.Shared(t)
	admin := s.Client()
	ns := s.Namespace(t)
	name, handle := netnstest.New(t, "pdagent")
	backend, err := nft.New(nft.Options{NetNS: int(handle)})
	require.NoError(t, err)
	createPod(t, admin, newPod(ns, "server", "node-1", map[string]string{"app": "server"}), serverIP)
	applyPolicy(t, admin, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "deny"},
		Spec:       networkingv1.NetworkPolicySpec{},
	})
	ta := startAgent(t, agentRESTConfig(t, s), "node-1", backend, func(c *agent.Config) { c.MaxSyncInterval = 300 * time.Millisecond })
	ta.waitReady()
	list := func() string {
		out, err := netnstest.Exec(t, name, "nft", "list", "table", "inet", "policyd")
		require.NoError(t, err, out)
		return out
	}
	require.Eventually(t, func() bool { return strings.Contains(list(), serverIP+" : jump ingress-") }, 10*time.Second, 50*time.Millisecond)
	want := list()

	netnstest.MustExec(t, name, "nft", "delete", "element", "inet", "policyd", "ingress4", "{ "+serverIP+" }")
	netnstest.MustExec(t, name, "nft", "flush", "chain", "inet", "policyd", "postrouting")
	require.NotEqual(t, want, list())
	require.Eventually(t, func() bool { return list() == want }, 10*time.Second, 50*time.Millisecond,
		"the agent did not repair the table; now:\n%s", list())
}

// TestAgent_HealthReadinessMetrics checks the HTTP endpoints an SRE scrapes.
func TestAgent_HealthReadinessMetrics(t *testing.T) {
	fc := newFakeCluster(t)
	srv := httptest.NewServer(fc.agent.a.Handler())
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := srv.Client().Get(srv.URL + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, _ := get("/readyz")
	assert.Equal(t, 200, code)
	code, _ = get("/healthz")
	assert.Equal(t, 200, code)
	client := createPod(t, fc.admin, newPod(fc.ns, "client", "node-2", map[string]string{"app": "client"}), "10.77.0.50")
	fc.agent.waitFor("Pod", key(fc.ns, "client"), client.ResourceVersion)
	code, body := get("/metrics")
	require.Equal(t, 200, code)
	for _, m := range []string{
		"policyd_sync_duration_seconds_count", "policyd_sync_errors_total", "policyd_syncs_total{kind=\"full\"}",
		"policyd_programming_latency_seconds_count", "policyd_objects{kind=\"pods\"}", "policyd_programmed{kind=\"elements\"}",
	} {
		assert.Contains(t, body, m)
	}
	assert.NotContains(t, body, "policyd_programming_latency_seconds_count 0\n", "latency must have been observed for the client pod")
}

// failingBackend fails every Sync while fail is set, committing nothing.
type failingBackend struct {
	nft.Interface
	fail atomic.Bool
}

func (b *failingBackend) Sync(ctx context.Context, want *ruleset.Ruleset) (nft.SyncStats, error) {
	if b.fail.Load() {
		return nft.SyncStats{}, io.ErrUnexpectedEOF
	}
	return b.Interface.Sync(ctx, want)
}

// TestAgent_NotReadyUntilFirstSync: a failing backend keeps the agent unready
// and retrying (a batch refused once is tried again at once, so the backend
// fails until told otherwise); once the kernel accepts the batch it becomes
// ready.
func TestAgent_NotReadyUntilFirstSync(t *testing.T) {
	s := apiservertest.Shared(t)
	fake := nft.NewFake()
	backend := &failingBackend{Interface: fake}
	backend.fail.Store(true)
	ta := startAgent(t, agentRESTConfig(t, s), "node-1", backend)
	srv := httptest.NewServer(ta.a.Handler())
	defer srv.Close()
	metric := func() string {
		resp, err := srv.Client().Get(srv.URL + "/metrics")
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	require.Eventually(t, func() bool {
		m := metric()
		return strings.Contains(m, "policyd_sync_errors_total ") && !strings.Contains(m, "policyd_sync_errors_total 0\n")
	}, 30*time.Second, 10*time.Millisecond)
	assert.False(t, ta.a.Ready(), "the first sync failed: not ready")
	assert.Nil(t, fake.Ruleset(), "a failed batch commits nothing")
	resp, err := srv.Client().Get(srv.URL + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 503, resp.StatusCode)
	backend.fail.Store(false)
	ta.waitReady()
	assert.NotNil(t, fake.Ruleset())
}

// TestAgent_InvalidPolicyReportedAsEvent: a policy the API server accepts but
// policyd cannot enforce as written (an IPv4-mapped IPv6 CIDR, ambiguous) is
// enforced fail-closed and reported as a Warning Event on the policy, naming
// the field, posted under the shipped RBAC.
func TestAgent_InvalidPolicyReportedAsEvent(t *testing.T) {
	s := apiservertest.Shared(t)
	cfg := agentRESTConfig(t, s)
	client, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	defer b.Shutdown()
	rec := b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "policyd", Host: "node-1"})
	fc := newFakeCluster(t, func(c *agent.Config) { c.Recorder = rec })

	np := applyPolicy(t, fc.admin, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: fc.ns, Name: "mapped"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "::ffff:10.77.0.0/112"}}},
			}},
		},
	})
	fc.agent.waitFor("NetworkPolicy", key(fc.ns, "mapped"), np.ResourceVersion)
	assert.False(t, fc.allowed("10.77.0.60", serverIP), "the ambiguous ipBlock must not admit the IPv4 address it seems to name")
	var found *corev1.Event
	require.Eventually(t, func() bool {
		evs, err := fc.admin.CoreV1().Events(fc.ns).List(context.Background(), metav1.ListOptions{})
		require.NoError(t, err)
		for i, e := range evs.Items {
			if e.Reason == "InvalidNetworkPolicy" && e.InvolvedObject.Name == "mapped" {
				found = &evs.Items[i]
				return true
			}
		}
		return false
	}, 30*time.Second, 100*time.Millisecond, "no InvalidNetworkPolicy event was posted")
	assert.Equal(t, corev1.EventTypeWarning, found.Type)
	assert.Equal(t, "NetworkPolicy", found.InvolvedObject.Kind)
	assert.Contains(t, found.Message, "spec.ingress[0].from[0].ipBlock.cidr")
}

// TestAgent_NoUnprotectedWindowForNewPods: with --pod-network, an address in
// the pod network that the agent has not seen on any pod gets no traffic, in
// either direction, even to and from pods no policy isolates; the commit that
// learns the pod opens it as its policies say. Without the option a new pod is
// unpoliced until that commit (see README).
func TestAgent_NoUnprotectedWindowForNewPods(t *testing.T) {
	fc := newFakeCluster(t, func(c *agent.Config) { c.PodNetwork = []netip.Prefix{netip.MustParsePrefix("10.77.0.0/16")} })
	open := createPod(t, fc.admin, newPod(fc.ns, "open", "node-1", map[string]string{"app": "open"}), "10.77.0.80")
	fc.agent.waitFor("Pod", key(fc.ns, "open"), open.ResourceVersion)
	assert.False(t, fc.allowed("10.77.0.70", "10.77.0.80"), "from a pod-network address no known pod holds")
	rs := fc.fake.Ruleset()
	_, out, err := trace.Path(map[string]*ruleset.Ruleset{"node-1": rs},
		trace.Endpoint{Addr: netip.MustParseAddr("10.77.0.80"), Node: "node-1"},
		trace.Endpoint{Addr: netip.MustParseAddr("10.77.0.70")}, 6, 80)
	require.NoError(t, err)
	assert.False(t, out, "to a pod-network address no known pod holds")

	newcomer := createPod(t, fc.admin, newPod(fc.ns, "newcomer", "node-2", map[string]string{"app": "whatever"}), "10.77.0.70")
	fc.agent.waitFor("Pod", key(fc.ns, "newcomer"), newcomer.ResourceVersion)
	assert.True(t, fc.allowed("10.77.0.70", "10.77.0.80"), "once known, the newcomer reaches a pod no policy isolates")
	assert.False(t, fc.allowed("10.77.0.70", serverIP), "and is still denied by the server's policy")
}

// TestAgent_NewPodsClosedByNodePodCIDRs: without --pod-network the pod
// network is the union of the Nodes' spec.podCIDRs, and follows them: a new
// pod whose policies isolate it gets no traffic before the commit that
// learns it (its address is unknown, so dropped both ways), then exactly what
// its policies allow. A Node added later widens the pod network at the next
// sync.
func TestAgent_NewPodsClosedByNodePodCIDRs(t *testing.T) {
	s := apiservertest.Shared(t)
	createNode := func(name string, cidrs ...string) *corev1.Node {
		t.Helper()
		n, err := s.Client().CoreV1().Nodes().Create(context.Background(), &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       corev1.NodeSpec{PodCIDRs: cidrs, PodCIDR: cidrs[0]},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Client().CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
		return n
	}
	createNode("pn-node-1", "10.77.0.0/24")
	n2 := createNode("pn-node-2", "10.77.1.0/24")
	fc := newFakeCluster(t) // no PodNetwork option
	fc.agent.waitFor("Node", "pn-node-2", n2.ResourceVersion)
	client := createPod(t, fc.admin, newPod(fc.ns, "client", "node-2", map[string]string{"app": "client"}), "10.77.1.150")
	open := createPod(t, fc.admin, newPod(fc.ns, "open", "node-1", map[string]string{"app": "open"}), "10.77.0.150")
	fc.agent.waitFor("Pod", key(fc.ns, "client"), client.ResourceVersion)
	fc.agent.waitFor("Pod", key(fc.ns, "open"), open.ResourceVersion)
	require.True(t, fc.allowed("10.77.1.150", "10.77.0.150"), "known pod to a pod no policy isolates")
	require.True(t, fc.allowed("10.77.1.150", serverIP), "the server admits the client")

	// The window: 10.77.0.160 is live (the CNI gave it to "newcomer") but
	// the agent has not committed the pod yet.
	assert.False(t, fc.allowed("10.77.1.150", "10.77.0.160"), "to a new pod before its commit, even from a peer its policies will admit")
	assert.False(t, fc.allowed("10.77.1.161", "10.77.0.150"), "from another node's new pod before its commit")
	_, out, err := trace.Path(map[string]*ruleset.Ruleset{"node-1": fc.fake.Ruleset()},
		trace.Endpoint{Addr: netip.MustParseAddr("10.77.0.160"), Node: "node-1"},
		trace.Endpoint{Addr: netip.MustParseAddr("10.77.0.150")}, 6, 80)
	require.NoError(t, err)
	assert.False(t, out, "from the new pod before its commit")
	assert.True(t, fc.allowed("10.9.0.1", "10.77.0.150"), "addresses outside every Node's pod CIDRs are not concerned")

	newcomer := createPod(t, fc.admin, newPod(fc.ns, "newcomer", "node-1", map[string]string{"app": "server"}), "10.77.0.160")
	fc.agent.waitFor("Pod", key(fc.ns, "newcomer"), newcomer.ResourceVersion)
	assert.True(t, fc.allowed("10.77.1.150", "10.77.0.160"), "its commit opens what its policies allow")
	assert.False(t, fc.allowed("10.77.0.150", "10.77.0.160"), "and only that")

	assert.True(t, fc.allowed("10.77.2.170", "10.77.0.150"), "before pn-node-3 exists, 10.77.2.0/24 is not pod network")
	n3 := createNode("pn-node-3", "10.77.2.0/24")
	fc.agent.waitFor("Node", "pn-node-3", n3.ResourceVersion)
	assert.False(t, fc.allowed("10.77.2.170", "10.77.0.150"), "the pod network follows the Nodes")
}

// refusingBackend passes every sync to the real kernel backend; while
// refuse is set it adds a chain that jumps to a chain that does not exist,
// so the kernel rejects the whole batch (ENOENT), as it would a table it
// cannot hold.
type refusingBackend struct {
	nft.Interface
	refuse atomic.Bool
}

func (b *refusingBackend) Sync(ctx context.Context, want *ruleset.Ruleset) (nft.SyncStats, error) {
	if b.refuse.Load() {
		bad := &ruleset.Ruleset{Sets: want.Sets, Chains: append(slices.Clone(want.Chains), &ruleset.Chain{
			Name:  "refused",
			Rules: []ruleset.Rule{&ruleset.VerdictRule{Verdict: ruleset.Verdict{Kind: ruleset.Jump, Chain: "no-such-chain"}}},
		})}
		bad.Sort()
		want = bad
	}
	return b.Interface.Sync(ctx, want)
}

// TestAgent_KernelRefusingBatchesTurnsUnready: once ready, an agent whose
// every batch the kernel rejects keeps the last committed table, shows the
// failure and its age in the metrics (the probes say only ok or not ok),
// and turns unready after UnreadyAfter; when the kernel accepts again it is
// ready.
func TestAgent_KernelRefusingBatchesTurnsUnready(t *testing.T) {
	netnstest.RequireRoot(t)
	s := apiservertest.Shared(t)
	admin := s.Client()
	ns := s.Namespace(t)
	name, handle := netnstest.New(t, "pdrefuse")
	kernel, err := nft.New(nft.Options{NetNS: int(handle)})
	require.NoError(t, err)
	backend := &refusingBackend{Interface: kernel}
	createPod(t, admin, newPod(ns, "server", "node-1", map[string]string{"app": "server"}), serverIP)
	applyPolicy(t, admin, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "deny"}})
	ta := startAgent(t, agentRESTConfig(t, s), "node-1", backend, func(c *agent.Config) {
		c.MaxSyncInterval = 200 * time.Millisecond
		c.UnreadyAfter = 2 * time.Second
	})
	ta.waitReady()
	srv := httptest.NewServer(ta.a.Handler())
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := srv.Client().Get(srv.URL + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	list := func() string {
		out, err := netnstest.Exec(t, name, "nft", "list", "table", "inet", "policyd")
		require.NoError(t, err, out)
		return out
	}
	require.Eventually(t, func() bool { return strings.Contains(list(), serverIP+" : jump ingress-") }, 10*time.Second, 50*time.Millisecond)
	committed := list()
	code, body := get("/readyz")
	require.Equal(t, 200, code, body)
	_, m := get("/metrics")
	require.Contains(t, m, "policyd_sync_errors_total 0\n")
	require.Contains(t, m, "policyd_sync_failing_seconds 0\n")

	backend.refuse.Store(true)
	require.Eventually(t, func() bool {
		_, m := get("/metrics")
		return !strings.Contains(m, "policyd_sync_errors_total 0\n") && !strings.Contains(m, "policyd_sync_failing_seconds 0\n")
	}, 10*time.Second, 50*time.Millisecond, "the failing syncs did not move the metrics")
	code, body = get("/healthz")
	assert.Equal(t, 200, code, "liveness is the loop running")
	assert.Equal(t, "ok\n", body, "the probes say ok or not ok, nothing else: the error goes to the log")
	code, body = get("/readyz")
	assert.Equal(t, "ok\n", body, "%d: failing for less than UnreadyAfter", code)
	require.Eventually(t, func() bool { code, _ := get("/readyz"); return code == 503 }, 10*time.Second, 50*time.Millisecond)
	_, body = get("/readyz")
	assert.Equal(t, "not ok\n", body, "the sync error is not for every process on the node to read")
	assert.Equal(t, committed, list(), "the kernel rejected every batch: the last committed table stays, whole")

	backend.refuse.Store(false)
	require.Eventually(t, func() bool { code, _ := get("/readyz"); return code == 200 }, 10*time.Second, 50*time.Millisecond)
	_, m = get("/metrics")
	assert.Contains(t, m, "policyd_sync_failing_seconds 0\n")
}

// TestAgent_AddressConflictKeepsTheStrictest: a newer pod claiming the
// server's address (as anyone who can write pods/status could make it) does
// not take the server's isolation away: the address is policed as the
// strictest of both, and the conflict shows in the metrics.
func TestAgent_AddressConflictKeepsTheStrictest(t *testing.T) {
	fc := newFakeCluster(t)
	client := createPod(t, fc.admin, newPod(fc.ns, "client", "node-2", map[string]string{"app": "client"}), "10.77.0.50")
	fc.agent.waitFor("Pod", key(fc.ns, "client"), client.ResourceVersion)
	require.True(t, fc.allowed("10.77.0.50", serverIP))
	require.False(t, fc.allowed("10.77.0.99", serverIP))

	intruder := createPod(t, fc.admin, newPod(fc.ns, "intruder", "node-1", map[string]string{"app": "other"}), serverIP)
	fc.agent.waitFor("Pod", key(fc.ns, "intruder"), intruder.ResourceVersion)
	assert.False(t, fc.allowed("10.77.0.99", serverIP), "the intruder's claim lifted the server's isolation")
	assert.True(t, fc.allowed("10.77.0.50", serverIP), "what both pods' policies allow stays allowed")

	srv := httptest.NewServer(fc.agent.a.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	assert.Contains(t, string(b), "policyd_address_conflicts 1\n")
}
