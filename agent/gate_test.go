package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// testGate is a gate with short durations whose trigger is counted.
func testGate(t *testing.T) (*watchGate, *atomic.Int32) {
	t.Helper()
	var triggers atomic.Int32
	g := newWatchGate(slog.New(slog.NewTextHandler(io.Discard, nil)), func() { triggers.Add(1) })
	g.gapThreshold, g.maxHold, g.settle, g.watchGrace = 20*time.Millisecond, 400*time.Millisecond, 50*time.Millisecond, 30*time.Millisecond
	for _, n := range []string{"pods", "networkpolicies", "namespaces"} {
		g.state(n)
	}
	return g, &triggers
}

func TestWatchGate_HoldsWhileInformersComeBackOneByOne(t *testing.T) {
	g, triggers := testGate(t)
	for _, n := range []string{"pods", "networkpolicies", "namespaces"} {
		g.markDown(n, errors.New("connection refused"))
	}
	assert.False(t, g.held(time.Now()), "all down: nothing changes, syncs (repairs) go on")
	time.Sleep(30 * time.Millisecond)
	g.markUp("networkpolicies") // back with new state while pods are stale
	assert.True(t, g.held(time.Now()), "one back from a gap, others down: held")
	g.markUp("pods")
	assert.True(t, g.held(time.Now()), "namespaces still down")
	g.markUp("namespaces")
	assert.True(t, g.held(time.Now()), "the last one back: held for settle")
	require.Eventually(t, func() bool { return !g.held(time.Now()) }, time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return triggers.Load() >= 1 }, time.Second, 5*time.Millisecond, "the end of a hold asks for a sync")
}

func TestWatchGate_ShortReconnectsHoldNothing(t *testing.T) {
	g, _ := testGate(t)
	g.markDown("pods", nil) // a watch's timeout ended it
	g.markUp("pods")        // resumed at once
	assert.False(t, g.held(time.Now()))
	// A jump of one informer while every other streams: nothing to mix.
	g.markDown("networkpolicies", nil)
	time.Sleep(30 * time.Millisecond)
	g.markUp("networkpolicies")
	assert.False(t, g.held(time.Now()))
}

func TestWatchGate_HoldIsBounded(t *testing.T) {
	g, triggers := testGate(t)
	g.markDown("pods", errors.New("forbidden"))
	g.markDown("networkpolicies", errors.New("connection refused"))
	time.Sleep(30 * time.Millisecond)
	g.markUp("networkpolicies")
	assert.True(t, g.held(time.Now()))
	require.Eventually(t, func() bool { return triggers.Load() >= 1 }, time.Second, 5*time.Millisecond, "the bound asks for a sync")
	assert.False(t, g.held(time.Now()), "after maxHold, syncs resume whatever pods do")
}

func TestWatchGate_UnservedResourceDoesNotHold(t *testing.T) {
	g, _ := testGate(t)
	g.markDown("clusternetworkpolicies", apierrors.NewNotFound(schema.GroupResource{Group: "policy.networking.k8s.io", Resource: "clusternetworkpolicies"}, ""))
	g.markDown("pods", errors.New("connection refused"))
	time.Sleep(30 * time.Millisecond)
	g.markUp("pods")
	assert.False(t, g.held(time.Now()), "a CRD removed must not hold syncs")
}

// TestWatchGate_RetiredInformerDoesNotHold: a ClusterNetworkPolicy
// informer replaced by one of another version is stopped, so its stream ends
// (down, for ever); once retired, that and any later report of it hold
// nothing.
func TestWatchGate_RetiredInformerDoesNotHold(t *testing.T) {
	g, _ := testGate(t)
	g.state("clusternetworkpolicies.v1alpha2#1")
	g.markDown("clusternetworkpolicies.v1alpha2#1", nil)
	g.retire("clusternetworkpolicies.v1alpha2#1")
	g.markDown("clusternetworkpolicies.v1alpha2#1", nil) // its watch's last words
	g.markDown("pods", errors.New("connection refused"))
	time.Sleep(30 * time.Millisecond)
	g.markUp("pods")
	assert.False(t, g.held(time.Now()), "a stopped informer must not hold syncs")
}

// fakeLW serves watches from a channel of fake watchers.
type fakeLW struct{ w *watch.FakeWatcher }

func (f *fakeLW) ListWithContext(context.Context, metav1.ListOptions) (runtime.Object, error) {
	return &corev1.PodList{}, nil
}

func (f *fakeLW) WatchWithContext(context.Context, metav1.ListOptions) (watch.Interface, error) {
	return f.w, nil
}

var _ cache.ListerWatcherWithContext = (*fakeLW)(nil)

func TestGatedWatch_UpWhenItProvesAlive(t *testing.T) {
	isDown := func(g *watchGate, name string) bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.state(name).down
	}
	t.Run("relist: at the bookmark ending the initial events", func(t *testing.T) {
		g, _ := testGate(t)
		fw := watch.NewFake()
		lw := &gatedLW{g: g, name: "pods", inner: &fakeLW{w: fw}}
		on := true
		w, err := lw.WatchWithContext(context.Background(), metav1.ListOptions{SendInitialEvents: &on})
		require.NoError(t, err)
		go fw.Add(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "a"}})
		<-w.ResultChan()
		assert.True(t, isDown(g, "pods"), "initial events still arriving")
		go fw.Action(watch.Bookmark, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{metav1.InitialEventsAnnotationKey: "true"}}})
		<-w.ResultChan()
		assert.False(t, isDown(g, "pods"))
		fw.Stop()
		_, ok := <-w.ResultChan()
		assert.False(t, ok)
		assert.Eventually(t, func() bool { return isDown(g, "pods") }, time.Second, 5*time.Millisecond, "a stream that ended is down")
	})
	t.Run("resume answered 410: stays down", func(t *testing.T) {
		g, _ := testGate(t)
		fw := watch.NewFake()
		lw := &gatedLW{g: g, name: "pods", inner: &fakeLW{w: fw}}
		g.markDown("pods", nil)
		w, err := lw.WatchWithContext(context.Background(), metav1.ListOptions{ResourceVersion: "5"})
		require.NoError(t, err)
		go fw.Error(&apierrors.NewResourceExpired("too old resource version").ErrStatus)
		<-w.ResultChan()
		assert.True(t, isDown(g, "pods"))
		w.Stop()
	})
	t.Run("resume: up after the grace period with no error", func(t *testing.T) {
		g, _ := testGate(t)
		fw := watch.NewFake()
		lw := &gatedLW{g: g, name: "pods", inner: &fakeLW{w: fw}}
		g.markDown("pods", nil)
		w, err := lw.WatchWithContext(context.Background(), metav1.ListOptions{ResourceVersion: "5"})
		require.NoError(t, err)
		assert.Eventually(t, func() bool { return !isDown(g, "pods") }, time.Second, 5*time.Millisecond)
		w.Stop()
	})
}
