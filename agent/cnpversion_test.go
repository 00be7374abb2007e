package agent_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	fakediscovery "k8s.io/client-go/discovery/fake"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	npav1alpha2 "sigs.k8s.io/network-policy-api/apis/v1alpha2"
	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	npafake "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned/fake"

	"github.com/policyd/policyd/agent"
	"github.com/policyd/policyd/internal/cnpapi"
	"github.com/policyd/policyd/policy/nft"
)

// alpha2IngressCNP is ingressCNP written as v1alpha2.
func alpha2IngressCNP(name string, priority int32, subjectTeam string, action npav1alpha2.ClusterNetworkPolicyRuleAction, fromTeam string) *npav1alpha2.ClusterNetworkPolicy {
	return &npav1alpha2.ClusterNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: npav1alpha2.ClusterNetworkPolicySpec{
			Tier: npav1alpha2.AdminTier, Priority: priority,
			Subject: npav1alpha2.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{MatchLabels: map[string]string{"team": subjectTeam}}},
			Ingress: []npav1alpha2.ClusterNetworkPolicyIngressRule{{
				Action: action,
				From:   []npav1alpha2.ClusterNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{MatchLabels: map[string]string{"team": fromTeam}}}},
			}},
		},
	}
}

// TestAgent_CNPServedOnlyAsV1alpha2: with the CRD network-policy-api v0.2.x
// ships (ClusterNetworkPolicy served only as v1alpha2), the agent reads
// v1alpha2 and enforces its CNPs: the committed table decides as the model
// of the API state. When the CRD is upgraded to v0.3.0's (v1beta1 stored,
// v1alpha2 still served), the agent switches to v1beta1 with the CNPs in
// force all along, and follows CNPs written in either version.
func TestAgent_CNPServedOnlyAsV1alpha2(t *testing.T) {
	cc := newCNPClusterWith(t, installCNPCRDAlpha2Only)
	ctx := context.Background()
	bClient, aServer := cc.addr(cc.b, "client"), cc.addr(cc.a, "server")
	require.True(t, cc.allowed(bClient, aServer), "nothing isolates a/server yet")
	metrics := cc.agent.a.Handler()
	assert.Contains(t, scrape(t, metrics), `policyd_cnp_api_version{version="policy.networking.k8s.io/v1alpha2"} 1`)

	alpha := cc.cnp.PolicyV1alpha2().ClusterNetworkPolicies()
	deny, err := alpha.Create(ctx, alpha2IngressCNP("deny-b-to-a", 10, "a", npav1alpha2.ClusterNetworkPolicyRuleActionDeny, "b"), metav1.CreateOptions{})
	require.NoError(t, err)
	cc.agent.waitFor("ClusterNetworkPolicy", deny.Name, deny.ResourceVersion)
	require.False(t, cc.allowed(bClient, aServer), "the v1alpha2 Deny is not enforced")
	cc.check("a v1alpha2 Deny")
	pass, err := alpha.Create(ctx, alpha2IngressCNP("pass-b-to-a", 5, "a", npav1alpha2.ClusterNetworkPolicyRuleActionAccept, "b"), metav1.CreateOptions{})
	require.NoError(t, err)
	cc.agent.waitFor("ClusterNetworkPolicy", pass.Name, pass.ResourceVersion)
	require.True(t, cc.allowed(bClient, aServer), "the v1alpha2 Accept at priority 5 comes first")
	cc.check("a v1alpha2 Accept before it")
	require.NoError(t, alpha.Delete(ctx, pass.Name, metav1.DeleteOptions{}))
	cc.agent.waitFor("ClusterNetworkPolicy", pass.Name, "")
	require.False(t, cc.allowed(bClient, aServer))

	// Discover reads the storage version off a real API server's
	// discovery (the StorageVersionHash).
	ans, err := cnpapi.Discover(cc.admin.Discovery())
	require.NoError(t, err)
	assert.Equal(t, cnpapi.Answer{Served: []cnpapi.Version{cnpapi.V1alpha2}, Storage: cnpapi.V1alpha2}, ans)

	// v1beta1 served too, v1alpha2 still stored: the agent stays on the
	// storage version. Every commit from here on must keep the Deny.
	commits := len(cc.agent.commitsSoFar())
	both := shippedCNPCRD(t)
	versions, _, err := unstructured.NestedSlice(both.Object, "spec", "versions")
	require.NoError(t, err)
	for _, v := range versions {
		m := v.(map[string]interface{})
		m["storage"] = m["name"] == "v1alpha2"
	}
	require.NoError(t, unstructured.SetNestedSlice(both.Object, versions, "spec", "versions"))
	applyCRD(t, cc.s, both, npav1beta1.GroupVersion.String())
	ans, err = cnpapi.Discover(cc.admin.Discovery())
	require.NoError(t, err)
	assert.Equal(t, cnpapi.Answer{Served: []cnpapi.Version{cnpapi.V1beta1, cnpapi.V1alpha2}, Storage: cnpapi.V1alpha2}, ans)
	time.Sleep(500 * time.Millisecond) // five discovery rounds
	assert.Contains(t, scrape(t, metrics), `policyd_cnp_api_version{version="policy.networking.k8s.io/v1alpha2"} 1`, "not the storage version")

	// The upgrade to v0.3.0's CRD: v1beta1 becomes the storage version.
	applyCRD(t, cc.s, shippedCNPCRD(t), npav1beta1.GroupVersion.String())
	require.Eventually(t, func() bool {
		return strings.Contains(scrape(t, metrics), `policyd_cnp_api_version{version="policy.networking.k8s.io/v1beta1"} 1`)
	}, 30*time.Second, 50*time.Millisecond, "the agent never switched to v1beta1")
	require.False(t, cc.allowed(bClient, aServer), "the Deny was lost in the switch")
	for _, c := range cc.agent.commitsSoFar()[commits:] {
		for _, ch := range c.Changes {
			assert.False(t, ch.Kind == "ClusterNetworkPolicy" && ch.ResourceVersion == "", "the switch deleted %s", ch.Key)
		}
	}
	cc.apply(ingressCNP("accept-b-to-a", npav1beta1.AdminTier, 1, "a", npav1beta1.ClusterNetworkPolicyRuleActionAccept, "b"))
	require.True(t, cc.allowed(bClient, aServer), "a v1beta1 CNP after the switch is not enforced")
	cc.check("after the switch to v1beta1")
	cc.delete("accept-b-to-a")
	require.False(t, cc.allowed(bClient, aServer))
	assert.True(t, cc.agent.a.Ready())
}

