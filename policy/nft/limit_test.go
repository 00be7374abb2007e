package nft_test

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/internal/netnstest"
	"github.com/policyd/policyd/internal/netnsutil"
	"github.com/policyd/policyd/nflog"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/nft"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/selectors"
)

// TestKernel_LogLimitIsPerNode floods two deciders at once: pods x/a and
// x/b, each isolated in egress by its own policy, send 200 datagrams each to
// a peer on another node. The kernel drops and counts all 400, each counter
// exactly its decider's 200, and logs at most the one limit's burst plus its
// rate over the time the test ran, for both deciders together: the limit is
// the node's, not one per decider. The table is then recompiled with
// another rate: the old limit object goes, the new one comes, in one sync.
func TestKernel_LogLimitIsPerNode(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ip", "nft")
	ns, h := netnstest.New(t, "pdlim")
	netnstest.MustExec(t, ns, "ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1")
	netnstest.MustExec(t, ns, "ip", "addr", "add", "10.0.0.1/24", "dev", "d0")
	netnstest.MustExec(t, ns, "ip", "addr", "add", "10.0.0.2/24", "dev", "d0")
	netnstest.MustExec(t, ns, "ip", "link", "set", "d0", "up")
	netnstest.MustExec(t, ns, "ip", "link", "set", "d1", "up")
	netnstest.MustExec(t, ns, "ip", "neigh", "add", "10.0.0.3", "lladdr", "02:00:00:00:00:03", "dev", "d0")

	const group, rate, burst, each = 78, 1, 20, 200
	l, err := nflog.Listen(nflog.Config{Group: group, NetNS: int(h)})
	if err != nil {
		t.Fatalf("nfnetlink_log: %v", err)
	}
	defer func() { _ = l.Close() }()
	b, err := nft.New(nft.Options{NetNS: int(h)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	idx := selectors.FromSnapshot(limitWorld(t))
	cc := &compile.Compiler{Options: compile.Options{Log: compile.LogOptions{Drops: true, Group: group, Rate: rate, Burst: burst}}}
	rs, err := cc.Compile(idx, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Sync(ctx, rs); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	for _, src := range []string{"10.0.0.1", "10.0.0.2"} {
		err := netnsutil.Do(h, func() error {
			c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP(src)}, &net.UDPAddr{IP: net.ParseIP("10.0.0.3"), Port: 8080})
			if err != nil {
				return err
			}
			defer func() { _ = c.Close() }()
			for range each {
				// A locally sent datagram the table drops fails the write
				// with EPERM.
				if _, err := c.Write([]byte("x")); err != nil && !errors.Is(err, syscall.EPERM) {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("send from %s: %v", src, err)
		}
	}
	// nfnetlink_log holds messages up to a second (its default flush
	// timeout) before it sends them.
	logged := map[string]int{}
	deadline := time.Now().Add(2500 * time.Millisecond)
	for time.Now().Before(deadline) {
		_ = l.SetDeadline(deadline)
		pkts, err := l.Receive()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		for _, p := range pkts {
			logged[p.Prefix]++
		}
	}
	elapsed := time.Since(start)

	counters, err := b.LogCounters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for id, c := range counters {
		if c.Packets > 0 {
			ids = append(ids, id)
			if c.Packets != each {
				t.Errorf("decider %s (%s) counted %d packets, want exactly %d", id, rs.Deciders[id], c.Packets, each)
			}
		}
	}
	if len(ids) != 2 {
		t.Fatalf("deciders that counted packets: %v, want the default denies of x/deny-a and x/deny-b (counters %v)", ids, counters)
	}
	total := 0
	for _, n := range logged {
		total += n
	}
	// The bucket starts full (burst) and refills at rate a second.
	limit := burst + int(elapsed.Seconds()*rate+1)
	t.Logf("logged %d of %d dropped packets in %v (%v); the node's limit allows at most %d", total, 2*each, elapsed.Round(time.Millisecond), logged, limit)
	if total == 0 || total > limit {
		t.Errorf("logged %d packets in %v, want 1..%d: one limit of %d/s burst %d for the node", total, elapsed, limit, rate, burst)
	}

	// Another rate: a new limit object replaces the old one in one sync.
	cc.Options.Log.Rate = 50
	rs2, err := cc.Compile(idx, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Sync(ctx, rs2); err != nil {
		t.Fatalf("sync with the new rate: %v", err)
	}
	list := netnstest.MustExec(t, ns, "nft", "list", "table", "inet", ruleset.TableName)
	if strings.Contains(list, ruleset.LimitName(rate, burst)) || !strings.Contains(list, "limit "+ruleset.LimitName(50, burst)+" {") {
		t.Errorf("after the rate change the table lists:\n%s\nwant only limit %s", list, ruleset.LimitName(50, burst))
	}
	b2, err := nft.New(nft.Options{NetNS: int(h)})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := b2.Sync(ctx, rs2); err != nil || st.Ops != 0 {
		t.Errorf("a fresh backend adopting the table: %+v, %v; want 0 ops", st, err)
	}
}

// limitWorld is x/a (10.0.0.1) and x/b (10.0.0.2) on node-1, y/c
// (10.0.0.3) on node-2; x/deny-a and x/deny-b isolate the egress of a and b.
func limitWorld(t *testing.T) *cluster.Snapshot {
	t.Helper()
	pod := func(ns, name, node, ip string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"pod": name}},
			Spec:       corev1.PodSpec{NodeName: node},
			Status:     corev1.PodStatus{PodIPs: []corev1.PodIP{{IP: ip}}},
		}
	}
	deny := func(name, pod string) *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: name},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod": pod}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}}}
	}
	nss := []*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, {ObjectMeta: metav1.ObjectMeta{Name: "y"}}}
	pods := []*corev1.Pod{pod("x", "a", "node-1", "10.0.0.1"), pod("x", "b", "node-1", "10.0.0.2"), pod("y", "c", "node-2", "10.0.0.3")}
	snap, errs := cluster.NewSnapshot(nss, pods, []*networkingv1.NetworkPolicy{deny("deny-a", "a"), deny("deny-b", "b")})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return snap
}
