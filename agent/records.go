package agent

import (
	"fmt"
	"sync"
	"unique"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/policyd/policyd/cluster"
)

// The informer transforms convert each API object into a cached record as it
// arrives, and the informers' caches hold cached records, not API objects: the
// agent keeps one copy of what compile needs (the cluster.Pod, Namespace or
// Policy the selector index also holds) plus the few fields client-go itself
// reads (namespace, name, resourceVersion). Pod specs, policy specs,
// annotations and managed fields are garbage as soon as they are converted.
// ClusterNetworkPolicies and Nodes become cluster.ClusterPolicy and
// cluster.Node records the same way.

// cached is what the informers store. It implements
// metav1.ObjectMetaAccessor, which is how client-go's key functions and
// update handling read an object's name and resourceVersion. It is kept
// small (48 bytes): there is one per pod.
type cached struct {
	resourceVersion string

	// Exactly one of pod, ns, policy, extra.cnp and extra.node is set.
	pod    *cluster.Pod
	ns     *cluster.Namespace
	policy *cluster.Policy

	// extra is nil for most pods.
	extra *cachedExtra
}

type cachedExtra struct {
	uid types.UID // for the Events about invalid policies
	// errs are the conversion's complaints: fields ignored (pods, nodes) or
	// enforced fail-closed (policies).
	errs []error
	// The rarer kinds live here, so that a pod's record stays 48 bytes.
	cnp  *cluster.ClusterPolicy
	node *cluster.Node
}

func (r *cached) names() (namespace, name string) {
	switch {
	case r.pod != nil:
		return r.pod.Namespace, r.pod.Name
	case r.policy != nil:
		return r.policy.Namespace, r.policy.Name
	case r.ns != nil:
		return "", r.ns.Name
	case r.extra != nil && r.extra.cnp != nil:
		return "", r.extra.cnp.Name
	case r.extra != nil && r.extra.node != nil:
		return "", r.extra.node.Name
	}
	return "", ""
}

func (r *cached) clusterPolicy() *cluster.ClusterPolicy {
	if r.extra == nil {
		return nil
	}
	return r.extra.cnp
}

func (r *cached) node() *cluster.Node {
	if r.extra == nil {
		return nil
	}
	return r.extra.node
}

func (r *cached) errs() []error {
	if r.extra == nil {
		return nil
	}
	return r.extra.errs
}

// GetObjectMeta returns a fresh ObjectMeta holding what client-go reads.
func (r *cached) GetObjectMeta() metav1.Object {
	ns, name := r.names()
	m := &metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: r.resourceVersion}
	if r.extra != nil {
		m.UID = r.extra.uid
	}
	return m
}

// GetObjectKind and DeepCopyObject make a cached record a runtime.Object, which
// nothing in the informer path requires but debugging aids (client-go's
// cache mutation detector) assume.
func (r *cached) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject copies the record; the converted objects it points to are
// immutable, so they are shared.
func (r *cached) DeepCopyObject() runtime.Object {
	c := *r
	return &c
}

func (r *cached) key() string { return cache.NewObjectName(r.names()).String() }

// policyRef returns an object an EventRecorder can refer to: the policy's
// kind, namespace, name, uid and resourceVersion.
func (r *cached) policyRef() *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: *r.GetObjectMeta().(*metav1.ObjectMeta),
	}
}

// clusterPolicyRef returns an object an EventRecorder can refer to for a
// ClusterNetworkPolicy (cluster-scoped: its Events go to the default
// namespace, as client-go's recorder does for every cluster-scoped object).
func (r *cached) clusterPolicyRef() *npav1beta1.ClusterNetworkPolicy {
	return &npav1beta1.ClusterNetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: npav1beta1.GroupVersion.String(), Kind: "ClusterNetworkPolicy"},
		ObjectMeta: *r.GetObjectMeta().(*metav1.ObjectMeta),
	}
}

