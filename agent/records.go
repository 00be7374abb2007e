package agent

import (
	"sync"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/policyd/policyd/cluster"
)

// The informer transforms convert each API object into a cached record as it
// arrives, and the informers' caches hold cached records, not API objects: the
// agent keeps one copy of what compile needs (the cluster.Pod, Namespace or
// Policy the selector index also holds) plus the few fields client-go itself
// reads (namespace, name, resourceVersion). Pod specs, policy specs,
// annotations and managed fields are garbage as soon as they are converted.

// cached is what the informers store. It implements
// metav1.ObjectMetaAccessor, which is how client-go's key functions and
// update handling read an object's name and resourceVersion.
type cached struct {
	namespace, name string
	resourceVersion string
	uid             types.UID // for the Events about invalid policies

	// Exactly one is set.
	pod    *cluster.Pod
	ns     *cluster.Namespace
	policy *cluster.Policy
	// errs are the conversion's complaints: fields ignored (pods) or
	// enforced fail-closed (policies).
	errs []error
}

// GetObjectMeta returns a fresh ObjectMeta holding what client-go reads.
func (r *cached) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: r.namespace, Name: r.name, ResourceVersion: r.resourceVersion, UID: r.uid}
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

func (r *cached) key() string {
	if r.namespace == "" {
		return r.name
	}
	return r.namespace + "/" + r.name
}

// policyRef returns an object an EventRecorder can refer to: the policy's
// kind, namespace, name, uid and resourceVersion.
func (r *cached) policyRef() *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: r.namespace, Name: r.name, UID: r.uid, ResourceVersion: r.resourceVersion,
		},
	}
}

// toCached is the informers' transform. Anything that is not a Pod,
// Namespace or NetworkPolicy (a record already, a tombstone) passes
// through, which makes it idempotent as client-go asks.
func (a *Agent) toCached(obj interface{}) (interface{}, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		p, errs := cluster.ConvertPod(o)
		p.Labels = a.podLabels.intern(p.Labels)
		return &cached{namespace: p.Namespace, name: p.Name, resourceVersion: o.ResourceVersion, uid: o.UID, pod: p, errs: errs}, nil
	case *corev1.Namespace:
		ns := cluster.ConvertNamespace(o)
		return &cached{name: ns.Name, resourceVersion: o.ResourceVersion, uid: o.UID, ns: ns}, nil
	case *networkingv1.NetworkPolicy:
		p, errs := cluster.ConvertPolicy(o)
		return &cached{namespace: p.Namespace, name: p.Name, resourceVersion: o.ResourceVersion, uid: o.UID, policy: p, errs: errs}, nil
	}
	return obj, nil
}

// labelInterner hands out one shared labels.Set per distinct label set, so
// that the pods of a ReplicaSet (identical labels) share one map instead of
// holding a copy each. The sets it hands out are never modified.
//
// It is a cache, not a registry: entries not asked for during a whole
// generation are forgotten (their pods keep their map; later pods with
// those labels just get a new one). A generation ends when it holds twice
// as many label sets as there are pods, so the interner never holds more
// than four entries a pod, whatever the churn.
type labelInterner struct {
	mu        sync.Mutex
	cur, prev map[string]labels.Set
	pods      int // the pods the agent knows, as of the last sync
}

// minInternGeneration keeps small clusters from cycling generations
// needlessly.
const minInternGeneration = 1024

func (li *labelInterner) intern(l labels.Set) labels.Set {
	if len(l) == 0 {
		return nil
	}
	key := l.String()
	li.mu.Lock()
	defer li.mu.Unlock()
	if s, ok := li.cur[key]; ok {
		return s
	}
	s, ok := li.prev[key]
	if !ok {
		s = l
	}
	if li.cur == nil || len(li.cur) >= max(2*li.pods, minInternGeneration) {
		li.prev, li.cur = li.cur, make(map[string]labels.Set, len(li.cur))
	}
	li.cur[key] = s
	return s
}

// setPods tells the interner how many pods there are.
func (li *labelInterner) setPods(n int) {
	li.mu.Lock()
	li.pods = n
	li.mu.Unlock()
}
