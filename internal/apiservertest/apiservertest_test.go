package apiservertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

func TestMain(m *testing.M) { Main(m) }

// pod returns a minimal valid pod, changed by tweaks.
func pod(name string, tweaks ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:  "c",
			Image: "registry.invalid/never-pulled:1",
		}}},
	}
	for _, tweak := range tweaks {
		tweak(p)
	}
	return p
}

func TestServer_PodStatusRoundTrip(t *testing.T) {
	t.Parallel()
	s := Shared(t)
	ns := s.Namespace(t)
	ctx := t.Context()
	pods := s.Client().CoreV1().Pods(ns)

	created, err := pods.Create(ctx, pod("web", func(p *corev1.Pod) { p.Spec.NodeName = "node-a" }), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod: %v", err)
	}
	if created.Status.PodIP != "" {
		t.Fatalf("new pod already has podIP %q; nothing but this test should set it", created.Status.PodIP)
	}
	created.Status.Phase = corev1.PodRunning
	created.Status.PodIP = "10.244.1.7"
	created.Status.PodIPs = []corev1.PodIP{{IP: "10.244.1.7"}, {IP: "fd00::7"}}
	if _, err := pods.UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update pod status: %v", err)
	}

	got, err := pods.Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get pod: %v", err)
	}
	type view struct {
		Node  string
		Phase corev1.PodPhase
		IP    string
		IPs   []corev1.PodIP
	}
	want := view{"node-a", corev1.PodRunning, "10.244.1.7", []corev1.PodIP{{IP: "10.244.1.7"}, {IP: "fd00::7"}}}
	if diff := cmp.Diff(want, view{got.Spec.NodeName, got.Status.Phase, got.Status.PodIP, got.Status.PodIPs}); diff != "" {
		t.Errorf("pod read back (-want +got):\n%s", diff)
	}
}

func TestNamespace_CleanupRemovesNamespaceAndContents(t *testing.T) {
	t.Parallel()
	s := Shared(t)
	ctx := t.Context()
	var ns string
	// The subtest's cleanup runs when it returns: by then the namespace and
	// everything in it must be gone.
	t.Run("use", func(t *testing.T) {
		ns = s.Namespace(t)
		if !regexp.MustCompile(`^testnamespace-cleanupremovesnamespaceandcontents-use-\d+-[a-z0-9]{4}$`).MatchString(ns) {
			t.Errorf("namespace name %q is not derived from the test name", ns)
		}
		// A pod bound to a node is deleted gracefully, waiting for a
		// kubelet that never comes, unless cleanup skips the grace period.
		if _, err := s.Client().CoreV1().Pods(ns).Create(ctx, pod("bound", func(p *corev1.Pod) { p.Spec.NodeName = "node-a" }), metav1.CreateOptions{}); err != nil {
			t.Fatalf("create pod: %v", err)
		}
		np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "deny"}}
		if _, err := s.Client().NetworkingV1().NetworkPolicies(ns).Create(ctx, np, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create network policy: %v", err)
		}
	})
	if t.Failed() {
		return
	}
	if _, err := s.Client().CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("get namespace %s after cleanup: got error %v, want NotFound", ns, err)
	}
	// Objects of a deleted namespace would otherwise linger in etcd and show
	// up in every later cluster-wide list and watch.
	all, err := s.Client().CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "metadata.namespace=" + ns})
	if err != nil {
		t.Fatalf("list pods: %v", err)
	}
	if len(all.Items) != 0 {
		t.Errorf("pods left in deleted namespace %s: %d", ns, len(all.Items))
	}
	nps, err := s.Client().NetworkingV1().NetworkPolicies("").List(ctx, metav1.ListOptions{FieldSelector: "metadata.namespace=" + ns})
	if err != nil {
		t.Fatalf("list network policies: %v", err)
	}
	if len(nps.Items) != 0 {
		t.Errorf("network policies left in deleted namespace %s: %d", ns, len(nps.Items))
	}
}

