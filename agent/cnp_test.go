package agent_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	npaclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"
	"sigs.k8s.io/yaml"

	"github.com/policyd/policyd/agent"
	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/internal/apiservertest"
	"github.com/policyd/policyd/policy/model"
	"github.com/policyd/policyd/policy/nft"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/policy/trace"
)

// ClusterNetworkPolicies are cluster-scoped and their CRD is cluster-wide,
// so these tests each run a kube-apiserver of their own rather than the
// package's shared one.

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// installCNPCRD creates the ClusterNetworkPolicy CRD shipped with the
// sigs.k8s.io/network-policy-api module policyd builds against (its
// experimental channel: v1beta1 stored, v1alpha2 served beside it), with
// the dynamic client, and waits until it is established and discovery
// serves policy.networking.k8s.io/v1beta1.
func installCNPCRD(t testing.TB, s *apiservertest.Server) {
	t.Helper()
	applyCRD(t, s, shippedCNPCRD(t), npav1beta1.GroupVersion.String())
}

// installCNPCRDAlpha2Only creates the CRD as network-policy-api v0.2.x
// ships it: ClusterNetworkPolicy served and stored as v1alpha2 only.
func installCNPCRDAlpha2Only(t testing.TB, s *apiservertest.Server) {
	t.Helper()
	crd := shippedCNPCRD(t)
	versions, _, err := unstructured.NestedSlice(crd.Object, "spec", "versions")
	require.NoError(t, err)
	var kept []interface{}
	for _, v := range versions {
		m := v.(map[string]interface{})
		if m["name"] == "v1alpha2" {
			m["storage"], m["served"] = true, true
			kept = append(kept, m)
		}
	}
	require.Len(t, kept, 1, "the shipped CRD has no v1alpha2 version")
	require.NoError(t, unstructured.SetNestedSlice(crd.Object, kept, "spec", "versions"))
	applyCRD(t, s, crd, "policy.networking.k8s.io/v1alpha2")
	_, err = s.Client().Discovery().ServerResourcesForGroupVersion(npav1beta1.GroupVersion.String())
	require.True(t, apierrors.IsNotFound(err), "v1beta1 is still served: %v", err)
}

func shippedCNPCRD(t testing.TB) *unstructured.Unstructured {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/network-policy-api").Output()
	require.NoError(t, err, "go list -m sigs.k8s.io/network-policy-api")
	b, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "config/crd/experimental/policy.networking.k8s.io_clusternetworkpolicies.yaml"))
	require.NoError(t, err)
	js, err := yaml.YAMLToJSON(b)
	require.NoError(t, err)
	crd := &unstructured.Unstructured{}
	require.NoError(t, crd.UnmarshalJSON(js))
	return crd
}

// applyCRD creates crd, or replaces the spec of the one of its name (an
// upgrade), and waits until it is established and discovery serves gv.
func applyCRD(t testing.TB, s *apiservertest.Server, crd *unstructured.Unstructured, gv string) {
	t.Helper()
	dyn, err := dynamic.NewForConfig(s.AdminConfig())
	require.NoError(t, err)
	ctx := context.Background()
	cur, err := dyn.Resource(crdGVR).Get(ctx, crd.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = dyn.Resource(crdGVR).Create(ctx, crd, metav1.CreateOptions{})
	} else if err == nil {
		cur.Object["spec"] = crd.Object["spec"]
		_, err = dyn.Resource(crdGVR).Update(ctx, cur, metav1.UpdateOptions{})
	}
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		got, err := dyn.Resource(crdGVR).Get(ctx, crd.GetName(), metav1.GetOptions{})
		require.NoError(t, err)
		conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]interface{})
			if m["type"] == "Established" && m["status"] == "True" {
				return true
			}
		}
		return false
	}, 30*time.Second, 50*time.Millisecond, "the ClusterNetworkPolicy CRD was never established")
	require.Eventually(t, func() bool {
		_, err := s.Client().Discovery().ServerResourcesForGroupVersion(gv)
		return err == nil
	}, 30*time.Second, 50*time.Millisecond, "discovery never served %s", gv)
}

