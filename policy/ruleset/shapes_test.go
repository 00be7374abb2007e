package ruleset

import (
	"fmt"
	"strings"
	"testing"
)

// TestShapes_OneSampleOfEveryShape keeps Shapes the complete list: a new
// Shape constant without a sample, or a sample out of place, fails here, and
// the consumers' tests iterate over Shapes.
func TestShapes_OneSampleOfEveryShape(t *testing.T) {
	t.Parallel()
	samples := Shapes()
	if len(samples) != int(numShapes)-1 {
		t.Fatalf("Shapes has %d samples, want one for each of the %d shapes", len(samples), numShapes-1)
	}
	types := map[string]Shape{}
	for i, r := range samples {
		want := Shape(i + 1)
		if got := ShapeOf(r); got != want {
			t.Errorf("Shapes()[%d] (%T) has shape %d, want %d", i, r, got, want)
		}
		typ := fmt.Sprintf("%T", r)
		if s, ok := types[typ]; ok {
			t.Errorf("shapes %d and %d are both %s", s, want, typ)
		}
		types[typ] = want
		if strings.TrimSpace(r.Text()) == "" {
			t.Errorf("%s has no text form", typ)
		}
	}
	if ShapeOf(nil) != ShapeInvalid || ShapeInvalid.Writable() || numShapes.Writable() {
		t.Error("the invalid shape or one past the last counts as writable")
	}
}

// TestShapesRuleset_HoldsEveryWritableShape checks the Ruleset the kernel
// and tracer tests load.
func TestShapesRuleset_HoldsEveryWritableShape(t *testing.T) {
	t.Parallel()
	rs := ShapesRuleset()
	var got []Shape
	for _, r := range rs.Chain("shapes").Rules {
		got = append(got, ShapeOf(r))
		for _, n := range r.SetRefs() {
			if rs.Set(n) == nil {
				t.Errorf("%T looks up set %s, which ShapesRuleset lacks", r, n)
			}
		}
	}
	var want []Shape
	for s := ShapeInvalid + 1; s < numShapes; s++ {
		if s.Writable() {
			want = append(want, s)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("shapes chain holds shapes %v, want %v", got, want)
	}
}
