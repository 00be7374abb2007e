package agent_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	npaclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/policyd/policyd/agent"
	"github.com/policyd/policyd/internal/apiservertest"
	"github.com/policyd/policyd/policy/nft"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/policy/trace"
)

// syncAttempt is one Sync the agent asked of a recordingFake.
type syncAttempt struct {
	err   error
	stats nft.SyncStats
	// committed is the text of the Fake's table right after the attempt,
	// table the table itself.
	committed string
	table     *ruleset.Ruleset
	at        time.Time
}

// recordingFake is the in-memory Fake with every Sync attempt recorded.
// Armed with a refusal, it refuses the first sync that would change the
// table (not a no-op sync that happens to come first), in one of two ways:
// the Fake's own FailNextSync (a batch refused as a whole), or smuggling
// into the wanted ruleset a chain that jumps to a chain that does not
// exist, which the Fake, like the kernel, refuses at that step of the plan,
// after applying the steps before it to its working copy.
type recordingFake struct {
	*nft.Fake
	mu       sync.Mutex
	attempts []syncAttempt
	refusal  string // "", "whole" or "part-way"
}

func (f *recordingFake) arm(refusal string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refusal = refusal
}

func (f *recordingFake) Sync(ctx context.Context, want *ruleset.Ruleset) (nft.SyncStats, error) {
	f.mu.Lock()
	if cur := f.Ruleset(); f.refusal != "" && cur != nil && want.Text() != cur.Text() {
		switch f.refusal {
		case "whole":
			f.FailNextSync(errors.New("injected: netlink batch rejected"))
		case "part-way":
			bad := &ruleset.Ruleset{Sets: want.Sets, Chains: append(slices.Clone(want.Chains), &ruleset.Chain{
				Name:  "refused",
				Rules: []ruleset.Rule{&ruleset.VerdictRule{Verdict: ruleset.Verdict{Kind: ruleset.Jump, Chain: "no-such-chain"}}},
			})}
			bad.Sort()
			want = bad
		}
		f.refusal = ""
	}
	f.mu.Unlock()
	st, err := f.Fake.Sync(ctx, want)
	text := ""
	rs := f.Ruleset()
	if rs != nil {
		text = rs.Text()
	}
	f.mu.Lock()
	f.attempts = append(f.attempts, syncAttempt{err: err, stats: st, committed: text, table: rs, at: time.Now()})
	f.mu.Unlock()
	return st, err
}

func (f *recordingFake) snapshot() []syncAttempt {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.attempts)
}

