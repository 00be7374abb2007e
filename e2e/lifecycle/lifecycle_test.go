//go:build e2e

package lifecycle_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The tests run in this order (Go runs them as written); the last one
// uninstalls policyd.

// TestLive_ExplainAgreesWithTheKernel: `kubectl policyd explain --trace`
// against the live cluster gives, for every prober and target, the verdict
// the probes see in the kernel.
func TestLive_ExplainAgreesWithTheKernel(t *testing.T) {
	if *policydBin == "" {
		t.Fatal("-policyd is required")
	}
	dir := t.TempDir()
	if err := os.Symlink(*policydBin, filepath.Join(dir, "kubectl-policyd")); err != nil {
		t.Fatal(err)
	}
	path := dir + string(os.PathListSeparator) + os.Getenv("PATH")
	for _, p := range probers() {
		for name := range targets() {
			pod, proto, _ := strings.Cut(name, "/")
			port := httpPort
			if proto == "udp" {
				port = udpPort
			}
			want := baseline(p, name)
			cmd := exec.CommandContext(t.Context(), *kubectlBin, "policyd", "explain", "-n", testNS, p, pod,
				"--port", fmt.Sprint(port), "--protocol", strings.ToUpper(proto), "--trace")
			cmd.Env = append(os.Environ(), "PATH="+path)
			out, err := cmd.CombinedOutput()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatalf("kubectl policyd explain: %v", err)
			}
			wantCode, wantWord := 0, "ALLOWED"
			if want == deny {
				wantCode, wantWord = 1, "DENIED"
			}
			if code != wantCode || !strings.HasPrefix(string(out), wantWord) {
				t.Errorf("kubectl policyd explain %s %s %s/%d: exit %d, want %d (%s, as the kernel does):\n%s", p, pod, proto, port, code, wantCode, wantWord, out)
			}
			if p == "denied-1" && name == "server-2/tcp" {
				t.Logf("kubectl policyd explain -n %s %s %s --port %d --trace:\n%s", testNS, p, pod, port, out)
			}
		}
	}
}

