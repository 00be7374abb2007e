// Package deploy_test checks the shipped manifests and Dockerfile: that every
// object decodes strictly and passes a real API server's validation and
// admission (server-side dry run), that the ServiceAccount gets exactly the
// permissions the agent needs, and that the image's binary is static and
// knows every flag the DaemonSet passes it.
package deploy_test

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	apiresource "k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/policyd/policyd/deploy"
	"github.com/policyd/policyd/internal/apiservertest"
)

func TestMain(m *testing.M) { apiservertest.Main(m) }

const (
	systemNS       = "policyd-system"
	serviceAccount = "policyd"
	// metricsAccount owns the metrics token; it may do nothing.
	metricsAccount = "policyd-metrics"
	metricsSecret  = "policyd-metrics-token"
	// tokenDir is where the DaemonSet mounts the token (policyd observe's
	// default --token-file is its token key).
	tokenDir = "/var/run/secrets/policyd/metrics-token"
)

// document is one object of the manifest (deploy.Document).
type document = deploy.Document

// readManifest decodes the shipped manifest strictly.
func readManifest(t *testing.T) []document {
	t.Helper()
	docs, err := deploy.Documents()
	if err != nil {
		t.Fatal(err)
	}
	return docs
}

// find returns the single typed object of type T in docs.
func find[T runtime.Object](t *testing.T, docs []document) T {
	t.Helper()
	var found []T
	for _, d := range docs {
		if o, ok := d.Object.(T); ok {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("manifest has %d objects of type %T, want 1", len(found), zero)
	}
	return found[0]
}

func TestManifest_ObjectsInApplyOrder(t *testing.T) {
	t.Parallel()
	var got []string
	for _, d := range readManifest(t) {
		m, err := meta.Accessor(d.Object)
		if err != nil {
			t.Fatalf("object without metadata: %v", err)
		}
		got = append(got, fmt.Sprintf("%T %s/%s", d.Object, m.GetNamespace(), m.GetName()))
	}
	// The namespace comes first and the DaemonSet last, so `kubectl apply -f`
	// of a fresh cluster succeeds and the pods start with their RBAC in place.
	want := []string{
		"*v1.Namespace /policyd-system",
		"*v1.ServiceAccount policyd-system/policyd",
		// The token's account before its Secret: the token controller
		// fills in (and keeps) only a Secret whose account exists.
		"*v1.ServiceAccount policyd-system/policyd-metrics",
		"*v1.Secret policyd-system/policyd-metrics-token",
		"*v1.ClusterRole /policyd",
		"*v1.ClusterRoleBinding /policyd",
		"*v1.DaemonSet policyd-system/policyd",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("manifest objects (-want +got):\n%s", diff)
	}
}

func TestManifest_DaemonSetRunsAgentWithLeastPrivilege(t *testing.T) {
	t.Parallel()
	ds := find[*appsv1.DaemonSet](t, readManifest(t))
	spec := ds.Spec.Template.Spec
	if len(spec.Containers) != 1 || len(spec.InitContainers) != 0 {
		t.Fatalf("pod has %d containers and %d init containers, want exactly one container", len(spec.Containers), len(spec.InitContainers))
	}
	c := spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil || sc.RunAsUser == nil || sc.ReadOnlyRootFilesystem == nil || sc.Privileged == nil {
		t.Fatalf("container securityContext is incomplete: %+v", sc)
	}
	type probe struct {
		Host string
		Path string
		Port int
	}
	probeOf := func(p *corev1.Probe) probe {
		if p == nil || p.HTTPGet == nil {
			return probe{}
		}
		return probe{p.HTTPGet.Host, p.HTTPGet.Path, p.HTTPGet.Port.IntValue()}
	}
	type view struct {
		HostNetwork, HostPID, HostIPC bool
		DNSPolicy                     corev1.DNSPolicy
		ServiceAccount                string
		Priority                      string
		Tolerations                   []corev1.Toleration
		Image                         string
		PullPolicy                    corev1.PullPolicy
		Args                          []string
		NodeNameFrom                  string
		Privileged, Escalation        bool
		Drop, Add                     []corev1.Capability
		RunAsUser                     int64
		ReadOnlyRoot                  bool
		Liveness, Readiness           probe
		Update                        appsv1.DaemonSetUpdateStrategyType
		MaxUnavailable                string
		Grace                         int64
	}
	got := view{
		HostNetwork: spec.HostNetwork, HostPID: spec.HostPID, HostIPC: spec.HostIPC,
		DNSPolicy:      spec.DNSPolicy,
		ServiceAccount: spec.ServiceAccountName,
		Priority:       spec.PriorityClassName,
		Tolerations:    spec.Tolerations,
		Image:          c.Image,
		PullPolicy:     c.ImagePullPolicy,
		Args:           c.Args,
		Privileged:     *sc.Privileged,
		Escalation:     sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation,
		Drop:           sc.Capabilities.Drop,
		Add:            sc.Capabilities.Add,
		RunAsUser:      *sc.RunAsUser,
		ReadOnlyRoot:   *sc.ReadOnlyRootFilesystem,
		Liveness:       probeOf(c.LivenessProbe),
		Readiness:      probeOf(c.ReadinessProbe),
		Update:         ds.Spec.UpdateStrategy.Type,
	}
	for _, e := range c.Env {
		if e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			got.NodeNameFrom = e.ValueFrom.FieldRef.FieldPath
		}
	}
	if ru := ds.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.MaxUnavailable != nil {
		got.MaxUnavailable = ru.MaxUnavailable.String()
	}
	if spec.TerminationGracePeriodSeconds != nil {
		got.Grace = *spec.TerminationGracePeriodSeconds
	}
	want := view{
		HostNetwork:    true,
		DNSPolicy:      corev1.DNSClusterFirstWithHostNet,
		ServiceAccount: serviceAccount,
		Priority:       "system-node-critical",
		Tolerations:    []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
		Image:          "policyd:latest",
		PullPolicy:     corev1.PullIfNotPresent,
		// Health and metrics on loopback only: with hostNetwork any other
		// address is a port on the node. And behind the token even there:
		// hostNetwork pods share the node's loopback.
		Args:           []string{"run", "--node-name=$(NODE_NAME)", "--metrics-addr=127.0.0.1:9743", "--metrics-token-file=" + tokenDir + "/token", "--log-format=json"},
		NodeNameFrom:   "spec.nodeName",
		Drop:           []corev1.Capability{"ALL"},
		Add:            []corev1.Capability{"NET_ADMIN"},
		RunAsUser:      0,
		ReadOnlyRoot:   true,
		Liveness:       probe{"127.0.0.1", "/healthz", 9743},
		Readiness:      probe{"127.0.0.1", "/readyz", 9743},
		Update:         appsv1.RollingUpdateDaemonSetStrategyType,
		MaxUnavailable: "1",
		Grace:          30,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("DaemonSet (-want +got):\n%s", diff)
	}
	// GOMEMLIMIT (Go's "128MiB" form) is the memory request, below the limit.
	var memLimit string
	for _, e := range c.Env {
		if e.Name == "GOMEMLIMIT" {
			memLimit = e.Value
		}
	}
	soft, err := apiresource.ParseQuantity(strings.TrimSuffix(memLimit, "B"))
	if err != nil || !strings.HasSuffix(memLimit, "iB") {
		t.Errorf("GOMEMLIMIT %q: want a binary size such as 128MiB (%v)", memLimit, err)
	}
	req, lim := c.Resources.Requests[corev1.ResourceMemory], c.Resources.Limits[corev1.ResourceMemory]
	if soft.Cmp(req) != 0 || soft.Cmp(lim) >= 0 {
		t.Errorf("GOMEMLIMIT %s, memory request %s, limit %s: want GOMEMLIMIT equal to the request and below the limit", memLimit, req.String(), lim.String())
	}
	if spec.SecurityContext != nil && spec.SecurityContext.RunAsNonRoot != nil && *spec.SecurityContext.RunAsNonRoot {
		t.Errorf("pod securityContext.runAsNonRoot is true; the agent must run as root for netlink")
	}
	type vol struct {
		Name, EmptyDir, Secret string
		Optional               bool
		Mount                  string
		ReadOnly               bool
	}
	var vols []vol
	for _, v := range spec.Volumes {
		got := vol{Name: v.Name}
		switch {
		case v.EmptyDir != nil:
			got.EmptyDir = string(v.EmptyDir.Medium)
		case v.Secret != nil:
			got.Secret = v.Secret.SecretName
			got.Optional = v.Secret.Optional != nil && *v.Secret.Optional
		default:
			got.Name += " (neither emptyDir nor secret)"
		}
		for _, m := range c.VolumeMounts {
			if m.Name == v.Name {
				got.Mount, got.ReadOnly = m.MountPath, m.ReadOnly
			}
		}
		vols = append(vols, got)
	}
	// No hostPath. The token's volume is optional: enforcement never waits
	// for a Secret (the agent refuses /metrics until it holds a token).
	wantVols := []vol{
		{Name: "tmp", EmptyDir: "Memory", Mount: "/tmp"},
		{Name: "metrics-token", Secret: metricsSecret, Optional: true, Mount: tokenDir, ReadOnly: true},
	}
	if diff := cmp.Diff(wantVols, vols); diff != "" {
		t.Errorf("pod volumes (-want +got):\n%s", diff)
	}
	if r := c.Resources; r.Requests.Cpu().IsZero() || r.Requests.Memory().IsZero() || r.Limits.Memory().IsZero() {
		t.Errorf("container resources %+v need cpu and memory requests and a memory limit", r)
	}
}