// TestFault_RejectedSyncKeepsCommittedTable: the backend refuses the sync
// that carries a policy change (withdrawing one client's access, granting
// another's), as a whole or part-way through its plan. The table committed
// before stays exactly as it was (the old policy keeps being enforced, and
// nothing either state denies is allowed), the agent retries at once (the
// batch again) although its periodic sync is an hour away, the retry is a full
// resync carrying the change that failed, and the table then equals a
// fresh compile of the API state.
func TestFault_RejectedSyncKeepsCommittedTable(t *testing.T) {
	for _, refusal := range []string{"whole", "part-way"} {
		t.Run("refused "+refusal, func(t *testing.T) {
			s := apiservertest.Shared(t)
			admin := s.Client()
			cnpc, err := npaclient.NewForConfig(s.AdminConfig())
			require.NoError(t, err)
			ns := s.Namespace(t)
			fake := &recordingFake{Fake: nft.NewFake()}
			createPod(t, admin, newPod(ns, "server", "node-1", map[string]string{"app": "server"}), serverIP)
			createPod(t, admin, newPod(ns, "old-client", "node-2", map[string]string{"app": "client"}), "10.77.0.20")
			createPod(t, admin, newPod(ns, "new-client", "node-2", map[string]string{"app": "new"}), "10.77.0.21")
			pol := applyPolicy(t, admin, &networkingv1.NetworkPolicy{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "server"},
				Spec: networkingv1.NetworkPolicySpec{
					PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}},
					Ingress: []networkingv1.NetworkPolicyIngressRule{{
						From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}}}},
						Ports: []networkingv1.NetworkPolicyPort{tcp80()},
					}},
				},
			})
			ta := startAgent(t, agentRESTConfig(t, s), "node-1", fake, func(c *agent.Config) {
				// No periodic sync during the test: only the retry after
				// the failure can bring the change in.
				c.MaxSyncInterval = time.Hour
			})
			ta.waitFor("NetworkPolicy", key(ns, "server"), pol.ResourceVersion)
			allowedIn := func(rs *ruleset.Ruleset, src string) bool {
				t.Helper()
				_, ok, err := trace.Path(map[string]*ruleset.Ruleset{"node-1": rs},
					trace.Endpoint{Addr: netip.MustParseAddr(src)},
					trace.Endpoint{Addr: netip.MustParseAddr(serverIP), Node: "node-1"}, 6, 80)
				require.NoError(t, err)
				return ok
			}
			allowed := func(src string) bool { t.Helper(); return allowedIn(fake.Ruleset(), src) }
			require.Equal(t, freshCompile(t, admin, cnpc, "node-1").Text(), fake.Ruleset().Text(), "before the fault the table is not the API state's")
			require.True(t, allowed("10.77.0.20"))
			require.False(t, allowed("10.77.0.21"))
			committed := fake.Ruleset().Text()
			before := len(fake.snapshot())

			fake.arm(refusal)
			pol.Spec.Ingress[0].From[0].PodSelector.MatchLabels = map[string]string{"app": "new"}
			pol = applyPolicy(t, admin, pol)

			// The refused attempt: nothing of it is committed.
			var failed syncAttempt
			require.Eventually(t, func() bool {
				for _, a := range fake.snapshot()[before:] {
					if a.err != nil {
						failed = a
						return true
					}
				}
				return false
			}, 10*time.Second, 5*time.Millisecond, "the agent never attempted the sync that fails")
			t.Logf("refused: %v", failed.err)
			assert.Equal(t, committed, failed.committed, "a refused sync changed the committed table")
			// The table as the refused attempt left it (the agent's retry
			// may have committed the change since).
			assert.True(t, allowedIn(failed.table, "10.77.0.20"), "the old policy stays in force")
			assert.False(t, allowedIn(failed.table, "10.77.0.21"), "the refused change must not be half in force")

			// The retry, well before the periodic sync.
			ta.waitForWithin("NetworkPolicy", key(ns, "server"), pol.ResourceVersion, 10*time.Second)
			ta.mu.Lock()
			last := ta.commits[len(ta.commits)-1]
			ta.mu.Unlock()
			t.Logf("retried and committed %v after the refusal", last.Time.Sub(failed.at).Round(time.Millisecond))
			assert.True(t, last.Stats.Full, "the sync after a refused one must be a full resync")
			assert.Equal(t, freshCompile(t, admin, cnpc, "node-1").Text(), fake.Ruleset().Text(), "after the retry the table is not a fresh compile of the API state")
			assert.False(t, allowed("10.77.0.20"))
			assert.True(t, allowed("10.77.0.21"))

			// At every moment the table was the old state's or the new
			// one's, never anything else.
			states := map[string]bool{}
			for _, a := range fake.snapshot()[before:] {
				states[a.committed] = true
			}
			delete(states, committed)
			delete(states, fake.Ruleset().Text())
			assert.Empty(t, states, "the table held a state that is neither the committed one nor the converged one")
			assert.True(t, ta.a.Ready(), "one refused sync does not make the agent unready")
		})
	}
}

// waitForWithin is waitFor with its own deadline.
func (ta *testAgent) waitForWithin(kind, key, rv string, d time.Duration) {
	ta.t.Helper()
	deadline := time.Now().Add(d)
	timer := time.AfterFunc(d, func() { ta.mu.Lock(); ta.cond.Broadcast(); ta.mu.Unlock() })
	defer timer.Stop()
	ta.mu.Lock()
	defer ta.mu.Unlock()
	for !ta.committed[kind+"/"+key][rv] {
		if time.Now().After(deadline) {
			ta.t.Fatalf("agent did not commit %s %s at resourceVersion %q within %v", kind, key, rv, d)
		}
		ta.cond.Wait()
	}
}
