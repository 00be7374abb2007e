package agent_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/conformance/lab"
	"github.com/policyd/policyd/internal/apiservertest"
	"github.com/policyd/policyd/internal/netnstest"
	"github.com/policyd/policyd/policy/nft"
)

// The pod-churn soak (issue 15, item 3): `make soak`, not part of make test.
//
// A real API server holds the 10,000-pod / 2,000-policy synthetic cluster
// of the agent benchmarks; `policyd run` (a process of its own, with the
// DaemonSet's environment and the shipped RBAC) enforces a one-node lab:
// its node is benchAgentNode, which also holds about 100 of the synthetic
// pods, and its six real pods, in two namespaces of their own, are in the
// API too. For SOAK_DURATION the soak makes soakChangesPerSec changes per
// second to the synthetic cluster (pods replaced, relabels, policy
// adds, deletes and updates; see soakChurn) and, every soakLabEvery, one
// change to what the lab pods may do (a pod relabelled, a namespace
// relabelled, the servers' policy narrowed or widened, a default-deny
// added or removed). Every second it probes every ordered pair of lab pods
// on TCP and UDP 80 with real packets (each a new connection: see the UDP
// timeouts below), and every 10 s it samples the agent's RSS, the set
// elements it committed and the kernel's sets.
//
// A false allow is a probe that connected although every state the lab's
// namespaces were in from soakLag before the probe to its end denies it
// (soakLag allows for programming latency). At the end the kernel's table
// must list as `nft -f` of a fresh compile of the API state.

const (
	soakDurationEnv    = "SOAK_DURATION"
	soakChangesPerSec  = 5
	soakLabEvery       = 8 * time.Second
	soakLag            = 5 * time.Second
	soakSampleEvery    = 10 * time.Second
	soakProbeEvery     = time.Second
	soakConvergeWithin = time.Minute
)

// The synthetic churn is stationary, so that a trend in memory or set
// sizes is the agent's, not the workload's: a deleted pod is replaced by a
// new one with its labels and node (copying a random pod instead would
// drift the labels of the node's pods towards fewer distinct ones),
// relabels and policy updates are undone after a while (at most
// soakOutstanding of each at a time), policy adds removed again.
const (
	soakPodShare, soakRelabelShare = 0.2, 0.4 // the rest: policy changes
	soakOutstanding                = 100
)

// soakChurn makes the synthetic changes.
type soakChurn struct {
	c    *benchCluster
	rng  *rand.Rand
	pods []string // the pods with an app label that may be relabelled or replaced
	apps []string
	// relabelled are pods relabelled, oldest first, with their labels
	// before; flipped policies given another spec, oldest first.
	relabelled []string
	origLabels map[string]map[string]string
	orig       map[string]networkingv1.NetworkPolicySpec
	polKeys    []string
	flipped    []string
	extras     keyList
	n          int
}

func newSoakChurn(c *benchCluster, rng *rand.Rand) *soakChurn {
	sc := &soakChurn{c: c, rng: rng, origLabels: map[string]map[string]string{}, orig: map[string]networkingv1.NetworkPolicySpec{}}
	apps := map[string]bool{}
	for k, p := range c.pods {
		if app, ok := p.Labels["app"]; ok && !p.Spec.HostNetwork && p.Status.PodIP != "" {
			sc.pods = append(sc.pods, k)
			apps[app] = true
		}
	}
	slices.Sort(sc.pods)
	sc.apps = slices.Sorted(maps.Keys(apps))
	for k, np := range c.pols {
		sc.orig[k] = *np.Spec.DeepCopy()
		sc.polKeys = append(sc.polKeys, k)
	}
	slices.Sort(sc.polKeys)
	return sc
}

