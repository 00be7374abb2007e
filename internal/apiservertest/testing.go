package apiservertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

// inCI reports whether the tests run in CI, where a missing API server is a
// failure, not a reason to skip.
func inCI() bool { return os.Getenv("CI") != "" }

// mustFail reports whether a failure to start the server fails the test
// (true) or skips it (false): only unavailable binaries outside CI skip.
func mustFail(ci bool, err error) bool {
	return ci || !errors.Is(err, ErrBinariesUnavailable)
}

// startFailed skips or fails tb for a New error, following mustFail.
func startFailed(tb testing.TB, err error) {
	tb.Helper()
	if mustFail(inCI(), err) {
		tb.Fatalf("start kube-apiserver and etcd: %v", err)
	}
	tb.Skipf("skipping: test needs a real kube-apiserver and etcd (build them with ./%s, ~8 min cold): %v", buildScript, err)
}

// skipShort skips tb in -short mode: these tests need binaries that take
// minutes to build and a server that takes seconds to start.
func skipShort(tb testing.TB) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("skipping in -short mode: test needs a real kube-apiserver and etcd")
	}
}

// Start starts a server of its own for tb with the zero Config, stops it in
// tb.Cleanup (also when tb fails) and logs the tail of its logs when tb has
// failed. It skips tb in -short mode, and when the binaries are unavailable
// unless CI is set; any other start failure fails tb. Prefer Shared unless a
// test needs to stop or break the server.
func Start(tb testing.TB) *Server {
	tb.Helper()
	skipShort(tb)
	began := time.Now()
	s, err := New(context.Background(), Config{})
	if err != nil {
		startFailed(tb, err)
	}
	tb.Logf("kube-apiserver %s ready in %v", s.URL(), time.Since(began).Round(time.Millisecond))
	tb.Cleanup(func() {
		if err := s.Stop(); err != nil {
			tb.Errorf("stop kube-apiserver: %v", err)
		}
	})
	tb.Cleanup(func() { logOnFailure(tb, s) }) // runs before Stop removes the logs
	return s
}

// logOnFailure logs the tail of the server's logs if tb failed.
func logOnFailure(tb testing.TB, s *Server) {
	if tb.Failed() {
		tb.Logf("kube-apiserver and etcd logs at the end of %s:\n%s", tb.Name(), s.Logs(30))
	}
}

// shared is the package-wide server behind Shared, started on first use.
var shared struct {
	main    atomic.Bool // Main is running the tests
	once    sync.Once
	srv     *Server
	err     error
	elapsed time.Duration
}

// Main runs the package's tests and then stops the server Shared started, if
// any, and exits with the tests' status. Call it from TestMain:
//
//	func TestMain(m *testing.M) { apiservertest.Main(m) }
//
// The server starts lazily, so `go test -run` of tests that do not need it
// costs nothing.
func Main(m *testing.M) {
	shared.main.Store(true)
	code := m.Run()
	if shared.srv != nil {
		if err := shared.srv.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "apiservertest: stop shared kube-apiserver: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// Shared returns the package's shared server, starting it on the first call;
// the package's TestMain must call Main, which stops it after the last test.
// Tests sharing it should work in their own Namespace. It skips or fails tb
// like Start (every test sees the first start error), and logs the tail of
// the server's logs when tb has failed.
func Shared(tb testing.TB) *Server {
	tb.Helper()
	skipShort(tb)
	if !shared.main.Load() {
		tb.Fatal("apiservertest.Shared needs the package's TestMain to call apiservertest.Main, which stops the server")
	}
	shared.once.Do(func() {
		began := time.Now()
		shared.srv, shared.err = New(context.Background(), Config{})
		shared.elapsed = time.Since(began)
		if shared.err == nil {
			tb.Logf("shared kube-apiserver %s ready in %v", shared.srv.URL(), shared.elapsed.Round(time.Millisecond))
		}
	})
	if shared.err != nil {
		startFailed(tb, shared.err)
	}
	s := shared.srv
	tb.Cleanup(func() { logOnFailure(tb, s) })
	return s
}

// nsCounter makes namespace names unique within the process even when two
// tests have the same sanitised name.
var nsCounter atomic.Uint64

// Namespace creates a namespace named after tb (lower-cased, trimmed, with
// a unique suffix) and returns its name. In tb.Cleanup it does what the
// namespace controller would, since none runs here: it deletes every
// namespaced object in it (pods without a grace period, as no kubelet
// confirms their termination), deletes the namespace and removes its
// "kubernetes" finalizer, so the namespace is gone when the test ends.
func (s *Server) Namespace(tb testing.TB) string {
	tb.Helper()
	ctx := context.Background()
	name := namespaceName(tb.Name(), nsCounter.Add(1))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   name,
		Labels: map[string]string{"policyd.test/namespace": "true"},
	}}
	if _, err := s.Client().CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		tb.Fatalf("create namespace %s: %v", name, err)
	}
	tb.Cleanup(func() {
		if err := s.DeleteNamespace(ctx, name); err != nil {
			tb.Errorf("delete namespace %s: %v", name, err)
		}
	})
	return name
}