// TestLive_Observe: `kubectl -n policyd-system exec ds/policyd -- policyd
// observe` streams the agent's verdicts: the probes' drops, named by the
// policy that decided them, at ingress (a server's node) and egress (a
// client's node).
func TestLive_Observe(t *testing.T) {
	ds, err := cs.AppsV1().DaemonSets(agentNS).Get(t.Context(), agentName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-n", agentNS, "exec", "ds/" + agentName, "--", "policyd", "observe",
		"-n", testNS, "--verdict", "deny", "--since", "1m", "-o", "json"}
	// When the agent requires a token for /verdicts, observe reads the same one.
	for _, a := range ds.Spec.Template.Spec.Containers[0].Args {
		if f, ok := strings.CutPrefix(a, "--metrics-token-file="); ok {
			args = append(args, "--token-file", f)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, *kubectlBin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	type end struct{ Namespace, Pod string }
	type record struct {
		Src, Dst           end
		Verdict, Direction string
		Policies           []string
		Protocol           string
		Port               int
	}
	want := map[string]string{
		"ingress": testNS + "/servers-ingress", // denied-* -> server-*
		"egress":  testNS + "/allowed-egress",  // allowed-* -> bystander-*
	}
	seen := map[string]string{}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && len(seen) < len(want) {
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Errorf("observe printed a line that is not a record: %q: %v", sc.Text(), err)
			continue
		}
		if r.Verdict != "deny" || !slices.Contains(r.Policies, want[r.Direction]) || seen[r.Direction] != "" {
			continue
		}
		src, dst := r.Src.Pod, r.Dst.Pod
		if (r.Direction == "ingress" && strings.HasPrefix(src, "denied-") && strings.HasPrefix(dst, "server-")) ||
			(r.Direction == "egress" && strings.HasPrefix(src, "allowed-") && strings.HasPrefix(dst, "bystander-")) {
			seen[r.Direction] = sc.Text()
			t.Logf("kubectl %s:\n%s", strings.Join(args, " "), sc.Text())
		}
	}
	cancel()
	_ = cmd.Wait()
	for dir, pol := range want {
		if seen[dir] == "" {
			t.Errorf("observe showed no %s drop by %s within 60 s (stderr: %s)", dir, pol, stderr.String())
		}
	}
}

// TestRollingUpdate: moving the DaemonSet to a new image replaces every
// agent, one node at a time (never more than one node without a Ready
// agent), and no allowed connection fails and no denied one connects
// meanwhile.
func TestRollingUpdate(t *testing.T) {
	ctx := t.Context()
	before, err := waitAgents(ctx, time.Minute, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	stop, err := watchUncovered(ctx)
	if err != nil {
		t.Fatal(err)
	}
	from := time.Now()
	patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":"policyd","image":%q}]}}}}`, *nextImage)
	if _, err := cs.AppsV1().DaemonSets(agentNS).Patch(ctx, agentName, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	after, err := waitAgents(ctx, 5*time.Minute, *nextImage, func(n string, p corev1.Pod) bool { return p.UID != before[n].UID })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rolled out %s in %v: %s -> %s, %s -> %s", *nextImage, time.Since(from).Round(time.Second),
		before[nodes[0]].Name, after[nodes[0]].Name, before[nodes[1]].Name, after[nodes[1]].Name)
	most, at, err := stop()
	t.Logf("at most %d of %d nodes without a Ready agent at once", most, len(nodes))
	if most > 1 {
		t.Errorf("%d of %d nodes had no Ready agent at once (%v into the rollout): the rollout must replace one node's agent at a time, or no pod or policy change reaches any node meanwhile", most, len(nodes), at.Sub(from).Round(time.Millisecond))
	}
	if err != nil {
		t.Errorf("the count of nodes without an agent may be short: %v", err)
	}
	judge(t, from, time.Now().Add(5*time.Second), baseline)
}

// TestAgentPodDeleted: `kubectl delete pod` of an agent; enforcement holds
// on its node while the DaemonSet replaces it.
func TestAgentPodDeleted(t *testing.T) {
	ctx := t.Context()
	before, err := waitAgents(ctx, time.Minute, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	victim := before[nodes[0]]
	from := time.Now()
	if _, err := kubectl(ctx, "-n", agentNS, "delete", "pod", victim.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := waitAgents(ctx, 3*time.Minute, "", func(n string, p corev1.Pod) bool { return n != nodes[0] || p.UID != victim.UID }); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s deleted and replaced in %v", victim.Name, time.Since(from).Round(time.Second))
	judge(t, from, time.Now().Add(5*time.Second), baseline)
}

// TestPolicyChangeWhileAgentDown: the agent of the second node hangs
// (SIGSTOP: its probes fail, the pod turns NotReady); the servers' policy is
// changed to admit role=denied too. The first node applies it; the second
// node's kernel keeps the old rules. Then the hung agent dies (SIGKILL) and
// the kubelet restarts it: the change must reach that node's kernel. No
// other probe may change verdict at any time.
func TestPolicyChangeWhileAgentDown(t *testing.T) {
	ctx := t.Context()
	pods, err := waitAgents(ctx, time.Minute, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	down := pods[nodes[1]]
	restarts := down.Status.ContainerStatuses[0].RestartCount
	pids, err := containerPIDs(down)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	signal(t, pids, syscall.SIGSTOP)
	t.Cleanup(func() { signal(t, pids, syscall.SIGKILL) })
	if err := poll(ctx, time.Minute, func() (bool, error) {
		p, err := cs.CoreV1().Pods(agentNS).Get(ctx, down.Name, metav1.GetOptions{})
		return err == nil && !podReady(p), err
	}); err != nil {
		t.Fatalf("%s still Ready after SIGSTOP: %v", down.Name, err)
	}
	t.Logf("%s hung (pids %v), NotReady after %v", down.Name, pids, time.Since(t0).Round(time.Second))

	t1 := time.Now()
	if _, err := cs.NetworkingV1().NetworkPolicies(testNS).Update(ctx, serversIngress("allowed", "denied"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if _, err := cs.NetworkingV1().NetworkPolicies(testNS).Update(ctx, serversIngress("allowed"), metav1.UpdateOptions{}); err != nil {
			t.Errorf("restore policy: %v", err)
		}
		// A policy change ends no flow it newly denies (unless the agent
		// runs with --cut-established), and a UDP probe that happens to
		// reuse the source port of one the change had allowed joins that
		// flow. End them, as strict mode would, before judging again (once
		// both agents have applied the restored policy).
		time.Sleep(3 * time.Second)
		for _, n := range nodes {
			for _, srv := range []string{"server-1", "server-2"} {
				if err := endFlowsTo(n, ips[srv]); err != nil {
					t.Error(err)
				}
			}
		}
		if err := waitSteady(ctx, baseline, 2*time.Minute); err != nil {
			t.Errorf("after restoring the policy: %v", err)
		}
	})
	// While down: the live node admits role=denied, the hung one does not.
	whileDown := func(p, target string) verdict {
		if strings.HasPrefix(p, "denied-") && strings.HasPrefix(target, "server-") {
			if strings.HasPrefix(target, "server-1") {
				return allow
			}
			return deny
		}
		return baseline(p, target)
	}
	// The first node (live) takes the change within seconds.
	if err := waitSteady(ctx, func(p, target string) verdict {
		if strings.HasPrefix(p, "denied-") && strings.HasPrefix(target, "server-1") {
			return allow
		}
		return unjudged
	}, time.Minute); err != nil {
		t.Fatalf("the live node did not apply the change: %v", err)
	}
	time.Sleep(3 * time.Second)
	judge(t, t1.Add(3*time.Second), time.Now(), whileDown)
	if t.Failed() {
		return
	}

	// The hung agent dies; the kubelet starts it again.
	signal(t, pids, syscall.SIGKILL)
	if _, err := waitAgents(ctx, 3*time.Minute, "", func(n string, p corev1.Pod) bool {
		return n != nodes[1] || (p.UID == down.UID && p.Status.ContainerStatuses[0].RestartCount > restarts)
	}); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	t.Logf("%s back after %v down", down.Name, back.Sub(t0).Round(time.Second))
	changed := func(p, target string) verdict {
		if strings.HasPrefix(p, "denied-") && strings.HasPrefix(target, "server-") {
			return allow
		}
		return baseline(p, target)
	}
	judge(t, back.Add(3*time.Second), back.Add(10*time.Second), changed)
	// Throughout: nothing that did not change may have flickered.
	judge(t, t0, time.Now(), func(p, target string) verdict {
		if strings.HasPrefix(p, "denied-") && strings.HasPrefix(target, "server-") {
			return unjudged
		}
		return baseline(p, target)
	})
}

// TestUninstall: deleting the DaemonSet leaves every node enforcing (fail
// closed); deploy/uninstall then removes each node's table, after which the
// policies no longer apply anywhere and new pods are reachable.
func TestUninstall(t *testing.T) {
	ctx := t.Context()
	for _, n := range nodes {
		if has, err := nodeHasTable(n); err != nil || !has {
			t.Fatalf("before uninstalling, %s has no policyd table (%v)", n, err)
		}
	}
	from := time.Now()
	if _, err := kubectl(ctx, "delete", "-k", *deployDir, "--ignore-not-found", "--wait", "--timeout=3m"); err != nil {
		t.Fatal(err)
	}
	// The agents are gone; the nodes keep enforcing.
	judge(t, from, time.Now().Add(3*time.Second), baseline)
	for _, n := range nodes {
		if has, err := nodeHasTable(n); err != nil || !has {
			t.Errorf("after deleting the agents, %s lost its table (%v): it should keep enforcing until uninstalled", n, err)
		}
	}

	if _, err := kubectl(ctx, "apply", "-k", *uninstallDir); err != nil {
		t.Fatal(err)
	}
	if out, err := kubectl(ctx, "-n", "policyd-uninstall", "rollout", "status", "daemonset/policyd-cleanup", "--timeout=2m"); err != nil {
		t.Fatalf("uninstall did not finish: %v\n%s", err, out)
	}
	for _, n := range nodes {
		if has, err := nodeHasTable(n); err != nil || has {
			t.Errorf("after uninstalling, %s still has a policyd table (%v)", n, err)
		}
	}
	if _, err := kubectl(ctx, "delete", "-k", *uninstallDir, "--ignore-not-found", "--wait", "--timeout=2m"); err != nil {
		t.Fatal(err)
	}
	// Nothing is enforced: every probe connects.
	if err := waitSteady(ctx, func(string, string) verdict { return allow }, time.Minute); err != nil {
		t.Errorf("after uninstalling: %v", err)
	}
	// New pods are reachable, across nodes.
	if err := createPod(ctx, serverPod("fresh-server", "server", nodes[1])); err != nil {
		t.Fatal(err)
	}
	ip, err := waitReady(ctx, "fresh-server")
	if err != nil {
		t.Fatal(err)
	}
	fresh := proberPod("fresh-client", "denied", nodes[0])
	fresh.Spec.Containers[0].Args = []string{fmt.Sprintf("fresh-server/tcp=tcp://%s:%d/3s", ip, httpPort)}
	if err := createPod(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	if _, err := waitReady(ctx, "fresh-client"); err != nil {
		t.Fatal(err)
	}
	if err := poll(ctx, time.Minute, func() (bool, error) {
		raw, err := cs.CoreV1().Pods(testNS).GetLogs("fresh-client", &corev1.PodLogOptions{}).DoRaw(ctx)
		for _, l := range strings.Split(string(raw), "\n") {
			if f := strings.Fields(l); len(f) == 4 && f[2] != "0" && f[3] == "0" {
				return true, nil
			}
		}
		return false, err
	}); err != nil {
		t.Errorf("a new pod is not reachable from another new pod after uninstalling: %v", err)
	}
}

func signal(t *testing.T, pids []int, sig syscall.Signal) {
	t.Helper()
	for _, pid := range pids {
		if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			t.Errorf("kill -%d %d: %v", sig, pid, err)
		}
	}
}
