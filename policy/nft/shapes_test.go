package nft

import (
	"context"
	"strings"
	"testing"

	"github.com/policyd/policyd/policy/ruleset"
)

// TestLowerRule_EveryShape lowers the sample of every shape of
// ruleset.Shapes: each writable shape must have a netlink form, and a
// KernelRule must be refused by name, never skipped.
func TestLowerRule_EveryShape(t *testing.T) {
	t.Parallel()
	rs := ruleset.ShapesRuleset()
	for _, r := range ruleset.Shapes() {
		exprs, _, err := lowerRule(r, rs.Set)
		switch {
		case !ruleset.ShapeOf(r).Writable():
			if err == nil || !strings.Contains(err.Error(), "read back from the kernel") {
				t.Errorf("%T: lowering error = %v, want a refusal of a kernel rule", r, err)
			}
		case err != nil:
			t.Errorf("%T has no netlink form: %v", r, err)
		case len(exprs) == 0:
			t.Errorf("%T lowered to no expressions", r)
		}
	}
}

// TestFixture_CoversEveryShape keeps fullRuleset's promise to hold every
// writable shape.
func TestFixture_CoversEveryShape(t *testing.T) {
	t.Parallel()
	have := map[ruleset.Shape]bool{}
	for _, c := range fullRuleset().Chains {
		for _, r := range c.Rules {
			have[ruleset.ShapeOf(r)] = true
		}
	}
	for _, r := range ruleset.Shapes() {
		if s := ruleset.ShapeOf(r); s.Writable() && !have[s] {
			t.Errorf("fullRuleset has no %T", r)
		}
	}
}

// TestFake_EveryShape syncs the sample of every writable shape into the
// Fake, and requires it to refuse a KernelRule as the Backend does.
func TestFake_EveryShape(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if _, err := NewFake().Sync(ctx, ruleset.ShapesRuleset()); err != nil {
		t.Fatalf("Fake refused the shapes: %v", err)
	}
	for _, r := range ruleset.Shapes() {
		if ruleset.ShapeOf(r).Writable() {
			continue
		}
		rs := ruleset.ShapesRuleset()
		rs.Chain("shapes").Rules = append(rs.Chain("shapes").Rules, r)
		if _, err := NewFake().Sync(ctx, rs); err == nil || !strings.Contains(err.Error(), "read back from the kernel") {
			t.Errorf("%T: Fake Sync error = %v, want a refusal", r, err)
		}
	}
}
