package agent

import (
	"context"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/nft"
	"github.com/policyd/policyd/policy/quarantine"
	"github.com/policyd/policyd/policy/ruleset"
)

// Quarantine in the agent (policy/quarantine says what it means).
//
// Two things quarantine an object on this node:
//
//   - the budget: Compile counts what each object and the whole table will
//     cost before it builds anything, and quarantines objects over the
//     per-object budget, then the most expensive until the node is under
//     its own (compile/budget.go);
//   - the kernel: when it refuses a sync's batch (a value that slipped past
//     conversion), the agent bisects over the policies that select the
//     node's pods (NetworkPolicies and ClusterNetworkPolicies). It commits
//     the table with all of them quarantined (if that fails too, the error
//     is not a policy's and is reported as any sync error), then releases
//     them half a group at a time, each attempt one atomic commit: since
//     quarantining only removes allows, every table committed on the way
//     is fail-closed. What cannot be released stays quarantined, with an
//     error naming it, until the object changes; the rest is committed.
//
// Every change is announced once: a log line, a Warning Event on the object
// (PolicyQuarantined, naming the node, the figure and the budget, or the
// kernel's error), policyd_quarantined_objects and
// policyd_quarantine_decisions_total.

// refusal is an object the kernel refused, and the value it refused.
type refusal struct {
	d     quarantine.Decision
	value any // *cluster.Policy or *cluster.ClusterPolicy
}

// maxBisectAttempts bounds the commits one bisection makes; past it, what
// is still quarantined stays so (fail-closed) until the next sync retries.
const maxBisectAttempts = 256

// refusedSet returns the kernel refusals still standing as a Set, after
// dropping those whose object changed or is gone. Runs under a.mu.
func (a *Agent) refusedSet() *quarantine.Set {
	if len(a.refused) == 0 {
		return nil
	}
	current := a.objectValues()
	set := &quarantine.Set{}
	for o, r := range a.refused {
		if current[o] != r.value {
			delete(a.refused, o)
			a.log.Info("a policy the kernel refused changed or is gone: trying it again", "object", o.String())
			continue
		}
		set.Add(r.d)
	}
	return set
}

// objectValues maps every policy object to its current value. Runs under
// a.mu.
func (a *Agent) objectValues() map[quarantine.Object]any {
	out := map[quarantine.Object]any{}
	for _, p := range a.index.Policies() {
		out[quarantine.PolicyObject(p)] = p
	}
	for _, p := range a.index.ClusterPolicies() {
		out[quarantine.ClusterPolicyObject(p)] = p
	}
	return out
}

// attempt compiles the node's table with imposed quarantined (besides the
// budget's) and commits it.
func (a *Agent) attempt(ctx context.Context, imposed []quarantine.Decision) (nft.SyncStats, *ruleset.Ruleset, []quarantine.Decision, error) {
	set := &quarantine.Set{}
	for _, d := range imposed {
		set.Add(d)
	}
	a.mu.Lock()
	a.compiler.Options.Quarantine = set
	rs, err := a.compiler.Compile(a.index, a.cfg.NodeName)
	decisions := a.compiler.Quarantined()
	if err == nil && a.verdicts != nil {
		a.verdicts.learn(rs)
	}
	a.mu.Unlock()
	if err != nil {
		return nft.SyncStats{}, nil, nil, err
	}
	stats, err := a.cfg.Backend.Sync(ctx, rs)
	return stats, rs, decisions, err
}

