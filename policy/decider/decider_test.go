package decider_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/policyd/policyd/policy/decider"
)

// TestSamples_EveryKind: Samples holds a sample of every valid Kind, in
// Kind order, and none of the invalid one; every valid kind and verdict has
// a name of its own.
func TestSamples_EveryKind(t *testing.T) {
	t.Parallel()
	seen := map[decider.Kind]bool{}
	last := decider.KindInvalid
	for _, d := range decider.Samples() {
		assert.NotEqual(t, decider.KindInvalid, d.Kind, "sample %s", d)
		assert.GreaterOrEqual(t, d.Kind, last, "samples out of Kind order at %s", d)
		assert.NotEqual(t, decider.VerdictInvalid, d.Verdict, "sample %s", d)
		last = d.Kind
		seen[d.Kind] = true
	}
	// The valid kinds are those with a name: a kind added without one
	// ends the walk, and the count below fails.
	names := map[string]bool{}
	for k := decider.KindInvalid + 1; k.String() != decider.KindInvalid.String(); k++ {
		assert.True(t, seen[k], "no sample of kind %s", k)
		assert.False(t, names[k.String()], "two kinds named %s", k)
		names[k.String()] = true
	}
	assert.Len(t, names, 3, "the kinds: NetworkPolicy, ClusterNetworkPolicy, ct-invalid")
	assert.Equal(t, "deny", decider.VerdictDeny.String())
	assert.Equal(t, "allow", decider.VerdictAllow.String())
}

// TestDecider_JSON: every sample has the one JSON form docs/verdicts.md
// documents (policies always a list, rule present whenever a rule decided,
// even rule 0) and reads back equal.
func TestDecider_JSON(t *testing.T) {
	t.Parallel()
	want := []string{
		`{"direction":"ingress","verdict":"deny","kind":"NetworkPolicy","policies":["x/allow-b","x/default-deny"]}`,
		`{"direction":"egress","verdict":"allow","kind":"NetworkPolicy","policies":["x/allow-b"],"rule":1}`,
		`{"direction":"ingress","verdict":"deny","kind":"ClusterNetworkPolicy","policies":["deny-scrape"],"tier":"Admin","rule":2,"ruleName":"no-metrics","action":"Deny"}`,
		`{"direction":"egress","verdict":"allow","kind":"ClusterNetworkPolicy","policies":["baseline-dns"],"tier":"Baseline","rule":0,"action":"Accept"}`,
		`{"direction":"egress","verdict":"deny","kind":"ct-invalid"}`,
	}
	samples := decider.Samples()
	require.Len(t, want, len(samples))
	for i, d := range samples {
		b, err := json.Marshal(d)
		require.NoError(t, err)
		assert.Equal(t, want[i], string(b))
		var back decider.Decider
		require.NoError(t, json.Unmarshal(b, &back))
		assert.True(t, d.Equal(back), "%s read back as %+v", b, back)
	}
}

// TestDecider_JSONRejectsUnknownNames: a kind or verdict the package does
// not name is an error, never a silent zero.
func TestDecider_JSONRejectsUnknownNames(t *testing.T) {
	t.Parallel()
	var d decider.Decider
	assert.ErrorContains(t, json.Unmarshal([]byte(`{"kind":"networkpolicy"}`), &d), `unknown decider kind "networkpolicy"`)
	assert.ErrorContains(t, json.Unmarshal([]byte(`{"verdict":"drop"}`), &d), `unknown verdict "drop"`)
}

// TestDecider_StringAndKey: each sample's String (records' "decider", the
// log chains' comments) and Key (hashed into its log id) are exactly the
// texts they always were: a changed Key would give every decider a new id.
func TestDecider_StringAndKey(t *testing.T) {
	t.Parallel()
	want := []struct{ str, key string }{
		{"ingress default deny of x/allow-b,x/default-deny", "networkpolicy|ingress|x/allow-b,x/default-deny|drop"},
		{"egress allowed by x/allow-b", "networkpolicy|egress|x/allow-b|accept"},
		{"Admin cnp deny-scrape ingress[2] Deny", "cnp|ingress|Admin|deny-scrape|2|Deny|drop"},
		{"Baseline cnp baseline-dns egress[0] Accept", "cnp|egress|Baseline|baseline-dns|0|Accept|accept"},
		{"ct state invalid egress", "invalid|egress|drop"},
	}
	samples := decider.Samples()
	require.Len(t, want, len(samples))
	for i, d := range samples {
		assert.Equal(t, want[i].str, d.String())
		assert.Equal(t, want[i].key, d.Key())
	}
	named := samples[2]
	named.RuleName = "renamed"
	assert.Equal(t, samples[2].Key(), named.Key(), "a rule's name is not part of its identity")
}

// TestDecider_Equal: a sample equals itself and a copy, and differs from
// the same decider with any one field changed, and from every other sample.
func TestDecider_Equal(t *testing.T) {
	t.Parallel()
	samples := decider.Samples()
	edits := map[string]func(*decider.Decider){
		"direction": func(d *decider.Decider) { d.Direction += "x" },
		"verdict":   func(d *decider.Decider) { d.Verdict = 3 - d.Verdict },
		"kind":      func(d *decider.Decider) { d.Kind = decider.KindInvalid },
		"policies":  func(d *decider.Decider) { d.Policies = append(d.Policies, "x/more") },
		"tier":      func(d *decider.Decider) { d.Tier += "x" },
		"rule set":  func(d *decider.Decider) { d.Rule = decider.Index(7) },
		"rule nil":  func(d *decider.Decider) { d.Rule = nil },
		"rule name": func(d *decider.Decider) { d.RuleName += "x" },
		"action":    func(d *decider.Decider) { d.Action += "x" },
	}
	for i, d := range samples {
		assert.True(t, d.Equal(decider.Samples()[i]), "%s", d)
		for name, edit := range edits {
			if name == "rule nil" && d.Rule == nil {
				continue
			}
			e := decider.Samples()[i]
			edit(&e)
			assert.False(t, d.Equal(e), "%s equals itself with its %s changed", d, name)
			assert.False(t, e.Equal(d), "%s with its %s changed equals it", d, name)
		}
		for j, o := range samples {
			if i != j {
				assert.False(t, d.Equal(o), "%s equals %s", d, o)
			}
		}
	}
}
