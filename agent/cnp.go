package agent

// ClusterNetworkPolicies (policy.networking.k8s.io) are a CRD that a
// cluster may install before policyd, after it, or never, serving v1beta1
// (network-policy-api v0.3.0, with v1alpha2 beside it) or only v1alpha2
// (v0.2.x). The agent:
//
//   - asks discovery at start which version serves clusternetworkpolicies
//     (cnpapi.Served: the CRD's storage version when discovery tells it,
//     else v1beta1, else v1alpha2) and reads that one, v1alpha2 converted
//     to v1beta1. If one does, the CNP informer is one of the informers the
//     first sync waits for, so a restart never commits a table without the
//     CNPs a previous run enforced. If none does, the agent starts (and
//     turns ready) on its other informers. Discovery needs no RBAC beyond
//     the defaults (system:discovery), so the agent stays read-only: it
//     never reads CustomResourceDefinitions.
//   - treats a discovery failure other than 404 as "unknown", never as "no
//     CNPs": at start it keeps asking (the first sync waits, the table a
//     previous run left stays in force), later it keeps what it runs. Each
//     failure is logged and counted (policyd_cnp_discovery_errors_total).
//   - asks again every CRDCheckInterval. When the version to read changes
//     (the CRD appears, or is upgraded from v1alpha2 only to v1beta1, or
//     stops serving the version read), it starts an informer on the new
//     version and holds its objects back until its initial list is
//     complete, then replaces the whole set of CNPs with that list in one
//     sync and stops the old informer: a half-listed set of CNPs (an Admin
//     Accept without the higher-priority Admin Deny next to it) could
//     allow what the whole set denies.
//   - otherwise runs the informer until the agent stops, also when the CRD
//     is deleted. Deleting a CRD deletes every ClusterNetworkPolicy first,
//     and the informer delivers those deletes, so enforcement follows the
//     API: no CNPs. While the API is gone the informer retries (as it does
//     while the API server is away) and keeps the CNPs it knew — which are
//     none unless it missed the deletes; if the CRD returns, its relist
//     replaces them with what exists then. A stale CNP is never dropped on
//     a guess: a discovery answer that the group is missing (an API server
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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/internal/cnpapi"
)

// DefaultCRDCheckInterval is how often the agent asks discovery which
// version serves ClusterNetworkPolicies.
const DefaultCRDCheckInterval = 30 * time.Second

// discoveryWarnEvery spaces the warnings about a discovery that keeps
// failing at start (each failure is counted).
const discoveryWarnEvery = 30 * time.Second

// cnpState is the ClusterNetworkPolicy informers' state, guarded by a.mu.
// Each informer has a generation; its handlers act only while it is the
// active one (writing to the index) or the staged one (writing to staging).
type cnpState struct {
	// nextGen numbers the informers.
	nextGen int
	// active is the informer whose objects are in the index.
	active cnpInformer
	// staged is an informer started to replace active, whose objects wait
	// in staging until its initial list is complete (gen 0: none).
	staged  cnpInformer
	staging map[string]*cached
}

// cnpInformer is one CNP informer; the zero value is none.
type cnpInformer struct {
	gen     int
	version cnpapi.Version
	gate    string             // its name in the watch gate
	stop    context.CancelFunc // ends it
}

// cnpVersion asks discovery which version to read ClusterNetworkPolicies
// in (cnpapi.None: none serves them); a failure other than 404 is an error,
// counted.
func (a *Agent) cnpVersion() (cnpapi.Version, error) {
	v, err := cnpapi.Served(a.cfg.CNPClient.Discovery())
	if err != nil {
		a.metrics.cnpDiscoveryErrors.Inc()
	}
	return v, err
}

// cnpVersionAtStart asks discovery until it answers. A failure is not "no
// CNPs": a first sync without the CNPs a previous run enforced would lift
// their Denies, so the first sync waits (the table that run left stays in
// force) and the failures are logged.
func (a *Agent) cnpVersionAtStart(ctx context.Context) (cnpapi.Version, error) {
	var warned time.Time
	for {
		v, err := a.cnpVersion()
		if err == nil {
			return v, nil
		}
		if time.Since(warned) >= discoveryWarnEvery {
			warned = time.Now()
			a.log.Error("cannot tell which version serves ClusterNetworkPolicies; the first sync waits for an answer (the table a previous run left stays in force)", "err", err)
		}
		select {
		case <-ctx.Done():
			return cnpapi.None, ctx.Err()
		case <-time.After(retryInterval):
		}
	}
}

// watchCNPAPI asks discovery every CRDCheckInterval and, when the version to
// read changes, starts a staged informer on the new one (see the top of
// this file). A failure keeps what runs; a version no longer served keeps
// the informer that runs.
func (a *Agent) watchCNPAPI(ctx context.Context) {
	ticker := time.NewTicker(a.cfg.CRDCheckInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		v, err := a.cnpVersion()
		if err != nil {
			a.log.Warn("cannot tell which version serves ClusterNetworkPolicies; keeping the informer that runs and the CNPs it knows", "reading", a.cnpReading(), "err", err)
			continue
		}
		a.mu.Lock()
		active, staged := a.cnp.active, a.cnp.staged
		a.mu.Unlock()
		if v == cnpapi.None || v == staged.version {
			continue
		}
		if staged.gen != 0 { // the answer moved again before the last switch completed
			a.mu.Lock()
			if a.cnp.staged.gen == staged.gen {
				a.cnp.staged, a.cnp.staging = cnpInformer{}, nil
			}
			a.mu.Unlock()
			staged.stop()
			a.gate.retire(staged.gate)
		}
		if v == active.version {
			continue
		}
		if active.gen == 0 {
			a.log.Info("ClusterNetworkPolicies are now served; starting their informer", "version", v.GroupVersion())
		} else {
			a.log.Info("ClusterNetworkPolicies are to be read in another version; switching informers once the new one has listed them all", "from", active.version.GroupVersion(), "to", v.GroupVersion())
		}
		if _, err := a.startCNPInformer(ctx, v, true); err != nil {
			a.log.Error("starting the ClusterNetworkPolicy informer", "version", v.GroupVersion(), "err", err)
		}
	}
}

