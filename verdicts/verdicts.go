// Package verdicts turns packets the kernel logged (nflog) into verdict
// records: which pods, which policy and rule, which verdict. It owns the
// map from log ids to deciders, learned from every ruleset the agent
// commits, the per-flow deduplication and the stream of records to
// subscribers. It never talks to the kernel itself.
package verdicts

import (
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/policyd/policyd/nflog"
	"github.com/policyd/policyd/policy/ruleset"
)

// Record is one verdict on one flow.
type Record struct {
	Time      time.Time `json:"time"`
	Node      string    `json:"node"`
	Src       Endpoint  `json:"src"`
	Dst       Endpoint  `json:"dst"`
	Protocol  string    `json:"protocol"`
	Port      uint16    `json:"port,omitempty"`
	Direction string    `json:"direction"`
	Verdict   string    `json:"verdict"`
	// Kind is networkpolicy, clusternetworkpolicy or ct-invalid.
	Kind string `json:"kind"`
	// Policies names the deciding policies: "namespace/name" for
	// NetworkPolicies, the name for a ClusterNetworkPolicy.
	Policies []string `json:"policies,omitempty"`
	// Rule is the decider in words, e.g. "admin cnp deny-all ingress[0] Deny".
	Rule string `json:"rule"`
	// ID is the log prefix.
	ID string `json:"id"`
}

// Endpoint is one end of a flow: a pod when policyd knows the address.
type Endpoint struct {
	IP        netip.Addr `json:"ip"`
	Namespace string     `json:"namespace,omitempty"`
	Pod       string     `json:"pod,omitempty"`
}

// String renders the endpoint as ns/pod, or its address.
func (e Endpoint) String() string {
	if e.Pod != "" {
		return e.Namespace + "/" + e.Pod
	}
	return e.IP.String()
}

// PodLookup returns the pod ("namespace", "name") holding an address.
type PodLookup func(netip.Addr) (ns, name string, ok bool)

// Stats counts what the Resolver saw.
type Stats struct {
	// Logged is the packets read from the socket.
	Logged uint64
	// Deduplicated is the packets folded into a record of the same flow
	// within a second.
	Deduplicated uint64
	// UnknownID is the packets whose prefix no committed ruleset knew.
	UnknownID uint64
	// Overruns is the times the socket buffer overflowed (messages lost).
	Overruns uint64
}

// Resolver turns packets into records. It is safe for concurrent use.
type Resolver struct {
	node string
	pods PodLookup

	mu       sync.Mutex
	deciders map[string]ruleset.Decider
	seen     map[flowKey]time.Time
	stats    Stats
	subs     map[chan Record]struct{}
}

type flowKey struct {
	id   string
	flow nflog.Flow
}

// NewResolver returns a Resolver for node; pods maps addresses to pods.
func NewResolver(node string, pods PodLookup) *Resolver {
	return &Resolver{node: node, pods: pods, deciders: map[string]ruleset.Decider{}, seen: map[flowKey]time.Time{}, subs: map[chan Record]struct{}{}}
}

// Learn adds the deciders of a committed ruleset. Ids are content hashes,
// so an id learned once keeps its meaning: a packet logged under an older
// ruleset still resolves after a sync.
func (r *Resolver) Learn(rs *ruleset.Ruleset) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, d := range rs.Deciders {
		r.deciders[id] = d
	}
}

// Decider returns what id stands for.
func (r *Resolver) Decider(id string) (ruleset.Decider, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.deciders[id]
	return d, ok
}

// Overrun notes that the socket lost messages.
func (r *Resolver) Overrun() {
	r.mu.Lock()
	r.stats.Overruns++
	r.mu.Unlock()
}

// Stats returns the counts so far.
func (r *Resolver) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// Handle resolves one packet. It returns the record and true, or false
// when the packet is a repeat of a flow recorded less than a second ago or
// its id is unknown. The record goes to every subscriber too.
func (r *Resolver) Handle(p nflog.Packet) (Record, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.Logged++
	d, ok := r.deciders[p.Prefix]
	if !ok {
		r.stats.UnknownID++
		return Record{}, false
	}
	k := flowKey{p.Prefix, p.Flow}
	if last, ok := r.seen[k]; ok && p.Time.Sub(last) < time.Second && p.Time.Sub(last) >= 0 {
		r.stats.Deduplicated++
		return Record{}, false
	}
	r.seen[k] = p.Time
	if len(r.seen) > 4096 {
		for k, t := range r.seen {
			if p.Time.Sub(t) >= time.Second {
				delete(r.seen, k)
			}
		}
	}
	rec := Record{
		Time: p.Time, Node: r.node,
		Src: r.endpoint(p.Flow.Src), Dst: r.endpoint(p.Flow.Dst),
		Protocol: protoName(p.Flow.Protocol), Port: p.Flow.DstPort,
		Direction: d.Direction, Verdict: strings.ToLower(ruleset.Verdict{Kind: d.Verdict}.String()),
		Kind: d.Kind.String(), Rule: d.String(), ID: p.Prefix,
	}
	switch d.Kind {
	case ruleset.DeciderPolicies:
		rec.Policies = d.Policies
	case ruleset.DeciderCNP:
		rec.Policies = []string{d.Name}
	}
	for ch := range r.subs {
		select {
		case ch <- rec:
		default: // a slow subscriber misses records rather than stalling the reader
		}
	}
	return rec, true
}

// Subscribe returns a channel of the records from now on, and a function
// that ends the subscription.
func (r *Resolver) Subscribe() (<-chan Record, func()) {
	ch := make(chan Record, 256)
	r.mu.Lock()
	r.subs[ch] = struct{}{}
	r.mu.Unlock()
	return ch, func() {
		r.mu.Lock()
		delete(r.subs, ch)
		r.mu.Unlock()
	}
}

func (r *Resolver) endpoint(a netip.Addr) Endpoint {
	e := Endpoint{IP: a}
	if r.pods != nil && a.IsValid() {
		if ns, name, ok := r.pods(a); ok {
			e.Namespace, e.Pod = ns, name
		}
	}
	return e
}

func protoName(p uint8) string {
	switch p {
	case 6:
		return "TCP"
	case 17:
		return "UDP"
	case 132:
		return "SCTP"
	case 1:
		return "ICMP"
	case 58:
		return "ICMPv6"
	}
	return "proto-" + strconv.Itoa(int(p))
}
