package agent_test

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policyd/policyd/agent"
	"github.com/policyd/policyd/internal/apiservertest"
	"github.com/policyd/policyd/internal/netnsutil"
)

// arrivals records when datagrams and connections reached a listener.
type arrivals struct {
	mu    sync.Mutex
	times []time.Time
}

func (a *arrivals) add() {
	a.mu.Lock()
	a.times = append(a.times, time.Now())
	a.mu.Unlock()
}

func (a *arrivals) snapshot() []time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]time.Time(nil), a.times...)
}

// listen serves UDP and TCP on port in the network namespace nsName and
// records every datagram and accepted connection.
func listen(t *testing.T, nsName string, port int) *arrivals {
	t.Helper()
	a := &arrivals{}
	var uc net.PacketConn
	var tl net.Listener
	require.NoError(t, netnsutil.DoNamed(nsName, func() error {
		var err error
		if uc, err = net.ListenPacket("udp4", ":"+strconv.Itoa(port)); err != nil {
			return err
		}
		tl, err = net.Listen("tcp4", ":"+strconv.Itoa(port))
		return err
	}))
	t.Cleanup(func() { _ = uc.Close(); _ = tl.Close() })
	go func() {
		buf := make([]byte, 64)
		for {
			if _, _, err := uc.ReadFrom(buf); err != nil {
				return
			}
			a.add()
		}
	}()
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			a.add()
			_ = c.Close()
		}
	}()
	return a
}

// knock sends, from the network namespace nsName, a UDP datagram and a TCP
// connection attempt to dst every 10 ms until stop is closed.
func knock(t *testing.T, nsName string, dst netip.AddrPort, stop <-chan struct{}) *sync.WaitGroup {
	t.Helper()
	var uc net.Conn
	require.NoError(t, netnsutil.DoNamed(nsName, func() error {
		var err error
		uc, err = net.Dial("udp4", dst.String())
		return err
	}))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer func() { _ = uc.Close() }()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			_, _ = uc.Write([]byte("knock"))
			go func() {
				_ = netnsutil.DoNamed(nsName, func() error {
					c, err := net.DialTimeout("tcp4", dst.String(), 300*time.Millisecond)
					if err == nil {
						_ = c.Close()
					}
					return nil
				})
			}()
		}
	}()
	return &wg
}

// TestAgent_LabNewPodClosedBeforeCommit: with no --pod-network flag, the
// pod network comes from the Nodes' spec.podCIDRs. A pod the CNI has wired
// (its address answers) but that the API server has not yet reported gets
// no packet at all: a client its policy will admit knocks every 10 ms, by
// UDP and TCP, from before the pod exists in the API until after the
// commit that learns it, and the pod's listener records nothing before that
// commit's batch was written, then the knocks once it is. The node itself
// (its CNI gateway address lies inside the pod CIDR) still reaches a pod no
// policy isolates.
func TestAgent_LabNewPodClosedBeforeCommit(t *testing.T) {
	s := apiservertest.Shared(t)
	ns := s.Namespace(t)
	newcomer := newPod(ns, "newcomer", "node-1", map[string]string{"app": "server"})
	pods := []*corev1.Pod{
		newPod(ns, "client", "node-2", map[string]string{"app": "client"}),
		newPod(ns, "open", "node-1", map[string]string{"app": "open"}),
		newcomer,
	}
	lc := newLabClusterIn(t, s, agentRESTConfig(t, s), []string{ns}, pods, nil, map[string]bool{key(ns, "newcomer"): true})
	applyPolicy(t, lc.admin, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "server-from-client"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{
				PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}}}}}},
		},
	})
	// The Nodes publish the lab's pod ranges, as kube-controller-manager's
	// node IPAM does.
	for _, n := range lc.lab.Nodes() {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name}, Spec: corev1.NodeSpec{PodCIDR: n.Subnets[0].String()}}
		for _, p := range n.Subnets {
			node.Spec.PodCIDRs = append(node.Spec.PodCIDRs, p.String())
		}
		_ = lc.admin.CoreV1().Nodes().Delete(context.Background(), n.Name, metav1.DeleteOptions{})
		created, err := lc.admin.CoreV1().Nodes().Create(context.Background(), node, metav1.CreateOptions{})
		require.NoError(t, err)
		t.Cleanup(func() { _ = lc.admin.CoreV1().Nodes().Delete(context.Background(), n.Name, metav1.DeleteOptions{}) })
		lc.wait("Node", n.Name, created.ResourceVersion)
	}

	netns := map[string]string{}
	for _, p := range lc.lab.Pods() {
		netns[p.Key] = p.NetNS
	}
	ip := lc.lab.PodIP(key(ns, "newcomer"))
	got := listen(t, netns[key(ns, "newcomer")], 9500)
	stop := make(chan struct{})
	wg := knock(t, netns[key(ns, "client")], netip.AddrPortFrom(ip, 9500), stop)
	defer func() { close(stop); wg.Wait() }()
	time.Sleep(time.Second) // a second of knocks on a wired, unknown pod

	obj := newcomer.DeepCopy()
	created := createPod(t, lc.admin, obj, ip.String())
	a1 := lc.agents[0] // node-1, the newcomer's node
	a1.waitFor("Pod", key(ns, "newcomer"), created.ResourceVersion)
	a1.mu.Lock()
	var commit agent.Commit
	for _, c := range a1.commits {
		for _, ch := range c.Changes {
			if ch.Kind == "Pod" && ch.Key == key(ns, "newcomer") && ch.ResourceVersion == created.ResourceVersion {
				commit = c
			}
		}
	}
	a1.mu.Unlock()
	require.False(t, commit.Time.IsZero(), "no commit carries the newcomer")
	written := commit.Time.Add(-commit.Stats.Duration) // the batch went to the kernel within [written, commit.Time]
	require.Eventually(t, func() bool { return len(got.snapshot()) > 10 }, 5*time.Second, 20*time.Millisecond,
		"the newcomer never received the client's knocks after its commit")
	times := got.snapshot()
	first := times[0]
	t.Logf("first knock arrived %v after the sync started writing (commit %v after it)", first.Sub(written), commit.Stats.Duration)
	for _, at := range times {
		assert.False(t, at.Before(written), "a knock reached the newcomer at %v, %v before the commit that learned it", at, written.Sub(at))
	}

	// The node reaches a pod no policy isolates: kubelet's probes come from
	// the CNI gateway, inside the pod CIDR, and no pod holds that address.
	openAddr := netip.AddrPortFrom(lc.lab.PodIP(key(ns, "open")), 80)
	var from string
	err := lc.lab.DoInNode("node-1", func() error {
		c, err := net.DialTimeout("tcp4", openAddr.String(), 2*time.Second)
		if err != nil {
			return err
		}
		from = c.LocalAddr().String()
		return c.Close()
	})
	require.NoError(t, err, "node-1 cannot reach %s, which no policy isolates", openAddr)
	t.Logf("node-1 reached %s from %s", openAddr, from)
}
