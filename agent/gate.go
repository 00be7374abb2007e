package agent

// Consistency across a watch gap.
//
// Every informer's list and watch requests pass through a watchGate, which
// knows whether the informer is streaming ("up") or not ("down": a request
// failed, its stream ended, or a relist's initial events are still
// arriving). In steady state an informer is down for milliseconds now and
// then (a watch's timeout ends it and a new one resumes from its
// resourceVersion). After a longer gap (the API server gone, this node cut
// off) informers come back one by one, each after its own jittered backoff
// (client-go waits up to a minute between attempts), and each comes back
// with a jump in state: a relist, or a replay of what it missed. A table
// compiled in between mixes new objects of one kind with old objects of
// another: a state the API never held, which can allow what the old and the
// new state both deny (a pod relabelled into a policy's peers while the
// policy that isolated its egress is already gone).
//
// So when an informer comes back from a gap of gapThreshold or more while
// another is still down, syncs are held: nothing is compiled, the last
// committed table stays in force, pending changes wait. The hold ends when
// every informer is up again (and then settle later, so that the last
// one's relist has reached the index), or after maxHold whatever the
// others do. An informer whose resource is not served (404: the
// ClusterNetworkPolicy CRD removed) does not hold syncs.

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/watchlist"
	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	npaclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/policyd/policyd/internal/cnpapi"
)

const (
	// gapThreshold is how long an informer must have been down for its
	// return to count as a jump in state.
	gapThreshold = time.Second
	// maxHold bounds a hold: longer than client-go's longest backoff
	// between two attempts (30 s plus up to 100% jitter), with room for a
	// restarted API server refusing requests until its caches fill.
	maxHold = 2 * time.Minute
	// settle is how long syncs stay held after the last informer is up.
	settle = time.Second
	// watchGrace is how long a resumed watch must stay open without an
	// error for its informer to count as up when no event arrives sooner:
	// an API server that lost the resourceVersion answers with an error
	// event (410 Gone) at once.
	watchGrace = time.Second
)

type informerState struct {
	down      bool
	since     time.Time // when it went down
	notServed bool      // its last error said the resource is not served
}

// watchGate tracks the informers' connections and holds syncs across a gap
// (see the top of this file).
type watchGate struct {
	log     *slog.Logger
	trigger func() // asks for a sync: when a hold ends
	// gapThreshold, maxHold, settle and watchGrace are the constants of
	// the same names (tests shorten them).
	gapThreshold, maxHold, settle, watchGrace time.Duration

	mu        sync.Mutex
	informers map[string]*informerState
	// retired are the informers stopped for good (a ClusterNetworkPolicy
	// informer replaced by one of another version): a stopped informer is
	// down for ever, and its last reports must not hold syncs.
	retired     map[string]bool
	holding     bool
	holdSince   time.Time
	settleUntil time.Time
}

func newWatchGate(log *slog.Logger, trigger func()) *watchGate {
	return &watchGate{
		log: log, trigger: trigger, informers: map[string]*informerState{}, retired: map[string]bool{},
		gapThreshold: gapThreshold, maxHold: maxHold, settle: settle, watchGrace: watchGrace,
	}
}

func (g *watchGate) state(name string) *informerState {
	st, ok := g.informers[name]
	if !ok {
		st = &informerState{}
		g.informers[name] = st
	}
	return st
}

