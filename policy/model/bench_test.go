package model

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policyd/policyd/cluster"
)

// syntheticCluster builds nsCount namespaces of podsPerNS pods each. Pod i is
// labelled app=app-(i%10); namespace n has a default-deny policy and, per app,
// a policy admitting app-(i+1) from the same namespace on TCP/80 and from
// 10.200.0.0/16 except 10.200.1.0/24 on serve-81-tcp, and allowing egress to
// app-(i+2) in any namespace.
func syntheticCluster(tb testing.TB, nsCount, podsPerNS int) *cluster.Snapshot {
	tb.Helper()
	var nss []*corev1.Namespace
	var pods []*corev1.Pod
	var pols []*networkingv1.NetworkPolicy
	ip := 0
	for n := range nsCount {
		ns := fmt.Sprintf("ns-%d", n)
		nss = append(nss, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"team": fmt.Sprint(n % 3)}}})
		for i := range podsPerNS {
			ip++
			pods = append(pods, newPod(ns, fmt.Sprintf("pod-%d", i), map[string]string{"app": fmt.Sprintf("app-%d", i%10), "idx": fmt.Sprint(i)},
				fmt.Sprintf("10.%d.%d.%d", 1+ip/65536, ip/256%256, ip%256)))
		}
		pols = append(pols, np(ns, "default-deny", types(tIn, tEg)))
		for a := range 10 {
			pols = append(pols, np(ns, fmt.Sprintf("app-%d", a), selecting("app", fmt.Sprintf("app-%d", a)),
				ingress(
					in(peers(podPeer(labelsSel("app", fmt.Sprintf("app-%d", (a+1)%10)))), port(tcp, 80)),
					in(peers(ipPeer("10.200.0.0/16", "10.200.1.0/24")), namedPort(tcp, "serve-81-tcp")),
				),
				egress(eg(peers(nsPodPeer(&metav1.LabelSelector{}, labelsSel("app", fmt.Sprintf("app-%d", (a+2)%10)))))),
			))
		}
	}
	s, errs := cluster.NewSnapshot(nss, pods, pols)
	if len(errs) > 0 {
		tb.Fatal(errs)
	}
	return s
}

// BenchmarkEvaluate measures one explained decision in a 10-namespace,
// 1000-pod, 110-policy cluster.
func BenchmarkEvaluate(b *testing.B) {
	s := syntheticCluster(b, 10, 100)
	var pkts []Packet
	for i := range 64 {
		from, to := s.Pods[(i*37)%len(s.Pods)], s.Pods[(i*101+7)%len(s.Pods)]
		pkts = append(pkts, Packet{Src: Endpoint{Pod: from, IP: from.IPs[0]}, Dst: Endpoint{Pod: to, IP: to.IPs[0]}, Protocol: tcp, Port: 80 + int32(i%2)})
	}
	allowed := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if Evaluate(s, pkts[i%len(pkts)]).Allowed {
			allowed++
		}
	}
	_ = allowed
}

// BenchmarkMatrix100 measures the full probe matrix of one 100-pod namespace
// (9900 pairs x 6 declared ports).
func BenchmarkMatrix100(b *testing.B) {
	s := syntheticCluster(b, 1, 100)
	b.ReportAllocs()
	b.ResetTimer()
	var cells []Cell
	for b.Loop() {
		cells = Matrix(s)
	}
	b.ReportMetric(float64(len(cells)), "cells")
}
