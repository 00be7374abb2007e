package agent

// ClusterNetworkPolicies (policy.networking.k8s.io v1beta1) are a CRD that a
// cluster may install before policyd, after it, or never. The agent:
//
//   - asks discovery once at start whether the API server serves
//     clusternetworkpolicies in policy.networking.k8s.io/v1beta1. If it does,
//     the CNP informer is one of the informers the first sync waits for, so
//     a restart never commits a table without the CNPs a previous run
//     enforced. If it does not, the agent starts (and turns ready) on its
//     other informers and asks discovery again every CRDCheckInterval.
//     Discovery needs no RBAC beyond the defaults (system:discovery), so the
//     agent stays read-only: it never reads CustomResourceDefinitions.
//   - when the API appears, starts the CNP informer and holds its objects
//     back until its initial list is complete, then brings them into force
//     in one sync: a half-listed set of CNPs (an Admin Accept without the
//     higher-priority Admin Deny next to it) could allow what the whole set
//     denies.
//   - once started, runs the informer until the agent stops, also when the
//     CRD is deleted. Deleting a CRD deletes every ClusterNetworkPolicy
//     first, and the informer delivers those deletes, so enforcement follows
//     the API: no CNPs. While the API is gone the informer retries (as it
//     does while the API server is away) and keeps the CNPs it knew — which
//     are none unless it missed the deletes; if the CRD returns, its relist
//     replaces them with what exists then. A stale CNP is never dropped on a
//     guess: a discovery answer that the group is missing (an API server
//     restarting and not yet serving its CRDs answers that too) would
//     otherwise lift every Deny at once.

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/policyd/policyd/cluster"
)

// DefaultCRDCheckInterval is how often the agent asks discovery whether
// ClusterNetworkPolicies are served, until they are.
const DefaultCRDCheckInterval = 30 * time.Second

const cnpResource = "clusternetworkpolicies"

// cnpServed reports whether the API server serves clusternetworkpolicies in
// policy.networking.k8s.io/v1beta1. A group or version the server does not
// know is (false, nil); any other failure is an error.
func (a *Agent) cnpServed() (bool, error) {
	list, err := a.cfg.CNPClient.Discovery().ServerResourcesForGroupVersion(npav1beta1.GroupVersion.String())
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, r := range list.APIResources {
		if r.Name == cnpResource {
			return true, nil
		}
	}
	return false, nil
}

// cnpServedAtStart asks discovery until it answers, for at most
// CRDCheckInterval: an API server that cannot answer discovery cannot serve
// the other informers either, but the CRD must not hold readiness up for
// longer than that; the periodic check then takes over.
func (a *Agent) cnpServedAtStart(ctx context.Context) bool {
	deadline := time.Now().Add(a.cfg.CRDCheckInterval)
	for {
		ok, err := a.cnpServed()
		if err == nil {
			return ok
		}
		if time.Now().After(deadline) {
			a.log.Warn("cannot tell whether ClusterNetworkPolicies are served; starting without them and checking again periodically", "err", err)
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(retryInterval):
		}
	}
}

// waitForCNPAPI checks discovery every CRDCheckInterval and starts the CNP
// informer, staged, once the API is served.
func (a *Agent) waitForCNPAPI(ctx context.Context) {
	ticker := time.NewTicker(a.cfg.CRDCheckInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		ok, err := a.cnpServed()
		if err != nil {
			a.log.Debug("discovery of ClusterNetworkPolicies failed; will check again", "err", err)
			continue
		}
		if !ok {
			continue
		}
		a.log.Info("ClusterNetworkPolicies are now served; starting their informer")
		if _, err := a.startCNPInformer(ctx, true); err != nil {
			a.log.Error("starting the ClusterNetworkPolicy informer", "err", err)
			continue
		}
		return
	}
}

// startCNPInformer starts the CNP informer. When staged, its objects are held
// back until its initial list has been delivered, then brought into force
// together (see the top of this file); otherwise the caller waits for the
// returned HasSynced before the first sync.
func (a *Agent) startCNPInformer(ctx context.Context, staged bool) (cache.InformerSynced, error) {
	inf := a.gate.clusterPolicyInformer(a.cfg.CNPClient, 0, cache.Indexers{})
	if err := inf.SetTransform(a.toCached); err != nil {
		return nil, fmt.Errorf("agent: setting informer transform: %w", err)
	}
	if staged {
		a.mu.Lock()
		a.cnpStaging = map[string]*cached{}
		a.mu.Unlock()
	}
	reg, err := inf.AddEventHandler(a.clusterPolicyHandlers())
	if err != nil {
		return nil, fmt.Errorf("agent: adding event handler: %w", err)
	}
	a.bg.Add(1)
	go func() { defer a.bg.Done(); inf.Run(ctx.Done()) }()
	if !staged {
		return reg.HasSynced, nil
	}
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		if !cache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
			return
		}
		a.mu.Lock()
		staging := a.cnpStaging
		a.cnpStaging = nil
		for _, name := range slices.Sorted(maps.Keys(staging)) {
			r := staging[name]
			a.index.UpsertClusterPolicy(r.clusterPolicy())
			a.changed("ClusterNetworkPolicy", name, r.resourceVersion)
		}
		a.mu.Unlock()
		a.log.Info("ClusterNetworkPolicy informer synced; enforcing them", "clusternetworkpolicies", len(staging))
		a.Trigger()
	}()
	return reg.HasSynced, nil
}

