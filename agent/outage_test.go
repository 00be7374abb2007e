package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	npaclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/policyd/policyd/agent"
	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/conformance/lab"
	"github.com/policyd/policyd/internal/apiservertest"
	"github.com/policyd/policyd/internal/netnstest"
	"github.com/policyd/policyd/policy/model"
)

// outageEnv sets how long TestFault_APIServerGoneThen410Relist keeps the
// API server away (a Go duration). The default keeps the test within a
// minute in CI: the agents' catch-up grows with the outage, as client-go's
// reflectors back off (measured here: a 10 s outage, 30 s to converge; 20 s,
// about 55 s).
const (
	outageEnv     = "POLICYD_FAULT_OUTAGE"
	defaultOutage = 10 * time.Second
)

// goneRecorder wraps an agent's transport and counts, once armed, the
// answers that told it its resourceVersion was gone: HTTP 410, or a watch
// stream carrying a Status of code 410; and the requests that relisted
// (a list, or a watch-list with sendInitialEvents).
type goneRecorder struct {
	armed          atomic.Bool
	gone, relists  atomic.Int64
	mu             sync.Mutex
	relistedByKind map[string]bool
}

func (g *goneRecorder) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := rt.RoundTrip(req)
		if err != nil || !g.armed.Load() {
			return resp, err
		}
		q := req.URL.Query()
		if q.Get("watch") != "true" || q.Get("sendInitialEvents") == "true" {
			if resp.StatusCode == http.StatusOK && (q.Get("resourceVersion") == "" || q.Get("resourceVersion") == "0" || q.Get("sendInitialEvents") == "true") {
				g.relists.Add(1)
				g.mu.Lock()
				g.relistedByKind[resourceOf(req.URL.Path)] = true
				g.mu.Unlock()
			}
		}
		if resp.StatusCode == http.StatusGone {
			g.gone.Add(1)
		} else if q.Get("watch") == "true" {
			resp.Body = &goneSniffer{ReadCloser: resp.Body, g: g}
		}
		return resp, nil
	})
}