// replacePod deletes a pod that is not relabelled and creates one like it
// (labels, node, containers) under a new name and address, as a
// Deployment replaces a pod.
func (sc *soakChurn) replacePod(ctx context.Context) error {
	i := sc.rng.IntN(len(sc.pods))
	k := sc.pods[i]
	if _, moved := sc.origLabels[k]; moved {
		return nil
	}
	old := sc.c.pods[k]
	pods := sc.c.client.CoreV1().Pods(old.Namespace)
	zero := int64(0)
	if err := pods.Delete(ctx, old.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		return fmt.Errorf("soak pod delete %s: %w", k, err)
	}
	delete(sc.c.pods, k)
	sc.n++
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: old.Namespace, Name: fmt.Sprintf("soak-%d", sc.n), Labels: maps.Clone(old.Labels)},
		Spec:       corev1.PodSpec{NodeName: old.Spec.NodeName, Containers: old.Spec.DeepCopy().Containers},
	}
	ip := netip.AddrFrom4([4]byte{10, 201, byte(sc.n >> 8), byte(sc.n)}).String()
	out, err := sc.c.createPod(ctx, p, corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}})
	if err != nil {
		return err
	}
	nk := key(out.Namespace, out.Name)
	sc.c.pods[nk] = out
	sc.pods[i] = nk
	return nil
}

// relabel moves a pod to another app, or puts the oldest moved pod back.
func (sc *soakChurn) relabel(ctx context.Context) error {
	var k string
	var lbls map[string]string
	if len(sc.relabelled) >= soakOutstanding {
		k, sc.relabelled = sc.relabelled[0], sc.relabelled[1:]
		lbls = sc.origLabels[k]
		delete(sc.origLabels, k)
	} else {
		k = sc.pods[sc.rng.IntN(len(sc.pods))]
		if _, moved := sc.origLabels[k]; moved {
			return nil
		}
		if p, ok := sc.c.pods[k]; ok {
			sc.origLabels[k] = maps.Clone(p.Labels)
			sc.relabelled = append(sc.relabelled, k)
			lbls = maps.Clone(p.Labels)
			lbls["app"] = sc.apps[sc.rng.IntN(len(sc.apps))]
		}
	}
	p, ok := sc.c.pods[k]
	if !ok {
		return nil // deleted by the mutator meanwhile
	}
	p = p.DeepCopy()
	p.Labels = lbls
	out, err := sc.c.client.CoreV1().Pods(p.Namespace).Update(ctx, p, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("soak relabel %s: %w", k, err)
	}
	sc.c.pods[k] = out
	return nil
}

// policy adds a copy of a generated policy or deletes such a copy, or
// gives a generated policy another generated spec or the oldest changed
// one its own back.
func (sc *soakChurn) policy(ctx context.Context) error {
	pols := sc.c.client.NetworkingV1()
	switch r := sc.rng.IntN(4); {
	case r == 0 && len(sc.extras.keys) < soakOutstanding:
		sc.n++
		donor := sc.orig[sc.polKeys[sc.rng.IntN(len(sc.polKeys))]]
		np := &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: sc.c.nss[sc.rng.IntN(len(sc.c.nss))], Name: fmt.Sprintf("soak-extra-%d", sc.n)},
			Spec:       *donor.DeepCopy(),
		}
		if _, err := pols.NetworkPolicies(np.Namespace).Create(ctx, np, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("soak policy add: %w", err)
		}
		sc.extras.add(key(np.Namespace, np.Name))
		return nil
	case r <= 1 && len(sc.extras.keys) > 0:
		k := sc.extras.pick(sc.rng)
		sc.extras.remove(k)
		ns, name, _ := strings.Cut(k, "/")
		if err := pols.NetworkPolicies(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			return fmt.Errorf("soak policy delete: %w", err)
		}
		return nil
	}
	var k string
	var spec networkingv1.NetworkPolicySpec
	if len(sc.flipped) >= soakOutstanding {
		k, sc.flipped = sc.flipped[0], sc.flipped[1:]
		spec = sc.orig[k]
	} else {
		k = sc.polKeys[sc.rng.IntN(len(sc.polKeys))]
		if slices.Contains(sc.flipped, k) {
			return nil
		}
		sc.flipped = append(sc.flipped, k)
		spec = sc.orig[sc.polKeys[sc.rng.IntN(len(sc.polKeys))]]
	}
	np := sc.c.pols[k].DeepCopy()
	np.Spec = *spec.DeepCopy()
	out, err := pols.NetworkPolicies(np.Namespace).Update(ctx, np, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("soak policy update %s: %w", k, err)
	}
	sc.c.pols[k] = out
	return nil
}

