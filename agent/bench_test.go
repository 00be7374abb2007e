package agent_test

// Benchmarks of the node agent against a real kube-apiserver and etcd
// (internal/apiservertest) and the real nftables backend inside a network
// namespace the benchmark creates:
//
//   - BenchmarkAgentLatency: policy programming latency, from just before an
//     API write to the commit that carries that write's resourceVersion, over
//     a mix of pod and policy changes in a 10,000-pod / 2,000-policy cluster,
//     one change at a time and in a burst, at two coalescing delays.
//   - BenchmarkAgentRSS: the resident memory of `policyd run` as a separate
//     process at 10,000 and 50,000 pods. With POLICYD_BENCH_PROFILE_DIR set
//     it also saves the process's heap profile there (go tool pprof).
//
// Both need root (network namespaces) and the API server binaries; they skip
// without them unless CI is set. b.N is ignored: one run of the sizes below
// is the measurement (hack/bench.sh passes -benchtime=1x).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/policyd/policyd/agent"
	"github.com/policyd/policyd/deploy"
	"github.com/policyd/policyd/internal/apiservertest"
	"github.com/policyd/policyd/internal/netnstest"
	"github.com/policyd/policyd/policy/nft"
	"github.com/policyd/policyd/selectors/selectorstest"
	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	npaclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"
)

// Sizes and pacing of the agent benchmarks.
const (
	// benchSeed seeds the synthetic cluster and the change sequence.
	benchSeed = 1
	// podsPerNamespace fixes the namespace count: pods/podsPerNamespace.
	podsPerNamespace = 100
	// podsPerPolicy fixes the policy count: pods/podsPerPolicy.
	podsPerPolicy = 5
	// latencyPods is the cluster the latency benchmark changes
	// (latencyPods/podsPerPolicy policies).
	latencyPods = 10000
	// benchLocalPods pods of the first latencyPods sit on benchAgentNode, the
	// agent's node, whatever the cluster size; the others are spread over
	// selectorstest.Nodes nodes.
	benchLocalPods = 100
	benchAgentNode = "bench-node"

	// pacedChanges are made one at a time, each waiting for its commit.
	pacedChanges = 1000
	// burstChanges are fired back to back, then waited for together.
	burstChanges = 100
	// commitTimeout bounds the wait for one change's commit.
	commitTimeout = time.Minute

	// loadWorkers write to the API server in parallel when loading.
	loadWorkers = 12
	// Client-side rate limits of the loading and changing client.
	writerQPS, writerBurst = 2000, 4000
)

// coalescingDelays are the MinSyncIntervals the latency benchmark runs at:
// the default, and a short one that shows what is coalescing and what is
// work.
var coalescingDelays = []time.Duration{agent.DefaultMinSyncInterval, 10 * time.Millisecond}

// rssPods are the cluster sizes BenchmarkAgentRSS measures; the largest is
// the size of the generated cluster, of which smaller sizes load a prefix.
var rssPods = []int{10000, 50000}

// rssSettle is how long after ready BenchmarkAgentRSS reads the settled RSS.
const rssSettle = 30 * time.Second

// BenchmarkAgentLatency loads latencyPods pods into the API server, runs one
// agent on benchAgentNode with the real nftables backend, and measures how
// long each API write takes to reach the kernel, at each coalescing delay.
func BenchmarkAgentLatency(b *testing.B) {
	netnstest.RequireRoot(b)
	c := loadedCluster(b, latencyPods)
	for _, delay := range coalescingDelays {
		b.Run(fmt.Sprintf("min-sync=%v", delay), func(b *testing.B) {
			benchLatency(b, c, delay)
		})
	}
}

func benchLatency(b *testing.B, c *benchCluster, delay time.Duration) {
	nsName, h := netnstest.New(b, "pdlat")
	backend, err := nft.New(nft.Options{NetNS: int(h)})
	if err != nil {
		b.Fatalf("nft backend in %s: %v", nsName, err)
	}
	began := time.Now()
	ra := startRecordingAgent(b, c.s.AdminConfig(), delay, backend)
	ra.waitReady(b, 10*time.Minute)
	ready := time.Since(began)
	// The informers report synced before their handlers have seen every
	// object, so the first commit may be followed by more: measure from a
	// quiet agent.
	ra.waitQuiet(b, time.Second, 5*time.Minute)
	report(b, "agent on %s (min-sync %v) ready in %v, quiet after %v: %d pods, %d policies in the API server",
		benchAgentNode, delay, ready.Round(time.Millisecond), time.Since(began).Round(time.Millisecond), len(c.pods), len(c.pols))

	m := newMutator(c, rand.New(rand.NewPCG(benchSeed, uint64(delay))))
	ctx := context.Background()

	var paced []sample
	for len(paced) < pacedChanges {
		for _, step := range m.next() {
			w, err := step(ctx)
			if err != nil {
				b.Fatal(err)
			}
			paced = append(paced, ra.measure(b, w))
		}
	}

	var writes []write
	for len(writes) < burstChanges {
		for _, step := range m.next() {
			w, err := step(ctx)
			if err != nil {
				b.Fatal(err)
			}
			writes = append(writes, w)
		}
	}
	var burst []sample
	commits := map[time.Time]bool{}
	for _, w := range writes {
		s := ra.measure(b, w)
		burst = append(burst, s)
		commits[s.commit] = true
	}
	burstWall := slices.MaxFunc(burst, func(x, y sample) int { return x.commit.Compare(y.commit) }).commit.Sub(writes[0].start)

	all := totals(paced)
	p99 := percentile(all, 99)
	b.ReportMetric(ms(delay), "min-sync-ms")
	b.ReportMetric(float64(len(paced)), "changes")
	b.ReportMetric(ms(percentile(all, 50)), "p50-ms")
	b.ReportMetric(ms(percentile(all, 90)), "p90-ms")
	b.ReportMetric(ms(p99), "p99-ms")
	b.ReportMetric(ms(slices.Max(all)), "max-ms")
	b.ReportMetric(ms(p99-delay), "p99-beyond-coalescing-ms")
	b.ReportMetric(ms(percentile(component(paced, func(s sample) time.Duration { return s.watch }), 50)), "watch-p50-ms")
	b.ReportMetric(ms(percentile(component(paced, func(s sample) time.Duration { return s.compile }), 50)), "compile-p50-ms")
	bt := totals(burst)
	b.ReportMetric(ms(percentile(bt, 50)), "burst-p50-ms")
	b.ReportMetric(ms(percentile(bt, 99)), "burst-p99-ms")
	b.ReportMetric(float64(len(commits)), "burst-syncs")

	report(b, "min-sync %v, %d changes one at a time (latency = API write to commit of its resourceVersion):\n%s",
		delay, len(paced), latencyTable(paced))
	report(b, "where the time goes, one at a time (watch: write to informer event; wait: event to sync start, coalescing and a sync in flight; compile; nft: netlink batch):\n%s",
		breakdownTable(paced))
	report(b, "burst: %d changes fired back to back in %v, committed by %d syncs, last commit %v after the first write:\n%s",
		len(burst), writes[len(writes)-1].start.Sub(writes[0].start).Round(time.Millisecond), len(commits),
		burstWall.Round(time.Millisecond), latencyTable(burst))
}

