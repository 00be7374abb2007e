package trace_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/cluster/clustertest"
	"github.com/policyd/policyd/conformance"
	"github.com/policyd/policyd/conformance/truthtable"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/decider"
	"github.com/policyd/policyd/policy/model"
	"github.com/policyd/policyd/policy/quarantine"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/policy/trace"
	"github.com/policyd/policyd/selectors"
)

// Agreement checks that the compiled rulesets of every node, walked by the
// tracer, decide every connection of a snapshot exactly as the semantics model
// does: every ordered pair of endpoints (pods, hostNetwork pods, node-local
// kubelet traffic, external addresses) × ports 80/81 × TCP/UDP/SCTP.
// It returns the number of connections checked and a description of the
// first few disagreements.
func Agreement(t testing.TB, snap *cluster.Snapshot, extra []netip.Addr) (checked int, mismatches []string) {
	t.Helper()
	return AgreementWith(t, snap, extra, compile.Options{})
}

// AgreementWith is Agreement for rulesets compiled with opts. With logging
// on it also requires every dropping hop to have passed a log rule whose id
// the ruleset's Deciders resolve to a drop, and no accept to be logged
// unless Allowed is on.
func AgreementWith(t testing.TB, snap *cluster.Snapshot, extra []netip.Addr, opts compile.Options) (checked int, mismatches []string) {
	t.Helper()
	checked, mismatches, _, _ = AgreementQuarantined(t, snap, extra, opts)
	return checked, mismatches
}

// AgreementQuarantined is AgreementWith that also returns the quarantine
// decisions each node's compile made (opts.Budget) and the rulesets: the
// model judges each direction with the objects its node quarantines in
// their stripped forms (model.EvaluateQuarantined).
func AgreementQuarantined(t testing.TB, snap *cluster.Snapshot, extra []netip.Addr, opts compile.Options) (checked int, mismatches []string, q *quarantine.Set, rulesets map[string]*ruleset.Ruleset) {
	t.Helper()
	ix := selectors.FromSnapshot(snap)
	rulesets = map[string]*ruleset.Ruleset{}
	q = &quarantine.Set{}
	for _, p := range snap.Pods {
		if p.NodeName == "" || rulesets[p.NodeName] != nil {
			continue
		}
		cc := &compile.Compiler{Options: opts}
		rs, err := cc.Compile(ix, p.NodeName)
		if err != nil {
			t.Fatalf("compile %s: %v", p.NodeName, err)
		}
		rulesets[p.NodeName] = rs
		for _, d := range cc.Quarantined() {
			q.Add(d)
		}
	}

	type ep struct {
		m model.Endpoint
		t trace.Endpoint
	}
	var eps []ep
	for _, p := range snap.Pods {
		if p.NodeName == "" {
			continue
		}
		for _, ip := range p.IPs {
			eps = append(eps, ep{model.Endpoint{Pod: p, IP: ip}, trace.Endpoint{Addr: ip, Node: p.NodeName, NodeLocal: p.HostNetwork}})
		}
	}
	for _, a := range extra {
		eps = append(eps, ep{model.Endpoint{IP: a}, trace.Endpoint{Addr: a}})
	}
	ports := []int32{80, 81}
	for _, src := range eps {
		for _, dst := range eps {
			if src.m.IP.Is4() != dst.m.IP.Is4() || src.m.IP == dst.m.IP {
				continue
			}
			if src.m.Pod == nil && dst.m.Pod == nil {
				continue
			}
			msrc := src.m
			// A hostNetwork pod's traffic to a pod of its own node comes from a
			// local address: node traffic, like kubelet probes.
			if msrc.Pod != nil && msrc.Pod.HostNetwork && dst.m.Pod != nil && !dst.m.Pod.HostNetwork && dst.m.Pod.NodeName == msrc.Pod.NodeName {
				msrc.Node = true
			}
			for _, port := range ports {
				for _, proto := range cluster.Protocols {
					d := model.EvaluateQuarantined(snap, q, model.Packet{Src: msrc, Dst: dst.m, Protocol: proto, Port: port})
					hops, allowed, err := trace.Path(rulesets, src.t, dst.t, uint8(proto), uint16(port))
					if err != nil {
						t.Fatalf("trace %s -> %s: %v", src.m.IP, dst.m.IP, err)
					}
					checked++
					// Judge (no steps recorded) must reach the same verdict
					// through the same deciding rule.
					jhops, jallowed, err := trace.Judge(rulesets, src.t, dst.t, uint8(proto), uint16(port))
					if err != nil {
						t.Fatalf("judge %s -> %s: %v", src.m.IP, dst.m.IP, err)
					}
					if (jallowed != allowed || len(jhops) != len(hops) || (len(hops) > 0 && !sameDecider(jhops[len(jhops)-1].Decider, hops[len(hops)-1].Decider))) && len(mismatches) < 5 {
						mismatches = append(mismatches, fmt.Sprintf("%s -> %s %s/%d: Judge says allowed=%v, Path says %v", name(src.m), name(dst.m), proto, port, jallowed, allowed))
					}
					if bad := checkLogged(rulesets, hops, opts.Log); bad != "" && len(mismatches) < 5 {
						mismatches = append(mismatches, fmt.Sprintf("%s -> %s %s/%d: %s", name(src.m), name(dst.m), proto, port, bad))
					}
					if allowed != d.Allowed && len(mismatches) < 5 {
						desc := fmt.Sprintf("%s -> %s %s/%d: model allowed=%v (egress: %s; ingress: %s), ruleset allowed=%v:\n",
							name(src.m), name(dst.m), proto, port, d.Allowed, d.Egress.Reason, d.Ingress.Reason, allowed)
						for _, h := range hops {
							desc += fmt.Sprintf(" node %s %s:\n%s", h.Node, h.Hook, h.Result)
						}
						mismatches = append(mismatches, desc)
					}
				}
			}
		}
	}
	return checked, mismatches, q, rulesets
}