// cnpReading is the version the active informer reads, for logs.
func (a *Agent) cnpReading() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cnp.active.version.String()
}

// startCNPInformer starts a CNP informer on version v. When staged, its
// objects are held back until its initial list has been delivered, then
// replace the CNPs in force together and it becomes the active informer
// (see the top of this file); otherwise it is the active informer at once
// and the caller waits for the returned HasSynced before the first sync.
func (a *Agent) startCNPInformer(ctx context.Context, v cnpapi.Version, staged bool) (cache.InformerSynced, error) {
	ictx, stop := context.WithCancel(ctx)
	a.mu.Lock()
	a.cnp.nextGen++
	in := cnpInformer{gen: a.cnp.nextGen, version: v, stop: stop, gate: fmt.Sprintf("%s.%s#%d", cnpapi.Resource, v, a.cnp.nextGen)}
	if staged {
		a.cnp.staged, a.cnp.staging = in, map[string]*cached{}
	} else {
		a.cnp.active = in
	}
	a.mu.Unlock()
	a.metrics.setCNPVersion(a.cnpReading())
	inf := a.gate.clusterPolicyInformer(a.cfg.CNPClient, v, in.gate, 0, cache.Indexers{})
	if err := inf.SetTransform(a.toCached); err != nil {
		stop()
		return nil, fmt.Errorf("agent: setting informer transform: %w", err)
	}
	reg, err := inf.AddEventHandler(a.clusterPolicyHandlers(in.gen))
	if err != nil {
		stop()
		return nil, fmt.Errorf("agent: adding event handler: %w", err)
	}
	a.bg.Add(1)
	go func() { defer a.bg.Done(); inf.Run(ictx.Done()) }()
	if !staged {
		return reg.HasSynced, nil
	}
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		if !cache.WaitForCacheSync(ictx.Done(), reg.HasSynced) {
			return
		}
		n, old, ok := a.promoteStaged(in.gen)
		if !ok {
			return
		}
		if old.gen != 0 {
			old.stop()
			a.gate.retire(old.gate)
		}
		a.metrics.setCNPVersion(v.String())
		a.log.Info("ClusterNetworkPolicy informer synced; enforcing them", "version", v.GroupVersion(), "clusternetworkpolicies", n)
		a.Trigger()
	}()
	return reg.HasSynced, nil
}

// promoteStaged makes the staged informer gen the active one: its objects
// replace the CNPs in force (those it does not list are deleted). It
// returns how many it holds and the informer it replaced; false when gen is
// no longer the staged informer.
func (a *Agent) promoteStaged(gen int) (int, cnpInformer, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cnp.staged.gen != gen {
		return 0, cnpInformer{}, false
	}
	staging := a.cnp.staging
	var gone []string
	for _, p := range a.index.ClusterPolicies() {
		if _, ok := staging[p.Name]; !ok {
			gone = append(gone, p.Name)
		}
	}
	for _, name := range gone {
		delete(a.invalidCNP, name)
		a.index.DeleteClusterPolicy(name)
		a.changed("ClusterNetworkPolicy", name, "")
	}
	for _, name := range slices.Sorted(maps.Keys(staging)) {
		r := staging[name]
		a.index.UpsertClusterPolicy(r.clusterPolicy())
		a.changed("ClusterNetworkPolicy", name, r.resourceVersion)
	}
	old := a.cnp.active
	a.cnp.active, a.cnp.staged, a.cnp.staging = a.cnp.staged, cnpInformer{}, nil
	return len(staging), old, true
}

// clusterPolicyHandlers feed the index from informer gen while it is the
// active one, its staging while it is the staged one, and nothing once it
// is neither (replaced).
func (a *Agent) clusterPolicyHandlers(gen int) cache.ResourceEventHandlerFuncs {
	upsert := func(r *cached) {
		p := r.clusterPolicy()
		if p == nil {
			return
		}
		a.mu.Lock()
		switch gen {
		case a.cnp.staged.gen:
			a.cnp.staging[p.Name] = r
		case a.cnp.active.gen:
			a.index.UpsertClusterPolicy(p)
			a.changed("ClusterNetworkPolicy", p.Name, r.resourceVersion)
		default:
			a.mu.Unlock()
			return
		}
		report := noteInvalid(a.invalidCNP, p.Name, r.errs())
		a.mu.Unlock()
		if report {
			a.reportInvalidCNP(r)
		}
	}
	return a.handlers(upsert, func(_, name string) {
		switch gen {
		case a.cnp.staged.gen:
			delete(a.cnp.staging, name)
		case a.cnp.active.gen:
			delete(a.invalidCNP, name)
			a.index.DeleteClusterPolicy(name)
			a.changed("ClusterNetworkPolicy", name, "")
		}
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
			a.metrics.events.WithLabelValues("Node", "ignored").Inc()
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