// TestManifest_MetricsTokenOfAnAccountThatMayDoNothing: the token the agent
// requires on /metrics and /verdicts is a service-account-token Secret of a
// dedicated ServiceAccount: no token in git (kube-controller-manager fills
// it in), no pod runs as that account, and no binding in the manifest names
// it (TestManifest_OnRealAPIServer checks it may do nothing).
func TestManifest_MetricsTokenOfAnAccountThatMayDoNothing(t *testing.T) {
	t.Parallel()
	docs := readManifest(t)
	var sa *corev1.ServiceAccount
	var secret *corev1.Secret
	for _, d := range docs {
		switch o := d.Object.(type) {
		case *corev1.ServiceAccount:
			if o.Name == metricsAccount {
				sa = o
			}
		case *corev1.Secret:
			secret = o
		case *rbacv1.ClusterRoleBinding:
			for _, s := range o.Subjects {
				if s.Name == metricsAccount {
					t.Errorf("ClusterRoleBinding %s grants %s something", o.Name, metricsAccount)
				}
			}
		case *rbacv1.RoleBinding:
			t.Errorf("RoleBinding %s: the manifest grants nothing per namespace", o.Name)
		}
	}
	if sa == nil || secret == nil {
		t.Fatalf("manifest lacks the ServiceAccount %s (%v) or its token Secret (%v)", metricsAccount, sa, secret)
	}
	if sa.Namespace != systemNS || sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("ServiceAccount %s/%s: want automountServiceAccountToken false in %s", sa.Namespace, sa.Name, systemNS)
	}
	if secret.Name != metricsSecret || secret.Namespace != systemNS || secret.Type != corev1.SecretTypeServiceAccountToken ||
		secret.Annotations[corev1.ServiceAccountNameKey] != metricsAccount {
		t.Errorf("Secret %s/%s type %s annotations %v: want %s, a %s for %s", secret.Namespace, secret.Name, secret.Type, secret.Annotations,
			metricsSecret, corev1.SecretTypeServiceAccountToken, metricsAccount)
	}
	if len(secret.Data) != 0 || len(secret.StringData) != 0 {
		t.Errorf("Secret %s carries data: a token must never be in git", secret.Name)
	}
	ds := find[*appsv1.DaemonSet](t, docs)
	if ds.Spec.Template.Spec.ServiceAccountName == metricsAccount {
		t.Errorf("the agent runs as %s", metricsAccount)
	}
}