// BenchmarkAgentLatencyClusterPolicies installs the ClusterNetworkPolicy
// CRD on the loaded 10k-pod / 2k-policy API server, creates 100 Admin and
// 100 Baseline CNPs selecting the namespaces of the agent's pods in turn,
// and measures how long a CNP edit (an action change, or a priority change)
// takes from the API write to the kernel commit, one at a time.
func BenchmarkAgentLatencyClusterPolicies(b *testing.B) {
	netnstest.RequireRoot(b)
	c := loadedCluster(b, latencyPods)
	installCNPCRD(b, c.s)
	cnps, err := npaclient.NewForConfig(c.s.AdminConfig())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var nss []string
	for _, p := range c.pods {
		if p.Spec.NodeName == benchAgentNode && !slices.Contains(nss, p.Namespace) {
			nss = append(nss, p.Namespace)
		}
	}
	slices.Sort(nss)
	if len(nss) == 0 {
		b.Fatal("no pod runs on the agent's node")
	}
	var names []string
	for _, tier := range []npav1beta1.Tier{npav1beta1.AdminTier, npav1beta1.BaselineTier} {
		for i := range 100 {
			ns := nss[i%len(nss)]
			name := fmt.Sprintf("bench-%s-%03d", strings.ToLower(string(tier)), i)
			cnp := &npav1beta1.ClusterNetworkPolicy{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec: npav1beta1.ClusterNetworkPolicySpec{
					Tier: tier, Priority: int32(i),
					Subject: npav1beta1.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: ns}}},
					Ingress: []npav1beta1.ClusterNetworkPolicyIngressRule{{Name: "r", Action: npav1beta1.ClusterNetworkPolicyRuleActionDeny,
						From:      []npav1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: nss[(i+1)%len(nss)]}}}},
						Protocols: []npav1beta1.ClusterNetworkPolicyProtocol{{TCP: &npav1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: &npav1beta1.Port{Number: int32(7000 + i)}}}}}},
				},
			}
			if _, err := cnps.PolicyV1beta1().ClusterNetworkPolicies().Create(ctx, cnp, metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
			names = append(names, name)
		}
	}
	defer func() {
		for _, n := range names {
			_ = cnps.PolicyV1beta1().ClusterNetworkPolicies().Delete(ctx, n, metav1.DeleteOptions{})
		}
	}()
	delay := agent.DefaultMinSyncInterval
	nsName, h := netnstest.New(b, "pdlatc")
	backend, err := nft.New(nft.Options{NetNS: int(h)})
	if err != nil {
		b.Fatalf("nft backend in %s: %v", nsName, err)
	}
	ra := startRecordingAgent(b, c.s.AdminConfig(), delay, backend)
	ra.waitReady(b, 10*time.Minute)
	ra.waitQuiet(b, time.Second, 5*time.Minute)
	rng := rand.New(rand.NewPCG(benchSeed, 7))
	var paced []sample
	for len(paced) < 200 {
		name := names[rng.IntN(len(names))]
		cur, err := cnps.PolicyV1beta1().ClusterNetworkPolicies().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			b.Fatal(err)
		}
		op := "cnp-action"
		if len(paced)%2 == 0 {
			if cur.Spec.Ingress[0].Action == npav1beta1.ClusterNetworkPolicyRuleActionDeny {
				cur.Spec.Ingress[0].Action = npav1beta1.ClusterNetworkPolicyRuleActionAccept
			} else {
				cur.Spec.Ingress[0].Action = npav1beta1.ClusterNetworkPolicyRuleActionDeny
			}
		} else {
			op = "cnp-priority"
			cur.Spec.Priority = (cur.Spec.Priority + 37) % 1000
		}
		start := time.Now()
		upd, err := cnps.PolicyV1beta1().ClusterNetworkPolicies().Update(ctx, cur, metav1.UpdateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		paced = append(paced, ra.measure(b, write{op: op, kind: "ClusterNetworkPolicy", key: name, rv: upd.ResourceVersion, start: start}))
	}
	all := totals(paced)
	b.ReportMetric(ms(delay), "min-sync-ms")
	b.ReportMetric(float64(len(paced)), "changes")
	b.ReportMetric(ms(percentile(all, 50)), "p50-ms")
	b.ReportMetric(ms(percentile(all, 99)), "p99-ms")
	b.ReportMetric(ms(percentile(all, 99)-delay), "p99-beyond-coalescing-ms")
	report(b, "CNP edits with 200 CNPs beside %d pods / %d policies, min-sync %v, one at a time (API write to commit):\n%s",
		len(c.pods), len(c.pols), delay, latencyTable(paced))
}

