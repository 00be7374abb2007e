package agent

import (
	"fmt"
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/policyd/policyd/cluster"
)

func TestInterner_SharesEqualLabelSetsAndStaysBounded(t *testing.T) {
	var in interner[labels.Set]
	a := internLabels(&in, labels.Set{"app": "web", "tier": "front"})
	b := internLabels(&in, labels.Set{"tier": "front", "app": "web"})
	if reflect.ValueOf(a).Pointer() != reflect.ValueOf(b).Pointer() {
		t.Error("two equal label sets were not shared")
	}
	if c := internLabels(&in, labels.Set{"app": "web"}); reflect.ValueOf(c).Pointer() == reflect.ValueOf(a).Pointer() || len(c) != 1 {
		t.Errorf("a different label set came back as %v", c)
	}
	if internLabels(&in, nil) != nil || internLabels(&in, labels.Set{}) != nil {
		t.Error("empty label sets should come back nil")
	}

	// Churn: 100 pods, a million distinct label sets over time.
	in.setObjects(100)
	for i := range 1_000_000 {
		internLabels(&in, labels.Set{"pod-template-hash": fmt.Sprint(i)})
		if n := len(in.cur) + len(in.prev); n > 2*minInternGeneration {
			t.Fatalf("after %d label sets the interner holds %d, want at most %d", i+1, n, 2*minInternGeneration)
		}
	}
	// What is still asked for survives a generation change.
	keep := internLabels(&in, labels.Set{"app": "db"})
	for i := range minInternGeneration {
		internLabels(&in, labels.Set{"x": fmt.Sprint(i)})
		if got := internLabels(&in, labels.Set{"app": "db"}); reflect.ValueOf(got).Pointer() != reflect.ValueOf(keep).Pointer() {
			t.Fatalf("a label set in use was dropped after %d others", i+1)
		}
	}
}

func TestInternSelectors_SharesEqualSelectorsKeepsMeaning(t *testing.T) {
	var in interner[labels.Selector]
	web := func() labels.Selector { return labels.SelectorFromSet(labels.Set{"app": "web"}) }
	mk := func(podSel labels.Selector, peers ...cluster.Peer) *cluster.Policy {
		return &cluster.Policy{Namespace: "x", Name: "p", PodSelector: podSel,
			IngressRules: []cluster.Rule{{Peers: peers}}}
	}
	p1 := mk(web(), cluster.Peer{Kind: cluster.PeerPods, PodSelector: web(), NamespaceSelector: labels.Everything()})
	p2 := mk(web(), cluster.Peer{Kind: cluster.PeerPods, PodSelector: labels.Nothing(), NamespaceSelector: nil})
	internSelectors(&in, p1)
	internSelectors(&in, p2)
	same := func(a, b labels.Selector) bool { return reflect.ValueOf(a).Pointer() == reflect.ValueOf(b).Pointer() }
	if !same(p1.PodSelector, p2.PodSelector) || !same(p1.IngressRules[0].Peers[0].PodSelector, p1.PodSelector) {
		t.Error("equal selectors were not shared")
	}
	// Everything and Nothing both print as "": they must stay apart.
	every, nothing := p1.IngressRules[0].Peers[0].NamespaceSelector, p2.IngressRules[0].Peers[0].PodSelector
	if !every.Matches(labels.Set{"a": "b"}) || nothing.Matches(labels.Set{"a": "b"}) {
		t.Errorf("after interning, Everything matches: %v, Nothing matches: %v", every.Matches(labels.Set{"a": "b"}), nothing.Matches(labels.Set{"a": "b"}))
	}
	if p2.IngressRules[0].Peers[0].NamespaceSelector != nil {
		t.Error("a nil selector came back non-nil")
	}
}