// server is the state the server tests share: one API server for the
// package, with the manifest's objects created once.
type server struct {
	s      *apiservertest.Server
	dyn    dynamic.Interface
	mapper meta.RESTMapper
}

func newServer(t *testing.T) server {
	t.Helper()
	s := apiservertest.Shared(t)
	cfg := s.AdminConfig()
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("dynamic client: %v", err)
	}
	groups, err := restmapper.GetAPIGroupResources(s.Client().Discovery())
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	return server{s: s, dyn: dyn, mapper: restmapper.NewDiscoveryRESTMapper(groups)}
}

// create creates the document's object as written, with strict server-side
// field validation, for real or as a dry run, and returns the warnings the
// server sent.
func (sv server) create(ctx context.Context, d document, dryRun bool) ([]string, error) {
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(d.JSON); err != nil {
		return nil, err
	}
	gvk := u.GroupVersionKind()
	mapping, err := sv.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", gvk, err)
	}
	var warnings warningRecorder
	cfg := sv.s.AdminConfig()
	cfg.WarningHandler = &warnings
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		ri = dyn.Resource(mapping.Resource).Namespace(u.GetNamespace())
	}
	opts := metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	if _, err := ri.Create(ctx, u, opts); err != nil {
		return warnings.list(), fmt.Errorf("%s %s/%s: %w", gvk.Kind, u.GetNamespace(), u.GetName(), err)
	}
	return warnings.list(), nil
}

