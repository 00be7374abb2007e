package nft

import (
	"bytes"
	"fmt"
	"net/netip"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/policyd/policyd/policy/ruleset"
)

// This file turns what the kernel holds of policyd's table into a Ruleset
// that ruleset.Diff can compare with the wanted one ("adopt").
//
// Sets and their elements are decoded completely. Every chain policyd owns,
// base or regular, is verified by content without decoding a rule
// expression: the kernel's rules must match the wanted chain's rules one by
// one, by the hash TLV the lowering writes into every rule's userdata
// (ruleHash: the rule's full text). A chain that matches is represented by
// the wanted chain itself (Diff then has nothing to do); one that does not
// (a rule missing, added, replaced or moved) by opaque ruleset.KernelRules,
// which differ from every real rule and so make Diff flush and refill it in
// place. A regular chain the wanted Ruleset lacks is an empty chain to
// delete.
//
// A table nobody but `nft -f` of Ruleset.Text wrote (`policyd compile`)
// carries no hash TLVs; its rules are matched by their comments instead, so
// that policyd adopts such a table without rewriting it. As soon as one rule
// of the table carries policyd's hash, the table is policyd's and every rule
// must carry the hash it expects: a rule without one was written by someone
// else, whatever its comment.

// adopt converts the kernel table to a Ruleset comparable with want.
func adopt(t *kTable, want *ruleset.Ruleset) *ruleset.Ruleset {
	out := &ruleset.Ruleset{}
	if !t.exists {
		return out
	}
	for _, ks := range t.sets {
		out.Sets = append(out.Sets, adoptSet(ks))
	}
	out.Limits = t.limits
	strict := hashedTable(t)
	for _, kc := range t.chains {
		w := want.Chain(kc.name)
		if !kc.base {
			switch {
			case w == nil || w.Base != nil:
				out.Chains = append(out.Chains, &ruleset.Chain{Name: kc.name})
			case matchRules(kc.rules, w.Rules, strict):
				out.Chains = append(out.Chains, w)
			default:
				out.Chains = append(out.Chains, &ruleset.Chain{Name: kc.name, Rules: kernelRules(kc.rules)})
			}
			continue
		}
		c := &ruleset.Chain{Name: kc.name, Base: &ruleset.Base{Priority: kc.priority}}
		switch kc.hooknum {
		case unix.NF_INET_LOCAL_IN:
			c.Base.Hook = ruleset.HookInput
		case unix.NF_INET_POST_ROUTING:
			c.Base.Hook = ruleset.HookPostrouting
		}
		switch kc.policy {
		case nfAccept:
			c.Base.Policy = ruleset.Accept
		case nfDrop:
			c.Base.Policy = ruleset.Drop
		}
		if w != nil && w.Base != nil && matchRules(kc.rules, w.Rules, strict) {
			c.Rules = w.Rules
		} else {
			c.Rules = kernelRules(kc.rules)
		}
		out.Chains = append(out.Chains, c)
	}
	out.Sort()
	return out
}

// kernelRules represents the rules of a kernel chain that did not match the
// wanted chain. An empty chain gets one KernelRule of handle 0, standing for
// the rules it lacks: a regular chain without a KernelRule is trusted by
// name.
func kernelRules(rules []kRule) []ruleset.Rule {
	if len(rules) == 0 {
		return []ruleset.Rule{&ruleset.KernelRule{}}
	}
	out := make([]ruleset.Rule, 0, len(rules))
	for _, kr := range rules {
		tlv, _ := parseUserData(kr.udata)
		out = append(out, &ruleset.KernelRule{Handle: kr.handle, Comment: udataComment(tlv)})
	}
	return out
}

// hashedTable reports whether any rule of the table carries policyd's hash
// TLV, that is whether policyd's lowering wrote any of it.
func hashedTable(t *kTable) bool {
	for _, kc := range t.chains {
		for _, kr := range kc.rules {
			if tlv, ok := parseUserData(kr.udata); ok {
				if _, ok := tlv[udataRuleHash]; ok {
					return true
				}
			}
		}
	}
	return false
}

// rulesMatch reports whether the kernel rules are the wanted rules, judged by
// userdata only: by the hash TLV where a rule has one, by its comment
// otherwise (a table loaded with nft -f).
func rulesMatch(got []kRule, want []ruleset.Rule) bool {
	return matchRules(got, want, false)
}

