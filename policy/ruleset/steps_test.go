package ruleset

import (
	"strings"
	"testing"
)

// stepsText renders steps one a line as "kind name".
func stepsText(steps []Step) string {
	var b strings.Builder
	for _, st := range steps {
		name := ""
		switch {
		case st.Chain != nil:
			name = st.Chain.Name
		case st.Set != nil:
			name = st.Set.Name
		}
		b.WriteString(st.Kind.String() + " " + name + "\n")
	}
	return b.String()
}

func TestPlanSteps_Order(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		old  *Ruleset
		new  *Ruleset
		want string
	}{
		{
			name: "new table: sets, regular chains and rules, elements, base chains",
			new:  baseRuleset(),
			want: `add set peers-a
add set ports-a
add set ingress4
add chain pol-a
add rules pol-a
add elements ingress4
add elements peers-a
add elements ports-a
add chain input
add rules input
add chain postrouting
add rules postrouting
`,
		},
		{
			name: "policy removed: map entry, then chain, then set",
			old:  baseRuleset(),
			new: baseRuleset(func(r *Ruleset) {
				r.Chains = []*Chain{r.Chain("input"), r.Chain("postrouting")}
				r.Set("ingress4").Replace(nil)
				r.Sets = []*Set{r.Set("ingress4"), r.Set("ports-a")}
			}),
			want: `flush chain pol-a
delete elements ingress4
delete chain pol-a
delete set peers-a
`,
		},
		{
			name: "base chain priority changed: flushed, deleted, added",
			old:  baseRuleset(),
			new: baseRuleset(func(r *Ruleset) {
				r.Chain("input").Base = &Base{Hook: HookInput, Priority: 100, Policy: Accept}
			}),
			want: `flush chain input
delete chain input
add chain input
add rules input
`,
		},
		{
			name: "read-back chain refilled: flushed first, refilled with the new chains' rules",
			old: baseRuleset(func(r *Ruleset) {
				r.Chain("pol-a").Rules = []Rule{&KernelRule{Handle: 9}}
			}),
			new: baseRuleset(func(r *Ruleset) {
				r.Chains = append(r.Chains, &Chain{Name: "pol-b", Rules: []Rule{&VerdictRule{Verdict: Verdict{Kind: Drop}}}})
				r.Chain("pol-a").Rules = append(r.Chain("pol-a").Rules[:1:1], &VerdictRule{Verdict: Verdict{Kind: Jump, Chain: "pol-b"}})
			}),
			want: `flush chain pol-a
add chain pol-b
add rules pol-b
add rules pol-a
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := stepsText(Diff(tt.old, tt.new).Steps()); got != tt.want {
				t.Errorf("steps:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
	if !strings.HasPrefix(StepInvalid.String(), "invalid") {
		t.Errorf("the zero step kind is %q, want invalid", StepInvalid)
	}
}
