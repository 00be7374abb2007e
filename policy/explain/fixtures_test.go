package explain

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/policyd/policyd/cluster"
)

// The fixture cluster, namespace shop:
//
//	shop/web {app=web} node-a 10.0.0.1 fd00::1  declares TCP/80
//	shop/db  {app=db}  node-b 10.0.0.2          declares TCP/5432, UDP/5432
//	shop/node-agent    node-a hostNetwork 192.168.0.1
//
// Policies: db-ingress isolates db for ingress and admits web on TCP/5432;
// web-egress isolates web for egress and admits traffic to db.

type objects struct {
	nss      []*corev1.Namespace
	pods     []*corev1.Pod
	policies []*networkingv1.NetworkPolicy
}

func baseObjects() *objects {
	web := pod("web", "node-a", []corev1.ContainerPort{{ContainerPort: 80, Protocol: corev1.ProtocolTCP}}, "10.0.0.1", "fd00::1")
	db := pod("db", "node-b", []corev1.ContainerPort{{ContainerPort: 5432, Protocol: corev1.ProtocolTCP}, {ContainerPort: 5432, Protocol: corev1.ProtocolUDP}}, "10.0.0.2")
	agent := pod("node-agent", "node-a", nil, "192.168.0.1")
	agent.Spec.HostNetwork = true
	tcp := corev1.ProtocolTCP
	port := intstr.FromInt32(5432)
	return &objects{
		nss:  []*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"kubernetes.io/metadata.name": "shop"}}}},
		pods: []*corev1.Pod{web, db, agent},
		policies: []*networkingv1.NetworkPolicy{
			{
				ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db-ingress"},
				Spec: networkingv1.NetworkPolicySpec{
					PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
					PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
					Ingress: []networkingv1.NetworkPolicyIngressRule{{
						From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}},
						Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
					}},
				},
			},
			{
				ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-egress"},
				Spec: networkingv1.NetworkPolicySpec{
					PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
					PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
					Egress: []networkingv1.NetworkPolicyEgressRule{{
						To: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}}},
					}},
				},
			},
		},
	}
}

func pod(name, node string, ports []corev1.ContainerPort, ips ...string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: map[string]string{"app": name}},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Ports: ports}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	return p
}

// snapshot builds the fixture cluster after applying tweaks to its objects,
// failing the test on any conversion error.
func snapshot(t testing.TB, tweaks ...func(*objects)) *cluster.Snapshot {
	t.Helper()
	o := baseObjects()
	for _, tw := range tweaks {
		tw(o)
	}
	s, errs := cluster.NewSnapshot(o.nss, o.pods, o.policies)
	if len(errs) > 0 {
		t.Fatalf("fixture does not convert: %v", errs)
	}
	return s
}

// cnpSnapshot is the fixture plus ClusterNetworkPolicies and an address
// conflict:
//
//	Admin    admin-pass  (priority 10) subject app=db:  ingress "pass-web": Pass from app=web
//	Baseline base-deny   (priority 5)  every namespace:  ingress "deny-all": Deny from every namespace
//	shop/intruder {app=db} node-b claims db's 10.0.0.2
func cnpSnapshot(t testing.TB) *cluster.Snapshot {
	t.Helper()
	o := baseObjects()
	intruder := pod("intruder", "node-b", nil, "10.0.0.2")
	intruder.Labels["app"] = "db" // selected like db: both claimants decide alike
	o.pods = append(o.pods, intruder)
	s, errs := cluster.NewSnapshot(o.nss, o.pods, o.policies)
	if len(errs) > 0 {
		t.Fatalf("fixture does not convert: %v", errs)
	}
	all := metav1.LabelSelector{}
	cnps := []*npav1beta1.ClusterNetworkPolicy{
		{
			ObjectMeta: metav1.ObjectMeta{Name: "admin-pass"},
			Spec: npav1beta1.ClusterNetworkPolicySpec{
				Tier: npav1beta1.AdminTier, Priority: 10,
				Subject: npav1beta1.ClusterNetworkPolicySubject{Pods: &npav1beta1.NamespacedPod{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}}},
				Ingress: []npav1beta1.ClusterNetworkPolicyIngressRule{{
					Name: "pass-web", Action: npav1beta1.ClusterNetworkPolicyRuleActionPass,
					From: []npav1beta1.ClusterNetworkPolicyIngressPeer{{Pods: &npav1beta1.NamespacedPod{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}}},
				}},
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Name: "base-deny"},
			Spec: npav1beta1.ClusterNetworkPolicySpec{
				Tier: npav1beta1.BaselineTier, Priority: 5,
				Subject: npav1beta1.ClusterNetworkPolicySubject{Namespaces: &all},
				Ingress: []npav1beta1.ClusterNetworkPolicyIngressRule{{
					Name: "deny-all", Action: npav1beta1.ClusterNetworkPolicyRuleActionDeny,
					From: []npav1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: &all}},
				}},
			},
		},
	}
	if errs := s.AddClusterPolicies(cnps, nil); len(errs) > 0 {
		t.Fatalf("cluster policies do not convert: %v", errs)
	}
	return s
}
