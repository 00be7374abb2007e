package ctcut_test

import (
	"context"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/ctcut"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/selectors"
)

const flowMark, cutMark = 0x00100000, 0x00200000

// table is a conntrack table in memory.
type table struct {
	flows   map[int]*ctcut.Flow
	deleted []int
}

func (t *table) Flows(_ context.Context, mark uint32) ([]ctcut.Flow, error) {
	var out []ctcut.Flow
	for id, f := range t.flows {
		if f.Mark&mark == mark {
			c := *f
			c.Ref = id
			out = append(out, c)
		}
	}
	return out, nil
}

func (t *table) Delete(_ context.Context, f ctcut.Flow) error {
	id := f.Ref.(int)
	delete(t.flows, id)
	t.deleted = append(t.deleted, id)
	return nil
}

func (t *table) SetMark(_ context.Context, f ctcut.Flow, mark uint32) error {
	t.flows[f.Ref.(int)].Mark = mark
	return nil
}

func (t *table) LocalAddrs(context.Context) (map[netip.Addr]bool, error) { return nil, nil }

// compiled compiles x/server (10.0.0.1, on node-1) and x/client
// (10.0.0.2, node-2), with the server's ingress isolated when isolate.
func compiled(t *testing.T, isolate bool) *ruleset.Ruleset {
	t.Helper()
	pod := func(name, node, ip string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: name, Labels: map[string]string{"app": name}},
			Spec:       corev1.PodSpec{NodeName: node},
			Status:     corev1.PodStatus{PodIPs: []corev1.PodIP{{IP: ip}}},
		}
	}
	var pols []*networkingv1.NetworkPolicy
	if isolate {
		pols = append(pols, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "deny"},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}}}})
	}
	snap, errs := cluster.NewSnapshot([]*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "x"}}},
		[]*corev1.Pod{pod("server", "node-1", "10.0.0.1"), pod("client", "node-2", "10.0.0.2")}, pols)
	require.Empty(t, errs)
	cc := &compile.Compiler{Options: compile.Options{FlowMark: flowMark, CutMark: cutMark}}
	rs, err := cc.Compile(selectors.FromSnapshot(snap), "node-1")
	require.NoError(t, err)
	return rs
}

// TestPass_CutsDeniedFlowsByProtocol: a pass deletes a denied TCP flow,
// gives a denied UDP and SCTP flow the cut mark (and counts each once, not
// again on the next pass), leaves allowed and unmarked flows alone, and
// deletes a cut flow that a later ruleset admits again.
func TestPass_CutsDeniedFlowsByProtocol(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client, server := netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.1")
	flow := func(proto uint8, port uint16, mark uint32) *ctcut.Flow {
		return &ctcut.Flow{Proto: proto, Src: client, SrcPort: 40000 + port, Dst: server, DstPort: port, Mark: mark}
	}
	tb := &table{flows: map[int]*ctcut.Flow{
		1: flow(6, 80, flowMark),
		2: flow(17, 53, flowMark),
		3: flow(132, 9, flowMark),
		4: flow(17, 54, 0), // not marked: not this pass's business
	}}
	denied := compiled(t, true)
	res, err := ctcut.Pass(ctx, tb, denied, "node-1", flowMark, cutMark)
	require.NoError(t, err)
	assert.Empty(t, res.Errors)
	assert.Equal(t, 3, res.Judged)
	assert.Len(t, res.Cuts, 3)
	assert.Equal(t, []int{1}, tb.deleted, "only the TCP flow is deleted")
	assert.Equal(t, uint32(flowMark|cutMark), tb.flows[2].Mark, "the UDP flow is kept, cut")
	assert.Equal(t, uint32(flowMark|cutMark), tb.flows[3].Mark, "the SCTP flow is kept, cut")
	assert.Equal(t, uint32(0), tb.flows[4].Mark)
	for _, c := range res.Cuts {
		assert.Equal(t, ctcut.ReasonIngress, c.Verdict.Reason, "%s", c.Flow)
	}

	// Again under the same ruleset: nothing new to cut.
	res, err = ctcut.Pass(ctx, tb, denied, "node-1", flowMark, cutMark)
	require.NoError(t, err)
	assert.Empty(t, res.Cuts)
	assert.Zero(t, res.Restored)

	// The policy goes: the cut flows are deleted, to be judged anew.
	res, err = ctcut.Pass(ctx, tb, compiled(t, false), "node-1", flowMark, cutMark)
	require.NoError(t, err)
	assert.Empty(t, res.Cuts)
	assert.Equal(t, 2, res.Restored)
	assert.ElementsMatch(t, []int{1, 2, 3}, tb.deleted)
	assert.Contains(t, tb.flows, 4)
}

// TestPass_WithoutCutMarkDeletes: with cutMark 0 every denied flow is
// deleted.
func TestPass_WithoutCutMarkDeletes(t *testing.T) {
	t.Parallel()
	tb := &table{flows: map[int]*ctcut.Flow{
		1: {Proto: 17, Src: netip.MustParseAddr("10.0.0.2"), SrcPort: 5000, Dst: netip.MustParseAddr("10.0.0.1"), DstPort: 53, Mark: flowMark},
	}}
	res, err := ctcut.Pass(context.Background(), tb, compiled(t, true), "node-1", flowMark, 0)
	require.NoError(t, err)
	assert.Len(t, res.Cuts, 1)
	assert.Equal(t, []int{1}, tb.deleted)
}

// TestCompile_CutMarkRuleLeadsEveryBaseChain: the cut-mark drop comes
// before the established accept in both base chains.
func TestCompile_CutMarkRuleLeadsEveryBaseChain(t *testing.T) {
	t.Parallel()
	rs := compiled(t, true)
	for _, name := range []string{compile.ChainInput, compile.ChainPostrouting} {
		c := rs.Chain(name)
		require.NotNil(t, c, name)
		require.IsType(t, &ruleset.CutMarkRule{}, c.Rules[0], "%s starts with %s", name, c.Rules[0].Text())
		assert.Equal(t, "ct mark & 0x00200000 == 0x00200000 drop", c.Rules[0].Text())
	}
}