// BenchmarkAgentRSS runs `policyd run` as a process of its own against
// clusters of rssPods pods and reports its resident memory once ready.
func BenchmarkAgentRSS(b *testing.B) {
	netnstest.RequireRoot(b)
	bin := buildPolicyd(b)
	for _, pods := range rssPods {
		b.Run(fmt.Sprintf("pods=%d/policies=%d", pods, pods/podsPerPolicy), func(b *testing.B) {
			c := loadedCluster(b, pods)
			kubeconfig := filepath.Join(b.TempDir(), "kubeconfig")
			if err := writeKubeconfig(c.s.AdminConfig(), kubeconfig); err != nil {
				b.Fatal(err)
			}
			nsName, _ := netnstest.New(b, "pdrss")
			p := startPolicyd(b, bin, kubeconfig, nsName)
			ready := p.waitReady(b, 10*time.Minute)
			// Memory right after the start-up syncs, and once settled: the
			// runtime returns freed pages to the kernel over tens of seconds
			// (faster above GOMEMLIMIT), and the settled figure is what the
			// kubelet sees for the life of the pod. VmHWM is the peak.
			time.Sleep(5 * time.Second)
			early, _, err := procMemory(p.cmd.Process.Pid)
			if err != nil {
				b.Fatal(err)
			}
			time.Sleep(rssSettle - 5*time.Second)
			rss, hwm, err := procMemory(p.cmd.Process.Pid)
			if err != nil {
				b.Fatal(err)
			}
			anon, file, err := procRssParts(p.cmd.Process.Pid)
			if err != nil {
				b.Fatal(err)
			}
			// What the runtime holds from the OS for the heap and has not
			// returned: in use, plus idle spans not yet released.
			heapSys, err := p.metric("go_memstats_heap_sys_bytes")
			if err != nil {
				b.Fatal(err)
			}
			released, err := p.metric("go_memstats_heap_released_bytes")
			if err != nil {
				b.Fatal(err)
			}
			heap, err := p.metric("go_memstats_heap_inuse_bytes")
			if err != nil {
				b.Fatal(err)
			}
			// The GC's heap goal is about twice the heap live at the last GC
			// (GOGC=100).
			goal, err := p.metric("go_memstats_next_gc_bytes")
			if err != nil {
				b.Fatal(err)
			}
			if dir := os.Getenv("POLICYD_BENCH_PROFILE_DIR"); dir != "" {
				if err := p.saveHeapProfile(filepath.Join(dir, fmt.Sprintf("heap-%dpods.pb.gz", pods))); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(p.info.pods), "pods")
			b.ReportMetric(float64(p.info.policies), "policies")
			b.ReportMetric(ready.Seconds(), "ready-s")
			b.ReportMetric(float64(early)/(1<<20), "rss-5s-MB")
			b.ReportMetric(float64(rss)/(1<<20), "rss-MB")
			b.ReportMetric(float64(hwm)/(1<<20), "hwm-MB")
			b.ReportMetric(heap/(1<<20), "heap-inuse-MB")
			b.ReportMetric(float64(anon)/(1<<20), "rss-anon-MB")
			b.ReportMetric(float64(file)/(1<<20), "rss-file-MB")
			b.ReportMetric((heapSys-released)/(1<<20), "heap-retained-MB")
			b.ReportMetric(goal/(1<<20), "gc-goal-MB")
			report(b, "policyd run (env %s) at %d pods / %d policies: ready in %v; VmRSS %.0f MB 5 s later, %.0f MB %v later (anonymous %.0f MB, file-backed %.0f MB: the binary's pages); VmHWM (peak) %.0f MB; Go heap in use %.0f MB, held from the OS %.0f MB, GC heap goal %.0f MB",
				strings.Join(daemonSetEnv(b), " "), p.info.pods, p.info.policies, ready.Round(time.Millisecond), float64(early)/(1<<20), float64(rss)/(1<<20), rssSettle,
				float64(anon)/(1<<20), float64(file)/(1<<20), float64(hwm)/(1<<20), heap/(1<<20), (heapSys-released)/(1<<20), goal/(1<<20))
			p.stop(b)
		})
	}
}

// report prints a paragraph of the benchmark's findings to standard output,
// headed by the benchmark's name. b.Log would do, but the testing package
// keeps only the first 10 lines a benchmark logs.
func report(b testing.TB, format string, args ...any) {
	fmt.Printf("%s: %s\n", b.Name(), strings.TrimRight(fmt.Sprintf(format, args...), "\n"))
}

// ---- the cluster in the API server ----

// benchCluster is the synthetic cluster as loaded into the shared API server.
// It grows: loading more pods loads more namespaces of the same generated
// cluster, so the benchmarks share one load.
type benchCluster struct {
	s      *apiservertest.Server
	client kubernetes.Interface // protobuf, high rate limits

	gen struct {
		nss  []*corev1.Namespace
		pods map[string][]*corev1.Pod // by namespace
		pols map[string][]*networkingv1.NetworkPolicy
	}
	loadedNS int

	// The objects as last written, by "ns/name"; nss lists the loaded
	// namespaces.
	nss  []string
	pods map[string]*corev1.Pod
	pols map[string]*networkingv1.NetworkPolicy
}

var theCluster *benchCluster

// loadedCluster returns the shared API server holding the first pods pods
// (and pods/podsPerPolicy policies) of the generated cluster, loading what is
// missing. It never unloads.
func loadedCluster(b *testing.B, pods int) *benchCluster {
	b.Helper()
	s := apiservertest.Shared(b)
	if theCluster == nil {
		theCluster = newBenchCluster(b, s)
	}
	c := theCluster
	if want := pods / podsPerNamespace; want > c.loadedNS {
		c.load(b, want)
	}
	return c
}