// resourceOf is the last path element of an API path: the resource.
func resourceOf(path string) string {
	return path[strings.LastIndex(path, "/")+1:]
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// goneSniffer counts watch events that are a Status of code 410.
type goneSniffer struct {
	io.ReadCloser
	g    *goneRecorder
	tail []byte
}

func (s *goneSniffer) Read(p []byte) (int, error) {
	n, err := s.ReadCloser.Read(p)
	s.tail = append(s.tail, p[:n]...)
	if bytes.Contains(s.tail, []byte(`"code":410`)) {
		s.g.gone.Add(1)
		s.tail = s.tail[:0]
	}
	if len(s.tail) > 16 {
		s.tail = append(s.tail[:0], s.tail[len(s.tail)-16:]...)
	}
	return n, err
}

// TestFault_APIServerGoneThen410Relist takes the API server of two lab
// agents away for a while (etcd keeps running), changes the cluster
// meanwhile through a second API server on the same etcd (pods relabelled
// both ways, a pod and a policy deleted, a policy added), compacts etcd so
// that the agents' resourceVersions are gone, and brings the API server
// back:
//
//   - while it is away, the agents keep enforcing the last state they saw:
//     every probe agrees with it, the kernel tables list exactly as before
//     (periodic syncs commit nothing: never a flush), and the agents stay
//     ready: readiness reports syncs failing (UnreadyAfter), and syncs keep
//     succeeding from the informers' caches;
//   - when it is back, the agents get 410 Gone, relist, and converge: each
//     node's table lists as `nft -f` of a fresh compile of the API state,
//     and packets follow the new state; meanwhile no probe is allowed that
//     the state before and the state after both deny.
//
// The outage lasts $POLICYD_FAULT_OUTAGE (default 10 s; e.g. 3m for
// "minutes"). client-go's reflectors back off up to 30 s (with jitter, up
// to a minute) between reconnection attempts, which bounds how long after
// the API server's return the agents catch up.
func TestFault_APIServerGoneThen410Relist(t *testing.T) {
	netnstest.RequireRoot(t)
	outage := defaultOutage
	if v := os.Getenv(outageEnv); v != "" {
		d, err := time.ParseDuration(v)
		require.NoError(t, err, outageEnv)
		outage = d
	}
	s := apiservertest.Start(t)
	admin := s.Client()
	ns := s.Namespace(t)
	pods := []*corev1.Pod{
		newPod(ns, "server", "node-1", map[string]string{"app": "server"}),
		newPod(ns, "client", "node-2", map[string]string{"app": "client"}),
		newPod(ns, "other", "node-2", map[string]string{"app": "other"}),
		newPod(ns, "gone", "node-1", map[string]string{"app": "client"}),
	}
	rec := &goneRecorder{relistedByKind: map[string]bool{}}
	cfg := agentRESTConfig(t, s)
	cfg.Wrap(rec.wrap)
	// JSON, so that the recorder can read the 410 in a watch stream.
	cfg.ContentType, cfg.AcceptContentTypes = "application/json", "application/json"
	var agents []*testAgent
	lc := newLabClusterWith(t, s, cfg, []string{ns}, pods, func(node string, _ int) agentOption {
		return func(c *agent.Config) {
			c.MaxSyncInterval = 2 * time.Second
			c.UnreadyAfter = 2 * time.Second
		}
	})
	agents = lc.agents
	for _, np := range []*networkingv1.NetworkPolicy{
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "server"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}}}},
				}},
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "other-egress"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "other"}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			},
		},
	} {
		got := applyPolicy(t, admin, np)
		lc.wait("NetworkPolicy", key(ns, np.Name), got.ResourceVersion)
	}
	lc.check("before the outage")
	before := apiSnapshot(t, admin, ns)
	probes, _ := lc.probesAndModel(before)
	listings := map[string]string{}
	for _, node := range labNodes {
		listings[node] = lc.listTable(node)
	}
	commitsBefore := make([]int, len(agents))
	for i, a := range agents {
		a.mu.Lock()
		commitsBefore[i] = len(a.commits)
		a.mu.Unlock()
	}
	pl, err := admin.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	oldRV := pl.ResourceVersion

	// Away: the prober must see exactly the state before, all along.
	began := time.Now()
	s.StopAPIServer()
	away := lc.startStateProber(probes, before, nil)

	peer, err := s.StartPeer(context.Background())
	require.NoError(t, err)
	pc := peer.Client()
	relabelPod(t, pc, ns, "other", map[string]string{"app": "client"})
	relabelPod(t, pc, ns, "client", map[string]string{"app": "retired"})
	require.NoError(t, pc.CoreV1().Pods(ns).Delete(context.Background(), "gone", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}))
	require.NoError(t, pc.NetworkingV1().NetworkPolicies(ns).Delete(context.Background(), "other-egress", metav1.DeleteOptions{}))
	applyPolicy(t, pc, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "retired"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "retired"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	})
	rev, err := s.CompactEtcd(context.Background())
	require.NoError(t, err)
	t.Logf("changed the cluster through a second API server and compacted etcd at revision %d (the agents last saw %s)", rev, oldRV)
	require.NoError(t, peer.Stop())

	for time.Since(began) < outage {
		for _, a := range agents {
			require.True(t, a.a.Ready(), "an agent turned unready while the API server was away")
		}
		time.Sleep(200 * time.Millisecond)
	}
	rounds, wrong := away.result()
	assert.Empty(t, wrong, "while the API server was away, packets did not follow the last state the agents saw")
	for _, node := range labNodes {
		assert.Equal(t, listings[node], lc.listTable(node), "node %s: the table changed while the API server was away", node)
	}
	for i, a := range agents {
		a.mu.Lock()
		during := a.commits[commitsBefore[i]:]
		a.mu.Unlock()
		ops := 0
		for _, c := range during {
			ops += c.Stats.Ops
		}
		assert.NotEmpty(t, during, "node %s: no periodic sync while the API server was away", labNodes[i])
		assert.Zero(t, ops, "node %s: syncs while the API server was away wrote to the table", labNodes[i])
	}
	t.Logf("API server away for %v: %d probe rounds, all as the state before", time.Since(began).Round(time.Millisecond), rounds)

	// Back, with the agents' resourceVersions compacted away.
	rec.armed.Store(true)
	require.NoError(t, s.StartAPIServer(context.Background()))
	back := time.Now()
	requireGone(t, admin, ns, oldRV)
	after := apiSnapshot(t, admin, ns)
	lc.keys = without(lc.keys, key(ns, "gone"))
	probes, _ = lc.probesAndModel(after)
	catchingUp := lc.startStateProber(probes, before, after)

	c2, err := npaclient.NewForConfig(s.AdminConfig())
	require.NoError(t, err)
	converged := map[string]time.Duration{}
	require.Eventually(t, func() bool {
		for _, node := range labNodes {
			if _, ok := converged[node]; ok {
				continue
			}
			if lc.tableEquals(node, freshCompile(t, admin, c2, node).Text()) {
				converged[node] = time.Since(back)
			}
		}
		return len(converged) == len(labNodes)
	}, 2*time.Minute+outage, 250*time.Millisecond, "the agents did not converge to a fresh compile after the API server came back")
	rounds, wrong = catchingUp.result()
	assert.Empty(t, wrong, "while the agents caught up, a probe was allowed that the state before and the state after both deny")
	t.Logf("after the API server came back: converged in %v; %d probe rounds meanwhile; 410 answers seen: %d; relists: %d %v",
		converged, rounds, rec.gone.Load(), rec.relists.Load(), rec.relistedByKind)
	assert.Positive(t, rec.gone.Load(), "no agent was told its resourceVersion was gone")
	rec.mu.Lock()
	for _, r := range []string{"pods", "networkpolicies"} {
		assert.True(t, rec.relistedByKind[r], "no agent relisted %s", r)
	}
	rec.mu.Unlock()
	lc.check("after the relist")
	for _, a := range agents {
		assert.True(t, a.a.Ready())
	}
}

