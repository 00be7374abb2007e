package model_test

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/model"
)

func ExampleEvaluate() {
	pod := func(ns, name, app, ip string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": app}},
			Spec:       corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80}}}}},
			Status:     corev1.PodStatus{PodIPs: []corev1.PodIP{{IP: ip}}},
		}
	}
	http := intstr.FromString("http")
	allowWeb := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "allow-web"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: &http}},
			}},
		},
	}
	s, _ := cluster.NewSnapshot(
		[]*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}},
		[]*corev1.Pod{pod("shop", "web", "web", "10.0.0.1"), pod("shop", "db", "db", "10.0.0.2"), pod("shop", "batch", "batch", "10.0.0.3")},
		[]*networkingv1.NetworkPolicy{allowWeb},
	)
	ep := func(key string) model.Endpoint {
		p := s.Pod(key)
		return model.Endpoint{Pod: p, IP: p.IPs[0]}
	}
	for _, pkt := range []model.Packet{
		{Src: ep("shop/web"), Dst: ep("shop/db"), Protocol: cluster.ProtocolTCP, Port: 80},
		{Src: ep("shop/web"), Dst: ep("shop/db"), Protocol: cluster.ProtocolTCP, Port: 5432},
		{Src: ep("shop/batch"), Dst: ep("shop/db"), Protocol: cluster.ProtocolTCP, Port: 80},
		{Src: model.Endpoint{IP: netip.MustParseAddr("192.0.2.7")}, Dst: ep("shop/web"), Protocol: cluster.ProtocolUDP, Port: 53},
	} {
		d := model.Evaluate(s, pkt)
		fmt.Println(d.Allowed, d.Ingress.Reason)
	}
	// Output:
	// true allowed by shop/allow-web ingress[0] peer 0 port 0
	// false denied: no ingress rule of policy shop/allow-web admits shop/web (10.0.0.1) on TCP/5432; nearest is shop/allow-web ingress[0] peer 0, no port entry matched: peer matched but port TCP/5432 is not in [TCP/http (=80 on shop/db)]
	// false denied: no ingress rule of policy shop/allow-web admits shop/batch (10.0.0.3) on TCP/80; nearest is shop/allow-web ingress[0] no peer entry matched, port 0: port matched but shop/batch (10.0.0.3) matches none of [pods with app=web in namespace shop]
	// true allowed: no policy in namespace shop selects shop/web for ingress, so it is not isolated for ingress
}
