package agent_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/policyd/policyd/internal/apiservertest"
	"github.com/policyd/policyd/internal/netnstest"
)

// memoryCgroupRoot is the cgroup v1 memory controller's mount.
const memoryCgroupRoot = "/sys/fs/cgroup/memory"

// daemonSetMemoryLimit is deploy/'s memory limit for the agent.
const daemonSetMemoryLimit = 256 << 20

// newMemoryCgroup creates a cgroup v1 memory cgroup with limit bytes and
// removes it at cleanup (after the processes in it are gone).
func newMemoryCgroup(t *testing.T, limit int64) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(memoryCgroupRoot, "memory.limit_in_bytes")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no cgroup v1 memory controller at %s: %v", memoryCgroupRoot, err)
		}
		t.Skipf("no cgroup v1 memory controller at %s: %v", memoryCgroupRoot, err)
	}
	dir := filepath.Join(memoryCgroupRoot, fmt.Sprintf("policyd-test-%d", os.Getpid()))
	require.NoError(t, os.Mkdir(dir, 0o755))
	t.Cleanup(func() {
		// The processes were stopped by their own cleanups (registered
		// later, run first); rmdir fails while any remains.
		for range 50 {
			if err := os.Remove(dir); err == nil || os.IsNotExist(err) {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("could not remove cgroup %s", dir)
	})
	require.NoError(t, os.WriteFile(filepath.Join(dir, "memory.limit_in_bytes"), []byte(strconv.FormatInt(limit, 10)), 0o644))
	return dir
}

func cgroupValue(t *testing.T, dir, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, file))
	require.NoError(t, err)
	return strings.TrimSpace(string(b))
}

