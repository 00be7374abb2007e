package pktpath

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/policy/trace"
)

// Small sizes: these tests check the mechanism, not speed.
const (
	testPods       = 500
	testPolicies   = 100
	testNamespaces = 10
	testSeed       = 7
	testDuration   = 300 * time.Millisecond
)

func newTestScenario(t *testing.T) (*Scenario, *ruleset.Ruleset) {
	t.Helper()
	sc, err := NewScenario(testPods, testPolicies, testNamespaces, testSeed)
	if err != nil {
		t.Fatalf("NewScenario: %v", err)
	}
	rs, err := sc.Compile()
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return sc, rs
}

// withoutRules returns a copy of rs without the rules commented comment,
// failing the test if there is none. rs is not modified.
func withoutRules(t *testing.T, rs *ruleset.Ruleset, comment string) *ruleset.Ruleset {
	t.Helper()
	out := &ruleset.Ruleset{Sets: rs.Sets}
	removed := 0
	for _, c := range rs.Chains {
		cp := &ruleset.Chain{Name: c.Name, Base: c.Base}
		for _, r := range c.Rules {
			if r.RuleComment() == comment {
				removed++
				continue
			}
			cp.Rules = append(cp.Rules, r)
		}
		out.Chains = append(out.Chains, cp)
	}
	if removed == 0 {
		t.Fatalf("no rule commented %q to remove", comment)
	}
	return out
}

func allowComment(ns, policy string, d cluster.Direction) string {
	return fmt.Sprintf("%s/%s %s[%d]", ns, policy, d, AllowRuleIndex)
}

func TestScenario_BenchPodsAreSelectedAndAllowedLate(t *testing.T) {
	t.Parallel()
	sc, rs := newTestScenario(t)
	if sc.Src.NodeName != sc.Node || sc.Dst.NodeName != sc.Node {
		t.Fatalf("bench pods on %s and %s, compiled node %s", sc.Src.NodeName, sc.Dst.NodeName, sc.Node)
	}
	for _, p := range []*cluster.Pod{sc.Src, sc.Dst} {
		if other := sc.Snapshot.PodByIP(p.IPs[0]); other != p {
			t.Errorf("address %s of %s is also held by %s", p.IPs[0], p.Key(), other.Key())
		}
	}
	rep := &Report{Src: sc.Src.IPs[0], Dst: sc.Dst.IPs[0]}
	if err := rep.describeGroups(sc, rs); err != nil {
		t.Fatalf("describeGroups: %v", err)
	}
	tests := []struct {
		name             string
		d                cluster.Direction
		addr             netip.Addr
		want             string
		policies, at, of int
		via              string
	}{
		{"ingress of pod B", cluster.Ingress, sc.Dst.IPs[0], allowComment(ServerNamespace, IngressAllowPolicy, cluster.Ingress), rep.IngressPolicies, rep.IngressAllowAt, rep.IngressRules, rep.IngressVia},
		{"egress of pod A", cluster.Egress, sc.Src.IPs[0], allowComment(ClientNamespace, EgressAllowPolicy, cluster.Egress), rep.EgressPolicies, rep.EgressAllowAt, rep.EgressRules, rep.EgressVia},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.policies < 3 {
				t.Errorf("%d policies select the pod, want at least 3", tt.policies)
			}
			// The group's rules on single ports are several, so the chain
			// dispatches on the port and the flow's port goes straight to
			// the chain holding the allowing rule, past the group's other
			// policy rules (at least two), which it would walk without
			// the dispatch.
			if tt.via == "" {
				t.Errorf("the allowing rule is rule %d of %d of the group chain: no port dispatch", tt.at, tt.of)
			}
			if tt.at < 1 || tt.at >= tt.of {
				t.Errorf("allowing rule is rule %d of %d, want one before the chain's final drop", tt.at, tt.of)
			}
			c, err := GroupChain(rs, tt.d, tt.addr)
			require.NoError(t, err)
			allows, err := GroupAllows(rs, c)
			require.NoError(t, err)
			var others []string
			for _, pa := range allows {
				if c := pa.Rule.Comment; pa.Rule.Family != 6 && c != tt.want && !slices.Contains(others, c) {
					others = append(others, c)
				}
			}
			if len(others) < 2 {
				t.Errorf("the group's other policy rules: %q, want at least 2", others)
			}
		})
	}
}