func newBenchCluster(b testing.TB, s *apiservertest.Server) *benchCluster {
	cfg := s.AdminConfig()
	cfg.QPS, cfg.Burst = writerQPS, writerBurst
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	c := &benchCluster{s: s, client: client, pods: map[string]*corev1.Pod{}, pols: map[string]*networkingv1.NetworkPolicy{}}
	maxPods := slices.Max(rssPods)
	nss, pods, pols := selectorstest.SyntheticObjects(maxPods, maxPods/podsPerPolicy, maxPods/podsPerNamespace, benchSeed)
	c.gen.nss = nss
	c.gen.pods = map[string][]*corev1.Pod{}
	c.gen.pols = map[string][]*networkingv1.NetworkPolicy{}
	// Every stride-th pod of the latency cluster (the first namespaces) moves
	// onto the agent's node, so it holds about benchLocalPods pods at every
	// size, as a real node would.
	stride := latencyPods / benchLocalPods
	for i, p := range pods {
		if i < latencyPods && i%stride == 0 && !p.Spec.HostNetwork {
			p.Spec.NodeName = benchAgentNode
		}
		c.gen.pods[p.Namespace] = append(c.gen.pods[p.Namespace], p)
	}
	for _, p := range pols {
		c.gen.pols[p.Namespace] = append(c.gen.pols[p.Namespace], p)
	}
	return c
}

