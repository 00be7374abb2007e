package ruleset

import "net/netip"

// The rule shapes are a closed set: Rule is sealed, and every consumer has
// one form per shape. Adding a shape is five steps, each in one place; until
// all are done, the tests of this package, policy/nft and policy/trace, and
// the sealed-set linter of `make verify` (hack/sealedcheck), fail:
//
//  1. The type, in this package: its fields and doc with its nft text, a
//     Shape constant (before numShapes) its shape method returns, and its
//     Text, RuleComment, RuleVerdict and SetRefs (one line:
//     refSetNames(r.Refs())) methods.
//  2. Its sample in Shapes, at its Shape's place, with the sets and limits
//     it names added to ShapesRuleset.
//  3. Its contract, in refs.go: Refs, every set, map, limit and chain it
//     names with what it needs of each (key type, map, flags), and
//     Validate, the invariants of its own fields. Check and CheckRule
//     enforce both for every consumer; nothing else re-states them.
//  4. Its lowering in policy/nft (lowerRule, lower.go): it only builds the
//     expressions nft generates for its Text; the kernel test there proves
//     that both list the same.
//  5. Its step in policy/trace (tracer.rule, trace.go): it only interprets
//     what the rule matches and the verdict it applies.

// Shapes returns one sample of every rule shape, in Shape order (the sample
// of Shape s is at index s-1). It is the single list of shapes: the tests of
// this package require a sample of every Shape, and those of every consumer
// (the netlink lowering and the kernel listing in policy/nft, the tracer in
// policy/trace) iterate over it and fail on a shape without its form. The
// samples look up the sets of ShapesRuleset. Each call returns new values.
func Shapes() []Rule {
	accept := Verdict{Kind: Accept}
	return []Rule{
		&CtRule{States: CtEstablished | CtRelated, Verdict: accept, Comment: "sample ct"},
		&FibLocalRule{Verdict: accept, Comment: "sample fib"},
		&NDRule{Verdict: accept, Comment: "sample nd"},
		&DispatchRule{Family: 4, Field: Daddr, Map: "shape-map4", Comment: "sample dispatch"},
		&AllowRule{Family: 4, PeerField: Saddr, PeerSet: "shape-peer4", PortSet: "shape-ports",
			NamedPortSet: "shape-np4", Verdict: accept, Comment: "sample allow"},
		&UnknownAddrRule{Family: 4, Field: Saddr, CIDRSet: "shape-cidr4", KnownSet: "shape-peer4",
			Verdict: Verdict{Kind: Drop}, Comment: "sample unknown address"},
		&VerdictRule{Verdict: Verdict{Kind: Drop}, Comment: "sample verdict"},
		&KernelRule{Handle: 7, Comment: "sample kernel rule"},
		&CtMarkRule{Family: 4, Field: Saddr, Set: "shape-peer4", Mark: 0x00100000, Comment: "sample ct mark"},
		&TCPPickupRule{Family: 4, Field: Daddr, Set: "shape-peer4", Verdict: Verdict{Kind: Drop}, Comment: "sample tcp pickup"},
		&LogRule{States: CtNew, Prefix: "pd:0123456789abcdef", Group: 7, Limit: "shape-limit", Comment: "sample log"},
		&CutMarkRule{Mark: 0x00200000, Verdict: Verdict{Kind: Drop}, Comment: "sample cut mark"},
		&PortDispatchRule{Map: "shape-pmap", Comment: "sample port dispatch"},
	}
}

// ShapesRuleset returns a sorted Ruleset whose base chain "shapes" (hook
// input) holds the sample of every writable shape of Shapes, in order, with
// the sets they look up, each holding one element.
func ShapesRuleset() *Ruleset {
	a := netip.MustParseAddr("10.0.0.1")
	r := &Ruleset{
		Sets: []*Set{
			{Name: "shape-map4", Key: KeyIPv4, Map: true, Elements: []Element{{Addr: a, Verdict: Verdict{Kind: Accept}}}},
			{Name: "shape-peer4", Key: KeyIPv4, Elements: []Element{{Addr: a}}},
			{Name: "shape-ports", Key: KeyProtoPort, Interval: true, Elements: []Element{{Proto: 6, Port: 80, PortEnd: 81}}},
			{Name: "shape-np4", Key: KeyIPv4ProtoPort, Elements: []Element{{Addr: a, Proto: 6, Port: 80, PortEnd: 80}}},
			{Name: "shape-pmap", Key: KeyProtoPort, Map: true, Elements: []Element{{Proto: 6, Port: 80, PortEnd: 80, Verdict: Verdict{Kind: Accept}}}},
			{Name: "shape-cidr4", Key: KeyIPv4, Interval: true, Elements: []Element{{Addr: a, AddrEnd: netip.MustParseAddr("10.0.255.255")}}},
		},
	}
	r.Limits = []*Limit{{Name: "shape-limit", Rate: 10, Burst: 5}}
	c := &Chain{Name: "shapes", Base: &Base{Hook: HookInput, Priority: 0, Policy: Accept}}
	for _, rule := range Shapes() {
		if ShapeOf(rule).Writable() {
			c.Rules = append(c.Rules, rule)
		}
	}
	r.Chains = []*Chain{c}
	r.Sort()
	return r
}