// blocking returns the informers that are down and whose resource is
// served, sorted. Runs under g.mu.
func (g *watchGate) blocking() []string {
	var out []string
	for name, st := range g.informers {
		if st.down && !st.notServed {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// markDown records that informer name is not streaming; err is why (nil
// when its stream ended).
func (g *watchGate) markDown(name string, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.retired[name] {
		return
	}
	st := g.state(name)
	if !st.down {
		st.down, st.since = true, time.Now()
	}
	st.notServed = err != nil && apierrors.IsNotFound(err)
}

// markUp records that informer name streams again. A return from a long
// gap while others are down starts a hold; the last one back ends it.
func (g *watchGate) markUp(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.retired[name] {
		return
	}
	st := g.state(name)
	if !st.down {
		return
	}
	now := time.Now()
	gap := now.Sub(st.since)
	st.down, st.notServed = false, false
	others := g.blocking()
	switch {
	case !g.holding && gap >= g.gapThreshold && len(others) > 0:
		g.holding, g.holdSince = true, now
		g.log.Warn("an informer is back from a gap while others are still reconnecting: syncs are held, the last committed table stays in force, until all are back (a table compiled meanwhile would mix new and old objects)",
			"informer", name, "gap", gap.Round(time.Millisecond), "waiting_for", others, "at_most", g.maxHold)
		time.AfterFunc(g.maxHold, g.trigger)
	case g.holding && len(others) == 0:
		g.release(now, "every informer is back")
	}
}

// release ends a hold; syncs resume after settle. Runs under g.mu.
func (g *watchGate) release(now time.Time, why string) {
	g.log.Info("syncs resume: "+why, "held_for", now.Sub(g.holdSince).Round(time.Millisecond), "still_down", g.blocking())
	g.holding = false
	g.settleUntil = now.Add(g.settle)
	time.AfterFunc(g.settle, g.trigger)
}

// retire forgets informer name, stopped for good; its later reports are
// ignored. Names are not reused.
func (g *watchGate) retire(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.informers, name)
	g.retired[name] = true
}

// held reports whether syncs are held now.
func (g *watchGate) held(now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.holding && now.Sub(g.holdSince) >= g.maxHold:
		g.release(now, "a hold ends after "+g.maxHold.String()+" whatever the informers still down")
		g.settleUntil = time.Time{} // the hold's bound has passed: no settling on top of it
		return false
	case g.holding && len(g.blocking()) == 0:
		// The last informers down turned out not to be served.
		g.release(now, "the informers still down serve no resource")
	}
	return g.holding || now.Before(g.settleUntil)
}

// holdSync is called at the start of each sync: it reports whether the sync
// is held, and then only notes that the loop ran.
func (a *Agent) holdSync(start time.Time) bool {
	if !a.gate.held(start) {
		return false
	}
	a.stateMu.Lock()
	a.lastLoop = start
	a.stateMu.Unlock()
	return true
}

// gatedLW passes an informer's list and watch requests through the gate.
type gatedLW struct {
	g           *watchGate
	name        string
	inner       cache.ListerWatcherWithContext
	unsupported bool // the client lacks watch-list semantics (fakes)
}

var _ cache.ListerWatcherWithContext = (*gatedLW)(nil)

// IsWatchListSemanticsUnSupported tells the reflector what the client
// underneath supports (client-go asks the ListerWatcher).
func (lw *gatedLW) IsWatchListSemanticsUnSupported() bool { return lw.unsupported }

func (lw *gatedLW) List(opts metav1.ListOptions) (runtime.Object, error) {
	return lw.ListWithContext(context.Background(), opts)
}

func (lw *gatedLW) Watch(opts metav1.ListOptions) (watch.Interface, error) {
	return lw.WatchWithContext(context.Background(), opts)
}

func (lw *gatedLW) ListWithContext(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	obj, err := lw.inner.ListWithContext(ctx, opts)
	if err != nil {
		lw.g.markDown(lw.name, err)
		return nil, err
	}
	lw.g.markUp(lw.name)
	return obj, nil
}

func (lw *gatedLW) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	w, err := lw.inner.WatchWithContext(ctx, opts)
	if err != nil {
		lw.g.markDown(lw.name, err)
		return nil, err
	}
	// A watch that streams the initial state first (a relist) is up at
	// the bookmark that ends it; a resumed one once it proves alive.
	initial := opts.SendInitialEvents != nil && *opts.SendInitialEvents
	if initial {
		lw.g.markDown(lw.name, nil)
	}
	gw := &gatedWatch{inner: w, out: make(chan watch.Event), stop: make(chan struct{})}
	go gw.forward(lw.g, lw.name, initial, lw.g.watchGrace)
	return gw, nil
}

// gatedWatch forwards a watch's events and tells the gate when its informer
// is up and when its stream ended.
type gatedWatch struct {
	inner watch.Interface
	out   chan watch.Event
	stop  chan struct{}
	once  sync.Once
}

func (w *gatedWatch) Stop() {
	w.once.Do(func() { close(w.stop); w.inner.Stop() })
}