// cnpPod is one pod of cnpCluster.
type cnpPod struct {
	ns, name, node, ip string
	labels             map[string]string
}

// cnpCluster is a private API server with two namespaces (a and b), a
// server pod on node-1 and a client pod on node-2 in each, a Node object
// for `nodes` peers, and an agent for node-1 under the shipped RBAC, with
// the Fake backend and an event recorder.
type cnpCluster struct {
	t     *testing.T
	s     *apiservertest.Server
	admin kubernetes.Interface
	cnp   npaclient.Interface
	a, b  string // namespaces
	pods  []cnpPod
	fake  *nft.Fake
	agent *testAgent
}

const infraNodeIP = "10.200.0.5"

// newCNPCluster starts the server; crdFirst installs the CRD before the
// agent starts.
func newCNPCluster(t *testing.T, crdFirst bool) *cnpCluster {
	t.Helper()
	if crdFirst {
		return newCNPClusterWith(t, installCNPCRD)
	}
	return newCNPClusterWith(t, nil)
}

// newCNPClusterWith starts the server; install, when set, installs a CRD
// before the agent starts.
func newCNPClusterWith(t *testing.T, install func(testing.TB, *apiservertest.Server)) *cnpCluster {
	t.Helper()
	s := apiservertest.Start(t)
	cc := &cnpCluster{t: t, s: s, admin: s.Client(), fake: nft.NewFake()}
	var err error
	cc.cnp, err = npaclient.NewForConfig(s.AdminConfig())
	require.NoError(t, err)
	cc.a, cc.b = s.Namespace(t), s.Namespace(t)
	relabelNamespace(t, cc.admin, cc.a, map[string]string{"team": "a"})
	relabelNamespace(t, cc.admin, cc.b, map[string]string{"team": "b"})
	cc.pods = []cnpPod{
		{cc.a, "server", "node-1", "10.77.1.10", map[string]string{"app": "server"}},
		{cc.a, "client", "node-2", "10.77.1.11", map[string]string{"app": "client"}},
		{cc.b, "server", "node-1", "10.77.1.20", map[string]string{"app": "server"}},
		{cc.b, "client", "node-2", "10.77.1.21", map[string]string{"app": "client"}},
	}
	for _, p := range cc.pods {
		createPod(t, cc.admin, newPod(p.ns, p.name, p.node, p.labels), p.ip)
	}
	n, err := cc.admin.CoreV1().Nodes().Create(context.Background(), &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "infra-1", Labels: map[string]string{"role": "infra"}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: infraNodeIP}}
	_, err = cc.admin.CoreV1().Nodes().UpdateStatus(context.Background(), n, metav1.UpdateOptions{})
	require.NoError(t, err)
	if install != nil {
		install(t, s)
	}
	cfg := agentRESTConfig(t, s) // the shipped ServiceAccount and ClusterRole
	client, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	br := record.NewBroadcaster()
	br.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	t.Cleanup(br.Shutdown)
	rec := br.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "policyd", Host: "node-1"})
	cc.agent = startAgent(t, cfg, "node-1", cc.fake, func(c *agent.Config) { c.Recorder = rec })
	cc.agent.waitReady()
	return cc
}

func (cc *cnpCluster) addr(ns, name string) string {
	for _, p := range cc.pods {
		if p.ns == ns && p.name == name {
			return p.ip
		}
	}
	cc.t.Fatalf("no pod %s/%s", ns, name)
	return ""
}

// allowed traces a TCP/80 connection from src to dst through node-1's
// committed table; an endpoint on node-1 is named by the pod's node.
func (cc *cnpCluster) allowed(src, dst string) bool {
	cc.t.Helper()
	ep := func(ip string) trace.Endpoint {
		e := trace.Endpoint{Addr: netip.MustParseAddr(ip)}
		for _, p := range cc.pods {
			if p.ip == ip && p.node == "node-1" {
				e.Node = "node-1"
			}
		}
		return e
	}
	rs := cc.fake.Ruleset()
	require.NotNil(cc.t, rs)
	_, ok, err := trace.Path(map[string]*ruleset.Ruleset{"node-1": rs}, ep(src), ep(dst), 6, 80)
	require.NoError(cc.t, err)
	return ok
}