// matchRules is rulesMatch; when strict, a rule without policyd's hash TLV
// matches no wanted rule.
func matchRules(got []kRule, want []ruleset.Rule, strict bool) bool {
	if len(got) != len(want) {
		return false
	}
	for i, kr := range got {
		tlv, ok := parseUserData(kr.udata)
		if !ok {
			return false
		}
		if h, ok := tlv[udataRuleHash]; ok {
			if !bytes.Equal(h, ruleHash(want[i])) {
				return false
			}
			continue
		}
		if strict || udataComment(tlv) != want[i].RuleComment() {
			return false
		}
	}
	return true
}

// Netfilter verdict codes (NF_DROP, NF_ACCEPT).
const (
	nfDrop   = 0
	nfAccept = 1
)

// Concatenated key type magics as nft writes them: 6 bits per field.
const (
	magicIPv4      = 7
	magicIPv6      = 8
	magicInetProto = 12
	magicInetSvc   = 13
	verdictType    = 0xffffff00 // NFT_DATA_VERDICT
)

func concatMagic(fields ...uint32) uint32 {
	var m uint32
	for _, f := range fields {
		m = m<<6 | f
	}
	return m
}

// adoptSet decodes a kernel set. A set whose type or elements policyd cannot
// decode gets KeyInvalid, which no wanted set has: Diff then rebuilds if the
// wanted Ruleset has a set of that name, and deletes it otherwise.
func adoptSet(ks *kSet) *ruleset.Set {
	s := &ruleset.Set{
		Name:     ks.name,
		Interval: ks.flags&unix.NFT_SET_INTERVAL != 0,
		Map:      ks.flags&unix.NFT_SET_MAP != 0,
		Comment:  ks.comment,
		Size:     ks.size,
	}
	switch {
	case ks.keyType == magicIPv4 && ks.keyLen == 4:
		s.Key = ruleset.KeyIPv4
	case ks.keyType == magicIPv6 && ks.keyLen == 16:
		s.Key = ruleset.KeyIPv6
	case ks.keyType == concatMagic(magicInetProto, magicInetSvc) && ks.keyLen == 8:
		s.Key = ruleset.KeyProtoPort
	case ks.keyType == concatMagic(magicIPv4, magicInetProto, magicInetSvc) && ks.keyLen == 12:
		s.Key = ruleset.KeyIPv4ProtoPort
	case ks.keyType == concatMagic(magicIPv6, magicInetProto, magicInetSvc) && ks.keyLen == 24:
		s.Key = ruleset.KeyIPv6ProtoPort
	default:
		return s
	}
	if s.Map && ks.dataType != verdictType || ks.flags&(unix.NFT_SET_TIMEOUT|unix.NFT_SET_OBJECT|unix.NFT_SET_EVAL) != 0 {
		s.Key = ruleset.KeyInvalid
		return s
	}
	elems, err := decodeElements(s, ks.elems)
	if err != nil {
		s.Key = ruleset.KeyInvalid
		return s
	}
	s.Elements = elems
	s.SortElements()
	return s
}

