// Package apiservertest owns the integration-test harness that runs a real
// kube-apiserver backed by a real etcd on 127.0.0.1, so that tests of the
// node agent and of the shipped manifests talk to the same API machinery a
// cluster runs (admission, validation, RBAC, watch) instead of a fake
// clientset.
//
// The binaries come from $POLICYD_TOOLS_DIR when it holds both, else from
// hack/apiserver.sh, which builds them once (about 8 minutes cold) into a
// cache directory. When they cannot be had, tests skip with a message, except
// when the environment variable CI is non-empty: then they fail.
//
// A package shares one server between its tests:
//
//	func TestMain(m *testing.M) { apiservertest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		s := apiservertest.Shared(t)
//		ns := s.Namespace(t)
//		...
//	}
//
// No controller-manager, scheduler or kubelet runs: pods stay Pending and
// their status is whatever a test writes through the status subresource.
package apiservertest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// ErrBinariesUnavailable is wrapped by the error New returns when
// kube-apiserver or etcd can neither be found nor built; tests skip on it
// unless CI is set.
var ErrBinariesUnavailable = errors.New("kube-apiserver and etcd binaries are unavailable")

// DefaultReadyTimeout bounds how long New waits for /readyz when
// Config.ReadyTimeout is zero. Start takes about 3 s on an idle 2-core
// machine; the margin is for a machine busy compiling.
const DefaultReadyTimeout = 2 * time.Minute

// ServiceClusterIPRange is the service CIDR the API server allocates
// ClusterIPs from.
const ServiceClusterIPRange = "10.96.0.0/16"

// Config configures New. The zero value is valid.
type Config struct {
	// ToolsDir is the directory holding the kube-apiserver and etcd
	// binaries. Empty means $POLICYD_TOOLS_DIR when it holds both, else the
	// directory hack/apiserver.sh prints (building them if needed).
	ToolsDir string
	// ReadyTimeout bounds the wait for the API server's /readyz; zero means
	// DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// APIServerArgs are appended to the kube-apiserver command line; a flag
	// given here overrides the harness's value for it.
	APIServerArgs []string
}

// Server is a running etcd and kube-apiserver pair. Its methods are safe for
// concurrent use.
type Server struct {
	dir        string // temporary directory: certs, tokens, etcd data, logs
	url        string // https://127.0.0.1:port
	caPEM      []byte // CA that signed the serving certificate
	adminToken string

	etcd    *process
	etcdURL string // http://127.0.0.1:port, etcd's client URL
	// apiserver is the running kube-apiserver (or the last one, dead,
	// after StopAPIServer); apiBin and apiArgs start it again.
	apiMu     sync.Mutex
	apiserver *process
	apiBin    string
	apiArgs   []string
	apiStarts int
	// peer is set on a Server from StartPeer: it shares etcd and the
	// credentials of another, and its Stop kills only its API server.
	peer bool

	clientOnce sync.Once
	client     kubernetes.Interface
	clientErr  error

	cleanupOnce      sync.Once
	cleanupResources []resourceRef
	cleanupErr       error

	stopOnce sync.Once
	stopErr  error
}

// New starts etcd and kube-apiserver on free 127.0.0.1 ports under a new
// temporary directory and returns once /readyz answers 200. Call Stop to
// kill both and remove the directory. When the binaries are unavailable the
// error wraps ErrBinariesUnavailable.
func New(ctx context.Context, cfg Config) (*Server, error) {
	tools, err := toolsDir(ctx, cfg.ToolsDir)
	if err != nil {
		return nil, err
	}
	timeout := cfg.ReadyTimeout
	if timeout == 0 {
		timeout = DefaultReadyTimeout
	}
	// Free ports are found by binding and closing, so another process can
	// take one before etcd or the API server binds it; such a start is
	// retried with new ports.
	const attempts = 3
	for i := 1; ; i++ {
		s, err := start(ctx, tools, cfg.APIServerArgs, timeout)
		if err == nil {
			return s, nil
		}
		if i == attempts || !errors.Is(err, errPortTaken) {
			return nil, err
		}
	}
}

var errPortTaken = errors.New("a port was taken before it was bound")