// load writes namespaces [c.loadedNS, upTo) with their pods (create, then
// the status a kubelet would write) and policies, loadWorkers at a time.
func (c *benchCluster) load(b testing.TB, upTo int) {
	b.Helper()
	ctx := context.Background()
	began := time.Now()
	nss := c.gen.nss[c.loadedNS:upTo]
	var pods []*corev1.Pod
	var pols []*networkingv1.NetworkPolicy
	for _, ns := range nss {
		pods = append(pods, c.gen.pods[ns.Name]...)
		pols = append(pols, c.gen.pols[ns.Name]...)
	}
	if err := parallel(len(nss), func(i int) error { return c.ensureNamespace(ctx, nss[i]) }); err != nil {
		b.Fatal(err)
	}
	written := make([]*corev1.Pod, len(pods))
	if err := parallel(len(pods), func(i int) error {
		p, err := c.createPod(ctx, pods[i], pods[i].Status)
		written[i] = p
		return err
	}); err != nil {
		b.Fatal(err)
	}
	podsDone := time.Now()
	writtenPols := make([]*networkingv1.NetworkPolicy, len(pols))
	if err := parallel(len(pols), func(i int) error {
		out, err := c.client.NetworkingV1().NetworkPolicies(pols[i].Namespace).Create(ctx, pols[i], metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("create policy %s/%s: %w", pols[i].Namespace, pols[i].Name, err)
		}
		writtenPols[i] = out
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	for _, ns := range nss {
		c.nss = append(c.nss, ns.Name)
	}
	for _, p := range written {
		c.pods[key(p.Namespace, p.Name)] = p
	}
	for _, p := range writtenPols {
		c.pols[key(p.Namespace, p.Name)] = p
	}
	c.loadedNS = upTo
	took := time.Since(began)
	writes := len(nss) + 2*len(pods) + len(pols)
	report(b, "loaded %d namespaces, %d pods (create + status: %v) and %d policies into the API server in %v with %d writers: %.0f writes/s; it now holds %d pods, %d policies",
		len(nss), len(pods), podsDone.Sub(began).Round(time.Millisecond), len(pols), took.Round(time.Millisecond),
		loadWorkers, float64(writes)/took.Seconds(), len(c.pods), len(c.pols))
}

// ensureNamespace creates ns or, when it exists (kube-system), gives it ns's
// labels.
func (c *benchCluster) ensureNamespace(ctx context.Context, ns *corev1.Namespace) error {
	api := c.client.CoreV1().Namespaces()
	_, err := api.Create(ctx, ns, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		if err != nil {
			return fmt.Errorf("create namespace %s: %w", ns.Name, err)
		}
		return nil
	}
	cur, err := api.Get(ctx, ns.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get namespace %s: %w", ns.Name, err)
	}
	if cur.Labels == nil {
		cur.Labels = map[string]string{}
	}
	for k, v := range ns.Labels {
		cur.Labels[k] = v
	}
	if _, err := api.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("label namespace %s: %w", ns.Name, err)
	}
	return nil
}

// createPod creates p (its containers get an image, which the API requires)
// and then writes status through the status subresource, as a kubelet would.
func (c *benchCluster) createPod(ctx context.Context, p *corev1.Pod, status corev1.PodStatus) (*corev1.Pod, error) {
	p = podForCreate(p)
	created, err := c.client.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	return c.setPodStatus(ctx, created, status)
}

func (c *benchCluster) setPodStatus(ctx context.Context, p *corev1.Pod, status corev1.PodStatus) (*corev1.Pod, error) {
	p = p.DeepCopy()
	p.Status = status
	out, err := c.client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("set status of pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	return out, nil
}

// podForCreate returns a copy of p without status and with an image in every
// container.
func podForCreate(p *corev1.Pod) *corev1.Pod {
	p = p.DeepCopy()
	p.Status = corev1.PodStatus{}
	p.ResourceVersion = ""
	for i := range p.Spec.Containers {
		p.Spec.Containers[i].Image = pauseImage
	}
	return p
}

// parallel runs fn(0..n-1) on loadWorkers goroutines and returns the first
// error; after an error the remaining indexes are skipped.
func parallel(n int, fn func(i int) error) error {
	var next atomic.Int64
	var failed atomic.Bool
	errs := make([]error, loadWorkers)
	var wg sync.WaitGroup
	for w := range loadWorkers {
		wg.Go(func() {
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					errs[w] = err
					failed.Store(true)
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// ---- the agent under measurement ----

// recordingAgent runs an Agent and records, for every change a commit
// carried, when the informer delivered it and what the commit cost.
type recordingAgent struct {
	a        *agent.Agent
	registry *prometheus.Registry
	done     chan error

	mu      sync.Mutex
	cond    *sync.Cond
	seen    map[string]observedChange // "Kind/key@rv"
	lastSum float64                   // policyd_sync_duration_seconds sum at the last commit
	last    time.Time                 // when the last commit ended
}

type observedChange struct {
	observed time.Time
	commit   *commitCost
}

// commitCost is what one commit took: it ended at end, its sync (compile and
// nft) took sync, of which nft the netlink batch.
type commitCost struct {
	end       time.Time
	sync, nft time.Duration
	changes   int
	ops       int
}

func startRecordingAgent(b *testing.B, cfg *rest.Config, minSync time.Duration, backend nft.Interface) *recordingAgent {
	b.Helper()
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	cnpClient, err := npaclient.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ra := &recordingAgent{registry: prometheus.NewRegistry(), done: make(chan error, 1), seen: map[string]observedChange{}}
	ra.cond = sync.NewCond(&ra.mu)
	ra.a, err = agent.New(agent.Config{
		NodeName: benchAgentNode, Client: client, CNPClient: cnpClient, Backend: backend,
		MinSyncInterval: minSync,
		Logger:          slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Metrics:         agent.NewMetrics(ra.registry),
		OnCommit:        ra.onCommit,
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { ra.done <- ra.a.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		select {
		case err := <-ra.done:
			if err != nil && !errors.Is(err, context.Canceled) {
				b.Errorf("agent.Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			b.Errorf("agent did not stop within 30s")
		}
	})
	return ra
}

// onCommit runs on the agent's sync goroutine right after the agent observed
// the sync's duration, so the histogram's sum grew by exactly this sync
// (plus any failed sync before it, which the benchmark would see as errors
// in the log).
func (ra *recordingAgent) onCommit(c agent.Commit) {
	sum := ra.syncDurationSum()
	ra.mu.Lock()
	defer ra.mu.Unlock()
	cost := &commitCost{
		end:     c.Time,
		sync:    time.Duration((sum - ra.lastSum) * float64(time.Second)),
		nft:     c.Stats.Duration,
		changes: len(c.Changes),
		ops:     c.Stats.Ops,
	}
	ra.lastSum = sum
	ra.last = c.Time
	for _, ch := range c.Changes {
		k := ch.Kind + "/" + ch.Key + "@" + ch.ResourceVersion
		if _, ok := ra.seen[k]; !ok {
			ra.seen[k] = observedChange{observed: ch.Observed, commit: cost}
		}
	}
	ra.cond.Broadcast()
}

func (ra *recordingAgent) syncDurationSum() float64 {
	mfs, err := ra.registry.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() == "policyd_sync_duration_seconds" && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetHistogram().GetSampleSum()
		}
	}
	return 0
}

func (ra *recordingAgent) waitReady(b *testing.B, timeout time.Duration) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for !ra.a.Ready() {
		select {
		case err := <-ra.done:
			b.Fatalf("agent stopped before it was ready: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.Fatalf("agent not ready after %v", timeout)
		}
	}
}

// waitQuiet waits until no commit has ended for quiet.
func (ra *recordingAgent) waitQuiet(b *testing.B, quiet, timeout time.Duration) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ra.mu.Lock()
		since := time.Since(ra.last)
		ra.mu.Unlock()
		if since >= quiet {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("agent still committing after %v", timeout)
		}
		time.Sleep(quiet - since)
	}
}

// write is one API write: its object, the resourceVersion it produced
// ("" for a delete) and when it was sent.
type write struct {
	op        string // what kind of change, for the tables
	kind, key string
	rv        string
	start     time.Time
}

// sample is one write's latency and where the time went.
type sample struct {
	op     string
	total  time.Duration // write sent to commit
	watch  time.Duration // write sent to informer event
	wait   time.Duration // event to sync start: coalescing, or a sync in flight
	sync   time.Duration // compile and nft
	commit time.Time
	// compile and nft split sync.
	compile, nft time.Duration
	ops          int
}

// measure waits for the commit that carries w and returns its sample.
func (ra *recordingAgent) measure(b *testing.B, w write) sample {
	b.Helper()
	k := w.kind + "/" + w.key + "@" + w.rv
	timer := time.AfterFunc(commitTimeout, func() { ra.mu.Lock(); ra.cond.Broadcast(); ra.mu.Unlock() })
	defer timer.Stop()
	ra.mu.Lock()
	defer ra.mu.Unlock()
	for {
		if oc, ok := ra.seen[k]; ok {
			c := oc.commit
			syncStart := c.end.Add(-c.sync)
			return sample{
				op: w.op, commit: c.end, ops: c.ops,
				total:   c.end.Sub(w.start),
				watch:   oc.observed.Sub(w.start),
				wait:    syncStart.Sub(oc.observed),
				sync:    c.sync,
				compile: c.sync - c.nft,
				nft:     c.nft,
			}
		}
		if time.Since(w.start) > commitTimeout {
			b.Fatalf("no commit carried %s %s at resourceVersion %q within %v", w.kind, w.key, w.rv, commitTimeout)
		}
		ra.cond.Wait()
	}
}

// ---- the changes ----

// mutator makes random changes to the loaded cluster: pod relabels on the
// agent's node and elsewhere that move pods between selectors, pod adds
// (create, then the IP) and deletes, and policy adds and updates.
type mutator struct {
	c      *benchCluster
	rng    *rand.Rand
	local  keyList // pods on benchAgentNode with an app label
	remote keyList // other pods with an app label (not hostNetwork)
	pols   keyList
	apps   []string          // app label values
	tierOf map[string]string // app -> tier label
	n      int               // names and addresses of added objects
}

// changeMix weighs the changes the mutator makes.
var changeMix = []struct {
	op     string
	weight int
}{
	{"relabel-local", 25},
	{"relabel-remote", 25},
	{"pod-add", 10}, // two writes: pod-create, then pod-ip
	{"pod-delete", 10},
	{"policy-add", 10},
	{"policy-update", 20},
}

// mutatorRuns numbers mutators, so that the objects each adds have names of
// their own.
var mutatorRuns atomic.Int64

func newMutator(c *benchCluster, rng *rand.Rand) *mutator {
	m := &mutator{c: c, rng: rng, tierOf: map[string]string{}, n: int(mutatorRuns.Add(1)) * 100000}
	for _, k := range slices.Sorted(maps.Keys(c.pods)) {
		p := c.pods[k]
		app, ok := p.Labels["app"]
		if !ok || p.Spec.HostNetwork || p.Status.PodIP == "" {
			continue
		}
		if _, ok := m.tierOf[app]; !ok {
			m.apps = append(m.apps, app)
		}
		m.tierOf[app] = p.Labels["tier"]
		if p.Spec.NodeName == benchAgentNode {
			m.local.add(k)
		} else {
			m.remote.add(k)
		}
	}
	sort.Strings(m.apps)
	pols := make([]string, 0, len(c.pols))
	for k := range c.pols {
		pols = append(pols, k)
	}
	sort.Strings(pols)
	for _, k := range pols {
		m.pols.add(k)
	}
	return m
}

// step makes one API write.
type step func(ctx context.Context) (write, error)

// next returns the writes of one random change, to be made in order.
func (m *mutator) next() []step {
	total := 0
	for _, c := range changeMix {
		total += c.weight
	}
	r := m.rng.IntN(total)
	op := changeMix[0].op
	for _, c := range changeMix {
		if r < c.weight {
			op = c.op
			break
		}
		r -= c.weight
	}
	switch op {
	case "relabel-local":
		return []step{m.relabel(op, &m.local)}
	case "relabel-remote":
		return []step{m.relabel(op, &m.remote)}
	case "pod-add":
		return m.addPod()
	case "pod-delete":
		return []step{m.deletePod()}
	case "policy-add":
		return []step{m.addPolicy()}
	default:
		return []step{m.updatePolicy()}
	}
}

// relabel moves a pod to another app (and that app's tier) and toggles its
// version label: it leaves some selectors and joins others.
func (m *mutator) relabel(op string, from *keyList) step {
	k := from.pick(m.rng)
	p := m.c.pods[k].DeepCopy()
	app := m.apps[m.rng.IntN(len(m.apps))]
	for app == p.Labels["app"] && len(m.apps) > 1 {
		app = m.apps[m.rng.IntN(len(m.apps))]
	}
	p.Labels["app"], p.Labels["tier"] = app, m.tierOf[app]
	if _, ok := p.Labels["version"]; ok {
		delete(p.Labels, "version")
	} else {
		p.Labels["version"] = "v9"
	}
	return func(ctx context.Context) (write, error) {
		start := time.Now()
		out, err := m.c.client.CoreV1().Pods(p.Namespace).Update(ctx, p, metav1.UpdateOptions{})
		if err != nil {
			return write{}, fmt.Errorf("%s: update pod %s: %w", op, k, err)
		}
		m.c.pods[k] = out
		return write{op: op, kind: "Pod", key: k, rv: out.ResourceVersion, start: start}, nil
	}
}

// addPod scales a deployment by one: a copy of a random pod, on the agent's
// node or another one, created and then given an address in 10.200.0.0/16
// (which the generator does not use).
func (m *mutator) addPod() []step {
	local := m.rng.IntN(2) == 0
	var tmpl *corev1.Pod
	if local {
		tmpl = m.c.pods[m.local.pick(m.rng)]
	} else {
		tmpl = m.c.pods[m.remote.pick(m.rng)]
	}
	m.n++
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: tmpl.Namespace, Name: fmt.Sprintf("bench-%d", m.n), Labels: maps.Clone(tmpl.Labels)},
		Spec:       corev1.PodSpec{NodeName: tmpl.Spec.NodeName, Containers: tmpl.Spec.DeepCopy().Containers},
	}
	if local {
		p.Spec.NodeName = benchAgentNode
	} else if p.Spec.NodeName == benchAgentNode {
		p.Spec.NodeName = "node-0"
	}
	k := key(p.Namespace, p.Name)
	ip := netip.AddrFrom4([4]byte{10, 200, byte(m.n >> 8), byte(m.n)}).String()
	var created *corev1.Pod
	return []step{
		func(ctx context.Context) (write, error) {
			start := time.Now()
			out, err := m.c.client.CoreV1().Pods(p.Namespace).Create(ctx, podForCreate(p), metav1.CreateOptions{})
			if err != nil {
				return write{}, fmt.Errorf("pod-create %s: %w", k, err)
			}
			created = out
			m.c.pods[k] = out
			return write{op: "pod-create", kind: "Pod", key: k, rv: out.ResourceVersion, start: start}, nil
		},
		func(ctx context.Context) (write, error) {
			start := time.Now()
			out, err := m.c.setPodStatus(ctx, created, corev1.PodStatus{
				Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
			})
			if err != nil {
				return write{}, fmt.Errorf("pod-ip: %w", err)
			}
			m.c.pods[k] = out
			if local {
				m.local.add(k)
			} else {
				m.remote.add(k)
			}
			return write{op: "pod-ip", kind: "Pod", key: k, rv: out.ResourceVersion, start: start}, nil
		},
	}
}

// deletePod deletes a pod on the agent's node or elsewhere, half and half,
// so the node keeps about as many pods as pod-add gives it.
func (m *mutator) deletePod() step {
	from := &m.remote
	if m.rng.IntN(2) == 0 {
		from = &m.local
	}
	k := from.pick(m.rng)
	from.remove(k)
	p := m.c.pods[k]
	delete(m.c.pods, k)
	return func(ctx context.Context) (write, error) {
		zero := int64(0)
		start := time.Now()
		// No kubelet confirms a graceful deletion here.
		if err := m.c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
			return write{}, fmt.Errorf("pod-delete %s: %w", k, err)
		}
		return write{op: "pod-delete", kind: "Pod", key: k, rv: "", start: start}, nil
	}
}

// addPolicy copies a random policy's spec into a random namespace.
func (m *mutator) addPolicy() step {
	donor := m.c.pols[m.pols.pick(m.rng)]
	m.n++
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: m.c.nss[m.rng.IntN(len(m.c.nss))], Name: fmt.Sprintf("bench-policy-%d", m.n)},
		Spec:       *donor.Spec.DeepCopy(),
	}
	k := key(np.Namespace, np.Name)
	return func(ctx context.Context) (write, error) {
		start := time.Now()
		out, err := m.c.client.NetworkingV1().NetworkPolicies(np.Namespace).Create(ctx, np, metav1.CreateOptions{})
		if err != nil {
			return write{}, fmt.Errorf("policy-add %s: %w", k, err)
		}
		m.c.pols[k] = out
		m.pols.add(k)
		return write{op: "policy-add", kind: "NetworkPolicy", key: k, rv: out.ResourceVersion, start: start}, nil
	}
}

