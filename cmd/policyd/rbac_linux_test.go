package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/policyd/policyd/internal/apiservertest"
)

// TestExplain_LiveWithTheRightsItIsGiven: explain run by accounts that are
// not cluster-admin. Bound to the shipped read-only role
// (deploy/cli/explain-rbac.yaml) it answers without a warning; with only
// namespaces, pods and NetworkPolicies it still answers, warning about each
// kind it could not read; without pods it fails naming the role.
func TestExplain_LiveWithTheRightsItIsGiven(t *testing.T) {
	s := apiservertest.Shared(t)
	ns := s.Namespace(t)
	c, ctx := s.Client(), t.Context()
	createLivePods(t, s, ns, map[string]string{"web": "10.88.2.1", "client": "10.88.2.2"})
	_, err := c.NetworkingV1().NetworkPolicies(ns).Create(ctx, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-deny"},
		Spec:       networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "cli", "explain-rbac.yaml"))
	require.NoError(t, err)
	var shipped rbacv1.ClusterRole
	require.NoError(t, yaml.UnmarshalStrict(raw, &shipped))
	narrow := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"namespaces", "pods"}, Verbs: []string{"list"}},
		{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: []string{"list"}},
		{APIGroups: []string{"policy.networking.k8s.io"}, Resources: []string{"clusternetworkpolicies"}, Verbs: []string{"list"}},
	}
	// A Deployment whose pods are web (no controller runs here: the pod
	// was created above with its labels).
	one := int32(1)
	_, err = c.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}}}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	explainAs := func(account string, rules []rbacv1.PolicyRule, ends ...string) (stdout, stderr string, code int) {
		t.Helper()
		kc := accountKubeconfig(t, s, ns, account, rules)
		var out, errOut bytes.Buffer
		cmd := newRootCommand()
		cmd.SetOut(&out)
		cmd.SetErr(&errOut)
		if len(ends) == 0 {
			ends = []string{ns + "/client", ns + "/web"}
		}
		cmd.SetArgs(append([]string{"explain", "--kubeconfig", kc, "-n", ns, "--port", "80"}, ends...))
		err := cmd.Execute()
		if err != nil {
			errOut.WriteString(err.Error())
		}
		return out.String(), errOut.String(), exitCodeOf(err)
	}

	out, errOut, code := explainAs("reader", shipped.Rules)
	assert.Equal(t, 1, code, "web-deny denies client -> web:\n%s%s", out, errOut)
	assert.Contains(t, out, "DENIED")
	assert.NotContains(t, errOut, "warning:", "the shipped role reads everything explain reads")

	// deploy/NAME as an end reads the Deployment's selector with get, which
	// the shipped role grants and the narrow one does not.
	out, errOut, code = explainAs("reader-workload", shipped.Rules, "client", "deploy/web")
	assert.Equal(t, 1, code, "%s%s", out, errOut)
	assert.Contains(t, out, "DENIED  "+ns+"/client -> "+ns+"/web")
	out, errOut, code = explainAs("narrow-workload", narrow, "client", "deploy/web")
	assert.Equal(t, 3, code, "%s%s", out, errOut)
	assert.Contains(t, errOut, "reading deployment "+ns+"/web")
	assert.Contains(t, errOut, "deploy/cli/explain-rbac.yaml")

	out, errOut, code = explainAs("narrow", narrow)
	assert.Equal(t, 1, code, "%s%s", out, errOut)
	assert.Contains(t, out, "DENIED")
	for _, kind := range []string{"nodes", "services", "endpointslices"} {
		assert.Contains(t, errOut, "warning: cannot list "+kind+" (forbidden)")
	}

	out, errOut, code = explainAs("nothing", nil)
	assert.Equal(t, 3, code, "%s%s", out, errOut)
	assert.Contains(t, errOut, "deploy/cli/explain-rbac.yaml")
}

// accountKubeconfig creates ServiceAccount ns/name bound to a ClusterRole
// of rules and writes a kubeconfig that authenticates as it alone.
func accountKubeconfig(t *testing.T, s *apiservertest.Server, ns, name string, rules []rbacv1.PolicyRule) string {
	t.Helper()
	c, ctx := s.Client(), t.Context()
	_, err := c.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	require.NoError(t, err)
	role := ns + "-" + name
	_, err = c.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: role}, Rules: rules}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = c.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = c.RbacV1().ClusterRoleBindings().Delete(t.Context(), role, metav1.DeleteOptions{})
		_ = c.RbacV1().ClusterRoles().Delete(t.Context(), role, metav1.DeleteOptions{})
	})
	rc, err := s.ServiceAccountConfig(ctx, ns, name)
	require.NoError(t, err)
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: rc.Host, CertificateAuthorityData: rc.CAData}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: rc.BearerToken}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: name, Namespace: ns}
	cfg.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, clientcmd.WriteToFile(*cfg, path))
	return path
}
