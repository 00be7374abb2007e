//go:build e2e

package lifecycle_test

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

var (
	kubectlBin   = flag.String("kubectl", "kubectl", "kubectl")
	policydBin   = flag.String("policyd", "", "the policyd binary, run as the kubectl plugin kubectl-policyd")
	deployDir    = flag.String("deploy", "../../deploy", "the kustomization that installed policyd")
	uninstallDir = flag.String("uninstall", "../../deploy/uninstall", "the uninstall kustomization")
	nextImage    = flag.String("next-image", "policyd:e2e-next", "the image the rolling update moves to")
	agnhostImage = flag.String("agnhost-image", "registry.k8s.io/e2e-test-images/agnhost:2.56", "servers' image")
	proberImage  = flag.String("prober-image", "localhost/policyd-e2e/prober:1", "e2e/prober's image")
	netnsDir     = flag.String("netns-dir", "/run/netns", "where each node's network namespace is mounted, named as the node")
	cgroupDir    = flag.String("cgroup-dir", "/sys/fs/cgroup/pids", "a cgroup v1 hierarchy holding each node's pods under /NODE (the kubelet's cgroupRoot)")
)

const (
	agentNS    = "policyd-system"
	agentName  = "policyd"
	agentLabel = "app.kubernetes.io/name=policyd"
	testNS     = "pde2e-lifecycle"
	httpPort   = 8080
	udpPort    = 8081
)

// The cluster under test, set up once by TestMain.
var (
	cs    kubernetes.Interface
	nodes []string          // two nodes, sorted
	ips   map[string]string // pod name -> IP
)

func TestMain(m *testing.M) {
	flag.Parse()
	if err := setUp(); err != nil {
		fmt.Fprintln(os.Stderr, "lifecycle: set-up:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// The fixture, on each node i (1, 2): server-i and bystander-i (agnhost
// netexec: TCP 8080, UDP 8081), and four probers, allowed-i (role=allowed)
// and denied-i (role=denied), each probing every server over TCP and UDP
// and every bystander over TCP. Policies: the servers admit role=allowed
// only (ingress: enforced on the server's node), and role=allowed may reach
// only the servers (egress: enforced on the client's node). So every node's
// agent is needed for some denial, on the same node and across nodes.
func setUp() error {
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		clientcmd.NewDefaultClientConfigLoadingRules(), &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return err
	}
	if cs, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	nl, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, n := range nl.Items {
		nodes = append(nodes, n.Name)
	}
	sort.Strings(nodes)
	if len(nodes) != 2 {
		return fmt.Errorf("want two nodes, have %v", nodes)
	}
	if err := cs.CoreV1().Namespaces().Delete(ctx, testNS, metav1.DeleteOptions{}); err == nil {
		if err := waitGone(ctx, testNS); err != nil {
			return err
		}
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testNS}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if err := waitServiceAccount(ctx); err != nil {
		return err
	}
	for i := range nodes {
		for _, app := range []string{"server", "bystander"} {
			if err := createPod(ctx, serverPod(fmt.Sprintf("%s-%d", app, i+1), app, nodes[i])); err != nil {
				return err
			}
		}
	}
	ips = map[string]string{}
	for i := range nodes {
		for _, app := range []string{"server", "bystander"} {
			name := fmt.Sprintf("%s-%d", app, i+1)
			if ips[name], err = waitReady(ctx, name); err != nil {
				return err
			}
		}
	}
	for _, p := range []*networkingv1.NetworkPolicy{serversIngress("allowed"), allowedEgress()} {
		if _, err := cs.NetworkingV1().NetworkPolicies(testNS).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	for i := range nodes {
		for _, role := range []string{"allowed", "denied"} {
			name := fmt.Sprintf("%s-%d", role, i+1)
			if err := createPod(ctx, proberPod(name, role, nodes[i])); err != nil {
				return err
			}
		}
	}
	for _, p := range probers() {
		if ips[p], err = waitReady(ctx, p); err != nil {
			return err
		}
	}
	return waitSteady(ctx, baseline, 90*time.Second)
}

func probers() []string { return []string{"allowed-1", "allowed-2", "denied-1", "denied-2"} }

// targets are the probers' targets: NAME (the key in verdict tables) to
// PROTO://IP:PORT.
func targets() map[string]string {
	t := map[string]string{}
	for i := 1; i <= 2; i++ {
		s, b := fmt.Sprintf("server-%d", i), fmt.Sprintf("bystander-%d", i)
		t[s+"/tcp"] = fmt.Sprintf("tcp://%s:%d", ips[s], httpPort)
		t[s+"/udp"] = fmt.Sprintf("udp://%s:%d", ips[s], udpPort)
		t[b+"/tcp"] = fmt.Sprintf("tcp://%s:%d", ips[b], httpPort)
	}
	return t
}

// verdict is what a probe should see.
type verdict int

const (
	unjudged verdict = iota // the zero value: not checked
	allow
	deny
)

func (v verdict) String() string {
	return map[verdict]string{unjudged: "unjudged", allow: "allowed", deny: "denied"}[v]
}

// expectation gives the verdict for a prober and a target.
type expectation func(prober, target string) verdict

// baseline is the fixture's policies as set up.
func baseline(prober, target string) verdict {
	role, server := strings.Split(prober, "-")[0], strings.HasPrefix(target, "server-")
	switch {
	case role == "allowed" && server, role == "denied" && !server:
		return allow
	default:
		return deny
	}
}

func serverPod(name, app, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			TerminationGracePeriodSeconds: ptr(int64(1)),
			Containers: []corev1.Container{{
				Name:  "netexec",
				Image: *agnhostImage,
				Args:  []string{"netexec", fmt.Sprintf("--http-port=%d", httpPort), fmt.Sprintf("--udp-port=%d", udpPort)},
				Ports: []corev1.ContainerPort{
					{Name: "http", ContainerPort: httpPort, Protocol: corev1.ProtocolTCP},
					{Name: "udp", ContainerPort: udpPort, Protocol: corev1.ProtocolUDP},
				},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(httpPort)}},
					PeriodSeconds: 1,
				},
			}},
		},
	}
}