// decodeElements is the inverse of lowerElements.
func decodeElements(s *ruleset.Set, raw []kElem) ([]ruleset.Element, error) {
	if s.Interval && !s.Key.HasPort() {
		return decodeRanges(s, raw)
	}
	out := make([]ruleset.Element, 0, len(raw))
	for _, k := range raw {
		if k.intervalEnd {
			continue
		}
		e, err := decodeKey(s, k.key, k.keyEnd)
		if err != nil {
			return nil, err
		}
		if s.Map {
			if e.Verdict, err = decodeVerdict(k); err != nil {
				return nil, err
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// decodeRanges pairs the start and interval-end elements of an rbtree set.
// A start without an end runs to the last address; an end without a start
// (nft writes one at address zero) is ignored.
func decodeRanges(s *ruleset.Set, raw []kElem) ([]ruleset.Element, error) {
	sorted := append([]kElem(nil), raw...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if c := bytes.Compare(sorted[i].key, sorted[j].key); c != 0 {
			return c < 0
		}
		// An end closes the previous range before a start at the same key
		// opens the next one.
		return sorted[i].intervalEnd && !sorted[j].intervalEnd
	})
	size := 4
	if s.Key.Family() == 6 {
		size = 16
	}
	var out []ruleset.Element
	open := -1
	for _, k := range sorted {
		if len(k.key) != size {
			return nil, fmt.Errorf("set %s: key of %d bytes", s.Name, len(k.key))
		}
		a, _ := netip.AddrFromSlice(k.key)
		if !k.intervalEnd {
			if open >= 0 {
				return nil, fmt.Errorf("set %s: range at %s has no end", s.Name, out[open].Addr)
			}
			e := ruleset.Element{Addr: a}
			if s.Map {
				v, err := decodeVerdict(k)
				if err != nil {
					return nil, err
				}
				e.Verdict = v
			}
			out = append(out, e)
			open = len(out) - 1
			continue
		}
		if open < 0 {
			continue
		}
		if !a.IsValid() || a.Prev().Less(out[open].Addr) {
			return nil, fmt.Errorf("set %s: empty range at %s", s.Name, a)
		}
		out[open].AddrEnd = a.Prev()
		open = -1
	}
	if open >= 0 {
		last := netip.AddrFrom4([4]byte{255, 255, 255, 255})
		if size == 16 {
			last = netip.AddrFrom16([16]byte{0: 0xff, 1: 0xff, 2: 0xff, 3: 0xff, 4: 0xff, 5: 0xff, 6: 0xff, 7: 0xff,
				8: 0xff, 9: 0xff, 10: 0xff, 11: 0xff, 12: 0xff, 13: 0xff, 14: 0xff, 15: 0xff})
		}
		out[open].AddrEnd = last
	}
	return out, nil
}

// decodeKey decodes one key (and for concatenated interval sets its end).
func decodeKey(s *ruleset.Set, key, keyEnd []byte) (ruleset.Element, error) {
	var e ruleset.Element
	if len(keyEnd) == 0 {
		keyEnd = key
	}
	if len(key) != len(keyEnd) {
		return e, fmt.Errorf("set %s: key and key end lengths differ", s.Name)
	}
	rest, restEnd := key, keyEnd
	if s.Key.HasAddr() {
		n := 4
		if s.Key.Family() == 6 {
			n = 16
		}
		if len(rest) < n {
			return e, fmt.Errorf("set %s: key of %d bytes", s.Name, len(key))
		}
		e.Addr, _ = netip.AddrFromSlice(rest[:n])
		end, _ := netip.AddrFromSlice(restEnd[:n])
		if s.Interval {
			e.AddrEnd = end
		} else if end != e.Addr {
			return e, fmt.Errorf("set %s: address range in a set without flags interval", s.Name)
		}
		rest, restEnd = rest[n:], restEnd[n:]
	}
	if s.Key.HasPort() {
		if len(rest) != 8 {
			return e, fmt.Errorf("set %s: protocol and port of %d bytes", s.Name, len(rest))
		}
		if rest[0] != restEnd[0] {
			return e, fmt.Errorf("set %s: protocol range", s.Name)
		}
		e.Proto = rest[0]
		e.Port = uint16(rest[4])<<8 | uint16(rest[5])
		e.PortEnd = uint16(restEnd[4])<<8 | uint16(restEnd[5])
		rest = nil
	}
	if len(rest) != 0 {
		return e, fmt.Errorf("set %s: %d trailing key bytes", s.Name, len(rest))
	}
	return e, nil
}

func decodeVerdict(k kElem) (ruleset.Verdict, error) {
	if !k.hasVerdict {
		return ruleset.Verdict{}, fmt.Errorf("map element without a verdict")
	}
	switch k.code {
	case nfAccept:
		return ruleset.Verdict{Kind: ruleset.Accept}, nil
	case nfDrop:
		return ruleset.Verdict{Kind: ruleset.Drop}, nil
	case unix.NFT_RETURN:
		return ruleset.Verdict{Kind: ruleset.Return}, nil
	case unix.NFT_JUMP:
		return ruleset.Verdict{Kind: ruleset.Jump, Chain: k.chain}, nil
	case unix.NFT_GOTO:
		return ruleset.Verdict{Kind: ruleset.Goto, Chain: k.chain}, nil
	}
	// Any other verdict (continue, queue …) is not one policyd writes;
	// an invalid verdict differs from every wanted one, so Diff replaces it.
	return ruleset.Verdict{}, nil
}
