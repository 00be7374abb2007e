package nft

import (
	"net/netip"

	"github.com/policyd/policyd/policy/ruleset"
)

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func accept() ruleset.Verdict         { return ruleset.Verdict{Kind: ruleset.Accept} }
func drop() ruleset.Verdict           { return ruleset.Verdict{Kind: ruleset.Drop} }
func jump(c string) ruleset.Verdict   { return ruleset.Verdict{Kind: ruleset.Jump, Chain: c} }
func returnV() ruleset.Verdict        { return ruleset.Verdict{Kind: ruleset.Return} }
func rng(a, b string) ruleset.Element { return ruleset.Element{Addr: ip(a), AddrEnd: ip(b)} }

// fullRuleset covers every rule shape, every AllowRule field combination
// and every kind of set and map.
func fullRuleset(tweaks ...func(*ruleset.Ruleset)) *ruleset.Ruleset {
	r := &ruleset.Ruleset{
		Limits: []*ruleset.Limit{{Name: "log-limit-5-10", Rate: 5, Burst: 10}},
		Sets: []*ruleset.Set{
			{Name: "peer4", Key: ruleset.KeyIPv4, Comment: "app=web in ns1", Elements: []ruleset.Element{
				{Addr: ip("10.0.0.1")}, {Addr: ip("10.0.0.2")},
			}},
			{Name: "peer6", Key: ruleset.KeyIPv6, Elements: []ruleset.Element{
				{Addr: ip("fd00::1")}, {Addr: ip("fd00::a:2")},
			}},
			{Name: "empty4", Key: ruleset.KeyIPv4},
			{Name: "blk4", Key: ruleset.KeyIPv4, Interval: true, Comment: "10.0.0.0/8 except", Elements: []ruleset.Element{
				rng("10.1.0.0", "10.1.255.255"), // a prefix
				rng("10.2.0.1", "10.2.0.5"),     // not a prefix
				{Addr: ip("10.3.0.7")},          // one address, no end
				rng("10.3.0.9", "10.3.0.9"),     // one address as a range
				rng("10.4.0.0", "10.4.0.127"),   // adjacent ranges
				rng("10.4.0.128", "10.4.0.255"),
			}},
			{Name: "all4", Key: ruleset.KeyIPv4, Interval: true, Elements: []ruleset.Element{
				rng("0.0.0.0", "255.255.255.255"),
			}},
			{Name: "top4", Key: ruleset.KeyIPv4, Interval: true, Elements: []ruleset.Element{
				rng("0.0.0.0", "9.255.255.255"),
				rng("11.0.0.0", "255.255.255.255"),
			}},
			{Name: "blk6", Key: ruleset.KeyIPv6, Interval: true, Elements: []ruleset.Element{
				rng("fd00::", "fd00::ffff:ffff:ffff:ffff"),
				rng("fd00:1::1", "fd00:1::7"),
			}},
			{Name: "all6", Key: ruleset.KeyIPv6, Interval: true, Elements: []ruleset.Element{
				rng("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
			}},
			{Name: "ports", Key: ruleset.KeyProtoPort, Interval: true, Elements: []ruleset.Element{
				{Proto: 6, Port: 80, PortEnd: 80},
				{Proto: 17, Port: 1000, PortEnd: 2000},
				{Proto: 132, Port: 0, PortEnd: 65535},
			}},
			{Name: "allports", Key: ruleset.KeyProtoPort, Interval: true, Elements: []ruleset.Element{
				{Proto: 6, Port: 0, PortEnd: 65535},
				{Proto: 17, Port: 0, PortEnd: 65535},
			}},
			{Name: "np4", Key: ruleset.KeyIPv4ProtoPort, Elements: []ruleset.Element{
				{Addr: ip("10.0.0.1"), Proto: 6, Port: 8080, PortEnd: 8080},
				{Addr: ip("10.0.0.2"), Proto: 17, Port: 53, PortEnd: 53},
			}},
			{Name: "np6", Key: ruleset.KeyIPv6ProtoPort, Elements: []ruleset.Element{
				{Addr: ip("fd00::1"), Proto: 6, Port: 8080, PortEnd: 8080},
				{Addr: ip("fd00::2"), Proto: 132, Port: 9, PortEnd: 9},
			}},
			{Name: "npi4", Key: ruleset.KeyIPv4ProtoPort, Interval: true, Elements: []ruleset.Element{
				{Addr: ip("10.0.0.1"), AddrEnd: ip("10.0.0.1"), Proto: 6, Port: 8080, PortEnd: 8080},
				{Addr: ip("10.0.1.0"), AddrEnd: ip("10.0.1.255"), Proto: 17, Port: 1, PortEnd: 2},
			}},
			{Name: "ing4", Key: ruleset.KeyIPv4, Map: true, Comment: "ingress dispatch", Elements: []ruleset.Element{
				{Addr: ip("10.0.0.1"), Verdict: jump("pol-a")},
				{Addr: ip("10.0.0.2"), Verdict: drop()},
				{Addr: ip("10.0.0.3"), Verdict: accept()},
			}},
			{Name: "pports", Key: ruleset.KeyProtoPort, Map: true, Comment: "port dispatch", Elements: []ruleset.Element{
				{Proto: 6, Port: 80, PortEnd: 80, Verdict: jump("pol-c")},
				{Proto: 17, Port: 53, PortEnd: 53, Verdict: accept()},
				{Proto: 132, Port: 9, PortEnd: 9, Verdict: drop()},
			}},
			{Name: "eg6", Key: ruleset.KeyIPv6, Map: true, Elements: []ruleset.Element{
				{Addr: ip("fd00::1"), Verdict: jump("pol-b")},
				{Addr: ip("fd00::2"), Verdict: returnV()},
			}},
		},
		Chains: []*ruleset.Chain{
			{Name: "pol-a", Rules: []ruleset.Rule{
				&ruleset.AllowRule{Family: 4, PeerField: ruleset.Saddr, PeerSet: "peer4", Verdict: accept()},
				&ruleset.AllowRule{Family: 4, PeerField: ruleset.Daddr, PeerSet: "peer4", PortSet: "ports", Verdict: accept()},
				&ruleset.AllowRule{Family: 4, PeerField: ruleset.Saddr, PeerSet: "peer4", PortSet: "ports", NamedPortSet: "np4", Verdict: accept(), Comment: "policy ns1/allow-web ingress[0]"},
				&ruleset.AllowRule{Family: 4, PeerField: ruleset.Saddr, PeerSet: "blk4", NamedPortSet: "np4", Verdict: accept()},
				&ruleset.AllowRule{Family: 4, NamedPortSet: "np4", Verdict: accept()},
				&ruleset.AllowRule{Family: 4, NamedPortSet: "npi4", Verdict: accept()},
				&ruleset.AllowRule{Family: 4, PortSet: "allports", Verdict: accept()},
				&ruleset.AllowRule{Family: 0, PortSet: "ports", Verdict: accept()},
				&ruleset.AllowRule{Family: 4, Proto: 6, Port: 8080, PeerField: ruleset.Saddr, PeerSet: "peer4", Verdict: accept(), Comment: "literal port"},
				&ruleset.AllowRule{Family: 0, Proto: 17, Port: 53, Verdict: accept()},
				&ruleset.AllowRule{Family: 4, PeerField: ruleset.Daddr, PeerSet: "all4", Verdict: accept()},
				&ruleset.AllowRule{Family: 4, PeerField: ruleset.Saddr, PeerSet: "top4", Verdict: accept()},
				&ruleset.AllowRule{Family: 4, PeerField: ruleset.Saddr, PeerSet: "empty4", Verdict: jump("pol-c")},
				&ruleset.AllowRule{Family: 0, Verdict: accept(), Comment: "allow all"},
				&ruleset.LogRule{Prefix: "pd:00000000000000aa", Group: 100, Limit: "log-limit-5-10", Comment: "log a drop"},
				&ruleset.LogRule{Prefix: "pd:00000000000000bb", Group: 3},
				&ruleset.VerdictRule{Verdict: drop(), Comment: "default deny"},
			}},
			{Name: "pol-b", Rules: []ruleset.Rule{
				&ruleset.PortDispatchRule{Map: "pports", Comment: "port dispatch"},
				&ruleset.AllowRule{Family: 6, PeerField: ruleset.Saddr, PeerSet: "peer6", Verdict: accept()},
				&ruleset.AllowRule{Family: 6, PeerField: ruleset.Daddr, PeerSet: "blk6", PortSet: "ports", Verdict: accept()},
				&ruleset.AllowRule{Family: 6, PeerField: ruleset.Saddr, PeerSet: "peer6", PortSet: "ports", NamedPortSet: "np6", Verdict: accept()},
				&ruleset.AllowRule{Family: 6, NamedPortSet: "np6", Verdict: jump("pol-c")},
				&ruleset.AllowRule{Family: 6, PeerField: ruleset.Saddr, PeerSet: "all6", Verdict: accept()},
				&ruleset.VerdictRule{Verdict: returnV()},
			}},
			{Name: "strict", Rules: []ruleset.Rule{
				&ruleset.CutMarkRule{Mark: 0x00200000, Verdict: drop(), Comment: "cut flow"},
				&ruleset.CtMarkRule{Family: 4, Field: ruleset.Saddr, Set: "all4", Mark: 0x00100000, Comment: "policed flow"},
				&ruleset.TCPPickupRule{Family: 6, Field: ruleset.Daddr, Set: "all6", Verdict: drop()},
			}},
			{Name: "pol-c", Rules: []ruleset.Rule{
				&ruleset.VerdictRule{Verdict: accept()},
			}},
			{Name: "input", Base: &ruleset.Base{Hook: ruleset.HookInput, Priority: 110, Policy: ruleset.Accept}, Rules: []ruleset.Rule{
				&ruleset.CtRule{States: ruleset.CtEstablished | ruleset.CtRelated, Verdict: accept(), Comment: "replies"},
				&ruleset.CtRule{States: ruleset.CtInvalid, Verdict: drop()},
				&ruleset.FibLocalRule{Verdict: accept(), Comment: "from the node"},
				&ruleset.NDRule{Verdict: accept()},
				&ruleset.DispatchRule{Family: 4, Field: ruleset.Daddr, Map: "ing4", Comment: "ingress v4"},
				&ruleset.DispatchRule{Family: 6, Field: ruleset.Daddr, Map: "eg6"},
				&ruleset.UnknownAddrRule{Family: 4, Field: ruleset.Saddr, CIDRSet: "blk4", KnownSet: "peer4", Verdict: drop(), Comment: "unknown pod"},
				&ruleset.UnknownAddrRule{Family: 6, Field: ruleset.Daddr, CIDRSet: "blk6", KnownSet: "peer6", Verdict: drop()},
			}},
			{Name: "postrouting", Base: &ruleset.Base{Hook: ruleset.HookPostrouting, Priority: 95, Policy: ruleset.Accept}, Rules: []ruleset.Rule{
				&ruleset.CtRule{States: ruleset.CtNew | ruleset.CtUntracked, Verdict: returnV()},
				&ruleset.NDRule{Verdict: accept(), Comment: "neighbour discovery"},
				&ruleset.FibLocalRule{Verdict: returnV()},
				&ruleset.DispatchRule{Family: 4, Field: ruleset.Saddr, Map: "ing4"},
				&ruleset.DispatchRule{Family: 6, Field: ruleset.Saddr, Map: "eg6"},
			}},
		},
	}
	r.Sort()
	for _, tw := range tweaks {
		tw(r)
		r.Sort()
	}
	return r
}