// labState is the lab namespaces' state from a moment on.
type labState struct {
	from time.Time
	snap *cluster.Snapshot
	what string
}

type probeRecord struct {
	start, end time.Time
	results    []lab.Result
}

type soakSample struct {
	at                         time.Duration
	rssMB                      float64
	elements, sets, maps, pods int
	errs                       int
	kernelSets, kernelElems    int // kernelElems -1 when not counted
}

func TestSoak(t *testing.T) {
	ds := os.Getenv(soakDurationEnv)
	if ds == "" {
		t.Skip("the pod-churn soak runs with SOAK_DURATION set (make soak)")
	}
	duration, err := time.ParseDuration(ds)
	require.NoError(t, err, soakDurationEnv)
	netnstest.RequireRoot(t)
	ctx := context.Background()
	s := apiservertest.Start(t)
	c := newBenchCluster(t, s)
	c.load(t, latencyPods/podsPerNamespace)

	// The lab: six real pods on the agent's node, in the API too.
	nsA, nsB := "soak-a", "soak-b"
	admin := s.Client()
	for _, ns := range []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: nsA, Labels: map[string]string{"soak": "a"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: nsB, Labels: map[string]string{"soak": "b", "team": "client"}}},
	} {
		_, err := admin.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	labPods := []*corev1.Pod{
		newPod(nsA, "server-1", benchAgentNode, map[string]string{"app": "server"}),
		newPod(nsA, "server-2", benchAgentNode, map[string]string{"app": "server"}),
		newPod(nsA, "client-a", benchAgentNode, map[string]string{"app": "client"}),
		newPod(nsA, "other-a", benchAgentNode, map[string]string{"app": "other"}),
		newPod(nsB, "client-b", benchAgentNode, map[string]string{"app": "client"}),
		newPod(nsB, "other-b", benchAgentNode, map[string]string{"app": "other"}),
	}
	l, err := lab.New(ctx, lab.Config{CNI: lab.CNIRouted, Nodes: []string{benchAgentNode}, RunID: fmt.Sprintf("soak%d", os.Getpid()%100000)}, labPods)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, l.Close()) })
	var keys []string
	for _, p := range l.PodObjects() {
		orig := p.DeepCopy()
		orig.Status = corev1.PodStatus{}
		createPod(t, admin, orig, p.Status.PodIP)
		keys = append(keys, key(p.Namespace, p.Name))
	}
	servers := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: nsA, Name: "servers"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
				{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}}},
				{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "client"}},
					PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}}},
			}}},
		},
	}
	servers = applyPolicy(t, admin, servers)

	nodeNS, ok := l.NodeNetNS(benchAgentNode)
	require.True(t, ok)
	nodeH, ok := l.NodeNetNSHandle(benchAgentNode)
	require.True(t, ok)
	nodeFD := int(nodeH)
	// Every probe a new connection: a UDP probe whose source port an
	// earlier probe of the same pair used within conntrack's UDP timeout
	// (30 s) is that earlier flow, which a policy change does not cut
	// (without --cut-established, by design), and would pass for a false
	// allow. These timeouts are the node namespace's own.
	for _, kv := range []string{"net.netfilter.nf_conntrack_udp_timeout=1", "net.netfilter.nf_conntrack_udp_timeout_stream=1"} {
		netnstest.MustExec(t, nodeNS, "sysctl", "-qw", kv)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, writeKubeconfig(agentRESTConfig(t, s), kubeconfig))
	p := startPolicyd(t, buildPolicyd(t), kubeconfig, nodeNS)
	ready := p.waitReady(t, 10*time.Minute)
	t.Logf("policyd ready %v after start, %d pods / %d policies in its caches", ready.Round(time.Millisecond), p.info.pods, p.info.policies)

	var mu sync.Mutex
	states := []labState{{from: time.Now(), snap: apiSnapshot(t, admin, nsA, nsB), what: "start"}}
	waitLabState := func(step string) {
		t.Helper()
		snap := apiSnapshot(t, admin, nsA, nsB)
		require.Eventually(t, func() bool {
			for _, r := range l.ProbeAll(ctx, soakProbes(keys)) {
				if r.Err != "" || r.Observed != modelAllows(snap, r.Probe) {
					return false
				}
			}
			return true
		}, soakConvergeWithin, 500*time.Millisecond, "%s: the lab never followed the API state", step)
	}
	waitLabState("start")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var churnErr error
	churned := 0
	// Synthetic churn.
	wg.Go(func() {
		sc := newSoakChurn(c, rand.New(rand.NewPCG(benchSeed, 17)))
		rng := rand.New(rand.NewPCG(benchSeed, 18))
		tick := time.NewTicker(time.Second / soakChangesPerSec)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			var err error
			switch r := rng.Float64(); {
			case r < soakPodShare:
				err = sc.replacePod(ctx)
			case r < soakPodShare+soakRelabelShare:
				err = sc.relabel(ctx)
			default:
				err = sc.policy(ctx)
			}
			if err != nil {
				churnErr = err
				return
			}
			churned++
		}
	})
	// Lab churn.
	labChanges := 0
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(benchSeed, 16))
		tick := time.NewTicker(soakLabEvery)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			what := labChange(t, admin, rng, nsA, nsB, servers.Name)
			snap := apiSnapshot(t, admin, nsA, nsB)
			mu.Lock()
			states = append(states, labState{from: time.Now(), snap: snap, what: what})
			mu.Unlock()
			labChanges++
		}
	})
	// Probes.
	var probes []probeRecord
	wg.Go(func() {
		tick := time.NewTicker(soakProbeEvery)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			start := time.Now()
			res := l.ProbeAll(ctx, soakProbes(keys))
			mu.Lock()
			probes = append(probes, probeRecord{start: start, end: time.Now(), results: res})
			mu.Unlock()
		}
	})
	// Samples.
	var samples []soakSample
	began := time.Now()
	sample := func(countElements bool) {
		rss, _, err := procMemory(p.cmd.Process.Pid)
		require.NoError(t, err)
		m := func(name string) int { v, _ := p.metric(name); return int(v) }
		smp := soakSample{at: time.Since(began), rssMB: float64(rss) / (1 << 20),
			elements: m(`policyd_programmed{kind="elements"}`), sets: m(`policyd_programmed{kind="sets"}`), maps: m(`policyd_programmed{kind="maps"}`),
			pods: m(`policyd_objects{kind="pods"}`), errs: m("policyd_sync_errors_total"), kernelElems: -1}
		smp.kernelSets, smp.kernelElems = kernelSetsAndElements(t, nodeFD, countElements)
		samples = append(samples, smp)
	}
	sample(true)
	for time.Since(began) < duration {
		time.Sleep(min(soakSampleEvery, duration-time.Since(began)))
		// The kernel's elements only at the ends: a dump of a few
		// hundred thousand takes seconds of the machine's two cores.
		sample(false)
		require.NoError(t, churnErr)
		select {
		case <-p.exited:
			t.Fatalf("policyd exited during the soak: %v\n%s", p.waitErr, p.logTail())
		default:
		}
	}
	close(stop)
	wg.Wait()
	require.NoError(t, churnErr)
	mu.Lock()
	defer mu.Unlock()

	// False allows, late enforcement.
	falseAllows, lateDenies, total := 0, 0, 0
	var examples []string
	for _, pr := range probes {
		for _, r := range pr.results {
			require.Empty(t, r.Err, "lab fault on %s", r.Probe)
			total++
			inForce := statesDuring(states, pr.start.Add(-soakLag), pr.end)
			any := false
			for _, st := range inForce {
				any = any || modelAllows(st.snap, r.Probe)
			}
			if r.Observed && !any {
				falseAllows++
				if len(examples) < 10 {
					examples = append(examples, fmt.Sprintf("%s at %s (%s): allowed; states in force: %s", r.Probe, pr.start.Format("15:04:05.000"), r.Detail, describe(inForce)))
				}
			}
			all := len(inForce) > 0
			for _, st := range inForce {
				all = all && modelAllows(st.snap, r.Probe)
			}
			if !r.Observed && all {
				lateDenies++
			}
		}
	}

	t.Logf("probes: %d in %d rounds, %d false allows, %d denied beyond the %v lag allowance", total, len(probes), falseAllows, lateDenies, soakLag)
	assert.Zero(t, falseAllows, "false allows:\n%s", strings.Join(examples, "\n"))

	// The end: the kernel's table is a fresh compile of the API state.
	fresh := freshCompile(t, admin, nil, benchAgentNode)
	var converged time.Duration
	endAt := time.Now()
	require.Eventually(t, func() bool {
		fresh = freshCompile(t, admin, nil, benchAgentNode)
		ok := normalizeListing(netnstest.MustExec(t, nodeNS, "nft", "list", "table", "inet", "policyd")) == referenceListing(t, fresh.Text())
		converged = time.Since(endAt)
		return ok
	}, soakConvergeWithin, time.Second, "the table is not a fresh compile of the API state after the soak")
	b, err := nft.New(nft.Options{NetNS: nodeFD})
	require.NoError(t, err)
	st, err := b.Sync(ctx, fresh)
	require.NoError(t, err)
	sample(true) // after the churn, converged: what the agent committed is the kernel's

	last := samples[len(samples)-1]
	var rss, elems, kernel []float64
	var rows []string
	for _, smp := range samples {
		rss, elems = append(rss, smp.rssMB), append(elems, float64(smp.elements))
		ke := "      -"
		if smp.kernelElems >= 0 {
			kernel = append(kernel, float64(smp.kernelElems))
			ke = fmt.Sprintf("%7d", smp.kernelElems)
		}
		rows = append(rows, fmt.Sprintf("%6.0fs  RSS %5.1f MB  committed: %6d elements in %4d sets + %2d maps; kernel: %s elements in %4d sets/maps; pods %5d; sync errors %d",
			smp.at.Seconds(), smp.rssMB, smp.elements, smp.sets, smp.maps, ke, smp.kernelSets, smp.pods, smp.errs))
	}
	report(t, "soak of %v: %d synthetic changes (%.1f/s), %d lab changes, %d probes in %d rounds: %d false allows, %d denied beyond the %v lag allowance; "+
		"RSS MB %s; committed elements %s; kernel elements %s; table equals a fresh compile %v after the churn stopped (a fresh backend: %d ops); samples:\n%s",
		duration, churned, float64(churned)/duration.Seconds(), labChanges, total, len(probes), falseAllows, lateDenies, soakLag,
		firstLastMax(rss, "%.1f"), firstLastMax(elems, "%.0f"), firstLastMax(kernel, "%.0f"),
		converged.Round(time.Second), st.Ops, strings.Join(rows, "\n"))
	assert.Zero(t, st.Ops, "a fresh backend had to write to make the table a fresh compile")
	assert.Zero(t, last.errs, "syncs failed during the soak")
	p.stop(t)
}

