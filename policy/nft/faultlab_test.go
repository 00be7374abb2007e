package nft

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/conformance/lab"
	"github.com/policyd/policyd/internal/netnstest"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/model"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/selectors"
)

// faultLab is a one-node lab (real pods in network namespaces, routed CNI)
// whose node namespace a Backend programs with the compile of a cluster
// state, for the fault tests that need real packets.
type faultLab struct {
	t    *testing.T
	lab  *lab.Lab
	ns   string // the node's network namespace
	b    *Backend
	pods []*corev1.Pod // as the lab built them, addresses included
	keys []string
}

// labRuns numbers this process's labs: each gets a run id of its own.
var labRuns atomic.Int32

const (
	faultNode = "node-1"
	faultNS   = "fault"
)

// newFaultLab builds the lab for one pod per name (label app=NAME, serving
// TCP and UDP 80) in namespace faultNS on faultNode.
func newFaultLab(t *testing.T, names ...string) *faultLab {
	t.Helper()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ip", "nft")
	var pods []*corev1.Pod
	for _, n := range names {
		pods = append(pods, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: faultNS, Name: n, Labels: map[string]string{"app": n}},
			Spec: corev1.PodSpec{NodeName: faultNode, Containers: []corev1.Container{{
				Name: "c",
				Ports: []corev1.ContainerPort{
					{ContainerPort: 80, Protocol: corev1.ProtocolTCP},
					{ContainerPort: 80, Protocol: corev1.ProtocolUDP},
				},
			}}},
		})
	}
	l, err := lab.New(context.Background(), lab.Config{CNI: lab.CNIRouted, Nodes: []string{faultNode}, RunID: fmt.Sprintf("nf%d%d", os.Getpid()%1000000, labRuns.Add(1))}, pods)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, l.Close()) })
	ns, ok := l.NodeNetNS(faultNode)
	require.True(t, ok)
	h, ok := l.NodeNetNSHandle(faultNode)
	require.True(t, ok)
	b, err := New(Options{NetNS: int(h)})
	require.NoError(t, err)
	fl := &faultLab{t: t, lab: l, ns: ns, b: b, pods: l.PodObjects()}
	for _, p := range fl.pods {
		fl.keys = append(fl.keys, p.Namespace+"/"+p.Name)
	}
	return fl
}

// state is the cluster for the lab's pods under pols.
func (fl *faultLab) state(pols ...*networkingv1.NetworkPolicy) *cluster.Snapshot {
	fl.t.Helper()
	nss := []*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: faultNS, Labels: map[string]string{corev1.LabelMetadataName: faultNS}}}}
	snap, errs := cluster.NewSnapshot(nss, fl.pods, pols)
	require.Empty(fl.t, errs)
	return snap
}

// compile is a fresh compile of snap for the lab's node.
func (fl *faultLab) compile(snap *cluster.Snapshot) *ruleset.Ruleset {
	fl.t.Helper()
	rs, err := compile.Compile(selectors.FromSnapshot(snap), faultNode)
	require.NoError(fl.t, err)
	return rs
}

// probes are every ordered pair of the lab's pods on TCP and UDP 80.
func (fl *faultLab) probes() []lab.Probe {
	var out []lab.Probe
	for _, from := range fl.keys {
		for _, to := range fl.keys {
			if from == to {
				continue
			}
			for _, proto := range []cluster.Protocol{cluster.ProtocolTCP, cluster.ProtocolUDP} {
				out = append(out, lab.Probe{From: from, To: to, Port: 80, Protocol: proto})
			}
		}
	}
	return out
}

// expected is what the model says of each probe in snap.
func (fl *faultLab) expected(snap *cluster.Snapshot, probes []lab.Probe) map[lab.Probe]bool {
	want := map[lab.Probe]bool{}
	for _, p := range probes {
		src, dst := snap.Pod(p.From), snap.Pod(p.To)
		sip, _ := src.IP(4)
		dip, _ := dst.IP(4)
		want[p] = model.Evaluate(snap, model.Packet{Src: model.Endpoint{Pod: src, IP: sip}, Dst: model.Endpoint{Pod: dst, IP: dip}, Protocol: p.Protocol, Port: p.Port}).Allowed
	}
	return want
}

// mismatches probes once and returns the probes whose outcome differs from
// want, as "probe: observed allowed/denied" lines.
func (fl *faultLab) mismatches(probes []lab.Probe, want map[lab.Probe]bool) []string {
	fl.t.Helper()
	var bad []string
	for _, r := range fl.lab.ProbeAll(context.Background(), probes) {
		require.Empty(fl.t, r.Err, "lab fault on %s", r.Probe)
		if r.Observed != want[r.Probe] {
			verb := "denied"
			if r.Observed {
				verb = "ALLOWED"
			}
			bad = append(bad, fmt.Sprintf("%s: %s (%s), the policies in force say %v", r.Probe, verb, r.Detail, want[r.Probe]))
		}
	}
	return bad
}

// check requires every probe to do what the model of snap says.
func (fl *faultLab) check(step string, snap *cluster.Snapshot) {
	fl.t.Helper()
	probes := fl.probes()
	if bad := fl.mismatches(probes, fl.expected(snap, probes)); len(bad) > 0 {
		fl.t.Fatalf("%s: packets disagree with the policies:\n%s", step, strings.Join(bad, "\n"))
	}
}

// prober probes pairs over and over in the background, recording every
// outcome that differs from the expectation it was started with.
type prober struct {
	stop   chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	rounds int
	bad    []string
}

func (fl *faultLab) startProber(probes []lab.Probe, want map[lab.Probe]bool) *prober {
	p := &prober{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for {
			select {
			case <-p.stop:
				return
			default:
			}
			var bad []string
			for _, r := range fl.lab.ProbeAll(context.Background(), probes) {
				switch {
				case r.Err != "":
					bad = append(bad, fmt.Sprintf("%s: lab fault: %s", r.Probe, r.Err))
				case r.Observed != want[r.Probe]:
					bad = append(bad, fmt.Sprintf("%s: observed %v (%s), want %v", r.Probe, r.Observed, r.Detail, want[r.Probe]))
				}
			}
			p.mu.Lock()
			p.rounds++
			p.bad = append(p.bad, bad...)
			p.mu.Unlock()
		}
	}()
	fl.t.Cleanup(p.halt)
	return p
}

// halt stops the prober and waits for its round to end. Idempotent.
func (p *prober) halt() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

// roundsDone is how many rounds have completed.
func (p *prober) roundsDone() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rounds
}

// result halts the prober and returns its rounds and disagreements.
func (p *prober) result() (int, []string) {
	p.halt()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rounds, p.bad
}

// allowFrom is a policy isolating app=server for ingress and admitting the
// pods labelled app=each of from, on every port.
func allowFrom(name string, from ...string) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: faultNS, Name: name},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{}},
		},
	}
	for _, f := range from {
		np.Spec.Ingress[0].From = append(np.Spec.Ingress[0].From, networkingv1.NetworkPolicyPeer{
			PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": f}},
		})
	}
	return np
}