func proberPod(name, role, node string) *corev1.Pod {
	var args []string
	for n, addr := range targets() {
		// A probe expected to connect gets time even on a loaded machine;
		// one expected to be dropped is judged quickly, so that probes
		// follow each other closely.
		timeout := "3s"
		if baseline(name, n) == deny {
			timeout = "400ms"
		}
		args = append(args, fmt.Sprintf("%s=%s/%s", n, addr, timeout))
	}
	sort.Strings(args)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"role": role}},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			TerminationGracePeriodSeconds: ptr(int64(1)),
			Containers: []corev1.Container{{
				Name:  "prober",
				Image: *proberImage,
				Args:  append([]string{"-interval=100ms"}, args...),
			}},
		},
	}
}

// serversIngress admits the given roles to the servers.
func serversIngress(roles ...string) *networkingv1.NetworkPolicy {
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "servers-ingress"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{
					MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "role", Operator: metav1.LabelSelectorOpIn, Values: roles}},
				}}},
				Ports: []networkingv1.NetworkPolicyPort{
					{Protocol: &tcp, Port: ptr(intstr.FromString("http"))},
					{Protocol: &udp, Port: ptr(intstr.FromInt32(udpPort))},
				},
			}},
		},
	}
}

// allowedEgress lets role=allowed reach the servers only.
func allowedEgress() *networkingv1.NetworkPolicy {
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "allowed-egress"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "allowed"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{{
				To: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}}}},
				Ports: []networkingv1.NetworkPolicyPort{
					{Protocol: &tcp, Port: ptr(intstr.FromInt32(httpPort))},
					{Protocol: &udp, Port: ptr(intstr.FromInt32(udpPort))},
				},
			}},
		},
	}
}