// soakProbes is every ordered pair of keys on TCP and UDP 80.
func soakProbes(keys []string) []lab.Probe {
	var out []lab.Probe
	for _, from := range keys {
		for _, to := range keys {
			if from != to {
				for _, proto := range []cluster.Protocol{cluster.ProtocolTCP, cluster.ProtocolUDP} {
					out = append(out, lab.Probe{From: from, To: to, Port: 80, Protocol: proto})
				}
			}
		}
	}
	return out
}

// statesDuring returns the states in force at some moment of [from, to].
func statesDuring(states []labState, from, to time.Time) []labState {
	var out []labState
	for i, st := range states {
		end := time.Time{}
		if i+1 < len(states) {
			end = states[i+1].from
		}
		if st.from.After(to) || (!end.IsZero() && end.Before(from)) {
			continue
		}
		out = append(out, st)
	}
	return out
}

func describe(states []labState) string {
	var out []string
	for _, st := range states {
		out = append(out, st.from.Format("15:04:05.000")+" "+st.what)
	}
	return strings.Join(out, "; ")
}

// labChange makes one random change that moves what the lab pods may do
// and says what it was.
func labChange(t *testing.T, c kubernetes.Interface, rng *rand.Rand, nsA, nsB, policy string) string {
	t.Helper()
	ctx := context.Background()
	switch rng.IntN(4) {
	case 0:
		ns := []string{nsA, nsB}[rng.IntN(2)]
		name := map[string][]string{nsA: {"client-a", "other-a"}, nsB: {"client-b", "other-b"}}[ns][rng.IntN(2)]
		app := []string{"client", "other"}[rng.IntN(2)]
		relabelPod(t, c, ns, name, map[string]string{"app": app})
		return fmt.Sprintf("pod %s/%s app=%s", ns, name, app)
	case 1:
		team := []string{"client", "none"}[rng.IntN(2)]
		relabelNamespace(t, c, nsB, map[string]string{"soak": "b", "team": team})
		return "namespace " + nsB + " team=" + team
	case 2:
		np, err := c.NetworkingV1().NetworkPolicies(nsA).Get(ctx, policy, metav1.GetOptions{})
		require.NoError(t, err)
		if len(np.Spec.Ingress[0].Ports) == 0 {
			np.Spec.Ingress[0].Ports = []networkingv1.NetworkPolicyPort{tcp80()}
		} else {
			np.Spec.Ingress[0].Ports = nil
		}
		_, err = c.NetworkingV1().NetworkPolicies(nsA).Update(ctx, np, metav1.UpdateOptions{})
		require.NoError(t, err)
		return fmt.Sprintf("policy %s/%s ports %v", nsA, policy, len(np.Spec.Ingress[0].Ports))
	default:
		err := c.NetworkingV1().NetworkPolicies(nsB).Delete(ctx, "deny-all", metav1.DeleteOptions{})
		if err == nil {
			return "policy " + nsB + "/deny-all deleted"
		}
		applyPolicy(t, c, &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: nsB, Name: "deny-all"},
			Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}},
		})
		return "policy " + nsB + "/deny-all created"
	}
}