func TestLinearAllowList_OneRulePerPeerSourceLast(t *testing.T) {
	t.Parallel()
	sc, rs := newTestScenario(t)
	src, dst := sc.Src.IPs[0], sc.Dst.IPs[0]
	lin, err := LinearAllowList(rs, src, dst)
	if err != nil {
		t.Fatalf("LinearAllowList: %v", err)
	}
	var accepts []string
	for _, line := range strings.Split(lin.Text, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "ip saddr ") && strings.HasSuffix(line, " accept") {
			accepts = append(accepts, line)
		}
	}
	if len(accepts) != lin.Rules {
		t.Fatalf("text has %d per-peer accept rules, Rules says %d", len(accepts), lin.Rules)
	}
	// Every frontend pod of the cluster is an allowed peer (pdbench-in-2),
	// each exactly once.
	seen := map[string]bool{}
	for _, a := range accepts {
		peer := strings.Fields(a)[2]
		if seen[peer] {
			t.Errorf("peer %s has two rules", peer)
		}
		seen[peer] = true
	}
	frontends := 0
	for _, p := range sc.Snapshot.Pods {
		if ip, ok := p.IP(4); ok && !p.HostNetwork && p.Labels["tier"] == "frontend" {
			frontends++
			if !seen[ip.String()] {
				t.Errorf("frontend pod %s (%s) has no rule", p.Key(), ip)
			}
		}
	}
	if frontends < 10 {
		t.Errorf("only %d frontend pods: the allow-list is too small to mean anything", frontends)
	}
	// Pod A is a frontend pod too: its rule unites pdbench-in-2's port with the
	// benchmark ports.
	wantLast := fmt.Sprintf("ip saddr %s ip daddr %s meta l4proto . th dport { tcp . %d, tcp . 8080, udp . %d } accept", src, dst, Port, Port)
	if got := accepts[len(accepts)-1]; got != wantLast {
		t.Errorf("last rule\n got %s\nwant %s", got, wantLast)
	}
	if !strings.Contains(lin.Text, fmt.Sprintf("ip daddr %s drop", dst)) {
		t.Errorf("no drop for %s in\n%s", dst, lin.Text)
	}
}

func skipUnlessRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("needs root to create network namespaces, and CI must run it")
		}
		t.Skip("needs root to create network namespaces and load nftables rulesets")
	}
}

func TestRemoveLeftovers_KeepsNamespacesOfLiveRuns(t *testing.T) {
	skipUnlessRoot(t)
	// 999999999 is above any pid_max, so no process has it.
	dead := NetnsPrefix + "999999999-leftover"
	live := NetnsPrefix + strconv.Itoa(os.Getpid()) + "-live"
	for _, ns := range []string{dead, live} {
		if err := run("ip", "netns", "add", ns); err != nil {
			t.Fatalf("create %s: %v", ns, err)
		}
		t.Cleanup(func() {
			if netnsExists(ns) {
				if err := run("ip", "netns", "del", ns); err != nil {
					t.Errorf("delete %s: %v", ns, err)
				}
			}
		})
	}
	if err := RemoveLeftovers(); err != nil {
		t.Fatalf("RemoveLeftovers: %v", err)
	}
	if netnsExists(dead) {
		t.Errorf("%s (no such process) was kept", dead)
	}
	if !netnsExists(live) {
		t.Errorf("%s (this process) was removed", live)
	}
}