func start(ctx context.Context, tools string, extraArgs []string, timeout time.Duration) (_ *Server, err error) {
	dir, err := os.MkdirTemp("", "policyd-apiserver-")
	if err != nil {
		return nil, fmt.Errorf("create temporary directory: %w", err)
	}
	s := &Server{dir: dir}
	defer func() {
		if err != nil {
			_ = s.Stop()
		}
	}()

	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdClient, etcdPeer, securePort := ports[0], ports[1], ports[2]
	s.url = "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(securePort))

	files, err := writeCredentials(dir)
	if err != nil {
		return nil, err
	}
	s.caPEM = files.caPEM
	s.adminToken = files.adminToken

	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdClient)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPeer)
	s.etcd, err = startProcess(dir, "etcd", filepath.Join(tools, "etcd"),
		"--name=policyd-test",
		"--data-dir="+filepath.Join(dir, "etcd-data"),
		"--listen-client-urls="+etcdURL,
		"--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=policyd-test="+peerURL,
		// Tests throw the data away; fsync only costs time.
		"--unsafe-no-fsync",
		// Info logs are raft start-up chatter that would crowd failure tails.
		"--log-level=warn",
	)
	if err != nil {
		return nil, err
	}

	args := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(securePort),
		"--tls-cert-file=" + files.servingCert,
		"--tls-private-key-file=" + files.servingKey,
		"--token-auth-file=" + files.tokens,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + files.saPublic,
		"--service-account-signing-key-file=" + files.saPrivate,
		"--authorization-mode=Node,RBAC",
		// Without a controller-manager nobody creates the default
		// ServiceAccount, and this plugin would then refuse every pod.
		"--disable-admission-plugins=ServiceAccount",
		// A single loopback apiserver has no endpoints worth reconciling.
		"--endpoint-reconciler-type=none",
		"--service-cluster-ip-range=" + ServiceClusterIPRange,
		"--profiling=false",
	}
	s.etcdURL = etcdURL
	args = append(args, extraArgs...)
	s.apiBin, s.apiArgs = filepath.Join(tools, "kube-apiserver"), args
	s.apiserver, err = startProcess(dir, "kube-apiserver", s.apiBin, s.apiArgs...)
	if err != nil {
		return nil, err
	}
	s.apiStarts = 1
	if err := s.waitReady(ctx, timeout); err != nil {
		return nil, err
	}
	return s, nil
}

// waitReady polls /readyz until it answers 200, a process exits, ctx ends or
// timeout passes.
func (s *Server) waitReady(ctx context.Context, timeout time.Duration) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.caPEM)
	hc := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last := "no answer yet"
	s.apiMu.Lock()
	procs := []*process{s.etcd, s.apiserver}
	s.apiMu.Unlock()
	for {
		for _, p := range procs {
			select {
			case <-p.done:
				err := fmt.Errorf("%s exited before the API server was ready: %v\n%s", p.name, p.waitErr, p.tail(40)) //nolint:errorlint // waitErr is nil when the process exited 0; %w would print %!w(<nil>)
				if p.logContains("address already in use") {
					err = fmt.Errorf("%w: %w", errPortTaken, err)
				}
				return err
			default:
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/readyz", nil)
		if err != nil {
			return fmt.Errorf("build /readyz request: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+s.adminToken)
		if resp, err := hc.Do(req); err != nil {
			last = err.Error()
		} else {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver at %s not ready after %v (last /readyz: %s)\n%s\n%s",
				s.url, timeout, last, procs[1].tail(40), s.etcd.tail(20))
		case <-tick.C:
		}
	}
}

// URL returns the API server's base URL, https://127.0.0.1:<port>.
func (s *Server) URL() string { return s.url }

// AdminConfig returns a new client configuration that authenticates as a
// member of system:masters with a static bearer token and trusts the
// server's CA. The caller may modify it.
func (s *Server) AdminConfig() *rest.Config {
	cfg := s.baseConfig()
	cfg.BearerToken = s.adminToken
	return cfg
}

// baseConfig holds the host, CA and client-side rate limits, and no
// credentials.
func (s *Server) baseConfig() *rest.Config {
	return &rest.Config{
		Host:            s.url,
		TLSClientConfig: rest.TLSClientConfig{CAData: append([]byte(nil), s.caPEM...)},
		// Tests create objects in bursts; the default 5 QPS would dominate
		// their run time.
		QPS:       200,
		Burst:     400,
		UserAgent: "policyd-apiservertest",
	}
}

// Client returns a clientset built from AdminConfig, created once. It panics
// only if client-go rejects a configuration it built itself, which would be
// a bug in this package.
func (s *Server) Client() kubernetes.Interface {
	s.clientOnce.Do(func() {
		s.client, s.clientErr = kubernetes.NewForConfig(s.AdminConfig())
	})
	if s.clientErr != nil {
		panic(fmt.Sprintf("apiservertest: admin clientset: %v", s.clientErr))
	}
	return s.client
}

// Logs returns the last n lines of the etcd and kube-apiserver logs, for
// failure messages.
func (s *Server) Logs(n int) string {
	var b strings.Builder
	s.apiMu.Lock()
	procs := []*process{s.apiserver, s.etcd}
	s.apiMu.Unlock()
	for _, p := range procs {
		if p != nil {
			b.WriteString(p.tail(n))
		}
	}
	return b.String()
}

// Stop kills kube-apiserver and etcd, waits for them to exit and removes the
// temporary directory. It is idempotent; later calls return the first
// call's result.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		if s.peer {
			s.StopAPIServer()
			return
		}
		var errs []error
		// The data is thrown away, so there is nothing to shut down
		// gracefully: the API server first, so that it does not log a storm
		// of etcd errors, then etcd.
		s.apiMu.Lock()
		procs := []*process{s.apiserver, s.etcd}
		s.apiMu.Unlock()
		for _, p := range procs {
			if p != nil {
				p.kill()
			}
		}
		if err := os.RemoveAll(s.dir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", s.dir, err))
		}
		s.stopErr = errors.Join(errs...)
	})
	return s.stopErr
}

// freePorts returns n distinct TCP ports that were free on 127.0.0.1 a
// moment ago. All listeners are held until all ports are known, so the n
// ports differ.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer l.Close() //nolint:gocritic // on purpose: every listener is held until all n ports are known
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
