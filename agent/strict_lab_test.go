package agent_test

import (
	"context"
	"encoding/binary"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policyd/policyd/agent"
	"github.com/policyd/policyd/internal/apiservertest"
	"github.com/policyd/policyd/internal/netnsutil"
	"github.com/policyd/policyd/policy/ctcut"
)

// flowRec is one client-to-server flow; the server side records when it
// last received data and whether every counter arrived in order.
type flowRec struct {
	last   atomic.Int64 // unix nanos of the last received record
	gaps   atomic.Int64 // records missing or out of order (TCP)
	recvd  atomic.Int64
	cancel func()
}

func (s *flowRec) lastRecv() time.Time { return time.Unix(0, s.last.Load()) }

// openStreams starts, from pod netns cli to srv (server address), a TCP
// stream and, unless tcpOnly, a UDP flow, each sending a counter every 2 ms.
func openStreams(t *testing.T, cliNS, srvNS, srvAddr string, tcpPort, udpPort int, tcpOnly bool) (tcp, udp *flowRec) {
	t.Helper()
	var ln net.Listener
	var uc net.PacketConn
	require.NoError(t, netnsutil.DoNamed(srvNS, func() (err error) {
		if ln, err = net.Listen("tcp4", ":"+strconv.Itoa(tcpPort)); err != nil {
			return err
		}
		if !tcpOnly {
			uc, err = net.ListenPacket("udp4", ":"+strconv.Itoa(udpPort))
		}
		return err
	}))
	var cc, cu net.Conn
	require.NoError(t, netnsutil.DoNamed(cliNS, func() (err error) {
		if cc, err = net.DialTimeout("tcp4", net.JoinHostPort(srvAddr, strconv.Itoa(tcpPort)), 2*time.Second); err != nil {
			return err
		}
		if !tcpOnly {
			cu, err = net.Dial("udp4", net.JoinHostPort(srvAddr, strconv.Itoa(udpPort)))
		}
		return err
	}))
	sc, err := ln.Accept()
	require.NoError(t, err)
	ln.Close()
	done := make(chan struct{})
	var wg sync.WaitGroup
	send := func(c net.Conn) {
		defer wg.Done()
		var n uint64
		buf := make([]byte, 8)
		for {
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
			binary.BigEndian.PutUint64(buf, n)
			n++
			_ = c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
			_, _ = c.Write(buf)
		}
	}
	tcp = &flowRec{}
	go func() {
		buf := make([]byte, 8)
		var want uint64
		for {
			if _, err := ioReadFull(sc, buf); err != nil {
				return
			}
			if binary.BigEndian.Uint64(buf) != want {
				tcp.gaps.Add(1)
			}
			want = binary.BigEndian.Uint64(buf) + 1
			tcp.recvd.Add(1)
			tcp.last.Store(time.Now().UnixNano())
		}
	}()
	wg.Add(1)
	go send(cc)
	closers := []func(){func() { cc.Close(); sc.Close() }}
	if !tcpOnly {
		udp = &flowRec{}
		go func() {
			buf := make([]byte, 64)
			for {
				m, from, err := uc.ReadFrom(buf)
				if err != nil {
					return
				}
				// Reply, so that conntrack sees the flow established (a
				// one-way UDP flow stays new and every packet is judged).
				_, _ = uc.WriteTo(buf[:m], from)
				udp.recvd.Add(1)
				udp.last.Store(time.Now().UnixNano())
			}
		}()
		go func() {
			buf := make([]byte, 64)
			for {
				if _, err := cu.Read(buf); err != nil {
					return
				}
			}
		}()
		wg.Add(1)
		go send(cu)
		closers = append(closers, func() { _ = cu.Close(); _ = uc.Close() })
	}
	stop := func() {
		close(done)
		wg.Wait()
		for _, c := range closers {
			c()
		}
	}
	tcp.cancel = stop
	if udp != nil {
		udp.cancel = func() {}
	}
	return tcp, udp
}

