package agent

import (
	"fmt"
	"reflect"
	"testing"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

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

func TestToCached_WhatClientGoReads(t *testing.T) {
	a := &Agent{} // the transform uses only the interners
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "a", ResourceVersion: "7", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{NodeName: "n"},
		Status:     corev1.PodStatus{PodIP: "10.0.0.1"},
	}
	obj, err := a.toCached(pod)
	if err != nil {
		t.Fatal(err)
	}
	// The key and resourceVersion client-go computes, live and from a
	// tombstone of a missed delete.
	if key, err := cache.MetaNamespaceKeyFunc(obj); err != nil || key != "x/a" {
		t.Errorf("MetaNamespaceKeyFunc = %q, %v; want x/a", key, err)
	}
	if m, err := meta.Accessor(obj); err != nil || m.GetResourceVersion() != "7" {
		t.Errorf("resourceVersion through meta.Accessor: %v, %v; want 7", m, err)
	}
	if ns, name, ok := deletedKey(cache.DeletedFinalStateUnknown{Key: "x/a", Obj: obj}); !ok || ns != "x" || name != "a" {
		t.Errorf("deletedKey(tombstone) = %q, %q, %v; want x, a, true", ns, name, ok)
	}
	// Idempotent: a record passes through.
	if again, _ := a.toCached(obj); again != obj {
		t.Error("the transform converted a record again")
	}
	c := obj.(*cached)
	if c.pod == nil || c.pod.Name != "a" || len(c.pod.IPs) != 1 || c.pod.Labels["app"] != "web" {
		t.Errorf("converted pod = %+v", c.pod)
	}

	// A policy's record carries what an Event about it needs.
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "p", UID: "u-1", ResourceVersion: "9"}}
	pobj, _ := a.toCached(np)
	ref := pobj.(*cached).policyRef()
	if ref.Kind != "NetworkPolicy" || ref.APIVersion != "networking.k8s.io/v1" || ref.Namespace != "x" || ref.Name != "p" || ref.UID != "u-1" || ref.ResourceVersion != "9" {
		t.Errorf("policyRef = %+v", ref)
	}
	if key, err := cache.MetaNamespaceKeyFunc(pobj); err != nil || key != "x/p" {
		t.Errorf("policy key = %q, %v", key, err)
	}
	nsObj, _ := a.toCached(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x", ResourceVersion: "3"}})
	if key, err := cache.MetaNamespaceKeyFunc(nsObj); err != nil || key != "x" {
		t.Errorf("namespace key = %q, %v", key, err)
	}

	// Cluster-scoped kinds: a ClusterNetworkPolicy (with what its Events
	// need) and a Node; a pod's record does not grow for them.
	cnp := &npav1beta1.ClusterNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "c", UID: "u-2", ResourceVersion: "11"},
		Spec:       npav1beta1.ClusterNetworkPolicySpec{Tier: npav1beta1.AdminTier, Priority: 4, Subject: npav1beta1.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{}}},
	}
	cobj, _ := a.toCached(cnp)
	if key, err := cache.MetaNamespaceKeyFunc(cobj); err != nil || key != "c" {
		t.Errorf("clusternetworkpolicy key = %q, %v", key, err)
	}
	if p := cobj.(*cached).clusterPolicy(); p == nil || p.Name != "c" || p.Priority != 4 || p.Tier != cluster.TierAdmin {
		t.Errorf("converted clusternetworkpolicy = %+v", p)
	}
	cref := cobj.(*cached).clusterPolicyRef()
	if cref.Kind != "ClusterNetworkPolicy" || cref.APIVersion != "policy.networking.k8s.io/v1beta1" || cref.Namespace != "" || cref.Name != "c" || cref.UID != "u-2" {
		t.Errorf("clusterPolicyRef = %+v", cref)
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", ResourceVersion: "12", Labels: map[string]string{"role": "infra"}},
		Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.1.0.1"}, {Type: corev1.NodeHostName, Address: "n1"}}},
	}
	nobj, _ := a.toCached(node)
	if key, err := cache.MetaNamespaceKeyFunc(nobj); err != nil || key != "n1" {
		t.Errorf("node key = %q, %v", key, err)
	}
	if n := nobj.(*cached).node(); n == nil || len(n.IPs) != 1 || n.Labels["role"] != "infra" {
		t.Errorf("converted node = %+v", n)
	}
	if size := unsafe.Sizeof(cached{}); size != 48 {
		t.Errorf("a cached record is %d bytes, want 48 (there is one per pod)", size)
	}
}
