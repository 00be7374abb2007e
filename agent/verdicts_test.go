package agent

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/nflog"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/decider"
	"github.com/policyd/policyd/policy/nft"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/verdicts"
)

func addrPod(ns, name string, created int64, ips ...string) *cluster.Pod {
	p := &cluster.Pod{Namespace: ns, Name: name, Created: time.Unix(created, 0)}
	for _, ip := range ips {
		p.IPs = append(p.IPs, netip.MustParseAddr(ip))
	}
	return p
}

// TestPodAddrs_FollowsPodsAndConflicts: addresses follow pod updates and
// deletes; of two pods claiming one address the newer owns it, as the
// compiler and explain decide; hostNetwork pods are node traffic.
func TestPodAddrs_FollowsPodsAndConflicts(t *testing.T) {
	t.Parallel()
	m := newPodAddrs()
	who := func(ip string) string {
		ns, name, ok := m.lookup(netip.MustParseAddr(ip))
		if !ok {
			return ""
		}
		return ns + "/" + name
	}
	a1 := addrPod("x", "a", 1, "10.0.0.1", "fd00::1")
	m.update(nil, a1)
	assert.Equal(t, "x/a", who("10.0.0.1"))
	assert.Equal(t, "x/a", who("fd00::1"))
	assert.Equal(t, "x/a", who("::ffff:10.0.0.1"), "an IPv4-mapped address is the IPv4 address")

	a2 := addrPod("x", "a", 1, "10.0.0.2")
	m.update(a1, a2)
	assert.Empty(t, who("10.0.0.1"), "the old address is released")
	assert.Empty(t, who("fd00::1"))
	assert.Equal(t, "x/a", who("10.0.0.2"))

	b := addrPod("y", "b", 5, "10.0.0.2") // newer: owns the address
	m.update(nil, b)
	assert.Equal(t, "y/b", who("10.0.0.2"))
	c := addrPod("y", "c", 3, "10.0.0.2")
	m.update(nil, c)
	assert.Equal(t, "y/b", who("10.0.0.2"))
	m.update(b, nil)
	assert.Equal(t, "y/c", who("10.0.0.2"), "the newest remaining claimant")
	m.update(c, nil)
	assert.Equal(t, "x/a", who("10.0.0.2"))
	assert.Empty(t, m.claims, "no conflict left")

	host := addrPod("kube-system", "proxy", 9, "10.0.0.2")
	host.HostNetwork = true
	m.update(nil, host)
	assert.Equal(t, "x/a", who("10.0.0.2"), "a hostNetwork pod's address is its node's")
	m.update(a2, nil)
	assert.Empty(t, who("10.0.0.2"))
	assert.Empty(t, m.owner)
}

// fakeCounters is a counterReader whose counts the test sets.
type fakeCounters struct {
	counts map[string]nft.Counter
	err    error
}

func (f *fakeCounters) LogCounters(context.Context) (map[string]nft.Counter, error) {
	out := map[string]nft.Counter{}
	for k, v := range f.counts {
		out[k] = v
	}
	return out, f.err
}

const policyMetrics = "policyd_policy_packets_total"

// TestPolicyCounters_MonotonicAcrossResetsOneSeriesPerDecision: the
// kernel's counters become counters that only grow, through a recreated
// chain (a reset), a failed read and a removed chain; a default deny of
// several isolating policies is one series (the joined names), so summing
// the series never counts a packet twice; a ClusterNetworkPolicy's rules
// add up in its series.
func TestPolicyCounters_MonotonicAcrossResetsOneSeriesPerDecision(t *testing.T) {
	t.Parallel()
	deny := decider.Decider{Kind: decider.KindNetworkPolicy, Direction: "ingress", Verdict: decider.VerdictDeny, Policies: []string{"shop/api", "shop/default-deny"}}
	cnp0 := decider.Decider{Kind: decider.KindClusterNetworkPolicy, Direction: "egress", Verdict: decider.VerdictDeny, Tier: "Admin", Policies: []string{"no-egress"}, Rule: decider.Index(0), Action: "Deny"}
	cnp1 := cnp0
	cnp1.Rule = decider.Index(1)
	ids := map[string]decider.Decider{}
	for _, d := range []decider.Decider{deny, cnp0, cnp1} {
		ids[compile.DeciderID(d)] = d
	}
	r := verdicts.NewResolver("n", nil)
	r.Learn(&ruleset.Ruleset{Deciders: ids})
	f := &fakeCounters{counts: map[string]nft.Counter{}}
	pc := newPolicyCounters(f, r)
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(pc))
	set := func(d decider.Decider, p uint64) {
		f.counts[compile.DeciderID(d)] = nft.Counter{Packets: p, Bytes: 100 * p}
	}
	npKey := "direction=ingress,kind=NetworkPolicy,name=api,default-deny,namespace=shop,verdict=deny"
	cnpKey := "direction=egress,kind=ClusterNetworkPolicy,name=no-egress,namespace=,verdict=deny"
	expect := func(step string, np, cnp float64) {
		t.Helper()
		assert.Equal(t, map[string]float64{npKey: np, cnpKey: cnp}, series(t, reg, policyMetrics), step)
		assert.Equal(t, map[string]float64{npKey: 100 * np, cnpKey: 100 * cnp}, series(t, reg, "policyd_policy_bytes_total"), step)
	}
	set(deny, 5)
	set(cnp0, 2)
	set(cnp1, 3)
	expect("first read", 5, 5)
	set(deny, 8)
	expect("grows", 8, 5)
	set(deny, 2) // the chain was recreated: 2 new packets
	expect("reset", 10, 5)
	f.err = errors.New("netlink: busy")
	set(deny, 50)
	expect("a failed read repeats the last values", 10, 5)
	f.err = nil
	expect("read again", 58, 5)
	delete(f.counts, compile.DeciderID(cnp1))
	expect("a removed chain keeps its total", 58, 5)
	set(cnp1, 1)
	expect("back, from zero", 58, 6)
	assert.Equal(t, map[string]float64{"": 2}, series(t, reg, "policyd_policy_counter_read_errors_total"), "one failed read, at each of the two gathers of that step")
}