// check requires node-1's committed table to decide every TCP/80 connection
// that node-1 judges (from or to its pods, and from its pods to the infra
// node) as the model decides on the API server's current objects: egress
// where the source is on node-1, ingress where the destination is.
func (cc *cnpCluster) check(step string) {
	t := cc.t
	t.Helper()
	snap, _ := apiClusterSnapshot(t, cc.admin, cc.cnp, cc.a, cc.b)
	type endpoint struct {
		name, ip, node string
		pod            *cluster.Pod
	}
	var eps []endpoint
	for _, p := range cc.pods {
		eps = append(eps, endpoint{key(p.ns, p.name), p.ip, p.node, snap.Pod(key(p.ns, p.name))})
	}
	dsts := append(slices.Clone(eps), endpoint{name: "node/infra-1", ip: infraNodeIP})
	bad := 0
	var rows []string
	for _, src := range eps {
		for _, dst := range dsts {
			if src.name == dst.name || (src.node != "node-1" && dst.node != "node-1") {
				continue
			}
			d := model.Evaluate(snap, model.Packet{
				Src: model.Endpoint{Pod: src.pod, IP: netip.MustParseAddr(src.ip)}, Dst: model.Endpoint{Pod: dst.pod, IP: netip.MustParseAddr(dst.ip)},
				Protocol: cluster.ProtocolTCP, Port: 80,
			})
			want := true
			if src.node == "node-1" {
				want = want && d.Egress.Allowed
			}
			if dst.node == "node-1" {
				want = want && d.Ingress.Allowed
			}
			got := cc.allowed(src.ip, dst.ip)
			mark := "ok"
			if got != want {
				bad++
				mark = "MISMATCH"
			}
			rows = append(rows, mark+" "+src.name+" -> "+dst.name+": model "+verdict(want)+", table "+verdict(got))
		}
	}
	if bad > 0 {
		t.Fatalf("%s: node-1's committed table disagrees with the model of the API state on %d connections:\n%s", step, bad, strings.Join(rows, "\n"))
	}
	t.Logf("%s: %d connections agree with the model", step, len(rows))
}

func verdict(ok bool) string {
	if ok {
		return "allowed"
	}
	return "denied"
}

// apply creates or replaces a ClusterNetworkPolicy and waits until the agent
// committed it.
func (cc *cnpCluster) apply(p *npav1beta1.ClusterNetworkPolicy) *npav1beta1.ClusterNetworkPolicy {
	cc.t.Helper()
	ctx := context.Background()
	c := cc.cnp.PolicyV1beta1().ClusterNetworkPolicies()
	var out *npav1beta1.ClusterNetworkPolicy
	cur, err := c.Get(ctx, p.Name, metav1.GetOptions{})
	switch {
	case err == nil:
		p = p.DeepCopy()
		p.ResourceVersion = cur.ResourceVersion
		out, err = c.Update(ctx, p, metav1.UpdateOptions{})
	case apierrors.IsNotFound(err):
		out, err = c.Create(ctx, p, metav1.CreateOptions{})
	}
	require.NoError(cc.t, err)
	cc.agent.waitFor("ClusterNetworkPolicy", out.Name, out.ResourceVersion)
	return out
}

func (cc *cnpCluster) delete(name string) {
	cc.t.Helper()
	require.NoError(cc.t, cc.cnp.PolicyV1beta1().ClusterNetworkPolicies().Delete(context.Background(), name, metav1.DeleteOptions{}))
	cc.agent.waitFor("ClusterNetworkPolicy", name, "")
}

