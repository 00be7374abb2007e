package agent_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/policyd/policyd/internal/netnsutil"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/conformance/lab"
	"github.com/policyd/policyd/internal/apiservertest"
	"github.com/policyd/policyd/internal/netnstest"
	"github.com/policyd/policyd/policy/nft"
)

// stream is a TCP connection carrying numbered 8-byte records; the reader
// checks that every record arrives, in order.
type stream struct {
	received atomic.Int64
	sent     atomic.Int64
	err      atomic.Value // error from either side
	stop     chan struct{}
	wg       sync.WaitGroup
}

func startStream(t *testing.T, serverNS, clientNS string, addr string) *stream {
	t.Helper()
	var ln net.Listener
	require.NoError(t, netnsutil.DoNamed(serverNS, func() (err error) { ln, err = net.Listen("tcp", addr); return err }))
	var conn net.Conn
	require.NoError(t, netnsutil.DoNamed(clientNS, func() (err error) { conn, err = net.DialTimeout("tcp", addr, 2*time.Second); return err }))
	srv, err := ln.Accept()
	require.NoError(t, err)
	ln.Close()
	s := &stream{stop: make(chan struct{})}
	s.wg.Add(2)
	go func() { // reader
		defer s.wg.Done()
		buf := make([]byte, 8)
		for want := int64(0); ; want++ {
			if _, err := io.ReadFull(srv, buf); err != nil {
				if !errors.Is(err, io.EOF) {
					s.err.CompareAndSwap(nil, fmt.Errorf("read: %w", err))
				}
				return
			}
			if got := int64(binary.BigEndian.Uint64(buf)); got != want {
				s.err.CompareAndSwap(nil, fmt.Errorf("record %d arrived where %d was due", got, want))
				return
			}
			s.received.Add(1)
		}
	}()
	go func() { // writer: a record every 5 ms
		defer s.wg.Done()
		defer conn.Close()
		buf := make([]byte, 8)
		for seq := int64(0); ; seq++ {
			select {
			case <-s.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			binary.BigEndian.PutUint64(buf, uint64(seq))
			_ = conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
			if _, err := conn.Write(buf); err != nil {
				s.err.CompareAndSwap(nil, fmt.Errorf("write: %w", err))
				return
			}
			s.sent.Add(1)
		}
	}()
	t.Cleanup(func() { s.close(); srv.Close() })
	return s
}

func (s *stream) close() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.wg.Wait()
}

func (s *stream) failure() error {
	if e, ok := s.err.Load().(error); ok {
		return e
	}
	return nil
}

// TestAgent_RestartKeepsEnforcement stops every agent and starts new ones:
// an established TCP stream flows on through the restart with every record
// delivered in order, a connection the policies deny stays denied while no
// agent runs, and the restarted agents adopt the table they find with zero
// operations (nothing flushed, no gap).
func TestAgent_RestartKeepsEnforcement(t *testing.T) {
	netnstest.RequireRoot(t)
	s := apiservertest.Shared(t)
	admin := s.Client()
	ns := s.Namespace(t)
	pods := []*corev1.Pod{
		newPod(ns, "server", "node-1", map[string]string{"app": "server"}),
		newPod(ns, "client", "node-2", map[string]string{"app": "client"}),
		newPod(ns, "stranger", "node-2", map[string]string{"app": "stranger"}),
	}
	lc := newLabCluster(t, s, agentRESTConfig(t, s), []string{ns}, pods)
	pol := applyPolicy(t, admin, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "server"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}}}},
			}},
		},
	})
	lc.wait("NetworkPolicy", key(ns, "server"), pol.ResourceVersion)
	lc.check("policy in place")

	info := map[string]lab.PodInfo{}
	for _, p := range lc.lab.Pods() {
		info[p.Key] = p
	}
	server, client := info[key(ns, "server")], info[key(ns, "client")]
	st := startStream(t, server.NetNS, client.NetNS, net.JoinHostPort(server.IPs[0].String(), "9000"))
	require.Eventually(t, func() bool { return st.received.Load() > 20 }, 5*time.Second, 10*time.Millisecond, "the stream never flowed")

	denied := []lab.Probe{{From: key(ns, "stranger"), To: key(ns, "server"), Port: 80, Protocol: cluster.ProtocolTCP}}
	for _, a := range lc.agents {
		a.stop()
	}
	before := st.received.Load()
	for i := 0; i < 3; i++ { // probe the denied connection a few times while no agent runs
		r := lc.lab.ProbeAll(context.Background(), denied)[0]
		require.Empty(t, r.Err)
		assert.False(t, r.Observed, "a denied connection got through while the agents were down")
		time.Sleep(300 * time.Millisecond)
	}
	assert.Greater(t, st.received.Load(), before+50, "the stream stalled while the agents were down")

	var restarted []*testAgent
	for _, node := range labNodes {
		h, ok := lc.lab.NodeNetNSHandle(node)
		require.True(t, ok)
		b, err := nft.New(nft.Options{NetNS: int(h)})
		require.NoError(t, err)
		restarted = append(restarted, startAgent(t, agentRESTConfig(t, s), node, b))
	}
	for _, a := range restarted {
		a.waitReady()
		a.mu.Lock()
		first := a.commits[0]
		a.mu.Unlock()
		assert.True(t, first.Stats.Full, "a new agent reads the kernel's table first")
		assert.Zero(t, first.Stats.Ops, "adopting an up-to-date table must write nothing (no flush, no gap)")
	}
	lc.agents = restarted
	mid := st.received.Load()
	require.Eventually(t, func() bool { return st.received.Load() > mid+50 }, 5*time.Second, 10*time.Millisecond, "the stream stalled after the restart")
	st.close()
	require.NoError(t, st.failure(), "the established stream lost or reordered data across the restart")
	assert.Equal(t, st.sent.Load(), st.received.Load(), "every record sent arrived")
	lc.check("after the restart")
}
