package agent

import (
	"fmt"
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/labels"
)

func TestLabelInterner_SharesEqualSetsAndStaysBounded(t *testing.T) {
	var li labelInterner
	a := li.intern(labels.Set{"app": "web", "tier": "front"})
	b := li.intern(labels.Set{"tier": "front", "app": "web"})
	if reflect.ValueOf(a).Pointer() != reflect.ValueOf(b).Pointer() {
		t.Error("two equal label sets were not shared")
	}
	if c := li.intern(labels.Set{"app": "web"}); reflect.ValueOf(c).Pointer() == reflect.ValueOf(a).Pointer() || len(c) != 1 {
		t.Errorf("a different label set came back as %v", c)
	}
	if li.intern(nil) != nil || li.intern(labels.Set{}) != nil {
		t.Error("empty label sets should come back nil")
	}

	// Churn: 100 pods, a million distinct label sets over time.
	li.setPods(100)
	for i := range 1_000_000 {
		li.intern(labels.Set{"pod-template-hash": fmt.Sprint(i)})
		if n := len(li.cur) + len(li.prev); n > 2*minInternGeneration {
			t.Fatalf("after %d label sets the interner holds %d, want at most %d", i+1, n, 2*minInternGeneration)
		}
	}
	// What is still asked for survives a generation change.
	keep := li.intern(labels.Set{"app": "db"})
	for i := range minInternGeneration {
		li.intern(labels.Set{"x": fmt.Sprint(i)})
		if got := li.intern(labels.Set{"app": "db"}); reflect.ValueOf(got).Pointer() != reflect.ValueOf(keep).Pointer() {
			t.Fatalf("a label set in use was dropped after %d others", i+1)
		}
	}
}