// ingressCNP builds an Admin (or Baseline) policy whose subject is the
// namespaces labelled subjectTeam and whose one ingress rule takes action on
// traffic from the namespaces labelled fromTeam.
func ingressCNP(name string, tier npav1beta1.Tier, priority int32, subjectTeam string, action npav1beta1.ClusterNetworkPolicyRuleAction, fromTeam string) *npav1beta1.ClusterNetworkPolicy {
	return &npav1beta1.ClusterNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: npav1beta1.ClusterNetworkPolicySpec{
			Tier: tier, Priority: priority,
			Subject: npav1beta1.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{MatchLabels: map[string]string{"team": subjectTeam}}},
			Ingress: []npav1beta1.ClusterNetworkPolicyIngressRule{{
				Action: action,
				From:   []npav1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{MatchLabels: map[string]string{"team": fromTeam}}}},
			}},
		},
	}
}

// TestAgent_CNPCRDInstalledAfterStart: an agent started on a cluster without
// the ClusterNetworkPolicy CRD is ready on its other informers; once the
// CRD is installed and a CNP created, the agent enforces it without a
// restart.
func TestAgent_CNPCRDInstalledAfterStart(t *testing.T) {
	cc := newCNPCluster(t, false)
	require.True(t, cc.agent.a.Ready(), "the agent must be ready without the CRD")
	bClient, aServer := cc.addr(cc.b, "client"), cc.addr(cc.a, "server")
	require.True(t, cc.allowed(bClient, aServer), "nothing isolates a/server yet")

	installCNPCRD(t, cc.s)
	cc.apply(ingressCNP("deny-b-to-a", npav1beta1.AdminTier, 10, "a", npav1beta1.ClusterNetworkPolicyRuleActionDeny, "b"))
	assert.False(t, cc.allowed(bClient, aServer), "the CNP created after the CRD appeared is not enforced")
	cc.check("after the CRD and a Deny CNP appeared")
	assert.True(t, cc.agent.a.Ready())
}

