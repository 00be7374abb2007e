package agent_test

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/policyd/policyd/agent"
	"github.com/policyd/policyd/internal/apiservertest"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/ruleset"
)

// eventRecorder returns a recorder posting Events to the shared API server.
func eventRecorder(t *testing.T) record.EventRecorder {
	t.Helper()
	client, err := kubernetes.NewForConfig(agentRESTConfig(t, apiservertest.Shared(t)))
	require.NoError(t, err)
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	t.Cleanup(b.Shutdown)
	return b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "policyd", Host: "node-1"})
}

// waitEvent waits for an Event of reason on the object ns/name and returns
// it.
func waitEvent(t *testing.T, c kubernetes.Interface, ns, name, reason string) corev1.Event {
	t.Helper()
	var found corev1.Event
	require.Eventually(t, func() bool {
		evs, err := c.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{})
		require.NoError(t, err)
		for _, e := range evs.Items {
			if e.Reason == reason && e.InvolvedObject.Name == name {
				found = e
				return true
			}
		}
		return false
	}, 30*time.Second, 100*time.Millisecond, "no %s event on %s/%s", reason, ns, name)
	return found
}

func metricsText(t *testing.T, a *agent.Agent) string {
	t.Helper()
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// refusedPrefix holds the addresses the fake kernel refuses in any set.
var refusedPrefix = netip.MustParsePrefix("10.66.0.0/16")

func blockPolicy(ns, name, cidr string) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: cidr}}},
				Ports: []networkingv1.NetworkPolicyPort{tcp80()},
			}},
		},
	}
}

// TestAgent_RefusedBatchIsBisected (issue 26: one failing object never
// freezes a node): when the kernel refuses every batch that holds one
// policy's value, the agent finds that policy by bisection, quarantines it
// with a Warning Event naming it, commits everything else and stays
// ready; later changes keep reaching the kernel, and a fixed policy is
// enforced again.
func TestAgent_RefusedBatchIsBisected(t *testing.T) {
	rec := eventRecorder(t)
	fc := newFakeCluster(t, func(c *agent.Config) { c.Recorder = rec })
	fc.fake.RefuseElements(func(_ *ruleset.Set, e ruleset.Element) bool {
		return e.Addr.IsValid() && refusedPrefix.Contains(e.Addr)
	})
	// Other policies, before and after the refused one, so that the
	// bisection has something to release.
	for i := range 5 {
		np := applyPolicy(t, fc.admin, blockPolicy(fc.ns, fmt.Sprintf("ok-%d", i), fmt.Sprintf("10.%d.0.0/16", 90+i)))
		fc.agent.waitFor("NetworkPolicy", key(fc.ns, np.Name), np.ResourceVersion)
	}
	bad := applyPolicy(t, fc.admin, blockPolicy(fc.ns, "bad", "10.66.0.0/16"))
	fc.agent.waitFor("NetworkPolicy", key(fc.ns, "bad"), bad.ResourceVersion)
	require.Positive(t, fc.fake.Refused(), "the fake never refused a batch")
	assert.True(t, fc.agent.a.Ready(), "a refused policy does not make the node unready")
	assert.True(t, fc.allowed("10.92.0.7", serverIP), "the other policies are committed")
	assert.True(t, fc.allowed("10.77.0.50", serverIP) == false, "an address no policy admits stays denied")
	assert.False(t, fc.allowed("10.66.0.7", serverIP), "the refused policy is quarantined: its rules admit nothing")
	ev := waitEvent(t, fc.admin, fc.ns, "bad", "PolicyQuarantined")
	assert.Equal(t, corev1.EventTypeWarning, ev.Type)
	assert.Contains(t, ev.Message, "NetworkPolicy "+key(fc.ns, "bad"))
	assert.Contains(t, ev.Message, "the kernel refused")
	assert.Contains(t, ev.Message, "node node-1")
	m := metricsText(t, fc.agent.a)
	assert.Contains(t, m, `policyd_quarantined_objects{kind="NetworkPolicy"} 1`)
	assert.Contains(t, m, `policyd_quarantine_decisions_total{kind="NetworkPolicy",reason="kernel-refused"} 1`)

	// Later changes still reach the kernel.
	np := applyPolicy(t, fc.admin, blockPolicy(fc.ns, "later", "10.99.0.0/16"))
	fc.agent.waitFor("NetworkPolicy", key(fc.ns, "later"), np.ResourceVersion)
	assert.True(t, fc.allowed("10.99.0.7", serverIP))
	assert.False(t, fc.allowed("10.66.0.7", serverIP))

	// The policy fixed: tried again, enforced.
	fixed := applyPolicy(t, fc.admin, blockPolicy(fc.ns, "bad", "10.67.0.0/16"))
	fc.agent.waitFor("NetworkPolicy", key(fc.ns, "bad"), fixed.ResourceVersion)
	assert.True(t, fc.allowed("10.67.0.7", serverIP))
	require.Eventually(t, func() bool {
		return strings.Contains(metricsText(t, fc.agent.a), `policyd_quarantined_objects{kind="NetworkPolicy"} 0`)
	}, 10*time.Second, 50*time.Millisecond)
}

// TestAgent_OverBudgetQuarantined (issue 26: budgets): a tenant's policy
// over the per-object budget is quarantined, loudly, and its pods fail
// closed; an admin's policy created after it reaches the table.
func TestAgent_OverBudgetQuarantined(t *testing.T) {
	rec := eventRecorder(t)
	budget := compile.Budget{Object: compile.Cost{Rules: 50, Elements: 1000, Chains: 50}, Node: compile.Cost{Rules: 5000, Elements: 100000, Chains: 1000}}
	fc := newFakeCluster(t, func(c *agent.Config) { c.Recorder = rec; c.Budget = budget })
	big := blockPolicy(fc.ns, "big", "10.60.0.0/16")
	for i := range 100 {
		big.Spec.Ingress[0].From = append(big.Spec.Ingress[0].From, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: fmt.Sprintf("10.61.%d.0/24", i)}})
	}
	np := applyPolicy(t, fc.admin, big)
	fc.agent.waitFor("NetworkPolicy", key(fc.ns, "big"), np.ResourceVersion)
	ev := waitEvent(t, fc.admin, fc.ns, "big", "PolicyQuarantined")
	assert.Contains(t, ev.Message, "NetworkPolicy "+key(fc.ns, "big"))
	assert.Contains(t, ev.Message, "over the per-object budget of 50")
	assert.False(t, fc.allowed("10.60.0.7", serverIP), "the quarantined policy admits nothing")
	assert.False(t, fc.allowed("10.61.3.7", serverIP))
	assert.True(t, fc.agent.a.Ready())
	admin := applyPolicy(t, fc.admin, blockPolicy(fc.ns, "admin", "10.62.0.0/16"))
	fc.agent.waitFor("NetworkPolicy", key(fc.ns, "admin"), admin.ResourceVersion)
	assert.True(t, fc.allowed("10.62.0.7", serverIP), "a policy within budget, created after, is enforced")
	m := metricsText(t, fc.agent.a)
	assert.Contains(t, m, `policyd_quarantine_decisions_total{kind="NetworkPolicy",reason="object-budget"} 1`)
	assert.Contains(t, m, `policyd_table_budget{dimension="rules"} 5000`)
}