// warningRecorder collects the warnings an API server sends.
type warningRecorder struct {
	mu       sync.Mutex
	warnings []string
}

func (w *warningRecorder) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warnings = append(w.warnings, text)
}

func (w *warningRecorder) list() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.warnings...)
}

var _ rest.WarningHandler = (*warningRecorder)(nil)

// TestManifest_OnRealAPIServer dry-runs every object against a real API
// server, then installs the RBAC objects for real and checks, as the
// ServiceAccount, that it can do exactly what the agent needs. The phases
// share state (the namespace), so they are ordered subtests.
func TestManifest_OnRealAPIServer(t *testing.T) {
	docs := readManifest(t)
	sv := newServer(t)
	ctx := t.Context()
	c := sv.s.Client()
	t.Cleanup(func() {
		// Leave the shared server as found, so -count=N works.
		ctx := context.Background()
		_ = c.RbacV1().ClusterRoleBindings().Delete(ctx, "policyd", metav1.DeleteOptions{})
		_ = c.RbacV1().ClusterRoles().Delete(ctx, "policyd", metav1.DeleteOptions{})
		if err := sv.s.DeleteNamespace(ctx, systemNS); err != nil {
			t.Errorf("delete namespace %s: %v", systemNS, err)
		}
	})

	ok := t.Run("server-side dry run", func(t *testing.T) {
		for _, d := range docs {
			warnings, err := sv.create(ctx, d, true)
			if err != nil {
				t.Fatalf("dry run: %v", err)
			}
			if len(warnings) != 0 {
				t.Errorf("dry run of %T drew API server warnings: %q", d.Object, warnings)
			}
			// The API server admits namespaced objects only into an existing
			// namespace (`kubectl apply --dry-run=server` of a fresh install
			// fails the same way), so the namespace is created for real.
			if _, isNS := d.Object.(*corev1.Namespace); isNS {
				if _, err := sv.create(ctx, d, false); err != nil {
					t.Fatalf("create: %v", err)
				}
			}
		}
		// A dry run stores nothing.
		if _, err := c.AppsV1().DaemonSets(systemNS).Get(ctx, "policyd", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("get DaemonSet after dry run: got %v, want NotFound", err)
		}
	})
	if !ok {
		return
	}

	ok = t.Run("install RBAC", func(t *testing.T) {
		for _, d := range docs {
			switch d.Object.(type) {
			case *corev1.ServiceAccount, *rbacv1.ClusterRole, *rbacv1.ClusterRoleBinding:
				if _, err := sv.create(ctx, d, false); err != nil {
					t.Fatalf("create: %v", err)
				}
			}
		}
	})
	if !ok {
		return
	}

	cfg, err := sv.s.ServiceAccountConfig(ctx, systemNS, serviceAccount)
	if err != nil {
		t.Fatalf("ServiceAccountConfig: %v", err)
	}
	agent, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("clientset: %v", err)
	}
	ns := sv.s.Namespace(t)

	t.Run("permission matrix", func(t *testing.T) {
		checkPermissionMatrix(t, agent, ns, serviceAccount, agentGrants)
	})
	t.Run("the metrics token's account may do nothing", func(t *testing.T) {
		cfg, err := sv.s.ServiceAccountConfig(ctx, systemNS, metricsAccount)
		if err != nil {
			t.Fatalf("ServiceAccountConfig: %v", err)
		}
		metrics, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatalf("clientset: %v", err)
		}
		checkPermissionMatrix(t, metrics, ns, metricsAccount, func(resource, string) bool { return false })
	})
	t.Run("requests the agent makes succeed", func(t *testing.T) {
		checkAllowedRequests(t, agent, ns)
	})
	t.Run("anything else is forbidden", func(t *testing.T) {
		checkForbiddenRequests(t, c, agent, ns)
	})
}

