package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	npav1alpha2 "sigs.k8s.io/network-policy-api/apis/v1alpha2"
)

// fakeAPI is an API server that answers the lists live explain makes: two
// running pods x/a (10.0.0.1) and x/b (10.0.0.2) on node-1, no policies, and
// for policy.networking.k8s.io whatever cnp says per path (nil: 404).
func fakeAPI(t *testing.T, cnp map[string]func(http.ResponseWriter)) string {
	t.Helper()
	pod := func(name, ip string) corev1.Pod {
		return corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: name, Labels: map[string]string{"app": name}},
			Spec:       corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "c"}}},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
		}
	}
	lists := map[string]any{
		"/api/v1/namespaces": &corev1.NamespaceList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "NamespaceList"},
			Items: []corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "x"}}}},
		"/api/v1/pods": &corev1.PodList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PodList"},
			Items: []corev1.Pod{pod("a", "10.0.0.1"), pod("b", "10.0.0.2")}},
		"/apis/networking.k8s.io/v1/networkpolicies": &networkingv1.NetworkPolicyList{TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicyList"}},
		"/api/v1/nodes":    &corev1.NodeList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "NodeList"}},
		"/api/v1/services": &corev1.ServiceList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceList"}},
		"/apis/discovery.k8s.io/v1/endpointslices": &discoveryv1.EndpointSliceList{TypeMeta: metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSliceList"}},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if l, ok := lists[r.URL.Path]; ok {
			_ = json.NewEncoder(w).Encode(l)
			return
		}
		if f := cnp[r.URL.Path]; f != nil {
			f(w)
			return
		}
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(&metav1.Status{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Status"},
			Status: metav1.StatusFailure, Code: http.StatusNotFound, Reason: metav1.StatusReasonNotFound, Message: "the server could not find the requested resource"})
	}))
	t.Cleanup(srv.Close)
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["fake"] = &clientcmdapi.Cluster{Server: srv.URL}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{}
	cfg.Contexts["fake"] = &clientcmdapi.Context{Cluster: "fake", AuthInfo: "u"}
	cfg.CurrentContext = "fake"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, clientcmd.WriteToFile(*cfg, path))
	return path
}

func jsonAnswer(code int, v any) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(v)
	}
}

// alpha2Only answers discovery and lists as a cluster whose CRD serves
// ClusterNetworkPolicy only as v1alpha2, holding an Admin Deny of all
// traffic between pods.
func alpha2Only() map[string]func(http.ResponseWriter) {
	all := metav1.LabelSelector{}
	return map[string]func(http.ResponseWriter){
		"/apis/policy.networking.k8s.io/v1alpha2": jsonAnswer(200, &metav1.APIResourceList{
			TypeMeta:     metav1.TypeMeta{APIVersion: "v1", Kind: "APIResourceList"},
			GroupVersion: "policy.networking.k8s.io/v1alpha2",
			APIResources: []metav1.APIResource{{Name: "clusternetworkpolicies", Kind: "ClusterNetworkPolicy", Verbs: []string{"get", "list", "watch"}}},
		}),
		"/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies": jsonAnswer(200, &npav1alpha2.ClusterNetworkPolicyList{
			TypeMeta: metav1.TypeMeta{APIVersion: "policy.networking.k8s.io/v1alpha2", Kind: "ClusterNetworkPolicyList"},
			Items: []npav1alpha2.ClusterNetworkPolicy{{
				ObjectMeta: metav1.ObjectMeta{Name: "deny-all"},
				Spec: npav1alpha2.ClusterNetworkPolicySpec{
					Tier: npav1alpha2.AdminTier, Priority: 1,
					Subject: npav1alpha2.ClusterNetworkPolicySubject{Namespaces: &all},
					Ingress: []npav1alpha2.ClusterNetworkPolicyIngressRule{{
						Action: npav1alpha2.ClusterNetworkPolicyRuleActionDeny,
						From:   []npav1alpha2.ClusterNetworkPolicyIngressPeer{{Namespaces: &all}},
					}},
				},
			}},
		}),
	}
}

// TestExplain_LiveReadsWhicheverCNPVersionIsServed: live explain reads
// ClusterNetworkPolicies from a cluster that serves them only as v1alpha2
// (network-policy-api v0.2.x) and judges by them, as offline explain does;
// a cluster without the CRD (404) has none.
func TestExplain_LiveReadsWhicheverCNPVersionIsServed(t *testing.T) {
	t.Parallel()
	kc := fakeAPI(t, alpha2Only())
	out, err := run(t, "explain", "--kubeconfig", kc, "x/a", "x/b", "--port", "80")
	assert.Equal(t, exitFindings, exitCodeOf(err), "%v\n%s", err, out)
	assert.Contains(t, out, "DENIED")
	assert.Contains(t, out, "Admin ClusterNetworkPolicy deny-all")

	kc = fakeAPI(t, nil)
	out, err = run(t, "explain", "--kubeconfig", kc, "x/a", "x/b", "--port", "80")
	require.NoError(t, err, out)
	assert.Contains(t, out, "ALLOWED")
}

// TestExplain_LiveDiscoveryFailureIsAnError: when discovery of the
// ClusterNetworkPolicy API fails with a 500, live explain and compile do
// not judge without the CNPs (they would say ALLOWED where the Deny above
// denies): they exit 3 naming the failure.
func TestExplain_LiveDiscoveryFailureIsAnError(t *testing.T) {
	t.Parallel()
	cnp := alpha2Only()
	cnp["/apis/policy.networking.k8s.io/v1beta1"] = jsonAnswer(http.StatusInternalServerError, &metav1.Status{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Status"},
		Status:   metav1.StatusFailure, Code: http.StatusInternalServerError, Reason: metav1.StatusReasonInternalError,
		Message: "Internal error occurred: etcd is sad",
	})
	kc := fakeAPI(t, cnp)
	for _, args := range [][]string{{"explain", "x/a", "x/b", "--port", "80"}, {"compile", "--node", "node-1"}} {
		out, err := run(t, append(args, "--kubeconfig", kc)...)
		require.Error(t, err, "%v: %s", args, out)
		assert.Equal(t, exitFailed, exitCodeOf(err), "%v: %v", args, err)
		assert.Contains(t, err.Error(), "cannot tell whether the cluster serves ClusterNetworkPolicies", args)
		assert.Contains(t, err.Error(), "etcd is sad", args)
		assert.False(t, strings.Contains(out, "ALLOWED"), "%v printed a verdict: %s", args, out)
	}
}