// updatePolicy gives a random policy another random policy's spec: other
// subjects, peers and ports.
func (m *mutator) updatePolicy() step {
	k := m.pols.pick(m.rng)
	donor := m.pols.pick(m.rng)
	for donor == k {
		donor = m.pols.pick(m.rng)
	}
	np := m.c.pols[k].DeepCopy()
	np.Spec = *m.c.pols[donor].Spec.DeepCopy()
	return func(ctx context.Context) (write, error) {
		start := time.Now()
		out, err := m.c.client.NetworkingV1().NetworkPolicies(np.Namespace).Update(ctx, np, metav1.UpdateOptions{})
		if err != nil {
			return write{}, fmt.Errorf("policy-update %s: %w", k, err)
		}
		m.c.pols[k] = out
		return write{op: "policy-update", kind: "NetworkPolicy", key: k, rv: out.ResourceVersion, start: start}, nil
	}
}

// keyList is a set of keys with uniform random picks.
type keyList struct {
	keys []string
	idx  map[string]int
}

func (l *keyList) add(k string) {
	if l.idx == nil {
		l.idx = map[string]int{}
	}
	if _, ok := l.idx[k]; ok {
		return
	}
	l.idx[k] = len(l.keys)
	l.keys = append(l.keys, k)
}

func (l *keyList) remove(k string) {
	i, ok := l.idx[k]
	if !ok {
		return
	}
	last := l.keys[len(l.keys)-1]
	l.keys[i], l.idx[last] = last, i
	l.keys = l.keys[:len(l.keys)-1]
	delete(l.idx, k)
}