// series gathers reg and returns the values of the metric name, keyed by
// its labels ("k=v,...", sorted).
func series(t *testing.T, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var kv []string
			for _, l := range m.GetLabel() {
				kv = append(kv, l.GetName()+"="+l.GetValue())
			}
			out[strings.Join(kv, ",")] = m.GetCounter().GetValue()
		}
	}
	return out
}

// TestPolicyCounters_RateLimited: what the kernel counted after the socket
// was bound, less what was read and what the socket lost, is what the rate
// limit kept from the log; counts from before the bind are not.
func TestPolicyCounters_RateLimited(t *testing.T) {
	t.Parallel()
	d := decider.Decider{Kind: decider.KindCtInvalid, Direction: "egress", Verdict: decider.VerdictDeny}
	id := compile.DeciderID(d)
	r := verdicts.NewResolver("n", nil)
	r.Learn(&ruleset.Ruleset{Deciders: map[string]decider.Decider{id: d}})
	f := &fakeCounters{counts: map[string]nft.Counter{id: {Packets: 1000}}}
	pc := newPolicyCounters(f, r)
	pc.bind(context.Background())
	f.counts[id] = nft.Counter{Packets: 1000 + 500}
	for i := range 120 {
		r.Handle(nflog.Packet{Time: time.Unix(int64(i), 0), Prefix: id})
	}
	r.Lost(30)
	require.NoError(t, pc.poll(context.Background()))
	assert.Equal(t, uint64(500-120-30), pc.rateLimited)
}

// TestVerdictState_LearnNamesRulesAndNoticesRemovals: a ClusterNetworkPolicy
// decider is named with its rule's name from the compiled state (compile
// writes it into the decider); a sync that drops a decider is noticed (its
// counters are read before the commit removes its chain).
func TestVerdictState_LearnNamesRulesAndNoticesRemovals(t *testing.T) {
	t.Parallel()
	v := newVerdictState("n", nft.NewFake(), 0)
	in := decider.Decider{Kind: decider.KindClusterNetworkPolicy, Direction: "ingress", Verdict: decider.VerdictDeny, Tier: "Admin", Policies: []string{"block"}, Rule: decider.Index(1), RuleName: "no-metrics", Action: "Deny"}
	out := decider.Decider{Kind: decider.KindClusterNetworkPolicy, Direction: "egress", Verdict: decider.VerdictDeny, Tier: "Admin", Policies: []string{"block"}, Rule: decider.Index(0), RuleName: "out", Action: "Deny"}
	gone := decider.Decider{Kind: decider.KindClusterNetworkPolicy, Direction: "egress", Verdict: decider.VerdictDeny, Tier: "Admin", Policies: []string{"deleted"}, Rule: decider.Index(0), Action: "Deny"}
	rs := func(ds ...decider.Decider) *ruleset.Ruleset {
		m := map[string]decider.Decider{}
		for _, d := range ds {
			m[compile.DeciderID(d)] = d
		}
		return &ruleset.Ruleset{Deciders: m}
	}
	assert.False(t, v.learn(rs(in, out, gone)), "the first ruleset removes nothing")
	for d, name := range map[*decider.Decider]string{&in: "no-metrics", &out: "out", &gone: ""} {
		rec, ok := v.resolver.Handle(nflog.Packet{Time: time.Unix(1, 0), Prefix: compile.DeciderID(*d)})
		require.True(t, ok)
		assert.Equal(t, name, rec.RuleName, d.String())
	}
	assert.False(t, v.learn(rs(in, out, gone)))
	assert.True(t, v.learn(rs(in, out)), "gone's chain goes")
}

// TestNew_UnlimitedLogHasNoBurst: --log-rate 0 with --log-burst's default
// compiles no limit at all; a burst without a rate is a rule the kernel
// refuses, which would fail every sync.
func TestNew_UnlimitedLogHasNoBurst(t *testing.T) {
	t.Parallel()
	a, err := New(Config{NodeName: "n", Client: fake.NewClientset(), Backend: nft.NewFake(),
		Verdicts: VerdictConfig{Log: compile.LogOptions{Drops: true, Group: 100, Rate: 0, Burst: DefaultLogBurst}}})
	require.NoError(t, err)
	assert.Equal(t, compile.LogOptions{Drops: true, Group: 100}, a.compiler.Options.Log)
	a, err = New(Config{NodeName: "n", Client: fake.NewClientset(), Backend: nft.NewFake(),
		Verdicts: VerdictConfig{Log: compile.LogOptions{Drops: true, Group: 100, Rate: 5, Burst: 7}}})
	require.NoError(t, err)
	assert.Equal(t, compile.LogOptions{Drops: true, Group: 100, Rate: 5, Burst: 7}, a.compiler.Options.Log)
}