// resource names a resource (and subresource) for the permission matrix.
type resource struct {
	group, name, sub string
	clusterScoped    bool
}

func (r resource) String() string {
	s := r.name
	if r.sub != "" {
		s += "/" + r.sub
	}
	if r.group != "" {
		s += "." + r.group
	}
	return s
}

// agentGrants is what the agent's ClusterRole grants, exactly.
func agentGrants(r resource, verb string) bool {
	read := map[string]bool{"get": true, "list": true, "watch": true}
	record := map[string]bool{"create": true, "patch": true}
	switch r.String() {
	case "pods", "namespaces", "networkpolicies.networking.k8s.io", "nodes", "clusternetworkpolicies.policy.networking.k8s.io":
		return read[verb]
	case "events", "events.events.k8s.io":
		return record[verb]
	}
	return false
}

// checkPermissionMatrix asks the API server's authorizer, as the
// ServiceAccount who, about every verb on the resources the agent touches and
// on sensitive neighbours, and compares with exactly want.
func checkPermissionMatrix(t *testing.T, agent kubernetes.Interface, ns, who string, want func(resource, string) bool) {
	verbs := []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
	resources := []resource{
		{name: "pods"},
		{name: "pods", sub: "status"},
		{name: "pods", sub: "exec"},
		{name: "namespaces", clusterScoped: true},
		{group: "networking.k8s.io", name: "networkpolicies"},
		{name: "events"},
		{group: "events.k8s.io", name: "events"},
		{name: "secrets"},
		{name: "configmaps"},
		{name: "services"},
		{name: "serviceaccounts", sub: "token"},
		{group: "discovery.k8s.io", name: "endpointslices"},
		{name: "nodes", clusterScoped: true},
		{name: "nodes", sub: "status", clusterScoped: true},
		{group: "policy.networking.k8s.io", name: "clusternetworkpolicies", clusterScoped: true},
		{group: "policy.networking.k8s.io", name: "clusternetworkpolicies", sub: "status", clusterScoped: true},
		{group: "apiextensions.k8s.io", name: "customresourcedefinitions", clusterScoped: true},
		{group: "apps", name: "daemonsets"},
		{group: "rbac.authorization.k8s.io", name: "clusterroles", clusterScoped: true},
	}
	ctx := t.Context()
	var wantRows, gotRows []string
	for _, r := range resources {
		wantRow, gotRow := r.String()+"\t", r.String()+"\t"
		for _, verb := range verbs {
			attrs := &authorizationv1.ResourceAttributes{Verb: verb, Group: r.group, Resource: r.name, Subresource: r.sub}
			if !r.clusterScoped {
				attrs.Namespace = ns
			}
			review, err := agent.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx,
				&authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: attrs}},
				metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("SelfSubjectAccessReview %s %s: %v", verb, r, err)
			}
			wantRow += mark(want(r, verb))
			gotRow += mark(review.Status.Allowed)
		}
		wantRows = append(wantRows, wantRow)
		gotRows = append(gotRows, gotRow)
	}
	if diff := cmp.Diff(wantRows, gotRows); diff != "" {
		header := "resource\t" + strings.Join(verbs, " ")
		t.Errorf("permissions of the %s ServiceAccount (. allowed, X forbidden; verbs: %s)\n%s\n(-want +got):\n%s",
			who, header, strings.Join(gotRows, "\n"), diff)
	}
}