func (w *gatedWatch) ResultChan() <-chan watch.Event { return w.out }

func (w *gatedWatch) forward(g *watchGate, name string, initial bool, graceFor time.Duration) {
	defer close(w.out)
	defer g.markDown(name, nil)
	up := false
	var grace <-chan time.Time
	if !initial {
		t := time.NewTimer(graceFor)
		defer t.Stop()
		grace = t.C
	}
	for {
		select {
		case ev, ok := <-w.inner.ResultChan():
			if !ok {
				return
			}
			if !up && (initial && isInitialEventsEnd(ev) || !initial && ev.Type != watch.Error) {
				up = true
				g.markUp(name)
			}
			select {
			case w.out <- ev:
			case <-w.stop:
				return
			}
		case <-grace:
			grace = nil
			if !up {
				up = true
				g.markUp(name)
			}
		case <-w.stop:
			return
		}
	}
}

// isInitialEventsEnd reports whether ev is the bookmark that ends a watch's
// initial events.
func isInitialEventsEnd(ev watch.Event) bool {
	if ev.Type != watch.Bookmark {
		return false
	}
	m, err := meta.Accessor(ev.Object)
	return err == nil && m.GetAnnotations()[metav1.InitialEventsAnnotationKey] == "true"
}

// gatedInformer is a shared informer for one resource whose requests pass
// through the gate.
func (g *watchGate) gatedInformer(name string, client any, obj runtime.Object, resync time.Duration, idx cache.Indexers,
	list cache.ListWithContextFunc, watchFn cache.WatchFuncWithContext) cache.SharedIndexInformer {
	lw := &gatedLW{
		g: g, name: name,
		inner:       &cache.ListWatch{ListWithContextFunc: list, WatchFuncWithContext: watchFn},
		unsupported: watchlist.DoesClientNotSupportWatchListSemantics(client),
	}
	g.mu.Lock()
	g.state(name).down = false
	g.mu.Unlock()
	return cache.NewSharedIndexInformer(lw, obj, resync, idx)
}

func (g *watchGate) podInformer(c kubernetes.Interface, resync time.Duration, idx cache.Indexers) cache.SharedIndexInformer {
	return g.gatedInformer("pods", c, &corev1.Pod{}, resync, idx,
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return c.CoreV1().Pods("").List(ctx, o)
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return c.CoreV1().Pods("").Watch(ctx, o)
		})
}

func (g *watchGate) namespaceInformer(c kubernetes.Interface, resync time.Duration, idx cache.Indexers) cache.SharedIndexInformer {
	return g.gatedInformer("namespaces", c, &corev1.Namespace{}, resync, idx,
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return c.CoreV1().Namespaces().List(ctx, o)
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return c.CoreV1().Namespaces().Watch(ctx, o)
		})
}

func (g *watchGate) policyInformer(c kubernetes.Interface, resync time.Duration, idx cache.Indexers) cache.SharedIndexInformer {
	return g.gatedInformer("networkpolicies", c, &networkingv1.NetworkPolicy{}, resync, idx,
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return c.NetworkingV1().NetworkPolicies("").List(ctx, o)
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return c.NetworkingV1().NetworkPolicies("").Watch(ctx, o)
		})
}

func (g *watchGate) nodeInformer(c kubernetes.Interface, resync time.Duration, idx cache.Indexers) cache.SharedIndexInformer {
	return g.gatedInformer("nodes", c, &corev1.Node{}, resync, idx,
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return c.CoreV1().Nodes().List(ctx, o)
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return c.CoreV1().Nodes().Watch(ctx, o)
		})
}

// clusterPolicyInformer reads ClusterNetworkPolicies in version v, as
// v1beta1 objects (cnpapi converts v1alpha2), under the gate name name.
func (g *watchGate) clusterPolicyInformer(c npaclient.Interface, v cnpapi.Version, name string, resync time.Duration, idx cache.Indexers) cache.SharedIndexInformer {
	return g.gatedInformer(name, c, &npav1beta1.ClusterNetworkPolicy{}, resync, idx,
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return cnpapi.List(ctx, c, v, o)
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return cnpapi.Watch(ctx, c, v, o)
		})
}