// TestAgent_CNPFollowsAPIChanges: with the CRD installed before the agent
// starts, the committed table follows ClusterNetworkPolicy creates, patches
// and deletes, the namespace and pod relabels that change a CNP's subject,
// and a Node behind a `nodes` peer, deciding as the model after each step.
func TestAgent_CNPFollowsAPIChanges(t *testing.T) {
	cc := newCNPCluster(t, true)
	ctx := context.Background()
	bClient, aServer, aClient := cc.addr(cc.b, "client"), cc.addr(cc.a, "server"), cc.addr(cc.a, "client")
	cc.check("start")

	deny := cc.apply(ingressCNP("deny-b", npav1beta1.AdminTier, 20, "a", npav1beta1.ClusterNetworkPolicyRuleActionDeny, "b"))
	accept := cc.apply(ingressCNP("accept-b", npav1beta1.AdminTier, 10, "a", npav1beta1.ClusterNetworkPolicyRuleActionAccept, "b"))
	require.True(t, cc.allowed(bClient, aServer), "Accept at priority 10 comes before Deny at 20")
	cc.check("accept 10, deny 20")

	// Swap the priorities: now the Deny comes first.
	deny.Spec.Priority, accept.Spec.Priority = 5, 30
	deny = cc.apply(deny)
	accept = cc.apply(accept)
	require.False(t, cc.allowed(bClient, aServer), "Deny at priority 5 comes before Accept at 30")
	cc.check("priorities swapped")

	// Action change Accept -> Deny on the other one, with the first deleted.
	cc.delete(deny.Name)
	require.True(t, cc.allowed(bClient, aServer))
	accept.Spec.Ingress[0].Action = npav1beta1.ClusterNetworkPolicyRuleActionDeny
	accept = cc.apply(accept)
	require.False(t, cc.allowed(bClient, aServer), "the rule's action changed to Deny")
	cc.check("action Accept -> Deny")
	cc.delete(accept.Name)

	// Pass hands over to NetworkPolicy: a Baseline Deny of everything from b
	// applies only where no NetworkPolicy isolates; an Admin Pass for b's
	// traffic to a defers to a's NetworkPolicy, which admits app=client.
	cc.apply(ingressCNP("baseline-deny-b", npav1beta1.BaselineTier, 10, "a", npav1beta1.ClusterNetworkPolicyRuleActionDeny, "b"))
	cc.apply(ingressCNP("admin-deny-b", npav1beta1.AdminTier, 50, "a", npav1beta1.ClusterNetworkPolicyRuleActionDeny, "b"))
	require.False(t, cc.allowed(bClient, aServer))
	np := applyPolicy(t, cc.admin, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: cc.a, Name: "clients"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{
				PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}},
				NamespaceSelector: &metav1.LabelSelector{},
			}}}},
		},
	})
	cc.agent.waitFor("NetworkPolicy", key(cc.a, "clients"), np.ResourceVersion)
	require.False(t, cc.allowed(bClient, aServer), "the Admin Deny still comes before the NetworkPolicy")
	cc.apply(ingressCNP("admin-pass-b", npav1beta1.AdminTier, 40, "a", npav1beta1.ClusterNetworkPolicyRuleActionPass, "b"))
	require.True(t, cc.allowed(bClient, aServer), "Pass skips the Admin Deny; the NetworkPolicy admits app=client")
	cc.check("Admin Pass hands over to a NetworkPolicy")

	// Namespace relabel: b is no longer team=b, so no CNP rule matches it,
	// and a no longer the subject when it stops being team=a.
	ns := relabelNamespace(t, cc.admin, cc.a, map[string]string{"team": "a2"})
	cc.agent.waitFor("Namespace", cc.a, ns.ResourceVersion)
	cc.check("subject namespace relabelled away")
	ns = relabelNamespace(t, cc.admin, cc.a, map[string]string{"team": "a"})
	cc.agent.waitFor("Namespace", cc.a, ns.ResourceVersion)
	cc.check("subject namespace relabelled back")

	// Pod relabel: a CNP whose subject is app=server pods of team=a; the
	// server loses the label and is no longer a subject.
	cc.apply(&npav1beta1.ClusterNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "servers-deny-a-clients"},
		Spec: npav1beta1.ClusterNetworkPolicySpec{
			Tier: npav1beta1.AdminTier, Priority: 1,
			Subject: npav1beta1.ClusterNetworkPolicySubject{Pods: &npav1beta1.NamespacedPod{
				NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}},
				PodSelector:       metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}},
			}},
			Ingress: []npav1beta1.ClusterNetworkPolicyIngressRule{{
				Action: npav1beta1.ClusterNetworkPolicyRuleActionDeny,
				From: []npav1beta1.ClusterNetworkPolicyIngressPeer{{Pods: &npav1beta1.NamespacedPod{
					NamespaceSelector: metav1.LabelSelector{},
					PodSelector:       metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}},
				}}},
			}},
		},
	})
	require.False(t, cc.allowed(aClient, aServer))
	cc.check("pod-subject CNP")
	p := relabelPod(t, cc.admin, cc.a, "server", map[string]string{"app": "server-retired"})
	cc.agent.waitFor("Pod", key(cc.a, "server"), p.ResourceVersion)
	require.True(t, cc.allowed(aClient, aServer), "a/server is no longer app=server: no CNP or NetworkPolicy selects it")
	cc.check("subject pod relabelled")

	// A nodes egress peer: a's pods may not reach role=infra nodes; the
	// Node's relabel lifts it.
	require.True(t, cc.allowed(aServer, infraNodeIP))
	cc.apply(&npav1beta1.ClusterNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "no-infra"},
		Spec: npav1beta1.ClusterNetworkPolicySpec{
			Tier: npav1beta1.AdminTier, Priority: 2,
			Subject: npav1beta1.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}},
			Egress: []npav1beta1.ClusterNetworkPolicyEgressRule{{
				Action: npav1beta1.ClusterNetworkPolicyRuleActionDeny,
				To:     []npav1beta1.ClusterNetworkPolicyEgressPeer{{Nodes: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "infra"}}}},
			}},
		},
	})
	require.False(t, cc.allowed(aServer, infraNodeIP), "egress to the role=infra node is denied")
	require.True(t, cc.allowed(cc.addr(cc.b, "server"), infraNodeIP), "b is not the subject")
	cc.check("nodes egress peer")
	n, err := cc.admin.CoreV1().Nodes().Get(ctx, "infra-1", metav1.GetOptions{})
	require.NoError(t, err)
	n.Labels = map[string]string{"role": "batch"}
	n, err = cc.admin.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
	require.NoError(t, err)
	cc.agent.waitFor("Node", "infra-1", n.ResourceVersion)
	require.True(t, cc.allowed(aServer, infraNodeIP), "the node is no longer role=infra")
	cc.check("node relabelled")
}