var nonName = regexp.MustCompile(`[^a-z0-9]+`)

// namespaceName derives a valid, unique namespace name (a DNS-1123 label)
// from a test name and a counter.
func namespaceName(testName string, n uint64) string {
	base := strings.Trim(nonName.ReplaceAllString(strings.ToLower(testName), "-"), "-")
	suffix := fmt.Sprintf("-%d-%s", n, rand.String(4))
	if max := 63 - len(suffix); len(base) > max {
		base = strings.TrimRight(base[:max], "-")
	}
	if base == "" {
		base = "test"
	}
	return base + suffix
}

// resourceRef names a namespaced resource that supports deletecollection.
type resourceRef = schema.GroupVersionResource

// DeleteNamespace empties namespace name and deletes it, as the namespace
// controller would, and waits until it is gone. A namespace that does not
// exist is not an error.
func (s *Server) DeleteNamespace(ctx context.Context, name string) error {
	resources, err := s.namespacedResources()
	if err != nil {
		return err
	}
	cfg := s.AdminConfig()
	// Deleting every resource type draws deprecation warnings (v1
	// Endpoints) that say nothing about the test.
	cfg.WarningHandler = rest.NoWarnings{}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	var errs []error
	zero := int64(0)
	background := metav1.DeletePropagationBackground
	for _, gvr := range resources {
		err := dyn.Resource(gvr).Namespace(name).DeleteCollection(ctx,
			metav1.DeleteOptions{GracePeriodSeconds: &zero, PropagationPolicy: &background}, metav1.ListOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete %s: %w", gvr, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	nsClient := s.Client().CoreV1().Namespaces()
	if err := nsClient.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	ns, err := nsClient.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	ns.Spec.Finalizers = nil
	if _, err := nsClient.Finalize(ctx, ns, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("remove finalizers: %w", err)
	}
	for {
		_, err := nsClient.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("namespace still exists: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// namespacedResources returns, once per server, the preferred version of
// every namespaced resource that supports deletecollection.
func (s *Server) namespacedResources() ([]resourceRef, error) {
	s.cleanupOnce.Do(func() {
		lists, err := discovery.ServerPreferredNamespacedResources(s.Client().Discovery())
		if err != nil {
			s.cleanupErr = fmt.Errorf("discover namespaced resources: %w", err)
			return
		}
		lists = discovery.FilteredBy(discovery.SupportsAllVerbs{Verbs: []string{"deletecollection"}}, lists)
		for _, list := range lists {
			gv, err := schema.ParseGroupVersion(list.GroupVersion)
			if err != nil {
				s.cleanupErr = fmt.Errorf("discovery: %w", err)
				return
			}
			for _, r := range list.APIResources {
				s.cleanupResources = append(s.cleanupResources, gv.WithResource(r.Name))
			}
		}
	})
	return s.cleanupResources, s.cleanupErr
}

// ServiceAccountConfig issues a token for ServiceAccount namespace/name
// through the TokenRequest API and returns a client configuration that
// authenticates with that bearer token alone: no admin credentials, so a
// client built from it has exactly the permissions RBAC grants the
// ServiceAccount. The ServiceAccount must exist; the token is valid for an
// hour.
func (s *Server) ServiceAccountConfig(ctx context.Context, namespace, name string) (*rest.Config, error) {
	expiry := int64(time.Hour / time.Second)
	tr, err := s.Client().CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}},
		metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("token for service account %s/%s: %w", namespace, name, err)
	}
	if tr.Status.Token == "" {
		return nil, fmt.Errorf("token for service account %s/%s: empty token in TokenRequest status", namespace, name)
	}
	cfg := s.baseConfig()
	cfg.BearerToken = tr.Status.Token
	return cfg, nil
}