func mark(allowed bool) string {
	if allowed {
		return ". "
	}
	return "X "
}

// checkAllowedRequests makes, as the ServiceAccount, the requests the agent's
// informers and event recorder make.
func checkAllowedRequests(t *testing.T, agent kubernetes.Interface, ns string) {
	ctx := t.Context()
	lists := map[string]func() error{
		"list pods": func() error { _, err := agent.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); return err },
		"list namespaces": func() error {
			_, err := agent.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
			return err
		},
		"list networkpolicies": func() error {
			_, err := agent.NetworkingV1().NetworkPolicies("").List(ctx, metav1.ListOptions{})
			return err
		},
		"watch pods": func() error { return watchOnce(agent.CoreV1().Pods("").Watch(ctx, metav1.ListOptions{})) },
		"watch namespaces": func() error {
			return watchOnce(agent.CoreV1().Namespaces().Watch(ctx, metav1.ListOptions{}))
		},
		"watch networkpolicies": func() error {
			return watchOnce(agent.NetworkingV1().NetworkPolicies("").Watch(ctx, metav1.ListOptions{}))
		},
		"list nodes":  func() error { _, err := agent.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); return err },
		"watch nodes": func() error { return watchOnce(agent.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{})) },
		// The ClusterNetworkPolicy API is found through discovery, which
		// needs no grant of its own (the CRD is not installed here, so its
		// list and watch are covered by the permission matrix only).
		"discover policy.networking.k8s.io": func() error {
			_, err := agent.Discovery().ServerResourcesForGroupVersion("policy.networking.k8s.io/v1beta1")
			if apierrors.IsNotFound(err) {
				return nil // not installed: NotFound, not Forbidden
			}
			return err
		},
	}
	for name, call := range lists {
		if err := call(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Authorised but absent: NotFound, not Forbidden.
	if _, err := agent.CoreV1().Pods(ns).Get(ctx, "absent", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("get absent pod: got %v, want NotFound", err)
	}

	ref := corev1.ObjectReference{Kind: "NetworkPolicy", APIVersion: "networking.k8s.io/v1", Namespace: ns, Name: "deny"}
	now := metav1.NowMicro()
	ev := &corev1.Event{
		ObjectMeta:          metav1.ObjectMeta{Name: "deny.policyd", Namespace: ns},
		InvolvedObject:      ref,
		Type:                corev1.EventTypeWarning,
		Reason:              "InvalidPolicy",
		Message:             "ingress[0].from[0].ipBlock: invalid CIDR",
		Source:              corev1.EventSource{Component: "policyd", Host: "node-a"},
		Count:               1,
		FirstTimestamp:      metav1.Time(now),
		LastTimestamp:       metav1.Time(now),
		ReportingController: "policyd",
		ReportingInstance:   "policyd-node-a",
	}
	if _, err := agent.CoreV1().Events(ns).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		t.Errorf("create core/v1 Event: %v", err)
	} else if _, err := agent.CoreV1().Events(ns).Patch(ctx, ev.Name, types.StrategicMergePatchType,
		[]byte(`{"count":2}`), metav1.PatchOptions{}); err != nil {
		t.Errorf("patch core/v1 Event: %v", err)
	}
	ev2 := &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Name: "deny.policyd.v1", Namespace: ns},
		EventTime:           now,
		Regarding:           ref,
		Type:                corev1.EventTypeWarning,
		Reason:              "InvalidPolicy",
		Action:              "Compile",
		Note:                "ingress[0].from[0].ipBlock: invalid CIDR",
		ReportingController: "policyd.io/agent",
		ReportingInstance:   "policyd-node-a",
	}
	if _, err := agent.EventsV1().Events(ns).Create(ctx, ev2, metav1.CreateOptions{}); err != nil {
		t.Errorf("create events.k8s.io/v1 Event: %v", err)
	} else if _, err := agent.EventsV1().Events(ns).Patch(ctx, ev2.Name, types.MergePatchType,
		[]byte(`{"series":{"count":2,"lastObservedTime":"`+metav1.NowMicro().Format(metav1.RFC3339Micro)+`"}}`), metav1.PatchOptions{}); err != nil {
		t.Errorf("patch events.k8s.io/v1 Event: %v", err)
	}
}

