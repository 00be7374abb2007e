package ruleset

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
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

// TestShapes_EveryRuleTypeHasASample reads this package's source for the
// types that implement Rule (those with the sealing method shape) and
// requires Shapes to hold a sample of each: a new type whose shape method
// returns an old Shape constant would otherwise escape every consumer's
// test.
func TestShapes_EveryRuleTypeHasASample(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Recv == nil || fd.Name.Name != "shape" {
				continue
			}
			recv := fd.Recv.List[0].Type
			if star, ok := recv.(*ast.StarExpr); ok {
				recv = star.X
			}
			types = append(types, "*ruleset."+recv.(*ast.Ident).Name)
		}
	}
	var samples []string
	for _, r := range Shapes() {
		samples = append(samples, fmt.Sprintf("%T", r))
	}
	slices.Sort(types)
	slices.Sort(samples)
	if len(types) < 2 || !slices.Equal(types, samples) {
		t.Errorf("types implementing Rule %q, samples in Shapes %q", types, samples)
	}
}