// TestAgent_CNPInvalidAndAmbiguousReportedAsEvents: a ClusterNetworkPolicy
// the CRD accepts but policyd cannot enforce as written gets a Warning Event
// naming the field, and two CNPs of one tier with one priority each get an
// Event saying the order is undefined and policyd orders by name; the
// metrics count them.
func TestAgent_CNPInvalidAndAmbiguousReportedAsEvents(t *testing.T) {
	cc := newCNPCluster(t, true)
	bad := ingressCNP("bad-peer", npav1beta1.AdminTier, 7, "a", npav1beta1.ClusterNetworkPolicyRuleActionDeny, "b")
	bad.Spec.Ingress[0].From[0].Namespaces.MatchLabels = map[string]string{"team": "not a label value!"}
	cc.apply(bad)
	assert.False(t, cc.allowed(cc.addr(cc.b, "client"), cc.addr(cc.a, "server")), "an invalid Deny rule denies its whole direction")
	cc.check("invalid Deny CNP")

	cc.apply(ingressCNP("same-1", npav1beta1.BaselineTier, 3, "b", npav1beta1.ClusterNetworkPolicyRuleActionAccept, "a"))
	cc.apply(ingressCNP("same-2", npav1beta1.BaselineTier, 3, "b", npav1beta1.ClusterNetworkPolicyRuleActionDeny, "a"))

	event := func(reason, name string) *corev1.Event {
		var found *corev1.Event
		require.Eventually(t, func() bool {
			evs, err := cc.admin.CoreV1().Events(metav1.NamespaceDefault).List(context.Background(), metav1.ListOptions{})
			require.NoError(t, err)
			for i, e := range evs.Items {
				if e.Reason == reason && e.InvolvedObject.Name == name {
					found = &evs.Items[i]
					return true
				}
			}
			return false
		}, 30*time.Second, 100*time.Millisecond, "no %s event on %s", reason, name)
		assert.Equal(t, corev1.EventTypeWarning, found.Type)
		assert.Equal(t, "ClusterNetworkPolicy", found.InvolvedObject.Kind)
		assert.Equal(t, "policy.networking.k8s.io/v1beta1", found.InvolvedObject.APIVersion)
		return found
	}
	ev := event("InvalidClusterNetworkPolicy", "bad-peer")
	assert.Contains(t, ev.Message, "spec.ingress[0].from[0].namespaces")
	for _, name := range []string{"same-1", "same-2"} {
		ev := event("AmbiguousClusterNetworkPolicyPriority", name)
		assert.Contains(t, ev.Message, "Baseline tier priority 3")
		assert.Contains(t, ev.Message, "policyd orders them by name (same-1, then same-2)")
	}
	cc.check("same-priority CNPs, ordered by name")

	metrics := cc.agent.a.Handler()
	body := scrape(t, metrics)
	assert.Contains(t, body, `policyd_objects{kind="clusternetworkpolicies"} 3`)
	assert.Contains(t, body, `policyd_objects{kind="invalid_clusternetworkpolicies"} 1`)
	assert.Contains(t, body, `policyd_objects{kind="nodes"} 1`)
}

// scrape returns what /metrics serves.
func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	return rec.Body.String()
}
