package compile

import (
	"slices"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/decider"
	"github.com/policyd/policyd/policy/ruleset"
)

// A group chain (groupChain) is a function of its direction, family and
// variant, the policies of its group and the log options only: its peer
// sets are named by their peers, not by what they hold. So the Compiler
// keeps each group chain it made, and the next compile that needs the same
// group (the same policy values) takes it back instead of building it
// again, which is most of a compile when one pod changed. What building
// it registered in the ruleset (the sets, maps and chains it refers to,
// its log deciders) is recorded with it and registered again; peer and
// named-port sets are registered by name and filled for the new state of
// the cluster, exactly as when the chain is built.

// chainMemo is one group chain and what building it registered.
type chainMemo struct {
	name     string
	policies []*cluster.Policy // the group's policy values
	log      LogOptions
	used     uint64 // the last compile (Compiler.gen) that used it

	peers  []peerUse        // peer sets, registered again by peerSet
	named  []namedUse       // named-port sets, by namedSet
	logs   []logUse         // log chains and deciders, by logged
	sets   []*ruleset.Set   // port and ipBlock sets (fixed content)
	maps   []*ruleset.Set   // port-dispatch maps (fixed content)
	chains []*ruleset.Chain // the chain itself, its port chains, the invalid chain
}

type peerUse struct {
	peer *cluster.Peer
	fam  int
}

type namedUse struct {
	k     namedKey
	ports []namedPort
	d     cluster.Direction
}

type logUse struct {
	v ruleset.Verdict
	d decider.Decider
}

// memoFor returns the memo of group chain key gk if it was made for these
// very policy values and options, or nil.
func (c *Compiler) memoFor(gk string, group []*cluster.Policy) *chainMemo {
	m := c.chains[gk]
	if m == nil || m.log != c.Options.Log || !slices.Equal(m.policies, group) {
		return nil
	}
	m.used = c.gen
	return m
}

// keepMemo stores m, the group chain just built under key gk.
func (c *Compiler) keepMemo(gk string, m *chainMemo) {
	if c.chains == nil {
		c.chains = map[string]*chainMemo{}
	}
	m.used = c.gen
	m.log = c.Options.Log
	c.chains[gk] = m
}

// replay registers in the compile in progress what building m registered.
func (c *compiler) replay(m *chainMemo) {
	for _, s := range m.sets {
		putNew(c.sets, s.Name, s)
	}
	for _, u := range m.peers {
		c.peerSet(u.peer, u.fam)
	}
	for _, u := range m.named {
		c.namedSet(u.ports, u.k.family, u.d)
	}
	for _, u := range m.logs {
		c.logged(u.v, u.d)
	}
	for _, ch := range m.chains {
		putNew(c.chain, ch.Name, ch)
	}
	for _, s := range m.maps {
		putNew(c.maps, s.Name, s)
	}
}

// putNew stores v under name unless m has an entry for it already.
func putNew[V any](m map[string]V, name string, v V) {
	if _, ok := m[name]; !ok {
		m[name] = v
	}
}

// addChain registers chain name with rules unless the compile has it, and
// returns the name; a group chain being built records it.
func (c *compiler) addChain(name string, rules []ruleset.Rule) string {
	ch, ok := c.chain[name]
	if !ok {
		ch = &ruleset.Chain{Name: name, Rules: rules}
		c.chain[name] = ch
	}
	if c.rec != nil {
		c.rec.chains = append(c.rec.chains, ch)
	}
	return name
}
