package lab

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policyd/policyd/cluster"
)

// podFixture returns a running pod serving TCP 80 and 81; tweaks adjust it.
func podFixture(ns, name, node string, tweaks ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"pod": name}},
		Spec: corev1.PodSpec{
			NodeName: node,
			Containers: []corev1.Container{{
				Name: "c",
				Ports: []corev1.ContainerPort{
					{Name: "serve-80-tcp", ContainerPort: 80, Protocol: corev1.ProtocolTCP},
					{Name: "serve-81-udp", ContainerPort: 81, Protocol: corev1.ProtocolUDP},
				},
			}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for _, t := range tweaks {
		t(p)
	}
	return p
}

func withIP(ips ...string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Status.PodIP = ips[0]
		for _, ip := range ips {
			p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
		}
	}
}

func hostNetwork(p *corev1.Pod) { p.Spec.HostNetwork = true }

// modelPods is the upstream model: namespaces x, y, z with pods a, b, c at
// 10.244.<ns+1>.<pod+10>, serving 80 and 81 on TCP, UDP and SCTP, spread
// round-robin over nodes (as conformance.ModelCluster does).
func modelPods(nodes []string) []*corev1.Pod {
	var pods []*corev1.Pod
	i := 0
	for ni, ns := range []string{"x", "y", "z"} {
		for pi, name := range []string{"a", "b", "c"} {
			p := podFixture(ns, name, nodes[i%len(nodes)], withIP(fmt.Sprintf("10.244.%d.%d", ni+1, pi+10)))
			p.Spec.Containers = nil
			for _, port := range []int32{80, 81} {
				for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP} {
					p.Spec.Containers = append(p.Spec.Containers, corev1.Container{
						Name:  fmt.Sprintf("cont-%d-%s", port, strings.ToLower(string(proto))),
						Ports: []corev1.ContainerPort{{ContainerPort: port, Protocol: proto}},
					})
				}
			}
			pods = append(pods, p)
			i++
		}
	}
	return pods
}

// requireKernel skips a test that needs root and network namespaces, unless
// CI is set, where it fails instead: CI has both.
func requireKernel(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("kernel test: skipped with -short")
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("kernel test needs root, and CI is set: CI must run it")
		}
		t.Skip("kernel test needs root (network namespaces, nftables)")
	}
}

// newTestLab builds a lab that the test closes on cleanup, checking that
// nothing of the run is left then.
func newTestLab(t *testing.T, cfg Config, pods []*corev1.Pod) *Lab {
	t.Helper()
	start := time.Now()
	l, err := New(context.Background(), cfg, pods)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Logf("lab %s (%s, DNAT %v, IPv6 %v, %d nodes, %d pods) built in %v",
		l.RunID(), l.cfg.CNI, l.cfg.DNAT, l.cfg.IPv6, len(l.cfg.Nodes), len(l.pods), time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if left, err := Leftovers(l.RunID()); err != nil || len(left) > 0 {
			t.Errorf("left after Close: %v (%v)", left, err)
		}
	})
	return l
}

// allProbes returns every probe between the pods (self included) on the
// ports, for each protocol.
func allProbes(l *Lab, ports []int32, protos []cluster.Protocol, fam Family, service bool) []Probe {
	var out []Probe
	for _, from := range l.Pods() {
		for _, to := range l.Pods() {
			for _, port := range ports {
				for _, proto := range protos {
					out = append(out, Probe{From: from.Key, To: to.Key, Port: port, Protocol: proto, Family: fam, Service: service})
				}
			}
		}
	}
	return out
}

// probeAndCheck runs the probes and fails for every result that is not
// probed, has a lab fault, or differs from want (nil want: every probe
// allowed).
func probeAndCheck(t *testing.T, l *Lab, probes []Probe, want func(Probe) bool) []Result {
	t.Helper()
	start := time.Now()
	res := l.ProbeAll(context.Background(), probes)
	denied := 0
	for _, r := range res {
		if !r.Observed {
			denied++
		}
	}
	t.Logf("%d probes (%d denied) in %v", len(probes), denied, time.Since(start).Round(time.Millisecond))
	for _, r := range res {
		w := want == nil || want(r.Probe)
		switch {
		case !r.Probed:
			t.Errorf("%v: not probed: %s", r.Probe, r.Detail)
		case r.Err != "":
			t.Errorf("%v: lab fault: %s (detail %s)", r.Probe, r.Err, r.Detail)
		case r.Observed != w:
			t.Errorf("%v to %v: observed allowed=%v (%s), want %v", r.Probe, r.Dst, r.Observed, r.Detail, w)
		}
	}
	return res
}