// watchOnce stops a watch that was opened, passing on the error of opening.
func watchOnce(w interface{ Stop() }, err error) error {
	if err != nil {
		return err
	}
	w.Stop()
	return nil
}

// checkForbiddenRequests makes, as the ServiceAccount, requests the agent
// must never be able to make, on objects that exist.
func checkForbiddenRequests(t *testing.T, admin, agent kubernetes.Interface, ns string) {
	ctx := t.Context()
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "deny", Namespace: ns}}
	if _, err := admin.NetworkingV1().NetworkPolicies(ns).Create(ctx, np, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create network policy as admin: %v", err)
	}
	readable, err := agent.NetworkingV1().NetworkPolicies(ns).Get(ctx, "deny", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get network policy as the agent: %v", err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: ns},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.invalid/x:1"}}},
	}
	forbidden := map[string]func() error{
		"list secrets": func() error { _, err := agent.CoreV1().Secrets("").List(ctx, metav1.ListOptions{}); return err },
		"create pods": func() error {
			_, err := agent.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
			return err
		},
		"update networkpolicies": func() error {
			_, err := agent.NetworkingV1().NetworkPolicies(ns).Update(ctx, readable, metav1.UpdateOptions{})
			return err
		},
		"delete networkpolicies": func() error {
			return agent.NetworkingV1().NetworkPolicies(ns).Delete(ctx, "deny", metav1.DeleteOptions{})
		},
		"update nodes status": func() error {
			_, err := agent.CoreV1().Nodes().UpdateStatus(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}, metav1.UpdateOptions{})
			return err
		},
		"delete namespaces": func() error {
			return agent.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
		},
		"list events": func() error { _, err := agent.CoreV1().Events(ns).List(ctx, metav1.ListOptions{}); return err },
		"list configmaps": func() error {
			_, err := agent.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
			return err
		},
	}
	for name, call := range forbidden {
		if err := call(); !apierrors.IsForbidden(err) {
			t.Errorf("%s as the agent: got error %v, want Forbidden", name, err)
		}
	}
}