func ptr[T any](v T) *T { return &v }

func createPod(ctx context.Context, p *corev1.Pod) error {
	_, err := cs.CoreV1().Pods(testNS).Create(ctx, p, metav1.CreateOptions{})
	return err
}

// waitReady waits for a pod of testNS to be Ready and returns its IP.
func waitReady(ctx context.Context, name string) (string, error) {
	var ip string
	err := poll(ctx, 3*time.Minute, func() (bool, error) {
		p, err := cs.CoreV1().Pods(testNS).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		ip = p.Status.PodIP
		return podReady(p) && ip != "", nil
	})
	if err != nil {
		return "", fmt.Errorf("pod %s/%s not ready: %w", testNS, name, err)
	}
	return ip, nil
}

func waitGone(ctx context.Context, ns string) error {
	return poll(ctx, 3*time.Minute, func() (bool, error) {
		_, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

func waitServiceAccount(ctx context.Context) error {
	return poll(ctx, time.Minute, func() (bool, error) {
		_, err := cs.CoreV1().ServiceAccounts(testNS).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
}

func podReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// poll calls f every 500 ms until it returns true, an error, or timeout.
func poll(ctx context.Context, timeout time.Duration, f func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := f()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// sample is one line of a prober's log: the probes of one second.
type sample struct {
	sec      int64
	ok, fail int
}

// samples reads every prober's log: prober -> target -> samples.
func samples(ctx context.Context) (map[string]map[string][]sample, error) {
	out := map[string]map[string][]sample{}
	for _, p := range probers() {
		raw, err := cs.CoreV1().Pods(testNS).GetLogs(p, &corev1.PodLogOptions{}).DoRaw(ctx)
		if err != nil {
			return nil, fmt.Errorf("logs of %s: %w", p, err)
		}
		out[p] = map[string][]sample{}
		sc := bufio.NewScanner(strings.NewReader(string(raw)))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 4 {
				continue
			}
			sec, err1 := strconv.ParseInt(f[0], 10, 64)
			ok, err2 := strconv.Atoi(f[2])
			fail, err3 := strconv.Atoi(f[3])
			if err1 != nil || err2 != nil || err3 != nil {
				continue
			}
			out[p][f[1]] = append(out[p][f[1]], sample{sec, ok, fail})
		}
	}
	return out, nil
}

// violations judges the probes of the seconds in (from, to] against want:
// a target that should be allowed must never fail and must have connected
// at least once every two seconds; one that should be denied must never
// connect and must have been probed as often. It returns one line per
// prober and target that broke it.
func violations(s map[string]map[string][]sample, from, to time.Time, want expectation) []string {
	var bad []string
	secs := int(to.Unix() - from.Unix())
	for _, p := range probers() {
		var names []string
		for n := range s[p] {
			names = append(names, n)
		}
		sort.Strings(names)
		if len(names) != len(targets()) {
			bad = append(bad, fmt.Sprintf("%s: log has %d targets, want %d", p, len(names), len(targets())))
		}
		for _, n := range names {
			v := want(p, n)
			if v == unjudged {
				continue
			}
			var ok, fail int
			var wrong []string
			for _, x := range s[p][n] {
				if x.sec <= from.Unix() || x.sec > to.Unix() {
					continue
				}
				ok += x.ok
				fail += x.fail
				if (v == allow && x.fail > 0) || (v == deny && x.ok > 0) {
					wrong = append(wrong, time.Unix(x.sec, 0).UTC().Format("15:04:05"))
				}
			}
			switch {
			case v == allow && fail > 0:
				bad = append(bad, fmt.Sprintf("%s -> %s: %d of %d probes failed, want all to connect (seconds %s)", p, n, fail, ok+fail, strings.Join(wrong, " ")))
			case v == deny && ok > 0:
				bad = append(bad, fmt.Sprintf("%s -> %s: %d of %d probes connected, want none (seconds %s)", p, n, ok, ok+fail, strings.Join(wrong, " ")))
			case ok+fail < secs/2:
				bad = append(bad, fmt.Sprintf("%s -> %s: only %d probes in %d s: is the prober running?", p, n, ok+fail, secs))
			}
		}
	}
	return bad
}

// waitSteady waits until the last three seconds of every prober match want.
func waitSteady(ctx context.Context, want expectation, timeout time.Duration) error {
	var last []string
	err := poll(ctx, timeout, func() (bool, error) {
		s, err := samples(ctx)
		if err != nil {
			return false, err
		}
		now := time.Now().Add(-time.Second) // the current second is not logged yet
		last = violations(s, now.Add(-3*time.Second), now, want)
		return len(last) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("probes did not settle: %w:\n%s", err, strings.Join(last, "\n"))
	}
	return nil
}

// judge fails t for every violation of want in (from, to].
func judge(t *testing.T, from, to time.Time, want expectation) {
	t.Helper()
	// Let the probers log the last second.
	time.Sleep(time.Until(to.Add(1500 * time.Millisecond)))
	s, err := samples(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range violations(s, from, to, want) {
		t.Error(v)
	}
}

// agentPods returns the running agent pods by node.
func agentPods(ctx context.Context) (map[string]corev1.Pod, error) {
	pl, err := cs.CoreV1().Pods(agentNS).List(ctx, metav1.ListOptions{LabelSelector: agentLabel})
	if err != nil {
		return nil, err
	}
	out := map[string]corev1.Pod{}
	for _, p := range pl.Items {
		if p.DeletionTimestamp == nil {
			out[p.Spec.NodeName] = p
		}
	}
	return out, nil
}

// watchUncovered follows the agent pods from now on and records the most
// nodes that had no Ready agent at once, and when; stop ends the watch and
// returns them. While a node has no agent, no pod or policy change reaches
// its kernel: the shipped rollout (maxUnavailable: 1) keeps that to one node
// at a time.
func watchUncovered(ctx context.Context) (stop func() (most int, at time.Time, err error), err error) {
	opts := metav1.ListOptions{LabelSelector: agentLabel}
	pl, err := cs.CoreV1().Pods(agentNS).List(ctx, opts)
	if err != nil {
		return nil, err
	}
	opts.ResourceVersion = pl.ResourceVersion
	w, err := cs.CoreV1().Pods(agentNS).Watch(ctx, opts)
	if err != nil {
		return nil, err
	}
	ready := map[string]string{} // ready pod -> its node
	for _, p := range pl.Items {
		if podReady(&p) {
			ready[p.Name] = p.Spec.NodeName
		}
	}
	uncovered := func() int {
		covered := map[string]bool{}
		for _, n := range ready {
			covered[n] = true
		}
		return len(nodes) - len(covered)
	}
	most, at := uncovered(), time.Now()
	var werr error
	var stopping atomic.Bool // once set, the stream's end is ours
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if stopping.Load() {
				return
			}
			if ev.Type == watch.Error {
				werr = fmt.Errorf("watching the agents: %v", apierrors.FromObject(ev.Object))
				return
			}
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			if ev.Type != watch.Deleted && podReady(p) {
				ready[p.Name] = p.Spec.NodeName
			} else {
				delete(ready, p.Name)
			}
			if u := uncovered(); u > most {
				most, at = u, time.Now()
			}
		}
		if !stopping.Load() {
			werr = errors.New("watching the agents: the watch ended before the rollout did")
		}
	}()
	return func() (int, time.Time, error) {
		stopping.Store(true)
		w.Stop()
		<-done
		return most, at, werr
	}, nil
}

// waitAgents waits until the DaemonSet has rolled out: one Ready agent per
// node, running image (if not empty), and accepted by check.
func waitAgents(ctx context.Context, timeout time.Duration, image string, check func(node string, p corev1.Pod) bool) (map[string]corev1.Pod, error) {
	var pods map[string]corev1.Pod
	var why string
	err := poll(ctx, timeout, func() (bool, error) {
		ds, err := cs.AppsV1().DaemonSets(agentNS).Get(ctx, agentName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if !daemonSetDone(ds) {
			why = fmt.Sprintf("DaemonSet status %+v", ds.Status)
			return false, nil
		}
		if pods, err = agentPods(ctx); err != nil {
			return false, err
		}
		for _, n := range nodes {
			p, ok := pods[n]
			switch {
			case !ok:
				why = "no agent on " + n
			case !podReady(&p):
				why = p.Name + " not ready"
			case image != "" && p.Spec.Containers[0].Image != image:
				why = p.Name + " runs " + p.Spec.Containers[0].Image
			case check != nil && !check(n, p):
				why = p.Name + " is not the pod waited for"
			default:
				continue
			}
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("agents: %w (%s)", err, why)
	}
	return pods, nil
}

func daemonSetDone(ds *appsv1.DaemonSet) bool {
	st := ds.Status
	return st.ObservedGeneration >= ds.Generation && st.DesiredNumberScheduled == int32(len(nodes)) &&
		st.UpdatedNumberScheduled == st.DesiredNumberScheduled && st.NumberReady == st.DesiredNumberScheduled &&
		st.NumberUnavailable == 0
}

// kubectl runs kubectl (the cluster's, with the test's KUBECONFIG).
func kubectl(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, *kubectlBin, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// nodeHasTable reports whether policyd's table is in the node's kernel.
func nodeHasTable(node string) (bool, error) {
	out, err := exec.Command("nsenter", "--net="+filepath.Join(*netnsDir, node), "--", "nft", "list", "table", "inet", "policyd").CombinedOutput()
	switch {
	case err == nil:
		return true, nil
	case strings.Contains(string(out), "No such file or directory"):
		return false, nil
	default:
		return false, fmt.Errorf("nft list table on %s: %w: %s", node, err, out)
	}
}

// endFlowsTo deletes the node's conntrack entries of flows to ip.
func endFlowsTo(node, ip string) error {
	out, err := exec.Command("nsenter", "--net="+filepath.Join(*netnsDir, node), "--", "conntrack", "-D", "-d", ip).CombinedOutput()
	// conntrack exits 1 when there was nothing to delete.
	if err != nil && !strings.Contains(string(out), "0 flow entries") {
		return fmt.Errorf("conntrack -D -d %s on %s: %w: %s", ip, node, err, out)
	}
	return nil
}

// containerPIDs returns the processes of the pod's first container, from
// the node's cgroups (the kubelet's cgroupRoot is /NODE).
func containerPIDs(p corev1.Pod) ([]int, error) {
	if len(p.Status.ContainerStatuses) == 0 {
		return nil, fmt.Errorf("%s: no container status", p.Name)
	}
	_, id, ok := strings.Cut(p.Status.ContainerStatuses[0].ContainerID, "://")
	if !ok || id == "" {
		return nil, fmt.Errorf("%s: container ID %q", p.Name, p.Status.ContainerStatuses[0].ContainerID)
	}
	var dir string
	err := filepath.WalkDir(filepath.Join(*cgroupDir, p.Spec.NodeName), func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() == id {
			dir = path
			return filepath.SkipAll
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: cgroups under %s: %w", p.Name, *cgroupDir, err)
	}
	if dir == "" {
		return nil, fmt.Errorf("%s: no cgroup %s under %s", p.Name, id, *cgroupDir)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(raw)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, err
		}
		pids = append(pids, pid)
	}
	if len(pids) == 0 {
		return nil, fmt.Errorf("%s: no process in %s", p.Name, dir)
	}
	return pids, nil
}