func (l *keyList) pick(rng *rand.Rand) string { return l.keys[rng.IntN(len(l.keys))] }

// ---- statistics ----

func totals(ss []sample) []time.Duration {
	return component(ss, func(s sample) time.Duration { return s.total })
}

func component(ss []sample, f func(sample) time.Duration) []time.Duration {
	out := make([]time.Duration, len(ss))
	for i, s := range ss {
		out[i] = f(s)
	}
	return out
}

// percentile returns the nearest-rank p-th percentile of ds (0 when empty).
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(p/100*float64(len(s))+0.999999) - 1
	return s[min(max(rank, 0), len(s)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fmtMS(d time.Duration) string { return strconv.FormatFloat(ms(d), 'f', 1, 64) }

// latencyTable prints total latency percentiles per kind of change, then
// for all of them.
func latencyTable(ss []sample) string {
	var sb strings.Builder
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "change\tn\tp50 ms\tp90 ms\tp99 ms\tmax ms\tops/commit\t")
	byOp := map[string][]sample{}
	var ops []string
	for _, s := range ss {
		if _, ok := byOp[s.op]; !ok {
			ops = append(ops, s.op)
		}
		byOp[s.op] = append(byOp[s.op], s)
	}
	sort.Strings(ops)
	row := func(name string, ss []sample) {
		t := totals(ss)
		n := 0
		for _, s := range ss {
			n += s.ops
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%.1f\t\n", name, len(ss),
			fmtMS(percentile(t, 50)), fmtMS(percentile(t, 90)), fmtMS(percentile(t, 99)), fmtMS(slices.Max(t)), float64(n)/float64(len(ss)))
	}
	for _, op := range ops {
		row(op, byOp[op])
	}
	row("all", ss)
	_ = tw.Flush()
	return sb.String()
}

// breakdownTable prints percentiles of each part of the latency.
func breakdownTable(ss []sample) string {
	var sb strings.Builder
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "part\tp50 ms\tp90 ms\tp99 ms\tmax ms\t")
	for _, part := range []struct {
		name string
		f    func(sample) time.Duration
	}{
		{"watch", func(s sample) time.Duration { return s.watch }},
		{"wait", func(s sample) time.Duration { return s.wait }},
		{"compile", func(s sample) time.Duration { return s.compile }},
		{"nft", func(s sample) time.Duration { return s.nft }},
		{"total", func(s sample) time.Duration { return s.total }},
	} {
		d := component(ss, part.f)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", part.name,
			fmtMS(percentile(d, 50)), fmtMS(percentile(d, 90)), fmtMS(percentile(d, 99)), fmtMS(slices.Max(d)))
	}
	_ = tw.Flush()
	return sb.String()
}

// ---- policyd as a process ----

// buildPolicyd builds cmd/policyd into a temporary directory.
func buildPolicyd(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "policyd")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/policyd/policyd/cmd/policyd")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build ./cmd/policyd: %v\n%s", err, out)
	}
	return bin
}

// writeKubeconfig writes cfg's host, CA and bearer token as a kubeconfig.
func writeKubeconfig(cfg *rest.Config, path string) error {
	kc := clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"bench": {Server: cfg.Host, CertificateAuthorityData: cfg.CAData}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"bench": {Token: cfg.BearerToken}},
		Contexts:       map[string]*clientcmdapi.Context{"bench": {Cluster: "bench", AuthInfo: "bench"}},
		CurrentContext: "bench",
	}
	if err := clientcmd.WriteToFile(kc, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}