// dockerfileBuild matches the Dockerfile's go build step and captures its
// output path.
var dockerfileBuild = regexp.MustCompile(`(?m)^RUN (CGO_ENABLED=0 .*go build .*-o (\S+) \./cmd/policyd)$`)

// TestDockerfile_BuildsStaticBinaryThatTakesTheDaemonSetArgs runs the
// Dockerfile's build command (Docker itself is not needed) and checks that
// the binary needs no libc, that the image's entrypoint is where the binary
// is copied, and that `policyd run` accepts every flag the DaemonSet passes.
func TestDockerfile_BuildsStaticBinaryThatTakesTheDaemonSetArgs(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("skipping in -short mode: builds cmd/policyd")
	}
	df, err := os.ReadFile(filepath.Join("..", "Dockerfile"))
	if err != nil {
		t.Fatalf("read Dockerfile: %v", err)
	}
	m := dockerfileBuild.FindSubmatch(df)
	if m == nil {
		t.Fatalf("Dockerfile has no line matching %s", dockerfileBuild)
	}
	copyLine := regexp.MustCompile(`(?m)^COPY --from=build ` + regexp.QuoteMeta(string(m[2])) + ` (\S+)$`).FindSubmatch(df)
	if copyLine == nil {
		t.Fatalf("Dockerfile does not copy %s from the build stage", m[2])
	}
	if entry := fmt.Sprintf(`ENTRYPOINT ["%s"]`, copyLine[1]); !bytes.Contains(df, []byte(entry)) {
		t.Errorf("Dockerfile lacks %s", entry)
	}

	bin := filepath.Join(t.TempDir(), "policyd")
	script := strings.Replace(string(m[1]), "-o "+string(m[2]), "-o "+bin, 1)
	cmd := exec.CommandContext(t.Context(), "sh", "-c", script)
	cmd.Dir = ".."
	// The build arguments docker passes (buildx sets TARGETOS/TARGETARCH).
	cmd.Env = append(os.Environ(), "TARGETOS=linux", "TARGETARCH="+goruntime.GOARCH, "VERSION=v0.0.0-image", "COMMIT=c0ffee")
	for _, arg := range []string{"ARG TARGETOS", "ARG TARGETARCH", "ARG VERSION", "ARG COMMIT", "FROM --platform=$BUILDPLATFORM "} {
		if !bytes.Contains(df, []byte(arg)) {
			t.Errorf("Dockerfile lacks %s", arg)
		}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("open built binary: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("binary has a program interpreter: it is dynamically linked and cannot run on a distroless/static base")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) != 0 {
		t.Errorf("binary imports libraries %v (err %v), want none", libs, err)
	}

	// The image says which build it is (the Makefile's ldflags, through
	// the build arguments), not dev / unknown.
	if v, err := exec.CommandContext(t.Context(), bin, "version").Output(); err != nil || !bytes.Contains(v, []byte("policyd v0.0.0-image\ncommit c0ffee\n")) {
		t.Errorf("policyd version of the image's binary: %q (err %v), want v0.0.0-image and commit c0ffee", v, err)
	}

	help, err := exec.CommandContext(t.Context(), bin, "run", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("policyd run --help: %v\n%s", err, help)
	}
	ds := find[*appsv1.DaemonSet](t, readManifest(t))
	args := ds.Spec.Template.Spec.Containers[0].Args
	if len(args) == 0 || args[0] != "run" {
		t.Fatalf("DaemonSet args %q do not start with the run subcommand", args)
	}
	for _, arg := range args[1:] {
		flag, _, _ := strings.Cut(arg, "=")
		if !strings.HasPrefix(flag, "--") || !regexp.MustCompile(`(?m)^\s+(-\w, )?`+regexp.QuoteMeta(flag)+`\b`).Match(help) {
			t.Errorf("DaemonSet passes %q, but `policyd run --help` lists no flag %s", arg, flag)
		}
	}
}