func (a *Agent) clusterPolicyHandlers() cache.ResourceEventHandlerFuncs {
	upsert := func(r *cached) {
		p := r.clusterPolicy()
		if p == nil {
			return
		}
		a.mu.Lock()
		if a.cnpStaging != nil {
			a.cnpStaging[p.Name] = r
		} else {
			a.index.UpsertClusterPolicy(p)
			a.changed("ClusterNetworkPolicy", p.Name, r.resourceVersion)
		}
		report := noteInvalid(a.invalidCNP, p.Name, r.errs())
		a.mu.Unlock()
		if report {
			a.reportInvalidCNP(r)
		}
	}
	return a.handlers(upsert, func(_, name string) {
		delete(a.invalidCNP, name)
		if a.cnpStaging != nil {
			delete(a.cnpStaging, name)
			return
		}
		a.index.DeleteClusterPolicy(name)
		a.changed("ClusterNetworkPolicy", name, "")
	})
}

// nodeHandlers feed the index the nodes' names, labels and addresses (the
// ClusterNetworkPolicy nodes peers), pod CIDRs and gateway addresses (the
// pod network, see podnet.go). A node's status changes often (its conditions); an update that
// changes none of these is not a change.
func (a *Agent) nodeHandlers() cache.ResourceEventHandlerFuncs {
	upsert := func(r *cached) {
		n := r.node()
		if n == nil {
			return
		}
		for _, err := range r.errs() {
			a.log.Warn("node address ignored", "err", err)
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		a.index.UpsertNode(n)
		a.changed("Node", n.Name, r.resourceVersion)
	}
	h := a.handlers(upsert, func(_, name string) {
		a.index.DeleteNode(name)
		a.changed("Node", name, "")
	})
	h.UpdateFunc = func(oldObj, obj interface{}) {
		o, _ := oldObj.(*cached)
		r, ok := obj.(*cached)
		if !ok {
			return
		}
		if o != nil && o.node() != nil && r.node() != nil && sameNode(o.node(), r.node()) {
			return
		}
		upsert(r)
	}
	return h
}

func sameNode(a, b *cluster.Node) bool {
	return a.Name == b.Name && slices.Equal(a.IPs, b.IPs) && slices.Equal(a.PodCIDRs, b.PodCIDRs) && slices.Equal(a.Gateways, b.Gateways) && a.Labels.String() == b.Labels.String()
}

func (a *Agent) reportInvalidCNP(r *cached) {
	for _, err := range r.errs() {
		a.log.Warn("invalid ClusterNetworkPolicy: enforced fail-closed", "clusternetworkpolicy", r.key(), "err", err)
		if a.cfg.Recorder != nil {
			a.cfg.Recorder.Eventf(r.clusterPolicyRef(), corev1.EventTypeWarning, "InvalidClusterNetworkPolicy",
				"%s; policyd enforces it fail-closed (an invalid Accept part matches nothing, an invalid Deny or Pass rule denies its whole direction)", err)
		}
	}
}

// ambiguity is a set of ClusterNetworkPolicies of one tier sharing one
// priority, in the order policyd evaluates them (by name).
type ambiguity struct {
	tier     cluster.Tier
	priority int32
	names    []string
}

// noteAmbiguous finds the tiers and priorities shared by two or more
// ClusterNetworkPolicies and returns those whose members changed since the
// last call. Runs under a.mu.
func (a *Agent) noteAmbiguous() []ambiguity {
	ps := a.index.ClusterPolicies() // by tier, priority, name
	cur := map[string]string{}
	var changed []ambiguity
	for i := 0; i < len(ps); {
		j := i
		for j < len(ps) && ps[j].Tier == ps[i].Tier && ps[j].Priority == ps[i].Priority {
			j++
		}
		if j-i > 1 {
			g := ambiguity{tier: ps[i].Tier, priority: ps[i].Priority}
			for _, p := range ps[i:j] {
				g.names = append(g.names, p.Name)
			}
			k := fmt.Sprintf("%s/%d", g.tier, g.priority)
			cur[k] = strings.Join(g.names, ",")
			if a.ambiguous[k] != cur[k] {
				changed = append(changed, g)
			}
		}
		i = j
	}
	a.ambiguous = cur
	return changed
}

// reportAmbiguous warns on every member of each group: the API leaves the
// order of same-priority policies of a tier undefined, and other
// implementations may order them differently.
func (a *Agent) reportAmbiguous(groups []ambiguity) {
	for _, g := range groups {
		order := strings.Join(g.names, ", then ")
		a.log.Warn("ClusterNetworkPolicies share a tier and priority; the API leaves their order undefined, policyd evaluates them by name",
			"tier", g.tier.String(), "priority", g.priority, "order", order)
		if a.cfg.Recorder == nil {
			continue
		}
		for _, name := range g.names {
			others := slices.DeleteFunc(slices.Clone(g.names), func(n string) bool { return n == name })
			ref := &npav1beta1.ClusterNetworkPolicy{
				TypeMeta:   metav1.TypeMeta{APIVersion: npav1beta1.GroupVersion.String(), Kind: "ClusterNetworkPolicy"},
				ObjectMeta: metav1.ObjectMeta{Name: name},
			}
			a.cfg.Recorder.Eventf(ref, corev1.EventTypeWarning, "AmbiguousClusterNetworkPolicyPriority",
				"%s tier priority %d is shared with %s: the API leaves the order of these policies undefined; policyd orders them by name (%s)",
				g.tier, g.priority, strings.Join(others, ", "), order)
		}
	}
}
