package nft

import (
	"context"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policyd/policyd/policy/ruleset"
)

// The refused batch is sent at least rejectAttempts times, and until the
// prober has completed proberRounds rounds.
const (
	rejectAttempts = 3
	proberRounds   = 3
)

// TestFault_KernelRejectsBatchMidSync programs a one-node lab with the
// compile of one cluster state, then sends the compile of the next state in
// a batch the kernel refuses part-way, several times, while real packets
// probe every pod pair: the kernel must abort the whole batch each time, so
// the packets keep doing exactly what the first state's policies say and
// the table lists exactly as before. The next Sync of the good ruleset must
// read the kernel back (a full resync) and converge to the table `nft -f`
// of a fresh compile loads, with packets following the new policies, and
// the Sync after it writes nothing.
//
// The batch is refused two ways: an interval element overlapping another
// one in a new ipBlock set (the lowering accepts it, the kernel does not),
// and, through the Backend's test hook, a rule looking up a set that does
// not exist, appended after every other message of the batch.
func TestFault_KernelRejectsBatchMidSync(t *testing.T) {
	refusals := []struct {
		name string
		// refuse makes the batch of good one the kernel refuses: it returns
		// the ruleset to send and sets the Backend's hook if it needs one.
		refuse func(t *testing.T, b *Backend, good *ruleset.Ruleset) *ruleset.Ruleset
	}{
		{"element the kernel rejects", func(t *testing.T, _ *Backend, good *ruleset.Ruleset) *ruleset.Ruleset {
			bad := cloneRuleset(good)
			for _, s := range bad.Sets {
				if s.Interval && s.Key == ruleset.KeyIPv4 && s.Len() > 0 {
					e := s.At(0)
					s.Replace(append(s.Elems(), ruleset.Element{Addr: e.Addr.Next(), AddrEnd: e.AddrEnd.Next()}))
					return bad
				}
			}
			t.Fatal("the new state compiles to no IPv4 interval set")
			return nil
		}},
		{"rule referencing a missing set, last in the batch", func(t *testing.T, b *Backend, good *ruleset.Ruleset) *ruleset.Ruleset {
			b.beforeFlush = func(conn *nftables.Conn) {
				conn.AddRule(&nftables.Rule{
					Table: table(),
					Chain: &nftables.Chain{Table: table(), Name: "postrouting"},
					Exprs: []expr.Any{
						&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
						&expr.Lookup{SourceRegister: 1, SetName: "no-such-set"},
					},
				})
			}
			return good
		}},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			fl := newFaultLab(t, "server", "client", "stranger")
			// Before: the server admits the client. After: it admits the
			// stranger and an ipBlock, not the client, and the client is
			// isolated for egress: peer sets, group chains, dispatch
			// entries and a base chain's references all change.
			before := fl.state(allowFrom("server", "client"))
			next := allowFrom("server", "stranger")
			next.Spec.Ingress[0].From = append(next.Spec.Ingress[0].From, networkingv1.NetworkPolicyPeer{
				IPBlock: &networkingv1.IPBlock{CIDR: "10.99.0.0/16", Except: []string{"10.99.1.0/24"}},
			})
			after := fl.state(next, &networkingv1.NetworkPolicy{
				ObjectMeta: metav1.ObjectMeta{Namespace: faultNS, Name: "client-egress"},
				Spec: networkingv1.NetworkPolicySpec{
					PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}},
					PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
				},
			})
			old, good := fl.compile(before), fl.compile(after)
			mustSync(t, fl.b, old)
			fl.check("first state committed", before)
			listed := normalizedListing(t, fl.ns)

			probes := fl.probes()
			p := fl.startProber(probes, fl.expected(before, probes))
			bad := tt.refuse(t, fl.b, good)
			// Refused batches back to back while the prober completes
			// its rounds: packets meet the table between and during
			// the kernel's processing of each batch.
			attempts := 0
			for attempts < rejectAttempts || p.roundsDone() < proberRounds {
				_, err := fl.b.Sync(context.Background(), bad)
				require.Error(t, err, "attempt %d: the kernel accepted the batch", attempts)
				if attempts == 0 {
					t.Logf("refused: %v", err)
				}
				attempts++
			}
			require.Equal(t, listed, normalizedListing(t, fl.ns), "the refused batches changed the table")
			rounds, wrong := p.result()
			assert.Empty(t, wrong, "while the kernel refused the batches, packets did what the committed policies do not say")
			require.Positive(t, rounds)
			t.Logf("%d refused batches; %d rounds of %d probes meanwhile, all as the first state says", attempts, rounds, len(probes))
			fl.check("after the refused batches", before)

			fl.b.beforeFlush = nil
			st := mustSync(t, fl.b, good)
			assert.True(t, st.Full, "the sync after a refused batch must read the kernel back")
			expectListing(t, fl.ns, good)
			fl.check("converged", after)
			wantStats(t, "after convergence", mustSync(t, fl.b, good), false, 0)
		})
	}
}

// cloneRuleset copies r deeply enough to change its sets' elements.
func cloneRuleset(r *ruleset.Ruleset) *ruleset.Ruleset {
	out := &ruleset.Ruleset{Chains: r.Chains}
	for _, s := range r.Sets {
		c := *s
		c.Replace(s.Elems())
		out.Sets = append(out.Sets, &c)
	}
	return out
}