// policydProcess is a running `policyd run` and what its JSON log told.
type policydProcess struct {
	cmd     *exec.Cmd
	started time.Time
	exited  chan struct{}
	waitErr error

	mu   sync.Mutex
	addr string
	// pprofAddr is where --profiling serves /debug/pprof/, from its log.
	pprofAddr string
	info      struct{ pods, policies int }
	tail      []string
}

func startPolicyd(b testing.TB, bin, kubeconfig, netnsName string) *policydProcess {
	b.Helper()
	cmd := exec.Command(bin, "run", "--node-name", benchAgentNode, "--kubeconfig", kubeconfig,
		"--netns", netnsName, "--metrics-addr", "127.0.0.1:0", "--log-format", "json", "--profiling", "--profiling-addr", "127.0.0.1:0")
	// Run it as the DaemonSet does: with the environment variables the
	// manifest sets to fixed values (GOMEMLIMIT).
	cmd.Env = append(os.Environ(), daemonSetEnv(b)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	p := &policydProcess{cmd: cmd, exited: make(chan struct{})}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", bin, err)
	}
	go p.readLog(stderr)
	go func() { p.waitErr = cmd.Wait(); close(p.exited) }()
	b.Cleanup(func() { p.stop(b) })
	return p
}

func (p *policydProcess) readLog(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var rec struct {
			Msg             string `json:"msg"`
			Addr            string `json:"addr"`
			Pods            int    `json:"pods"`
			NetworkPolicies int    `json:"networkpolicies"`
		}
		_ = json.Unmarshal([]byte(line), &rec)
		p.mu.Lock()
		switch rec.Msg {
		case "serving metrics and health":
			p.addr = rec.Addr
		case "serving profiles":
			p.pprofAddr = rec.Addr
		case "informer caches synced":
			p.info.pods, p.info.policies = rec.Pods, rec.NetworkPolicies
		}
		p.tail = append(p.tail, line)
		if len(p.tail) > 30 {
			p.tail = p.tail[1:]
		}
		p.mu.Unlock()
	}
}

func (p *policydProcess) logTail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, "\n")
}

// waitReady polls /readyz and returns how long the process took to get
// there.
func (p *policydProcess) waitReady(b testing.TB, timeout time.Duration) time.Duration {
	b.Helper()
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := p.started.Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			b.Fatalf("policyd exited before it was ready: %v\n%s", p.waitErr, p.logTail())
		case <-time.After(100 * time.Millisecond):
		}
		p.mu.Lock()
		addr := p.addr
		p.mu.Unlock()
		if addr == "" {
			continue
		}
		resp, err := hc.Get("http://" + addr + "/readyz")
		if err != nil {
			continue
		}
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return time.Since(p.started)
		}
	}
	b.Fatalf("policyd not ready after %v\n%s", timeout, p.logTail())
	return 0
}

// metric returns the value of an unlabelled metric from the process's
// /metrics.
func (p *policydProcess) metric(name string) (float64, error) {
	p.mu.Lock()
	addr := p.addr
	p.mu.Unlock()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("policyd /metrics has no %s", name)
}

// daemonSetEnv returns the literal environment variables (not those from
// the downward API) of the DaemonSet's container in deploy/.
func daemonSetEnv(b testing.TB) []string {
	b.Helper()
	docs, err := deploy.Documents()
	if err != nil {
		b.Fatal(err)
	}
	for _, d := range docs {
		ds, ok := d.Object.(*appsv1.DaemonSet)
		if !ok {
			continue
		}
		var env []string
		for _, e := range ds.Spec.Template.Spec.Containers[0].Env {
			if e.ValueFrom == nil {
				env = append(env, e.Name+"="+e.Value)
			}
		}
		return env
	}
	b.Fatal("deploy/: no DaemonSet")
	return nil
}

// saveHeapProfile writes the process's heap profile (it runs with
// --profiling) to path, for `go tool pprof`.
func (p *policydProcess) saveHeapProfile(path string) error {
	p.mu.Lock()
	addr := p.pprofAddr
	p.mu.Unlock()
	if addr == "" {
		return errors.New("policyd did not log where it serves profiles")
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Get("http://" + addr + "/debug/pprof/heap")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /debug/pprof/heap: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close() // the copy's error is the one to report
		return err
	}
	return f.Close()
}

// stop sends SIGTERM and waits; after 30 s it kills. Idempotent.
func (p *policydProcess) stop(b testing.TB) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		b.Errorf("policyd did not stop within 30s of SIGTERM; killed")
	}
}

// procRssParts returns the anonymous and the file-backed parts of process
// pid's resident set (RssAnon, RssFile), in bytes.
func procRssParts(pid int) (anon, file int64, err error) {
	v, err := procStatus(pid, "RssAnon", "RssFile")
	return v["RssAnon"], v["RssFile"], err
}

// procMemory returns a process's VmRSS and VmHWM in bytes.
func procMemory(pid int) (rss, hwm int64, err error) {
	v, err := procStatus(pid, "VmRSS", "VmHWM")
	return v["VmRSS"], v["VmHWM"], err
}

// procStatus returns the named kB fields of /proc/<pid>/status, in bytes,
// and fails unless each is there and non-zero.
func procStatus(pid int, names ...string) (map[string]int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(data), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || !slices.Contains(names, name) {
			continue
		}
		f := strings.Fields(rest) // "123456 kB"
		if len(f) != 2 || f[1] != "kB" {
			return nil, fmt.Errorf("/proc/%d/status: %s: unexpected %q", pid, name, rest)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("/proc/%d/status: %s: %w", pid, name, err)
		}
		out[name] = kb << 10
	}
	for _, n := range names {
		if out[n] == 0 {
			return nil, fmt.Errorf("/proc/%d/status: no %s", pid, n)
		}
	}
	return out, nil
}