// kernelSetsAndElements counts the sets and maps of the policyd table in
// the network namespace fd and, when elements is set, their elements (-1
// otherwise), through netlink.
func kernelSetsAndElements(t *testing.T, fd int, elements bool) (sets, elems int) {
	t.Helper()
	conn, err := nftables.New(nftables.WithNetNSFd(fd)) // not lasting: nothing to close
	require.NoError(t, err)
	all, err := conn.GetSets(&nftables.Table{Name: "policyd", Family: nftables.TableFamilyINet})
	require.NoError(t, err)
	elems = -1
	if elements {
		elems = 0
		for _, s := range all {
			es, err := conn.GetSetElements(s)
			if errors.Is(err, unix.ENOENT) || err != nil && strings.Contains(err.Error(), unix.ENOENT.Error()) {
				continue // deleted by a sync since GetSets (google/nftables does not wrap the errno)
			}
			require.NoError(t, err)
			for _, e := range es {
				if !e.IntervalEnd {
					elems++
				}
			}
		}
	}
	for _, s := range all {
		if !s.Anonymous {
			sets++
		}
	}
	return sets, elems
}

// firstLastMax formats the first, last, minimum and maximum of vs.
func firstLastMax(vs []float64, f string) string {
	if len(vs) == 0 {
		return "none"
	}
	lo, hi := vs[0], vs[0]
	for _, v := range vs {
		lo, hi = min(lo, v), max(hi, v)
	}
	return fmt.Sprintf("first "+f+", last "+f+", min "+f+", max "+f, vs[0], vs[len(vs)-1], lo, hi)
}