// toCached is the informers' transform. Anything that is not a Pod,
// Namespace, NetworkPolicy, ClusterNetworkPolicy or Node (a record already,
// a tombstone) passes through, which makes it idempotent as client-go asks.
func (a *Agent) toCached(obj interface{}) (interface{}, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		p, errs := cluster.ConvertPod(o)
		p.Labels = internLabels(&a.podLabels, p.Labels)
		// Thousands of pods share each namespace and node name.
		p.Namespace, p.NodeName = unique.Make(p.Namespace).Value(), unique.Make(p.NodeName).Value()
		c := &cached{resourceVersion: o.ResourceVersion, pod: p}
		if len(errs) > 0 {
			c.extra = &cachedExtra{uid: o.UID, errs: errs}
		}
		return c, nil
	case *corev1.Namespace:
		return &cached{resourceVersion: o.ResourceVersion, ns: cluster.ConvertNamespace(o)}, nil
	case *networkingv1.NetworkPolicy:
		p, errs := cluster.ConvertPolicy(o)
		internSelectors(&a.selectors, p)
		return &cached{resourceVersion: o.ResourceVersion, policy: p, extra: &cachedExtra{uid: o.UID, errs: errs}}, nil
	case *npav1beta1.ClusterNetworkPolicy:
		p, errs := cluster.ConvertClusterPolicy(o)
		return &cached{resourceVersion: o.ResourceVersion, extra: &cachedExtra{uid: o.UID, errs: errs, cnp: p}}, nil
	case *corev1.Node:
		n, errs := cluster.ConvertNode(o)
		return &cached{resourceVersion: o.ResourceVersion, extra: &cachedExtra{uid: o.UID, errs: errs, node: n}}, nil
	}
	return obj, nil
}

// interner hands out one shared value per distinct key: pods of a
// ReplicaSet share one labels.Set (identical labels), policies share their
// parsed label selectors. The values it hands out are never modified.
//
// It is a cache, not a registry: entries not asked for during a whole
// generation are forgotten (their holders keep the value; later asks for
// that key just get a new one). A generation ends when it holds twice as
// many entries as the objects the agent knows (setObjects), so the interner
// never holds more than four entries an object, whatever the churn.
type interner[T any] struct {
	mu        sync.Mutex
	cur, prev map[string]T
	objects   int // the objects (pods, policies) the agent knows, as of the last sync
}

// minInternGeneration keeps small clusters from cycling generations
// needlessly.
const minInternGeneration = 1024

// intern returns the value shared for key, making v that value if there is
// none.
func (in *interner[T]) intern(key string, v T) T {
	in.mu.Lock()
	defer in.mu.Unlock()
	if s, ok := in.cur[key]; ok {
		return s
	}
	s, ok := in.prev[key]
	if !ok {
		s = v
	}
	if in.cur == nil || len(in.cur) >= max(2*in.objects, minInternGeneration) {
		in.prev, in.cur = in.cur, make(map[string]T, len(in.cur))
	}
	in.cur[key] = s
	return s
}

// setObjects tells the interner how many objects hold its values.
func (in *interner[T]) setObjects(n int) {
	in.mu.Lock()
	in.objects = n
	in.mu.Unlock()
}

// internLabels shares equal label sets; empty ones become nil.
func internLabels(in *interner[labels.Set], l labels.Set) labels.Set {
	if len(l) == 0 {
		return nil
	}
	return in.intern(l.String(), l)
}

// internSelectors makes p share its parsed label selectors with every other
// policy using the same ones (labels.Selector values are immutable). p is
// fresh from cluster.ConvertPolicy, not yet shared.
func internSelectors(in *interner[labels.Selector], p *cluster.Policy) {
	one := func(s labels.Selector) labels.Selector {
		if s == nil {
			return nil
		}
		// The type is part of the key: labels.Nothing() and
		// labels.Everything() both print as "".
		return in.intern(fmt.Sprintf("%T %s", s, s), s)
	}
	p.PodSelector = one(p.PodSelector)
	for _, rules := range [][]cluster.Rule{p.IngressRules, p.EgressRules} {
		for i := range rules {
			for j := range rules[i].Peers {
				pr := &rules[i].Peers[j]
				pr.PodSelector, pr.NamespaceSelector = one(pr.PodSelector), one(pr.NamespaceSelector)
			}
		}
	}
}