// bisect runs after the kernel refused the batch of a sync (refusedErr):
// it finds the objects among candidates whose part of the table the
// kernel refuses, quarantines them and commits the rest (see above). It
// returns what the last successful commit did; if even the table with
// every candidate quarantined fails, it returns refusedErr (the cause is
// not a policy's).
func (a *Agent) bisect(ctx context.Context, refusedErr error, candidates []quarantine.Object, standing []quarantine.Decision) (nft.SyncStats, *ruleset.Ruleset, []quarantine.Decision, error) {
	if len(candidates) == 0 || ctx.Err() != nil {
		return nft.SyncStats{}, nil, nil, refusedErr
	}
	start := time.Now()
	a.log.Warn("the kernel refused the sync's batch: finding the policies that produced it (each attempt commits a fail-closed table)",
		"err", refusedErr, "candidates", len(candidates))
	detail := refusedErr.Error()
	refuse := func(o quarantine.Object) quarantine.Decision {
		return quarantine.Decision{Object: o, Node: a.cfg.NodeName, Reason: quarantine.KernelRefused, Detail: detail}
	}
	with := func(q []quarantine.Object) []quarantine.Decision {
		out := slices.Clone(standing)
		for _, o := range q {
			out = append(out, refuse(o))
		}
		return out
	}
	var total nft.SyncStats
	stats, rs, decisions, err := a.attempt(ctx, with(candidates))
	total.Ops += stats.Ops
	if err != nil {
		a.log.Error("the table with every policy of this node quarantined is refused too: the cause is not a policy's value",
			"err", err)
		return nft.SyncStats{}, nil, nil, refusedErr
	}
	held := slices.Clone(candidates) // quarantined in the committed table
	queue := [][]quarantine.Object{slices.Clone(candidates)}
	attempts := 1
	for len(queue) > 0 && attempts < maxBisectAttempts && ctx.Err() == nil {
		group := queue[0]
		queue = queue[1:]
		try := slices.DeleteFunc(slices.Clone(held), func(o quarantine.Object) bool { return slices.Contains(group, o) })
		attempts++
		s, r, d, err := a.attempt(ctx, with(try))
		total.Ops += s.Ops
		if err == nil {
			held, stats, rs, decisions = try, s, r, d
			continue
		}
		if len(group) > 1 {
			queue = append(queue, group[:len(group)/2], group[len(group)/2:])
		}
	}
	if len(queue) > 0 {
		a.log.Error("bisection stopped before releasing every policy; those still held stay quarantined until the next sync retries",
			"attempts", attempts, "held", len(held))
	}
	a.mu.Lock()
	values := a.objectValues()
	for _, o := range held {
		a.refused[o] = refusal{d: refuse(o), value: values[o]}
	}
	a.mu.Unlock()
	total.Full, total.Duration = true, time.Since(start)
	total.Sets, total.Elements, total.Chains, total.Rules = stats.Sets, stats.Elements, stats.Chains, stats.Rules
	a.log.Warn("bisection done: the policies the kernel refuses are quarantined, the rest is committed",
		"refused", objectNames(held), "attempts", attempts, "duration", time.Since(start).Round(time.Millisecond))
	return total, rs, decisions, nil
}

func objectNames(os []quarantine.Object) []string {
	out := make([]string, len(os))
	for i, o := range os {
		out[i] = o.String()
	}
	return out
}

// reportQuarantine announces the changes between the quarantine decisions
// last reported and decisions (those of a committed table): one log line,
// one Event and one decision count per new or changed decision, a log line
// per lifted one; the gauge follows the set.
func (a *Agent) reportQuarantine(decisions []quarantine.Decision) {
	now := map[quarantine.Object]quarantine.Decision{}
	count := map[quarantine.Kind]int{}
	for _, d := range decisions {
		now[d.Object] = d
		count[d.Kind]++
	}
	for _, k := range []quarantine.Kind{quarantine.NetworkPolicy, quarantine.ClusterNetworkPolicy} {
		a.metrics.quarantined.WithLabelValues(k.String()).Set(float64(count[k]))
	}
	for _, d := range decisions {
		if old, ok := a.quarantine[d.Object]; ok && old.Reason == d.Reason && old.Figure.Dimension == d.Figure.Dimension && old.Detail == d.Detail {
			continue // the same decision (its figure may move: not news)
		}
		a.metrics.quarantineDecisions.WithLabelValues(d.Kind.String(), d.Reason.String()).Inc()
		a.log.Warn("policy quarantined: its subjects fail closed on this node", "object", d.Object.String(), "reason", d.Reason.String(), "msg", d.Message())
		if a.cfg.Recorder != nil {
			a.cfg.Recorder.Event(objectRef(d.Object), corev1.EventTypeWarning, "PolicyQuarantined", d.Message())
		}
	}
	for o, old := range a.quarantine {
		if _, ok := now[o]; !ok {
			a.log.Info("quarantine lifted: the policy is enforced in full again", "object", o.String(), "was", old.Reason.String())
		}
	}
	a.quarantine = now
}

// objectRef is the object an Event about o is posted on (ClusterNetwork
// Policies' Events land in the default namespace).
func objectRef(o quarantine.Object) runtime.Object {
	if o.Kind == quarantine.ClusterNetworkPolicy {
		return &npav1beta1.ClusterNetworkPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: npav1beta1.GroupVersion.String(), Kind: "ClusterNetworkPolicy"},
			ObjectMeta: metav1.ObjectMeta{Name: o.Key},
		}
	}
	ns, name, _ := strings.Cut(o.Key, "/")
	return &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
	}
}

// budgetOf returns the budget the agent compiles with: cfg's, or the
// defaults of the DaemonSet's memory limit.
func budgetOf(cfg Config) compile.Budget {
	if cfg.Budget.IsZero() {
		return compile.DefaultBudget(0)
	}
	return cfg.Budget
}