// checkLogged checks what the hops of one connection logged (see
// AgreementWith); it returns "" when all is well.
func sameDecider(a, b *trace.Step) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func checkLogged(rulesets map[string]*ruleset.Ruleset, hops []trace.HopResult, opts compile.LogOptions) string {
	for _, h := range hops {
		rs := rulesets[h.Node]
		for _, id := range h.Logged {
			d, ok := rs.Deciders[id]
			if !ok {
				return fmt.Sprintf("node %s logged id %s, which its Deciders lack", h.Node, id)
			}
			if d.Verdict == decider.VerdictAllow && !opts.Allowed {
				return fmt.Sprintf("node %s logged an accept (%s) with Allowed off", h.Node, d)
			}
		}
		if !h.Allowed() && h.Decider != nil && opts.Drops {
			if len(h.Logged) == 0 {
				return fmt.Sprintf("node %s %s dropped without logging:\n%s", h.Node, h.Hook, h.Result)
			}
			if d := rs.Deciders[h.Logged[len(h.Logged)-1]]; d.Verdict != decider.VerdictDeny {
				return fmt.Sprintf("node %s %s dropped, but logged %s", h.Node, h.Hook, d)
			}
		}
	}
	return ""
}

func name(e model.Endpoint) string {
	if e.Pod != nil {
		return e.Pod.Key() + "(" + e.IP.String() + ")"
	}
	return e.IP.String()
}

// TestCompiledRulesetAgreesWithModel_Random runs seeded random clusters over
// three nodes (dual-stack, hostNetwork and unscheduled pods included) through
// compile + trace and the model. POLICYD_AGREE_SEEDS sets the number of seeds.
func TestCompiledRulesetAgreesWithModel_Random(t *testing.T) {
	t.Parallel()
	seeds := 1500
	if testing.Short() {
		seeds = 200
	}
	if s, err := strconv.Atoi(os.Getenv("POLICYD_AGREE_SEEDS")); err == nil {
		seeds = s
	}
	extra := []netip.Addr{
		netip.MustParseAddr("10.0.0.250"), netip.MustParseAddr("10.1.2.3"),
		netip.MustParseAddr("fd00::fe"), netip.MustParseAddr("fd00:1::1"),
		clustertest.NodeIP(0, 4), clustertest.NodeIP(1, 4),
	}
	total := 0
	for seed := 1; seed <= seeds; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 0x9d1))
		opts := clustertest.Options{IPv6: seed%3 == 0, HostNetwork: seed%4 == 0, Unscheduled: seed%5 == 0}
		if seed%2 == 0 {
			opts.MaxClusterPolicies = 6 // ClusterNetworkPolicies of both tiers, and Node objects
		}
		snap, _ := clustertest.Random(rng, opts)
		n, bad := Agreement(t, snap, extra)
		total += n
		if len(bad) > 0 {
			t.Fatalf("seed %d (opts %+v): compiled ruleset disagrees with the model:\n%s", seed, opts, bad)
		}
	}
	t.Logf("%d seeds, %d connections checked, all agree", seeds, total)
	if total < seeds*10 {
		t.Fatalf("only %d connections checked over %d seeds: the generator or the walk is broken", total, seeds)
	}
}

