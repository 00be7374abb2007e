package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/policyd/policyd/internal/apiservertest"
)

func TestMain(m *testing.M) { apiservertest.Main(m) }

// writeKubeconfig writes a kubeconfig for s's admin with two contexts, the
// current one pointing nowhere, so the test also proves --context is used.
func writeKubeconfig(t *testing.T, s *apiservertest.Server) string {
	t.Helper()
	rc := s.AdminConfig()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: rc.Host, CertificateAuthorityData: rc.CAData}
	cfg.Clusters["nowhere"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1"}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: rc.BearerToken}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "admin"}
	cfg.Contexts["nowhere"] = &clientcmdapi.Context{Cluster: "nowhere", AuthInfo: "admin"}
	cfg.CurrentContext = "nowhere"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, clientcmd.WriteToFile(*cfg, path))
	return path
}

// TestExplain_LiveFromAPIServer: without --manifests, explain reads the
// cluster through --kubeconfig and --context.
func TestExplain_LiveFromAPIServer(t *testing.T) {
	s := apiservertest.Shared(t)
	ns := s.Namespace(t)
	c := s.Client()
	ctx := context.Background()
	createLivePods(t, s, ns, map[string]string{"web": "10.88.0.1", "client": "10.88.0.2"})
	_, err := c.NetworkingV1().NetworkPolicies(ns).Create(ctx, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-deny"},
		Spec:       networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	kc := writeKubeconfig(t, s)

	out, err := run(t, "explain", "--kubeconfig", kc, "--context", "test", ns+"/client", ns+"/web", "-o", "json", "--trace")
	assert.Equal(t, 1, exitCodeOf(err), "the policy denies client -> web: %v", err)
	var res []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &res), out)
	require.Len(t, res, 1)
	assert.Equal(t, false, res[0]["allowed"])
	ingress := res[0]["ingress"].(map[string]any)
	assert.Equal(t, []any{ns + "/web-deny"}, ingress["policies"])
	assert.Equal(t, true, res[0]["trace"].(map[string]any)["agrees"])

	out, err = run(t, "explain", "--kubeconfig", kc, "--context", "test", ns+"/web", ns+"/client")
	require.NoError(t, err, out)
	assert.Contains(t, out, "ALLOWED")

	_, err = run(t, "explain", "--kubeconfig", kc, ns+"/web", ns+"/client")
	assert.Error(t, err, "the current context points nowhere: --context must be what made the calls above work")
}

// TestExplain_LiveThroughService: a Service and its EndpointSlice created
// on the API server (no controller runs there: the slice is written by
// hand) lead explain to the backend, at its target port.
func TestExplain_LiveThroughService(t *testing.T) {
	s := apiservertest.Shared(t)
	ns := s.Namespace(t)
	c := s.Client()
	ctx := context.Background()
	createLivePods(t, s, ns, map[string]string{"web": "10.88.1.1", "client": "10.88.1.2"})
	_, err := c.NetworkingV1().NetworkPolicies(ns).Create(ctx, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-only-8080-from-nobody"},
		Spec:       networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	svc, err := c.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "websvc"},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: intstr.FromString("http")}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	name, port, ready := "http", int32(80), true
	_, err = c.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: "websvc-1", Labels: map[string]string{discoveryv1.LabelServiceName: "websvc"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.88.1.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: "web"}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	kc := writeKubeconfig(t, s)

	for _, dst := range []string{"svc/" + ns + "/websvc", svc.Spec.ClusterIP} {
		out, err := run(t, "explain", "--kubeconfig", kc, "--context", "test", ns+"/client", dst, "--port", "8080", "-o", "json", "--trace")
		assert.Equal(t, 1, exitCodeOf(err), "web admits nothing: %v", err)
		var res []map[string]any
		require.NoError(t, json.Unmarshal([]byte(out), &res), out)
		require.Len(t, res, 1, out)
		assert.Equal(t, ns+"/web", res[0]["to"])
		assert.EqualValues(t, 80, res[0]["port"])
		sp := res[0]["service"].(map[string]any)
		assert.Equal(t, ns+"/websvc", sp["service"])
		assert.EqualValues(t, 1, sp["backends"])
		assert.Equal(t, true, res[0]["trace"].(map[string]any)["agrees"])
	}
}

// createLivePods creates running pods app=NAME on node-1 with the given
// addresses, each declaring TCP/80 "http".
func createLivePods(t *testing.T, s *apiservertest.Server, ns string, ips map[string]string) {
	t.Helper()
	c, ctx := s.Client(), context.Background()
	for name, ip := range ips {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name}},
			Spec: corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80, Protocol: corev1.ProtocolTCP}}}}},
		}
		p, err := c.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		require.NoError(t, err)
		p.Status.PodIP, p.Status.PodIPs, p.Status.Phase = ip, []corev1.PodIP{{IP: ip}}, corev1.PodRunning
		_, err = c.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		require.NoError(t, err)
	}
}
