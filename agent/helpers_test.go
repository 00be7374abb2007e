package agent_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientfeatures "k8s.io/client-go/features"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	npaclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/policyd/policyd/agent"
	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/internal/apiservertest"
	"github.com/policyd/policyd/internal/cnpapi"
	"github.com/policyd/policyd/policy/nft"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(floodSenderEnv); spec != "" {
		os.Exit(floodSender(spec)) // the flood test's sender, in a pod's namespace
	}
	// As policyd run does (--watch-list defaults to true): the tests cover
	// the informers' streaming start-up path that production uses.
	if err := agent.UseWatchList(true); err != nil {
		panic(err)
	}
	if !clientfeatures.FeatureGates().Enabled(clientfeatures.WatchListClient) && os.Getenv("KUBE_FEATURE_WatchListClient") == "" {
		panic("agent.UseWatchList(true) left WatchListClient off")
	}
	apiservertest.Main(m)
}

// testAgent runs an Agent in the background and records what each commit
// carried, so a test can wait until a given API write is in the kernel.
type testAgent struct {
	t       *testing.T
	a       *agent.Agent
	backend nft.Interface
	cancel  context.CancelFunc
	done    chan error

	mu        sync.Mutex
	cond      *sync.Cond
	committed map[string]map[string]bool // kind/key -> resourceVersions ("" for delete)
	commits   []agent.Commit
}

type agentOption func(*agent.Config)

func startAgent(t *testing.T, cfg *rest.Config, node string, backend nft.Interface, opts ...agentOption) *testAgent {
	t.Helper()
	client, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	cnpClient, err := npaclient.NewForConfig(cfg)
	require.NoError(t, err)
	ta := &testAgent{t: t, backend: backend, done: make(chan error, 1), committed: map[string]map[string]bool{}}
	ta.cond = sync.NewCond(&ta.mu)
	acfg := agent.Config{
		NodeName: node, Client: client, CNPClient: cnpClient, Backend: backend,
		MinSyncInterval: 20 * time.Millisecond, MaxSyncInterval: 5 * time.Second,
		CRDCheckInterval: 100 * time.Millisecond,
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnCommit:         ta.onCommit,
	}
	if testing.Verbose() {
		acfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	for _, o := range opts {
		o(&acfg)
	}
	ta.a, err = agent.New(acfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ta.cancel = cancel
	go func() { ta.done <- ta.a.Run(ctx) }()
	t.Cleanup(ta.stop)
	return ta
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func (ta *testAgent) onCommit(c agent.Commit) {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	for _, ch := range c.Changes {
		k := ch.Kind + "/" + ch.Key
		if ta.committed[k] == nil {
			ta.committed[k] = map[string]bool{}
		}
		ta.committed[k][ch.ResourceVersion] = true
	}
	ta.commits = append(ta.commits, c)
	ta.cond.Broadcast()
}

// stop cancels the agent and waits for Run to return. Idempotent.
func (ta *testAgent) stop() {
	if ta.cancel == nil {
		return
	}
	ta.cancel()
	ta.cancel = nil
	select {
	case err := <-ta.done:
		if err != nil && err != context.Canceled { //nolint:errorlint // exact on purpose: Run returns ctx.Err() itself
			ta.t.Errorf("agent.Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		ta.t.Errorf("agent did not stop within 30s")
	}
}

// waitFor waits until a commit carried the change kind/key at resourceVersion
// rv ("" for a delete).
func (ta *testAgent) waitFor(kind, key, rv string) {
	ta.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	timer := time.AfterFunc(30*time.Second, func() { ta.mu.Lock(); ta.cond.Broadcast(); ta.mu.Unlock() })
	defer timer.Stop()
	ta.mu.Lock()
	defer ta.mu.Unlock()
	for !ta.committed[kind+"/"+key][rv] {
		if time.Now().After(deadline) {
			ta.t.Fatalf("agent never committed %s %s at resourceVersion %q", kind, key, rv)
		}
		ta.cond.Wait()
	}
}

func (ta *testAgent) waitReady() {
	ta.t.Helper()
	require.Eventually(ta.t, ta.a.Ready, 60*time.Second, 20*time.Millisecond, "agent never became ready")
}

// waitAll waits for every agent to commit one change.
func waitAll(agents []*testAgent, kind, key, rv string) {
	for _, a := range agents {
		a.waitFor(kind, key, rv)
	}
}

const pauseImage = "registry.k8s.io/pause:3.10"

// newPod builds a pod serving TCP and UDP 80 named http.
func newPod(ns, name, node string, lbls map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbls},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{
			Name: "c", Image: pauseImage,
			Ports: []corev1.ContainerPort{
				{Name: "http", ContainerPort: 80, Protocol: corev1.ProtocolTCP},
				{Name: "http-udp", ContainerPort: 80, Protocol: corev1.ProtocolUDP},
			},
		}}},
	}
}

// createPod creates p and, when ip is set, gives it that address and phase
// Running through the status subresource (no kubelet runs). It returns the
// pod as last written.
func createPod(t *testing.T, c kubernetes.Interface, p *corev1.Pod, ip string) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	created, err := c.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
	require.NoError(t, err)
	if ip == "" {
		return created
	}
	return setPodIP(t, c, created, ip)
}