// TestCompiledRulesetAgreesWithModel_Logged is the random agreement test
// with every kind of logging on: log chains must not change a verdict, and
// every drop is logged with an id that resolves.
func TestCompiledRulesetAgreesWithModel_Logged(t *testing.T) {
	t.Parallel()
	seeds := 300
	if testing.Short() {
		seeds = 60
	}
	extra := []netip.Addr{netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("fd00:1::1"), clustertest.NodeIP(0, 4)}
	opts := compile.Options{Log: compile.LogOptions{Drops: true, Allowed: true, Group: 100, Rate: 10, Burst: 5}}
	total := 0
	for seed := 1; seed <= seeds; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 0x10a))
		copts := clustertest.Options{IPv6: seed%3 == 0, HostNetwork: seed%4 == 0}
		if seed%2 == 0 {
			copts.MaxClusterPolicies = 6
		}
		snap, _ := clustertest.Random(rng, copts)
		n, bad := AgreementWith(t, snap, extra, opts)
		total += n
		if len(bad) > 0 {
			t.Fatalf("seed %d: logged ruleset disagrees:\n%s", seed, bad)
		}
	}
	t.Logf("%d seeds, %d connections checked with logging on, all agree", seeds, total)
}

// TestCompiledRulesetAgreesWithModel_Upstream runs every step of every
// upstream conformance case, on a 3-node model cluster, through compile +
// trace and the model, and checks the compiled verdicts against the case's
// own truth tables too.
func TestCompiledRulesetAgreesWithModel_Upstream(t *testing.T) {
	t.Parallel()
	cases, err := conformance.Cases()
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 40 {
		t.Fatalf("only %d upstream cases loaded", len(cases))
	}
	cells, external := 0, 0
	for _, c := range cases {
		nss, pods := conformance.ModelCluster([]string{"node-1", "node-2", "node-3"})
		var pols []*networkingv1.NetworkPolicy
		var svcs []*corev1.Service
		for si, step := range c.Steps {
			nss, pods, pols, err = step.Apply(nss, pods, pols)
			if err != nil {
				t.Fatalf("%s step %d: %v", c.Name, si, err)
			}
			svcs = step.ApplyServices(svcs)
			snap, errs := cluster.NewSnapshot(nss, pods, pols)
			errs = append(errs, snap.AddServices(svcs, nil)...)
			if len(errs) > 0 {
				t.Fatalf("%s step %d: %v", c.Name, si, errs)
			}
			// Connections from outside the cluster through the case's
			// Services, traced through the compiled rulesets.
			bad, n, err := conformance.CheckExternal(snap, step, true)
			if err != nil {
				t.Fatalf("%s step %d: %v", c.Name, si, err)
			}
			for _, b := range bad {
				t.Errorf("%s step %d (%s): %s", c.Name, si, step.Name, b)
			}
			external += n
			if _, bad := Agreement(t, snap, nil); len(bad) > 0 {
				t.Fatalf("%s step %d (%s): compiled ruleset disagrees with the model:\n%s", c.Name, si, step.Name, bad)
			}
			cells += checkCaseTables(t, snap, c.Name, si, step)
		}
	}
	if external == 0 {
		t.Error("no case checks connections from outside the cluster")
	}
	t.Logf("%d cases, %d truth-table cells and %d external connections agree", len(cases), cells, external)
}

// checkCaseTables compares the traced verdicts with the case's truth tables.
func checkCaseTables(t *testing.T, snap *cluster.Snapshot, name string, si int, step conformance.Step) int {
	t.Helper()
	ix := selectors.FromSnapshot(snap)
	rulesets := map[string]*ruleset.Ruleset{}
	for _, n := range []string{"node-1", "node-2", "node-3"} {
		rs, err := compile.Compile(ix, n)
		if err != nil {
			t.Fatal(err)
		}
		rulesets[n] = rs
	}
	cells := 0
	for _, pp := range step.Expect.Keys() {
		exp := step.Expect[pp]
		obs := truthtable.New(conformance.ModelPodKeys())
		for _, from := range conformance.ModelPodKeys() {
			for _, to := range conformance.ModelPodKeys() {
				_, probed := exp.Get(from, to)
				if !probed {
					continue
				}
				src, dst := snap.Pod(from), snap.Pod(to)
				sip, _ := src.IP(4)
				dip, _ := dst.IP(4)
				_, allowed, err := trace.Path(rulesets, trace.Endpoint{Addr: sip, Node: src.NodeName}, trace.Endpoint{Addr: dip, Node: dst.NodeName}, uint8(pp.Protocol), uint16(pp.Port))
				if err != nil {
					t.Fatal(err)
				}
				obs.Set(from, to, allowed)
				cells++
			}
		}
		if n, diff := truthtable.Diff(exp, obs); n > 0 {
			t.Errorf("%s step %d %s: compiled ruleset vs case table, %d cells differ:\n%s", name, si, pp, n, diff)
		}
	}
	return cells
}

