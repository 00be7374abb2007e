package runner_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/policyd/policyd/conformance/lab"
	"github.com/policyd/policyd/conformance/runner"
	"github.com/policyd/policyd/internal/netnstest"
)

// serviceScenario: shop/web (node-1) and two api backends, api1 on node-1
// serving "http" on 8080 and api2 on node-2 serving it on 9090, behind a
// ClusterIP Service, a NodePort Service (externalTrafficPolicy Cluster)
// and a LoadBalancer Service (Local, at 10.250.0.10), all by targetPort
// "http". The api pods admit shop/web and the external client's /32 only.
func serviceScenario() []runner.Scenario {
	pod := func(name, node, app string, port int32) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: map[string]string{"app": app}},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: port, Protocol: corev1.ProtocolTCP}}}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning},
		}
	}
	pods := []*corev1.Pod{pod("web", "node-1", "web", 80), pod("api1", "node-1", "api", 8080), pod("api2", "node-2", "api", 9090)}
	nss := []*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"kubernetes.io/metadata.name": "shop"}}}}
	svc := func(name string, typ corev1.ServiceType, etp corev1.ServiceExternalTrafficPolicy, lb string) *corev1.Service {
		s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}, Spec: corev1.ServiceSpec{
			Type: typ, ExternalTrafficPolicy: etp, Selector: map[string]string{"app": "api"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("http")}}}}
		if lb != "" {
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: lb}}
		}
		return s
	}
	svcs := []*corev1.Service{
		svc("api", corev1.ServiceTypeClusterIP, "", ""),
		svc("api-np", corev1.ServiceTypeNodePort, corev1.ServiceExternalTrafficPolicyCluster, ""),
		svc("api-lb", corev1.ServiceTypeLoadBalancer, corev1.ServiceExternalTrafficPolicyLocal, "10.250.0.10"),
	}
	pol := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "api"}, Spec: networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
			{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
			{IPBlock: &networkingv1.IPBlock{CIDR: lab.ExternalClientAddr.String() + "/32"}},
		}}},
	}}
	webOnly := pol.DeepCopy()
	webOnly.Spec.Ingress[0].From = webOnly.Spec.Ingress[0].From[:1]
	return []runner.Scenario{{Name: "services", Steps: []runner.Step{
		{Name: "without policies", Namespaces: nss, Pods: pods, Policies: []*networkingv1.NetworkPolicy{}, Services: svcs},
		{Name: "api admits web and the client", Namespaces: nss, Pods: pods, Policies: []*networkingv1.NetworkPolicy{pol}, Services: svcs},
		{Name: "api admits web only", Namespaces: nss, Pods: pods, Policies: []*networkingv1.NetworkPolicy{webOnly}, Services: svcs},
	}}}
}

// TestRun_ServicesAgreeWithExplain runs serviceScenario in both CNI shapes:
// every probe through a Service (ClusterIP, NodePort at each entry node,
// load-balancer IP), pinned to each backend explain lists, must observe
// what explain says. With the policy, a backend reached through another
// node under Cluster sees that node's address and is denied; entering at
// its own node, or under Local, it sees the client and is allowed; once
// the client's /32 is gone, every external probe is denied (also at the
// backend's own node: policyd judges before the masquerade).
func TestRun_ServicesAgreeWithExplain(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, cni := range []lab.CNI{lab.CNIRouted, lab.CNIBridged} {
		t.Run(string(cni), func(t *testing.T) {
			results := run(t, runner.Config{Lab: lab.Config{CNI: cni}}, serviceScenario())
			via := map[string]int{}
			denied := map[string]bool{}
			hairpins := map[bool]int{} // by expected verdict
			for _, r := range results {
				assert.Empty(t, r.Invalid)
				assert.Zero(t, r.Disagree, "step %s", r.Step)
				for _, c := range r.Cells {
					if c.Via == "" {
						continue
					}
					assert.True(t, c.Probed && c.Agrees(), "%s step %s: %+v", cni, r.Step, c)
					kind := strings.Fields(c.Via)[4] // "shop/api TCP/80 (http) via ClusterIP ..."
					via[kind]++
					if r.Index == 1 && !c.Expected {
						denied[c.From+" "+c.Via] = true
					}
					if c.From == c.To {
						hairpins[c.Expected]++
					}
				}
			}
			// Per step: ClusterIP (every Service has one): web and each api
			// pod to both backends, itself included (a hairpin, which the
			// policy judges both ways: api admits only web, so not itself),
			// 6 per Service; NodePort: 2 backends x 2 entry nodes
			// (Cluster), each backend at its own node (Local); the LB IP:
			// the Local backend on the LB's node.
			assert.Equal(t, map[string]int{"ClusterIP": 3 * 3 * 6, "NodePort": 3 * (4 + 2), "external": 3 * 1}, via)
			// Each api pod through each ClusterIP to itself, in 3 steps:
			// allowed without policies, denied (api admits web only) after.
			assert.Equal(t, map[bool]int{true: 3 * 2, false: 2 * 3 * 2}, hairpins, "pods reaching themselves through their Services, in real packets")
			assert.Len(t, denied, 3*2+2, "api1<->api2 through each ClusterIP, and each backend through the other node under Cluster: %v", denied)
		})
	}
}