func ioReadFull(c net.Conn, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := c.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// TestAgent_LabCutEstablished: with --cut-established, a long TCP stream
// and a UDP flow from a pod that a new policy denies stop reaching the
// server within 1 s of the commit, while a parallel stream the policy
// allows loses no record; without the flag nothing is cut.
func TestAgent_LabCutEstablished(t *testing.T) {
	trials := 20
	if v, err := strconv.Atoi(os.Getenv("POLICYD_CUT_TRIALS")); err == nil {
		trials = v
	}
	for _, strict := range []bool{true, false} {
		t.Run("strict="+strconv.FormatBool(strict), func(t *testing.T) {
			s := apiservertest.Shared(t)
			ns := s.Namespace(t)
			pods := []*corev1.Pod{
				newPod(ns, "server", "node-1", map[string]string{"app": "server"}),
				newPod(ns, "denied", "node-2", map[string]string{"app": "denied"}),
				newPod(ns, "allowed", "node-2", map[string]string{"app": "allowed"}),
			}
			var opts func(string, int) agentOption
			if strict {
				opts = func(_ string, h int) agentOption {
					k, err := ctcut.NewKernel(h)
					require.NoError(t, err)
					t.Cleanup(func() { _ = k.Close() })
					return func(c *agent.Config) { c.CutEstablished = k }
				}
			}
			lc := newLabClusterWith(t, s, agentRESTConfig(t, s), []string{ns}, pods, opts)
			netns := map[string]string{}
			for _, p := range lc.lab.Pods() {
				netns[p.Key] = p.NetNS
			}
			srvIP := lc.lab.PodIP(key(ns, "server")).String()
			n := trials
			if !strict {
				n = 1
			}
			var lat, udpLat []time.Duration
			for i := range n {
				den, denU := openStreams(t, netns[key(ns, "denied")], netns[key(ns, "server")], srvIP, 9100+i, 9200+i, false)
				ok, _ := openStreams(t, netns[key(ns, "allowed")], netns[key(ns, "server")], srvIP, 9300+i, 0, true)
				time.Sleep(100 * time.Millisecond)
				require.NotZero(t, den.recvd.Load())
				require.NotZero(t, denU.recvd.Load())
				np := applyPolicy(t, lc.admin, &networkingv1.NetworkPolicy{
					ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "only-allowed"},
					Spec: networkingv1.NetworkPolicySpec{
						PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}},
						Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{
							PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "allowed"}}}}}},
					},
				})
				a1 := lc.agents[0]
				a1.waitFor("NetworkPolicy", key(ns, "only-allowed"), np.ResourceVersion)
				a1.mu.Lock()
				committed := a1.commits[len(a1.commits)-1].Time
				a1.mu.Unlock()
				time.Sleep(1500 * time.Millisecond)
				okBefore := ok.recvd.Load()
				time.Sleep(100 * time.Millisecond)
				require.Greater(t, ok.recvd.Load(), okBefore, "the allowed stream stopped")
				require.Zero(t, ok.gaps.Load(), "the allowed stream lost records")
				if strict {
					d := den.lastRecv().Sub(committed)
					require.Less(t, d, time.Second, "trial %d: the denied tcp stream still reached the server %s after the commit", i, d)
					lat = append(lat, max(d, 0))
					// The server answers every datagram: had the cut deleted
					// the UDP entry, an answer sent right after the delete
					// would start a reverse flow the table admits (server
					// egress, client ingress) for the client's datagrams to
					// ride. The cut mark keeps the entry and drops both
					// directions.
					du := denU.lastRecv().Sub(committed)
					require.Less(t, du, time.Second, "trial %d: the denied udp flow still reached the server %s after the commit", i, du)
					udpLat = append(udpLat, max(du, 0))
				} else {
					require.Greater(t, den.lastRecv(), committed.Add(time.Second), "without --cut-established the established TCP stream goes on")
					require.Greater(t, denU.lastRecv(), committed.Add(time.Second), "and so does the UDP flow")
				}
				den.cancel()
				ok.cancel()
				require.NoError(t, lc.admin.NetworkingV1().NetworkPolicies(ns).Delete(context.Background(), "only-allowed", metav1.DeleteOptions{}))
				lc.wait("NetworkPolicy", key(ns, "only-allowed"), "")
			}
			if strict {
				slices.Sort(lat)
				t.Logf("tcp cut latency after the commit over %d trials: p50 %s p99 %s max %s", n, lat[len(lat)/2], lat[(len(lat)*99)/100], lat[len(lat)-1])
				slices.Sort(udpLat)
				t.Logf("udp cut latency after the commit over %d trials: p50 %s p99 %s max %s", n, udpLat[len(udpLat)/2], udpLat[(len(udpLat)*99)/100], udpLat[len(udpLat)-1])
			}
		})
	}
}