// TestHostileInputAgreesAndNeverWidens feeds random clusters with hostile and
// invalid parts added (clustertest.Hostile: address conflicts, bad ports,
// invalid peers and selectors, hostNetwork pods claiming pod addresses)
// through compile + trace and the model. They must agree on every
// connection, and no connection between the original pods may be allowed
// that the same cluster without the hostile parts denies.
func TestHostileInputAgreesAndNeverWidens(t *testing.T) {
	t.Parallel()
	seeds := 1000
	if testing.Short() {
		seeds = 150
	}
	if s, err := strconv.Atoi(os.Getenv("POLICYD_AGREE_SEEDS")); err == nil {
		seeds = s
	}
	extra := []netip.Addr{netip.MustParseAddr("10.0.0.250"), netip.MustParseAddr("fd00::fe"), clustertest.NodeIP(0, 4)}
	total, conflicts, widenChecked := 0, 0, 0
	for seed := 1; seed <= seeds; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 0x4057))
		opts := clustertest.Options{IPv6: seed%2 == 0, HostNetwork: seed%3 == 0}
		clean := clustertest.RandomObjects(rng, opts)
		hostile, what := clustertest.Hostile(rng, clean)
		snap, _ := cluster.NewSnapshot(hostile.Namespaces, hostile.Pods, hostile.Policies)
		conflicts += len(snap.AddressConflicts())
		n, bad := Agreement(t, snap, extra)
		total += n
		if len(bad) > 0 {
			t.Fatalf("seed %d: compiled ruleset disagrees with the model on hostile input %q:\n%s", seed, what, bad)
		}

		// No widening: every connection between the original pods that the
		// hostile cluster's kernel allows, the clean cluster allows too.
		cleanSnap := clean.Snapshot()
		rulesets := compileAll(t, snap)
		for _, src := range cleanSnap.Pods {
			for _, dst := range cleanSnap.Pods {
				if src == dst || src.NodeName == "" || dst.NodeName == "" {
					continue
				}
				for _, sip := range src.IPs {
					dip, ok := dst.IP(family(sip))
					if !ok || sip == dip {
						continue
					}
					for _, proto := range cluster.Protocols {
						for _, port := range []int32{80, 81} {
							_, allowed, err := trace.Path(rulesets,
								trace.Endpoint{Addr: sip, Node: src.NodeName, NodeLocal: src.HostNetwork},
								trace.Endpoint{Addr: dip, Node: dst.NodeName, NodeLocal: dst.HostNetwork}, uint8(proto), uint16(port))
							if err != nil {
								t.Fatal(err)
							}
							msrc := model.Endpoint{Pod: src, IP: sip}
							if src.HostNetwork && !dst.HostNetwork && src.NodeName == dst.NodeName {
								msrc.Node = true
							}
							was := model.Evaluate(cleanSnap, model.Packet{Src: msrc, Dst: model.Endpoint{Pod: dst, IP: dip}, Protocol: proto, Port: port})
							widenChecked++
							if allowed && !was.Allowed {
								t.Fatalf("seed %d: hostile input %q widens %s -> %s %s/%d: denied without it (%s | %s), allowed with it",
									seed, what, src.Key(), dst.Key(), proto, port, was.Egress.Reason, was.Ingress.Reason)
							}
						}
					}
				}
			}
		}
	}
	t.Logf("%d seeds, %d connections agree, %d address conflicts, %d checked for widening", seeds, total, conflicts, widenChecked)
	if conflicts < seeds/2 || widenChecked < seeds*10 {
		t.Fatalf("only %d conflicts and %d widening checks over %d seeds: the generator is broken", conflicts, widenChecked, seeds)
	}
}

func compileAll(t *testing.T, snap *cluster.Snapshot) map[string]*ruleset.Ruleset {
	t.Helper()
	ix := selectors.FromSnapshot(snap)
	out := map[string]*ruleset.Ruleset{}
	for _, n := range []string{"node-1", "node-2", "node-3"} {
		rs, err := compile.Compile(ix, n)
		if err != nil {
			t.Fatal(err)
		}
		out[n] = rs
	}
	return out
}

func family(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}