// requireGone requires a watch of pods from rv to be refused as expired.
func requireGone(t *testing.T, c kubernetes.Interface, ns, rv string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w, err := c.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: rv})
	if err != nil {
		require.True(t, apierrors.IsResourceExpired(err) || apierrors.IsGone(err), "watch from resourceVersion %s: %v, want 410 Gone", rv, err)
		return
	}
	defer w.Stop()
	ev, ok := <-w.ResultChan()
	require.True(t, ok, "watch from resourceVersion %s ended without an event", rv)
	require.Equal(t, watch.Error, ev.Type, "watch from the compacted resourceVersion %s was served: %v", rv, ev.Object)
	st, ok := ev.Object.(*metav1.Status)
	require.True(t, ok)
	require.EqualValues(t, http.StatusGone, st.Code, "watch from resourceVersion %s: %s", rv, st.Message)
}

// probesAndModel is every ordered pair of lc.keys on TCP and UDP 80, with
// what the model says of each in snap.
func (lc *labCluster) probesAndModel(snap *cluster.Snapshot) ([]lab.Probe, map[lab.Probe]bool) {
	var probes []lab.Probe
	want := map[lab.Probe]bool{}
	for _, from := range lc.keys {
		for _, to := range lc.keys {
			if from == to {
				continue
			}
			for _, proto := range []cluster.Protocol{cluster.ProtocolTCP, cluster.ProtocolUDP} {
				p := lab.Probe{From: from, To: to, Port: 80, Protocol: proto}
				probes = append(probes, p)
				want[p] = modelAllows(snap, p)
			}
		}
	}
	return probes, want
}

// modelAllows says whether the model of snap allows probe p; a pod snap
// does not hold is an address no pod owns.
func modelAllows(snap *cluster.Snapshot, p lab.Probe) bool {
	src, dst := snap.Pod(p.From), snap.Pod(p.To)
	if src == nil || dst == nil {
		return false
	}
	sip, _ := src.IP(4)
	dip, _ := dst.IP(4)
	return model.Evaluate(snap, model.Packet{Src: model.Endpoint{Pod: src, IP: sip}, Dst: model.Endpoint{Pod: dst, IP: dip}, Protocol: p.Protocol, Port: p.Port}).Allowed
}

// stateProber probes over and over in the background. With only a state
// it records every outcome that differs from that state's model; with a
// second state too it records only allows that neither state's model
// allows (the agents may be in either state, not in another).
type stateProber struct {
	stop   chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	rounds int
	bad    []string
}

func (lc *labCluster) startStateProber(probes []lab.Probe, first, second *cluster.Snapshot) *stateProber {
	p := &stateProber{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for {
			select {
			case <-p.stop:
				return
			default:
			}
			var bad []string
			for _, r := range lc.lab.ProbeAll(context.Background(), probes) {
				at := time.Now().Format("15:04:05.000")
				a := modelAllows(first, r.Probe)
				switch {
				case r.Err != "":
					bad = append(bad, fmt.Sprintf("%s %s: lab fault: %s", at, r.Probe, r.Err))
				case second == nil && r.Observed != a:
					bad = append(bad, fmt.Sprintf("%s %s: observed %v (%s), the state in force says %v", at, r.Probe, r.Observed, r.Detail, a))
				case second != nil && r.Observed && !a && !modelAllows(second, r.Probe):
					bad = append(bad, fmt.Sprintf("%s %s: ALLOWED, which both the state before and the state after deny", at, r.Probe))
				}
			}
			p.mu.Lock()
			p.rounds++
			p.bad = append(p.bad, bad...)
			p.mu.Unlock()
		}
	}()
	lc.t.Cleanup(p.halt)
	return p
}

func (p *stateProber) halt() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

func (p *stateProber) result() (int, []string) {
	p.halt()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rounds, p.bad
}

// listTable is `nft list table inet policyd` in node's namespace.
func (lc *labCluster) listTable(node string) string {
	lc.t.Helper()
	out, err := lc.lab.ExecInNode(context.Background(), node, nil, "nft", "list", "table", "inet", "policyd")
	require.NoError(lc.t, err, string(out))
	return string(out)
}

// tableEquals reports whether node's table lists as `nft -f` of text does
// in a namespace of its own (blocks and elements sorted).
func (lc *labCluster) tableEquals(node, text string) bool {
	lc.t.Helper()
	return normalizeListing(lc.listTable(node)) == referenceListing(lc.t, text)
}

var referenceListings sync.Map // ruleset text -> normalized listing

// referenceListing is the normalized listing `nft -f` of text produces in
// a fresh namespace.
func referenceListing(t testing.TB, text string) string {
	t.Helper()
	if l, ok := referenceListings.Load(text); ok {
		return l.(string)
	}
	name, _ := netnstest.New(t, "pdref")
	out, err := netnstest.ExecInput(t, name, text, "nft", "-f", "-")
	require.NoError(t, err, out)
	l := normalizeListing(netnstest.MustExec(t, name, "nft", "list", "table", "inet", "policyd"))
	referenceListings.Store(text, l)
	return l
}
