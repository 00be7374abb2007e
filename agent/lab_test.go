package agent_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/conformance/lab"
	"github.com/policyd/policyd/conformance/truthtable"
	"github.com/policyd/policyd/internal/apiservertest"
	"github.com/policyd/policyd/internal/netnstest"
	"github.com/policyd/policyd/policy/model"
	"github.com/policyd/policyd/policy/nft"
)

var labNodes = []string{"node-1", "node-2"}

// labCluster is a two-node lab whose pods also exist in the API server, with
// one agent per lab node enforcing inside that node's namespace.
type labCluster struct {
	t      *testing.T
	lab    *lab.Lab
	admin  kubernetes.Interface
	agents []*testAgent
	nss    []string
	keys   []string
}

// newLabCluster builds the lab for pods, creates them in the API server with
// the addresses the lab gave them, and starts one agent per node using
// agentConfig's credentials.
func newLabCluster(t *testing.T, s *apiservertest.Server, agentConfig *rest.Config, nss []string, pods []*corev1.Pod) *labCluster {
	t.Helper()
	return newLabClusterWith(t, s, agentConfig, nss, pods, nil)
}

// newLabClusterWith is newLabCluster with per-node agent options (opts may
// be nil), given the node's network namespace handle.
func newLabClusterWith(t *testing.T, s *apiservertest.Server, agentConfig *rest.Config, nss []string, pods []*corev1.Pod, opts func(node string, ns int) agentOption) *labCluster {
	t.Helper()
	return newLabClusterIn(t, s, agentConfig, nss, pods, opts, nil)
}

// newLabClusterIn is newLabClusterWith where the pods notInAPI names (by
// key) are built in the lab, addresses and all, but not created in the API
// server: pods the CNI has wired that the agent cannot know yet.
func newLabClusterIn(t *testing.T, s *apiservertest.Server, agentConfig *rest.Config, nss []string, pods []*corev1.Pod, opts func(node string, ns int) agentOption, notInAPI map[string]bool) *labCluster {
	t.Helper()
	netnstest.RequireRoot(t)
	ctx := context.Background()
	l, err := lab.New(ctx, lab.Config{CNI: lab.CNIRouted, Nodes: labNodes, RunID: fmt.Sprintf("ag%d", os.Getpid()%1000000)}, pods)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, l.Close()) })
	lc := &labCluster{t: t, lab: l, admin: s.Client(), nss: nss}
	for _, p := range l.PodObjects() {
		if notInAPI[key(p.Namespace, p.Name)] {
			continue
		}
		orig := p.DeepCopy()
		orig.Status = corev1.PodStatus{}
		createPod(t, lc.admin, orig, p.Status.PodIP)
		lc.keys = append(lc.keys, key(p.Namespace, p.Name))
	}
	for _, node := range labNodes {
		h, ok := l.NodeNetNSHandle(node)
		require.True(t, ok)
		b, err := nft.New(nft.Options{NetNS: int(h)})
		require.NoError(t, err)
		var o []agentOption
		if opts != nil {
			o = append(o, opts(node, int(h)))
		}
		lc.agents = append(lc.agents, startAgent(t, agentConfig, node, b, o...))
	}
	for _, a := range lc.agents {
		a.waitReady()
	}
	return lc
}

// check probes every ordered pod pair on TCP and UDP 80 and requires the
// packets to do what the model says of the API server's current state.
func (lc *labCluster) check(step string) {
	t := lc.t
	t.Helper()
	snap := apiSnapshot(t, lc.admin, lc.nss...)
	var probes []lab.Probe
	want := map[lab.Probe]bool{}
	for _, from := range lc.keys {
		for _, to := range lc.keys {
			if from == to {
				continue
			}
			for _, proto := range []cluster.Protocol{cluster.ProtocolTCP, cluster.ProtocolUDP} {
				src, dst := snap.Pod(from), snap.Pod(to)
				sip, _ := src.IP(4)
				dip, _ := dst.IP(4)
				d := model.Evaluate(snap, model.Packet{Src: model.Endpoint{Pod: src, IP: sip}, Dst: model.Endpoint{Pod: dst, IP: dip}, Protocol: proto, Port: 80})
				p := lab.Probe{From: from, To: to, Port: 80, Protocol: proto}
				probes = append(probes, p)
				want[p] = d.Allowed
			}
		}
	}
	exp, obs := truthtable.Tables{}, truthtable.Tables{}
	bad := 0
	for _, r := range lc.lab.ProbeAll(context.Background(), probes) {
		require.Empty(t, r.Err, "lab fault on %s", r.Probe)
		pp := model.PortProto{Port: 80, Protocol: r.Protocol}
		if exp[pp] == nil {
			exp[pp], obs[pp] = truthtable.New(lc.keys), truthtable.New(lc.keys)
		}
		exp[pp].Set(r.From, r.To, want[r.Probe])
		obs[pp].Set(r.From, r.To, r.Observed)
		if r.Observed != want[r.Probe] {
			bad++
		}
	}
	if bad > 0 {
		for pp := range exp {
			_, diff := truthtable.Diff(exp[pp], obs[pp])
			t.Errorf("%s: %s expected (model of the API state) vs observed (packets):\n%s", step, pp, diff)
		}
		t.FailNow()
	}
	t.Logf("%s: %d probes agree with the model", step, len(probes))
}