// TestPacketPath_CompiledTableSitsOnThePath loads the compiled table into the
// node of a real topology and checks that the benchmark flow passes with it,
// and passes no more once the allowing rule of either direction is removed:
// so what the benchmark measures really is the compiled table on the path.
// The same is checked for the linear configuration.
func TestPacketPath_CompiledTableSitsOnThePath(t *testing.T) {
	skipUnlessRoot(t)
	sc, rs := newTestScenario(t)
	src, dst := sc.Src.IPs[0], sc.Dst.IPs[0]
	lin, err := LinearAllowList(rs, src, dst)
	if err != nil {
		t.Fatalf("LinearAllowList: %v", err)
	}
	if err := RemoveLeftovers(); err != nil {
		t.Fatalf("RemoveLeftovers: %v", err)
	}
	topo, err := NewTopology(src, dst)
	if err != nil {
		t.Fatalf("NewTopology: %v", err)
	}
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})

	srcRule := fmt.Sprintf("\t\tip saddr %s ip daddr %s ", src, dst)
	var linNoSrc []string
	for _, line := range strings.SplitAfter(lin.Text, "\n") {
		if !strings.HasPrefix(line, srcRule) {
			linNoSrc = append(linNoSrc, line)
		}
	}
	if len(linNoSrc) != strings.Count(lin.Text, "\n") {
		t.Fatalf("linear text has no single rule for %s", src)
	}

	tests := []struct {
		name    string
		text    string
		allowed bool
	}{
		{"no table", "", true},
		{"compiled table", rs.Text(), true},
		{"compiled table without the ingress allowing rule", withoutRules(t, rs, allowComment(ServerNamespace, IngressAllowPolicy, cluster.Ingress)).Text(), false},
		{"compiled table without the egress allowing rule", withoutRules(t, rs, allowComment(ClientNamespace, EgressAllowPolicy, cluster.Egress)).Text(), false},
		{"linear allow-list", lin.Text, true},
		{"linear allow-list without the source's rule", strings.Join(linNoSrc, ""), false},
	}
	// Sequential: every case reprograms the same node.
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := topo.SetRuleset(tt.text); err != nil {
				t.Fatalf("SetRuleset: %v", err)
			}
			u, err := topo.UDP(testDuration)
			if err != nil {
				t.Fatalf("UDP: %v", err)
			}
			c, err := topo.TCP(testDuration)
			if err != nil {
				t.Fatalf("TCP: %v", err)
			}
			t.Logf("udp: %d sent, %d received; tcp: %d connected, %d failed", u.Sent, u.Received, c.Connected, c.Failed)
			if u.Sent == 0 || c.Connected+c.Failed == 0 {
				t.Fatalf("the generators did not run: %d datagrams sent, %d connects tried", u.Sent, c.Connected+c.Failed)
			}
			if tt.allowed {
				if u.Received == 0 || c.Connected == 0 {
					t.Errorf("flow blocked: %d of %d datagrams received, %d connections (%d failed)", u.Received, u.Sent, c.Connected, c.Failed)
				}
				return
			}
			if u.Received != 0 || c.Connected != 0 {
				t.Errorf("flow got through: %d of %d datagrams received, %d connections (%d failed)", u.Received, u.Sent, c.Connected, c.Failed)
			}
		})
	}
}

// TestScenario_ClusterPoliciesOnThePath: with the benchmark's CNPs the flow
// is still allowed, and in both directions it passes the Admin rules of the
// 20 CNPs that select both pods before its NetworkPolicies admit it: walked
// one by one, or looked up at once in a tier map whose drop entries cover
// the 20 CNPs' Deny rules.
func TestScenario_ClusterPoliciesOnThePath(t *testing.T) {
	t.Parallel()
	sc, _ := newTestScenario(t)
	rs, err := sc.CompileWithClusterPolicies(100)
	if err != nil {
		t.Fatal(err)
	}
	for _, proto := range []uint8{6, 17} {
		res, err := trace.Trace(rs, ruleset.HookPostrouting, trace.Packet{Src: sc.Src.IPs[0], Dst: sc.Dst.IPs[0], Protocol: proto, Port: Port})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Allowed() {
			t.Fatalf("protocol %d: the benchmark flow is dropped with CNPs:\n%s", proto, res)
		}
		// Deny rules passed, per direction: a plain tier rule, or the
		// distinct drop entries of a tier map the flow was looked up in.
		passed := map[string]int{}
		for _, st := range res.Steps {
			if !strings.Contains(st.Chain, "-tier-") {
				continue
			}
			dir := strings.SplitN(st.Chain, "-", 2)[0]
			if strings.HasSuffix(st.Text, " drop") || strings.Contains(st.Text, "goto ingress-deny-") {
				passed[dir]++
			}
			if i := strings.Index(st.Text, "vmap @tmap"); i >= 0 {
				m := rs.Set(st.Text[i+len("vmap @"):])
				if m == nil {
					t.Fatalf("%s names a missing map", st.Text)
				}
				denies := map[string]bool{}
				for j := range m.Len() {
					if e := m.At(j); isDeny(e.Verdict) {
						denies[fmt.Sprint(e.Port, e.Addr)] = true
					}
				}
				passed[dir] += min(len(denies), 20)
			}
		}
		for _, dir := range []string{"ingress", "egress"} {
			if passed[dir] < 20 {
				t.Errorf("protocol %d: the flow passed %d Deny rules in %s, want 20 (20 CNPs select each pod):\n%s", proto, passed[dir], dir, res)
			}
		}
	}
}

// isDeny reports whether v is a tier Deny: a drop, or in ingress the goto
// to the chain that admits node traffic before it drops (compile's
// nodeFirstDrop).
func isDeny(v ruleset.Verdict) bool {
	return v.Kind == ruleset.Drop || (v.Kind == ruleset.Goto && strings.HasPrefix(v.Chain, "ingress-deny-"))
}
