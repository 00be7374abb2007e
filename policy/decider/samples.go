package decider

// Samples returns one sample of every kind of decider, and of each verdict
// a kind can have, in Kind order. It is the single list of deciders: the
// tests of this package require a sample of every Kind, and those of every
// consumer (compile's ids, the verdict records and their filters in
// verdicts, the model's answer in policy/model, the comparison of the
// conformance runner) iterate over it, so a new kind fails each of them
// until it has its form there. Each call returns new values.
func Samples() []Decider {
	return []Decider{
		{Direction: "ingress", Verdict: VerdictDeny, Kind: KindNetworkPolicy, Policies: []string{"x/allow-b", "x/default-deny"}},
		{Direction: "egress", Verdict: VerdictAllow, Kind: KindNetworkPolicy, Policies: []string{"x/allow-b"}, Rule: Index(1)},
		{Direction: "ingress", Verdict: VerdictDeny, Kind: KindClusterNetworkPolicy, Policies: []string{"deny-scrape"},
			Tier: "Admin", Rule: Index(2), RuleName: "no-metrics", Action: "Deny"},
		{Direction: "egress", Verdict: VerdictAllow, Kind: KindClusterNetworkPolicy, Policies: []string{"baseline-dns"},
			Tier: "Baseline", Rule: Index(0), Action: "Accept"},
		{Direction: "egress", Verdict: VerdictDeny, Kind: KindCtInvalid},
	}
}
