package verdicts_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/internal/netnstest"
	"github.com/policyd/policyd/nflog"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/decider"
	"github.com/policyd/policyd/policy/nft"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/selectors"
	"github.com/policyd/policyd/verdicts"
)

const group = 77

func pod(ns, name, node, ip string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"pod": name}},
		Spec:       corev1.PodSpec{NodeName: node},
		Status:     corev1.PodStatus{PodIPs: []corev1.PodIP{{IP: ip}}},
	}
}

// world is x/a (10.0.0.1, on this node, node-1) and y/c (10.0.0.3, on
// node-2), with the given NetworkPolicies.
func world(t *testing.T, pols ...*networkingv1.NetworkPolicy) (*cluster.Snapshot, verdicts.PodLookup) {
	t.Helper()
	nss := []*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, {ObjectMeta: metav1.ObjectMeta{Name: "y"}}}
	pods := []*corev1.Pod{pod("x", "a", "node-1", "10.0.0.1"), pod("y", "c", "node-2", "10.0.0.3")}
	snap, errs := cluster.NewSnapshot(nss, pods, pols)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	lookup := func(a netip.Addr) (string, string, bool) {
		for _, p := range snap.Pods {
			for _, ip := range p.IPs {
				if ip == a {
					return p.Namespace, p.Name, true
				}
			}
		}
		return "", "", false
	}
	return snap, lookup
}

func denyEgress(name string) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: name},
		Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}}}
}

// receive reads logged packets until one resolves to a record or the
// deadline passes.
func receive(t *testing.T, l *nflog.Conn, r *verdicts.Resolver) (verdicts.Record, bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		_ = l.SetDeadline(deadline)
		pkts, err := l.Receive()
		if errors.Is(err, nflog.ErrOverrun) {
			r.Overrun()
			continue
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			t.Fatalf("receive: %v", err)
		}
		for _, p := range pkts {
			if rec, ok := r.Handle(p); ok {
				return rec, true
			}
		}
	}
	return verdicts.Record{}, false
}

// TestKernel_DeniedConnectionIsRecorded sends a real UDP packet from pod
// x/a's address in a test namespace. Policy x/deny-a isolates its egress;
// the kernel drops the packet, logs it to the nflog group and counts it,
// and the record names the pod pair and the policy. The policy is then
// edited (a second policy joins the group): the next record names both
// policies, and ids of the first ruleset never stand for the second group.
func TestKernel_DeniedConnectionIsRecorded(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ip", "nft", "bash")
	ns, h := netnstest.New(t, "pdobs")
	netnstest.MustExec(t, ns, "ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1")
	netnstest.MustExec(t, ns, "ip", "addr", "add", "10.0.0.1/24", "dev", "d0")
	netnstest.MustExec(t, ns, "ip", "link", "set", "d0", "up")
	netnstest.MustExec(t, ns, "ip", "link", "set", "d1", "up")
	netnstest.MustExec(t, ns, "ip", "neigh", "add", "10.0.0.3", "lladdr", "02:00:00:00:00:03", "dev", "d0")
	netnstest.MustExec(t, ns, "ip", "link", "set", "lo", "up")

	l, err := nflog.Listen(nflog.Config{Group: group, NetNS: int(h)})
	if err != nil {
		// Not a skip: a kernel that runs nftables has nfnetlink_log.
		t.Fatalf("nfnetlink_log: %v", err)
	}
	defer func() { _ = l.Close() }()
	b, err := nft.New(nft.Options{NetNS: int(h)})
	if err != nil {
		t.Fatal(err)
	}
	cc := &compile.Compiler{Options: compile.Options{Log: compile.LogOptions{Drops: true, Group: group, Rate: 100, Burst: 10}}}
	ctx := context.Background()

	snap, lookup := world(t, denyEgress("deny-a"))
	rs1, err := cc.Compile(selectors.FromSnapshot(snap), "node-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Sync(ctx, rs1); err != nil {
		t.Fatal(err)
	}
	r := verdicts.NewResolver("node-1", lookup)
	r.Learn(rs1)

	send := func() {
		// bash's /dev/udp sends one datagram from the address routing picks.
		_, _ = netnstest.Exec(t, ns, "bash", "-c", "echo hi > /dev/udp/10.0.0.3/8080")
	}
	send()
	rec, ok := receive(t, l, r)
	if !ok {
		t.Fatalf("no record for the denied packet; resolver stats %+v\n%s", r.Stats(), netnstest.MustExec(t, ns, "nft", "list", "table", "inet", ruleset.TableName))
	}
	t.Logf("record: %+v", rec)
	if rec.Src.String() != "x/a" || rec.Dst.String() != "y/c" || rec.Verdict != decider.VerdictDeny || rec.Direction != "egress" ||
		rec.Kind != decider.KindNetworkPolicy || len(rec.Policies) != 1 || rec.Policies[0] != "x/deny-a" || rec.Protocol != "UDP" || rec.Port != 8080 {
		t.Errorf("record %+v, want x/a -> y/c UDP/8080 dropped at egress by x/deny-a", rec)
	}
	counters, err := b.LogCounters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c := counters[rec.ID]; c.Packets < 1 || c.Bytes < 20 {
		t.Errorf("counter of %s = %+v, want the dropped packet counted (all: %v)", rec.ID, c, counters)
	}

	// Edit: a second policy joins the group.
	snap2, lookup2 := world(t, denyEgress("deny-a"), denyEgress("deny-b"))
	_ = lookup2
	rs2, err := cc.Compile(selectors.FromSnapshot(snap2), "node-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Sync(ctx, rs2); err != nil {
		t.Fatal(err)
	}
	r.Learn(rs2)
	time.Sleep(1100 * time.Millisecond) // past the deduplication window
	send()
	rec2, ok := receive(t, l, r)
	if !ok {
		t.Fatalf("no record after the edit; stats %+v", r.Stats())
	}
	if rec2.ID == rec.ID || len(rec2.Policies) != 2 || rec2.Policies[0] != "x/deny-a" || rec2.Policies[1] != "x/deny-b" {
		t.Errorf("record after the edit %+v, want a new id naming x/deny-a and x/deny-b", rec2)
	}
	if d, _ := r.Decider(rec.ID); len(d.Policies) != 1 {
		t.Errorf("the first id now stands for %v: ids must never be reused", d)
	}
}