// oomKills returns memory.oom_control's oom_kill count.
func oomKills(t *testing.T, dir string) int {
	t.Helper()
	for _, line := range strings.Split(cgroupValue(t, dir, "memory.oom_control"), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, err := strconv.Atoi(v)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatal("memory.oom_control has no oom_kill line")
	return 0
}

// TestAgent_TenantCannotOOMTheAgent (issue 26): `policyd run`, as the
// DaemonSet runs it (GOMEMLIMIT=128MiB in a 256 MiB memory cgroup), faces a
// tenant's policy of thousands of peers by thousands of named ports (on
// 58ba857, millions of rules and an OOM kill in a crash loop) and a
// tenant's policy whose value the kernel refuses, a policy of 20,000
// excepts (class 2). It stays alive and ready, is never OOM-killed, posts
// a PolicyQuarantined Event naming the oversized policy, and an admin's
// deny created after them all reaches the kernel in the usual latency.
func TestAgent_TenantCannotOOMTheAgent(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "nft", "sh")
	cg := newMemoryCgroup(t, daemonSetMemoryLimit)
	s := apiservertest.Shared(t)
	admin := s.Client()
	ns := s.Namespace(t)
	const node = "node-cgroup"
	ctx := context.Background()

	// The tenant's pods on the agent's node, and the server an admin
	// protects.
	var ports []corev1.ContainerPort
	for j := range 50 {
		ports = append(ports, corev1.ContainerPort{Name: fmt.Sprintf("h%d", j), ContainerPort: int32(1000 + j), Protocol: corev1.ProtocolTCP})
	}
	for i := range 3 {
		p := newPod(ns, fmt.Sprintf("t-%d", i), node, map[string]string{"hostile": "yes", "t": fmt.Sprint(i)})
		p.Spec.Containers[0].Ports = ports
		createPod(t, admin, p, fmt.Sprintf("10.88.1.%d", 10+i))
	}
	createPod(t, admin, newPod(ns, "server", node, map[string]string{"app": "server"}), "10.88.0.10")

	bin := buildPolicyd(t)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, writeKubeconfig(agentRESTConfig(t, s), kubeconfig))
	nsName, _ := netnstest.New(t, "pdcgroup")
	// Into the cgroup before exec: nothing the agent allocates escapes it.
	cmd := exec.Command("sh", "-c", `echo $$ > "$1/cgroup.procs" && shift && exec "$@"`, "sh", cg,
		bin, "run", "--node-name", node, "--kubeconfig", kubeconfig, "--netns", nsName,
		"--metrics-addr", "127.0.0.1:0", "--log-format", "json", "--min-sync-interval", "100ms")
	cmd.Env = append(os.Environ(), daemonSetEnv(t)...)
	p := startProcess(t, cmd)
	p.waitReady(t, 2*time.Minute)

	// The oversized policy: 3,000 peers by 3,000 named ports, ingress and
	// egress (about 1 MB of JSON).
	big := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "oversized"}, Spec: networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"hostile": "yes"}},
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
	}}
	var peers []networkingv1.NetworkPolicyPeer
	var named []networkingv1.NetworkPolicyPort
	for i := range 3000 {
		peers = append(peers, networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"t": fmt.Sprint(i)}}})
		n := intstr.FromString(fmt.Sprintf("h%d", i))
		named = append(named, networkingv1.NetworkPolicyPort{Port: &n})
	}
	big.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: peers, Ports: named}}
	big.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{To: peers, Ports: named}}
	_, err := admin.NetworkingV1().NetworkPolicies(ns).Create(ctx, big, metav1.CreateOptions{})
	require.NoError(t, err)
	// The invalid one: an IPv4-mapped prefix in hex form, which converts
	// without error on 58ba857 and compiles to an element the kernel
	// refuses (or, once conversion refuses it, an invalid policy that
	// matches nothing): either way the agent must carry on.
	invalid := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "invalid"}, Spec: networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"hostile": "yes"}},
		Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "::ffff:a00:0/104"}}}}},
	}}
	_, err = admin.NetworkingV1().NetworkPolicies(ns).Create(ctx, invalid, metav1.CreateOptions{})
	require.NoError(t, err)
	// Class 2: an ipBlock of 20,000 /32 excepts (about 340 KB), 30 s of
	// compile on 58ba857 at every edit; now n log n.
	excepts := &networkingv1.IPBlock{CIDR: "10.128.0.0/9"}
	for i := range 20000 {
		excepts.Except = append(excepts.Except, fmt.Sprintf("10.128.%d.%d/32", i>>8, i&0xff))
	}
	_, err = admin.NetworkingV1().NetworkPolicies(ns).Create(ctx, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "long-excepts"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"hostile": "yes"}},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{IPBlock: excepts}}}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	ev := waitEvent(t, admin, ns, "oversized", "PolicyQuarantined")
	assert.Contains(t, ev.Message, "NetworkPolicy "+ns+"/oversized")
	assert.Contains(t, ev.Message, "node "+node)
	assert.Contains(t, ev.Message, "budget")

	// An admin's deny, created after them, reaches the kernel.
	list := func() string {
		out, err := netnstest.Exec(t, nsName, "nft", "list", "map", "inet", "policyd", "ingress4")
		require.NoError(t, err, out)
		return out
	}
	require.NotContains(t, list(), "10.88.0.10 ", "nothing isolates the server yet")
	created := time.Now()
	_, err = admin.NetworkingV1().NetworkPolicies(ns).Create(ctx, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "admin-deny"},
		Spec:       networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	if !assert.Eventually(t, func() bool { return strings.Contains(list(), "10.88.0.10 : jump ingress-") }, 10*time.Second, 10*time.Millisecond,
		"the admin's deny never reached the kernel") {
		t.Fatalf("policyd's log:\n%s", p.logTail())
	}
	latency := time.Since(created)
	t.Logf("the admin's deny reached the kernel %v after its create", latency.Round(time.Millisecond))
	assert.Less(t, latency, 2*time.Second, "the usual latency is the coalescing delay plus a sync")

	select {
	case <-p.exited:
		t.Fatalf("policyd exited: %v\n%s", p.waitErr, p.logTail())
	default:
	}
	assert.Zero(t, oomKills(t, cg), "the agent was OOM-killed")
	code, body := p.get(t, "/readyz")
	assert.Equal(t, 200, code, body)
	_, m := p.get(t, "/metrics")
	assert.Contains(t, m, `policyd_quarantined_objects{kind="NetworkPolicy"}`)
	t.Logf("cgroup: peak %s bytes of %d, failcnt %s; quarantine decisions: %s", cgroupValue(t, cg, "memory.max_usage_in_bytes"),
		daemonSetMemoryLimit, cgroupValue(t, cg, "memory.failcnt"), metricLines(m, "policyd_quarantine_decisions_total"))
	p.stop(t)
}

// startProcess starts cmd, a `policyd run` (perhaps behind a wrapper that
// execs it), reading its JSON log as startPolicyd does, and stops it at
// cleanup.
func startProcess(t *testing.T, cmd *exec.Cmd) *policydProcess {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	p := &policydProcess{cmd: cmd, exited: make(chan struct{}), started: time.Now()}
	require.NoError(t, cmd.Start())
	go p.readLog(stderr)
	go func() { p.waitErr = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// get fetches path from the process's metrics listener.
func (p *policydProcess) get(t *testing.T, path string) (int, string) {
	t.Helper()
	p.mu.Lock()
	addr := p.addr
	p.mu.Unlock()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func metricLines(m, name string) string {
	var out []string
	for _, l := range strings.Split(m, "\n") {
		if strings.HasPrefix(l, name+"{") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "; ")
}