func TestServiceAccountConfig_AuthenticatesAsTheServiceAccountOnly(t *testing.T) {
	t.Parallel()
	s := Shared(t)
	ns := s.Namespace(t)
	ctx := t.Context()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "agent"}}
	if _, err := s.Client().CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create service account: %v", err)
	}

	cfg, err := s.ServiceAccountConfig(ctx, ns, "agent")
	if err != nil {
		t.Fatalf("ServiceAccountConfig: %v", err)
	}
	if cfg.BearerToken == "" || cfg.BearerToken == s.AdminConfig().BearerToken {
		t.Fatalf("config bearer token is empty or the admin token")
	}
	if cfg.Username != "" || cfg.Password != "" || len(cfg.CertData) != 0 || cfg.CertFile != "" || cfg.Impersonate.UserName != "" {
		t.Fatalf("config carries credentials besides the token: %+v", cfg)
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("clientset: %v", err)
	}
	review, err := c.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("self subject review: %v", err)
	}
	if want := fmt.Sprintf("system:serviceaccount:%s:agent", ns); review.Status.UserInfo.Username != want {
		t.Errorf("authenticated as %q, want %q", review.Status.UserInfo.Username, want)
	}
	// No RBAC grants this account anything, so reads are forbidden.
	if _, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list pods without any role: got error %v, want Forbidden", err)
	}

	if _, err := s.ServiceAccountConfig(ctx, ns, "missing"); err == nil {
		t.Errorf("ServiceAccountConfig for a missing service account: got nil error")
	}
}

func TestStart_StopKillsProcessesAndRemovesDirectory(t *testing.T) {
	t.Parallel()
	s := Start(t)
	if _, err := s.Client().CoreV1().Namespaces().Get(t.Context(), "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("get namespace default: %v", err)
	}
	pids := []int{s.apiserver.cmd.Process.Pid, s.etcd.cmd.Process.Pid}
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	for _, pid := range pids {
		// Wait has reaped the child, so the pid no longer exists (barring
		// reuse within microseconds).
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d after Stop: kill -0 returned %v, want ESRCH", pid, err)
		}
	}
	if _, err := os.Stat(s.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary directory %s after Stop: stat returned %v, want not exist", s.dir, err)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := s.Client().CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err == nil {
		t.Errorf("API server still answers after Stop")
	}
}

func TestNew_MissingBinaries(t *testing.T) {
	t.Parallel()
	_, err := New(t.Context(), Config{ToolsDir: t.TempDir()})
	if !errors.Is(err, ErrBinariesUnavailable) {
		t.Fatalf("New with an empty tools dir: got %v, want an error wrapping ErrBinariesUnavailable", err)
	}
	if !strings.Contains(err.Error(), "kube-apiserver") {
		t.Errorf("error %q does not name the missing binary", err)
	}
}

func TestMustFail(t *testing.T) {
	t.Parallel()
	unavailable := fmt.Errorf("wrapped: %w", ErrBinariesUnavailable)
	broken := errors.New("kube-apiserver exited before the API server was ready")
	tests := []struct {
		name string
		ci   bool
		err  error
		want bool
	}{
		{"binaries unavailable locally skips", false, unavailable, false},
		{"binaries unavailable in CI fails", true, unavailable, true},
		{"broken server locally fails", false, broken, true},
		{"broken server in CI fails", true, broken, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := mustFail(tt.ci, tt.err); got != tt.want {
				t.Errorf("mustFail(%v, %v) = %v, want %v", tt.ci, tt.err, got, tt.want)
			}
		})
	}
}

func TestNamespaceName(t *testing.T) {
	t.Parallel()
	label := regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	tests := []struct {
		name     string
		testName string
		prefix   string
	}{
		{"plain", "TestAgent_Sync", "testagent-sync-7-"},
		{"subtest with spaces", "TestX/deny all/ipv6", "testx-deny-all-ipv6-7-"},
		{"only symbols", "///", "test-7-"},
		{"long name is cut at a label boundary", "Test" + strings.Repeat("a", 100), "test" + strings.Repeat("a", 63-len("test")-len("-7-xxxx")) + "-7-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := namespaceName(tt.testName, 7)
			if !strings.HasPrefix(got, tt.prefix) || len(got) != len(tt.prefix)+4 {
				t.Errorf("namespaceName(%q) = %q, want %q + 4 random characters", tt.testName, got, tt.prefix)
			}
			if len(got) > 63 || !label.MatchString(got) {
				t.Errorf("namespaceName(%q) = %q is not a DNS-1123 label", tt.testName, got)
			}
		})
	}
}

func TestLastLines(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		n    int
		want string
	}{
		{"fewer lines than n", "a\nb\n", 5, "a\nb"},
		{"cuts to the last n", "a\nb\nc\nd\n", 2, "c\nd"},
		{"no trailing newline", "a\nb\nc", 1, "c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := lastLines(tt.in, tt.n); got != tt.want {
				t.Errorf("lastLines(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
			}
		})
	}
}