func (lc *labCluster) wait(kind, key, rv string) { waitAll(lc.agents, kind, key, rv) }

func tcp80() networkingv1.NetworkPolicyPort {
	proto := corev1.ProtocolTCP
	port := intstr.FromInt32(80)
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &port}
}

// TestAgent_LabEnforcesAPIChanges: two agents, each enforcing one lab node
// inside that node's network namespace, follow the API server through policy
// creates, updates and deletes, pod and namespace relabels and pod deletes;
// after each change the packets match the model.
func TestAgent_LabEnforcesAPIChanges(t *testing.T) {
	netnstest.RequireRoot(t)
	s := apiservertest.Shared(t)
	admin := s.Client()
	ctx := context.Background()
	nsA, nsB := s.Namespace(t), s.Namespace(t)
	relabelNamespace(t, admin, nsB, map[string]string{"team": "client"})
	pods := []*corev1.Pod{
		newPod(nsA, "server-1", "node-1", map[string]string{"app": "server"}),
		newPod(nsA, "server-2", "node-2", map[string]string{"app": "server"}),
		newPod(nsB, "client-1", "node-1", map[string]string{"app": "client"}),
		newPod(nsB, "other-2", "node-2", map[string]string{"app": "other"}),
	}
	lc := newLabCluster(t, s, agentRESTConfig(t, s), []string{nsA, nsB}, pods)
	lc.check("no policies")

	deny := applyPolicy(t, admin, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: nsA, Name: "default-deny"},
		Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
	})
	lc.wait("NetworkPolicy", key(nsA, "default-deny"), deny.ResourceVersion)
	lc.check("default-deny ingress in A")

	allow := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: nsA, Name: "allow-clients"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "client"}},
					PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}},
				}},
				Ports: []networkingv1.NetworkPolicyPort{tcp80()},
			}},
		},
	}
	got := applyPolicy(t, admin, allow)
	lc.wait("NetworkPolicy", key(nsA, "allow-clients"), got.ResourceVersion)
	lc.check("allow clients of team=client namespaces on TCP/80")

	p := relabelPod(t, admin, nsB, "other-2", map[string]string{"app": "client"})
	lc.wait("Pod", key(nsB, "other-2"), p.ResourceVersion)
	lc.check("relabel B/other-2 to app=client")

	ns := relabelNamespace(t, admin, nsB, map[string]string{"team": "none"})
	lc.wait("Namespace", nsB, ns.ResourceVersion)
	lc.check("relabel namespace B out of team=client")

	ns = relabelNamespace(t, admin, nsB, map[string]string{"team": "client"})
	lc.wait("Namespace", nsB, ns.ResourceVersion)
	allow.Spec.Ingress[0].Ports = nil // every port and protocol
	got = applyPolicy(t, admin, allow)
	lc.wait("NetworkPolicy", key(nsA, "allow-clients"), got.ResourceVersion)
	lc.check("policy updated to every port, namespace B back in")

	require.NoError(t, admin.NetworkingV1().NetworkPolicies(nsA).Delete(ctx, "default-deny", metav1.DeleteOptions{}))
	lc.wait("NetworkPolicy", key(nsA, "default-deny"), "")
	lc.check("default-deny deleted (allow-clients still isolates the servers)")

	require.NoError(t, admin.CoreV1().Pods(nsB).Delete(ctx, "client-1", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}))
	lc.wait("Pod", key(nsB, "client-1"), "")
	// The pod is gone from the API; its address must have left every set.
	snap := apiSnapshot(t, admin, nsA, nsB)
	require.Nil(t, snap.Pod(key(nsB, "client-1")))
	lc.keys = without(lc.keys, key(nsB, "client-1"))
	lc.check("B/client-1 deleted")

	require.NoError(t, admin.NetworkingV1().NetworkPolicies(nsA).Delete(ctx, "allow-clients", metav1.DeleteOptions{}))
	lc.wait("NetworkPolicy", key(nsA, "allow-clients"), "")
	lc.check("every policy deleted")
}

func without(list []string, s string) []string {
	var out []string
	for _, x := range list {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}