func setPodIP(t *testing.T, c kubernetes.Interface, p *corev1.Pod, ip string) *corev1.Pod {
	t.Helper()
	p = p.DeepCopy()
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP = ip
	p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	updated, err := c.CoreV1().Pods(p.Namespace).UpdateStatus(context.Background(), p, metav1.UpdateOptions{})
	require.NoError(t, err)
	return updated
}

func relabelPod(t *testing.T, c kubernetes.Interface, ns, name string, lbls map[string]string) *corev1.Pod {
	t.Helper()
	p, err := c.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	require.NoError(t, err)
	p.Labels = lbls
	p, err = c.CoreV1().Pods(ns).Update(context.Background(), p, metav1.UpdateOptions{})
	require.NoError(t, err)
	return p
}

func relabelNamespace(t *testing.T, c kubernetes.Interface, name string, lbls map[string]string) *corev1.Namespace {
	t.Helper()
	ns, err := c.CoreV1().Namespaces().Get(context.Background(), name, metav1.GetOptions{})
	require.NoError(t, err)
	for k := range ns.Labels {
		if k != corev1.LabelMetadataName {
			delete(ns.Labels, k)
		}
	}
	for k, v := range lbls {
		ns.Labels[k] = v
	}
	ns, err = c.CoreV1().Namespaces().Update(context.Background(), ns, metav1.UpdateOptions{})
	require.NoError(t, err)
	return ns
}

func applyPolicy(t *testing.T, c kubernetes.Interface, np *networkingv1.NetworkPolicy) *networkingv1.NetworkPolicy {
	t.Helper()
	ctx := context.Background()
	cur, err := c.NetworkingV1().NetworkPolicies(np.Namespace).Get(ctx, np.Name, metav1.GetOptions{})
	if err == nil {
		np = np.DeepCopy()
		np.ResourceVersion = cur.ResourceVersion
		out, err := c.NetworkingV1().NetworkPolicies(np.Namespace).Update(ctx, np, metav1.UpdateOptions{})
		require.NoError(t, err)
		return out
	}
	out, err := c.NetworkingV1().NetworkPolicies(np.Namespace).Create(ctx, np, metav1.CreateOptions{})
	require.NoError(t, err)
	return out
}

// apiSnapshot reads the namespaces and the pods and policies of the given
// namespaces from the API server, as the model should see them.
func apiSnapshot(t *testing.T, c kubernetes.Interface, namespaces ...string) *cluster.Snapshot {
	t.Helper()
	ctx := context.Background()
	var nss []*corev1.Namespace
	var pods []*corev1.Pod
	var pols []*networkingv1.NetworkPolicy
	for _, n := range namespaces {
		ns, err := c.CoreV1().Namespaces().Get(ctx, n, metav1.GetOptions{})
		require.NoError(t, err)
		nss = append(nss, ns)
		pl, err := c.CoreV1().Pods(n).List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		for i := range pl.Items {
			pods = append(pods, &pl.Items[i])
		}
		npl, err := c.NetworkingV1().NetworkPolicies(n).List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		for i := range npl.Items {
			pols = append(pols, &npl.Items[i])
		}
	}
	snap, errs := cluster.NewSnapshot(nss, pods, pols)
	require.Empty(t, errs)
	return snap
}

// apiClusterSnapshot is apiSnapshot plus every ClusterNetworkPolicy and
// Node. It returns the ClusterNetworkPolicies' conversion errors (an invalid
// one is in the snapshot in its fail-closed form, as the agent enforces it).
func apiClusterSnapshot(t *testing.T, c kubernetes.Interface, cnpc npaclient.Interface, namespaces ...string) (*cluster.Snapshot, []error) {
	t.Helper()
	ctx := context.Background()
	snap := apiSnapshot(t, c, namespaces...)
	var cnps []*npav1beta1.ClusterNetworkPolicy
	v, err := cnpapi.Served(cnpc.Discovery())
	require.NoError(t, err)
	if v != cnpapi.None {
		cl, err := cnpapi.List(ctx, cnpc, v, metav1.ListOptions{})
		require.NoError(t, err)
		for i := range cl.Items {
			cnps = append(cnps, &cl.Items[i])
		}
	}
	nl, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	var nodes []*corev1.Node
	for i := range nl.Items {
		nodes = append(nodes, &nl.Items[i])
	}
	return snap, snap.AddClusterPolicies(cnps, nodes)
}

func key(ns, name string) string { return fmt.Sprintf("%s/%s", ns, name) }