// TestAgent_CNPAlpha2CRDInstalledAfterStart: the v1alpha2-only CRD appearing
// while the agent runs is found by the periodic discovery, and its CNPs are
// enforced.
func TestAgent_CNPAlpha2CRDInstalledAfterStart(t *testing.T) {
	cc := newCNPCluster(t, false)
	installCNPCRDAlpha2Only(t, cc.s)
	deny, err := cc.cnp.PolicyV1alpha2().ClusterNetworkPolicies().Create(context.Background(),
		alpha2IngressCNP("deny-b-to-a", 10, "a", npav1alpha2.ClusterNetworkPolicyRuleActionDeny, "b"), metav1.CreateOptions{})
	require.NoError(t, err)
	cc.agent.waitFor("ClusterNetworkPolicy", deny.Name, deny.ResourceVersion)
	assert.False(t, cc.allowed(cc.addr(cc.b, "client"), cc.addr(cc.a, "server")))
	cc.check("a v1alpha2 CRD installed after start")
}

// failingDiscovery makes the fake clientset's discovery answer 500 while
// fail is set.
func failingDiscovery(c *npafake.Clientset, fail *atomic.Bool) {
	c.PrependReactor("get", "resource", func(k8stesting.Action) (bool, runtime.Object, error) {
		if fail.Load() {
			return true, nil, apierrors.NewInternalError(errors.New("etcd is sad"))
		}
		return false, nil, nil
	})
}

// TestAgent_CNPDiscoveryErrorIsNeverNoCNPs: a discovery failure other than
// 404 is never read as "no ClusterNetworkPolicies". At start, the agent
// waits (no first commit, not ready) and counts the failures; once
// discovery answers it commits with the CNPs. Later failures keep the
// informer and its CNPs, counted.
func TestAgent_CNPDiscoveryErrorIsNeverNoCNPs(t *testing.T) {
	t.Parallel()
	kube := k8sfake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a", Labels: map[string]string{"team": "a"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "b", Labels: map[string]string{"team": "b"}}},
	)
	cnps := npafake.NewClientset(ingressCNP("deny-b-to-a", npav1beta1.AdminTier, 10, "a", npav1beta1.ClusterNetworkPolicyRuleActionDeny, "b"))
	cnps.Discovery().(*fakediscovery.FakeDiscovery).Resources = []*metav1.APIResourceList{{
		GroupVersion: npav1beta1.GroupVersion.String(),
		APIResources: []metav1.APIResource{{Name: cnpapi.Resource, Kind: cnpapi.Kind}},
	}}
	var fail atomic.Bool
	fail.Store(true)
	failingDiscovery(cnps, &fail)
	fake := nft.NewFake()
	a, err := agent.New(agent.Config{
		NodeName: "node-1", Client: kube, CNPClient: cnps, Backend: fake,
		MinSyncInterval: 10 * time.Millisecond, CRDCheckInterval: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("agent.Run: %v", err)
		}
	})
	metrics := a.Handler()
	require.Never(t, func() bool { return fake.Ruleset() != nil || a.Ready() }, 1500*time.Millisecond, 20*time.Millisecond,
		"a table was committed while it was unknown whether CNPs are served")
	require.GreaterOrEqual(t, scrapeCounter(t, metrics, "policyd_cnp_discovery_errors_total"), 2.0, "discovery failures are not counted")

	fail.Store(false)
	require.Eventually(t, a.Ready, 10*time.Second, 20*time.Millisecond)
	require.Contains(t, scrape(t, metrics), `policyd_objects{kind="clusternetworkpolicies"} 1`, "the CNP is not enforced")
	require.NotNil(t, fake.Ruleset())

	fail.Store(true)
	before := scrapeCounter(t, metrics, "policyd_cnp_discovery_errors_total")
	require.Eventually(t, func() bool { return scrapeCounter(t, metrics, "policyd_cnp_discovery_errors_total") >= before+3 }, 10*time.Second, 20*time.Millisecond)
	a.Trigger()
	time.Sleep(100 * time.Millisecond) // a sync or more
	assert.Contains(t, scrape(t, metrics), `policyd_objects{kind="clusternetworkpolicies"} 1`, "a discovery failure dropped the CNPs")
	assert.Contains(t, scrape(t, metrics), `policyd_cnp_api_version{version="policy.networking.k8s.io/v1beta1"} 1`)
}

// commitsSoFar returns the commits the agent made until now.
func (ta *testAgent) commitsSoFar() []agent.Commit {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	return slices.Clone(ta.commits)
}

// scrapeCounter returns the value of the unlabelled metric name.
func scrapeCounter(t *testing.T, h http.Handler, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(scrape(t, h), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err, line)
			return f
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
