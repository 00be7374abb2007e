// Package verdicts turns packets the kernel logged (nflog) into verdict
// records: which pods, which policy and rule, which verdict. It owns the
// map from log ids to deciders, learned from every ruleset the agent
// commits, the per-flow deduplication, the recent records and the stream of
// records to subscribers, with the filters and the HTTP form of that stream
// (handler and client). It never talks to the kernel itself.
//
// A record embeds the decider.Decider compile recorded for its id: the
// vocabulary of the API and of policyd explain (kind NetworkPolicy,
// ClusterNetworkPolicy or ct-invalid; verdict allow or deny).
// docs/verdicts.md documents the fields.
package verdicts

import (
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/policyd/policyd/nflog"
	"github.com/policyd/policyd/policy/decider"
	"github.com/policyd/policyd/policy/ruleset"
)

// Record is one verdict on one flow. docs/verdicts.md documents the JSON.
type Record struct {
	Time time.Time `json:"time"`
	Node string    `json:"node"`
	Src  Endpoint  `json:"src"`
	Dst  Endpoint  `json:"dst"`
	// Protocol is TCP, UDP, SCTP, ICMP, ICMPv6 or proto-N.
	Protocol string `json:"protocol"`
	SrcPort  uint16 `json:"srcPort,omitempty"`
	// Port is the destination port.
	Port uint16 `json:"port,omitempty"`
	// Decider is what decided, as compile recorded it under ID; its fields
	// (direction, verdict, kind, policies, tier, rule, ruleName, action)
	// are the record's.
	decider.Decider
	// DeciderText is the decider in words (its String), e.g. "ingress
	// default deny of x/a".
	DeciderText string `json:"decider"`
	// ID is the log prefix: the decider's id.
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

// Key is "namespace/pod", or "" when the endpoint is not a known pod.
func (e Endpoint) Key() string {
	if e.Pod == "" {
		return ""
	}
	return e.Namespace + "/" + e.Pod
}

// PodLookup returns the pod ("namespace", "name") holding an address.
type PodLookup func(netip.Addr) (ns, name string, ok bool)

// Stats counts what the Resolver saw.
type Stats struct {
	// Logged is the packets read from the socket.
	Logged uint64
	// Recorded is the records made.
	Recorded uint64
	// Deduplicated is the packets folded into a record of the same flow
	// and decider within a second.
	Deduplicated uint64
	// UnknownID is the packets whose prefix no committed ruleset knew (or
	// whose id two deciders claimed: never guessed).
	UnknownID uint64
	// Overruns is the times the socket buffer overflowed.
	Overruns uint64
	// Lost is the logged packets the socket never received (sequence gaps).
	Lost uint64
	// Dropped is the records slow subscribers missed.
	Dropped uint64
}

// Retention is how long the Resolver keeps the meaning of an id that no
// ruleset learned since: far longer than a logged packet spends in the
// socket, short enough that policy churn does not grow the map for ever.
const Retention = 10 * time.Minute

// RecentRecords is how many records the Resolver keeps for subscribers
// that ask for the recent past.
const RecentRecords = 1024

// maxFlows caps the flows the deduplication remembers per second; beyond it
// a flow's repeats are recorded again rather than memory growing with a
// flood of distinct flows.
const maxFlows = 16384

// Resolver turns packets into records. It is safe for concurrent use.
type Resolver struct {
	node string
	pods PodLookup
	now  func() time.Time

	mu       sync.Mutex
	deciders map[string]*known
	dedup    dedup
	stats    Stats
	recent   []Record // a ring of RecentRecords
	next     int      // where the next record goes in recent
	subs     map[*Subscription]struct{}
}

// known is one id's meaning and what was read under it.
type known struct {
	d decider.Decider
	// conflict: two deciders were learned under this id (a hash
	// collision): its packets are never attributed to either.
	conflict bool
	learned  time.Time
	read     uint64
}

type flowKey struct {
	id   string
	flow nflog.Flow
}

// NewResolver returns a Resolver for node; pods maps addresses to pods and
// may be nil.
func NewResolver(node string, pods PodLookup) *Resolver {
	return &Resolver{node: node, pods: pods, now: time.Now, deciders: map[string]*known{}, subs: map[*Subscription]struct{}{}}
}

// Learn adds the deciders of a ruleset the caller is about to commit. Call
// it before the commit, so that the first packet logged under a new id
// resolves. Ids are content hashes, so an id learned once keeps its
// meaning: a packet logged under an older ruleset still resolves after a
// sync; a rule's name, which is not part of its id, is the one last
// learned. An id not learned again for Retention is forgotten. An id learned
// for two different deciders (a hash collision) resolves to neither from
// then on.
func (r *Resolver) Learn(rs *ruleset.Ruleset) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, d := range rs.Deciders {
		k := r.deciders[id]
		if k == nil {
			k = &known{d: d}
			r.deciders[id] = k
		} else if k.d.Key() != d.Key() {
			k.conflict = true
		} else {
			k.d = d
		}
		k.learned = now
	}
	for id, k := range r.deciders {
		if now.Sub(k.learned) > Retention {
			delete(r.deciders, id)
		}
	}
}

// Decider returns what id stands for.
func (r *Resolver) Decider(id string) (decider.Decider, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k, ok := r.deciders[id]
	if !ok || k.conflict {
		return decider.Decider{}, false
	}
	return k.d, true
}

// ReadCounts returns, for each id known, the packets read under it.
func (r *Resolver) ReadCounts() map[string]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]uint64, len(r.deciders))
	for id, k := range r.deciders {
		out[id] = k.read
	}
	return out
}

// Overrun notes that the socket's buffer overflowed.
func (r *Resolver) Overrun() {
	r.mu.Lock()
	r.stats.Overruns++
	r.mu.Unlock()
}

// Lost notes n logged packets the socket never received.
func (r *Resolver) Lost(n uint64) {
	r.mu.Lock()
	r.stats.Lost += n
	r.mu.Unlock()
}

// Stats returns the counts so far.
func (r *Resolver) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.stats
	for s := range r.subs {
		st.Dropped += s.dropped.Load()
	}
	return st
}

// Handle resolves one packet. It returns the record and true, or false
// when the packet is a repeat of a flow recorded less than a second ago
// under the same id, or its id is unknown. The record goes to every
// subscriber too.
func (r *Resolver) Handle(p nflog.Packet) (Record, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.Logged++
	k, ok := r.deciders[p.Prefix]
	if !ok || k.conflict {
		r.stats.UnknownID++
		return Record{}, false
	}
	k.read++
	if r.dedup.seen(flowKey{p.Prefix, p.Flow}, p.Time) {
		r.stats.Deduplicated++
		return Record{}, false
	}
	r.stats.Recorded++
	rec := r.record(p, k)
	if len(r.recent) < RecentRecords {
		r.recent = append(r.recent, rec)
	} else {
		r.recent[r.next] = rec
	}
	r.next = (r.next + 1) % RecentRecords
	for s := range r.subs {
		s.send(rec)
	}
	return rec, true
}

// record builds p's record; it runs under r.mu.
func (r *Resolver) record(p nflog.Packet, k *known) Record {
	return Record{
		Time: p.Time, Node: r.node,
		Src: r.endpoint(p.Flow.Src), Dst: r.endpoint(p.Flow.Dst),
		Protocol: protoName(p.Flow.Protocol), SrcPort: p.Flow.SrcPort, Port: p.Flow.DstPort,
		Decider: k.d, DeciderText: k.d.String(), ID: p.Prefix,
	}
}

// Recent returns the records kept (at most RecentRecords) made at or after
// since, oldest first.
func (r *Resolver) Recent(since time.Time) []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.recentLocked(since)
}

func (r *Resolver) recentLocked(since time.Time) []Record {
	var out []Record
	n := len(r.recent)
	start := 0
	if n == RecentRecords {
		start = r.next
	}
	for i := range n {
		rec := r.recent[(start+i)%n]
		if !rec.Time.Before(since) {
			out = append(out, rec)
		}
	}
	return out
}

// Subscription is a stream of the records made after it started.
type Subscription struct {
	r  *Resolver
	ch chan Record
	// Backlog is the recent records asked for, made before the
	// subscription started: none of them is also sent on Records.
	Backlog []Record
	dropped atomic.Uint64
	once    sync.Once
}

// subscriptionBuffer is how many records a subscriber may fall behind by
// before it misses some (Dropped).
const subscriptionBuffer = 256

// SubscribeSince starts a subscription; with backlog set, its Backlog holds
// the records kept that were made at or after since (the zero time: all).
func (r *Resolver) SubscribeSince(since time.Time, backlog bool) *Subscription {
	s := &Subscription{r: r, ch: make(chan Record, subscriptionBuffer)}
	r.mu.Lock()
	defer r.mu.Unlock()
	if backlog {
		s.Backlog = r.recentLocked(since)
	}
	r.subs[s] = struct{}{}
	return s
}

// Subscribers is how many subscriptions are open.
func (r *Resolver) Subscribers() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.subs)
}

// Subscribe returns a channel of the records from now on, and a function
// that ends the subscription.
func (r *Resolver) Subscribe() (<-chan Record, func()) {
	s := r.SubscribeSince(time.Time{}, false)
	return s.Records(), s.Close
}

// send runs under r.mu: a slow subscriber misses records rather than
// stalling the reader.
func (s *Subscription) send(rec Record) {
	select {
	case s.ch <- rec:
	default:
		s.dropped.Add(1)
	}
}

// Records is the stream; it is never closed.
func (s *Subscription) Records() <-chan Record { return s.ch }

// Dropped is how many records this subscriber missed by falling behind.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close ends the subscription; what it dropped stays in the Resolver's
// Stats. Idempotent.
func (s *Subscription) Close() {
	s.once.Do(func() {
		s.r.mu.Lock()
		delete(s.r.subs, s)
		s.r.stats.Dropped += s.dropped.Load()
		s.r.mu.Unlock()
	})
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

// dedup remembers the flows recorded in the current and the previous
// second of packet time, so a flow is recorded once a second at most and
// memory holds two seconds of distinct flows (each capped at maxFlows).
type dedup struct {
	cur, prev map[flowKey]time.Time
	start     time.Time
}

// seen reports whether k was recorded less than a second before t, and
// remembers t as k's record time when it was not.
func (d *dedup) seen(k flowKey, t time.Time) bool {
	if el := t.Sub(d.start); d.cur == nil || el >= time.Second || el < 0 {
		if el >= 2*time.Second || el < 0 || d.cur == nil {
			d.prev = nil // everything remembered is a second old or more
		} else {
			d.prev = d.cur
		}
		d.cur, d.start = map[flowKey]time.Time{}, t
	}
	for _, m := range []map[flowKey]time.Time{d.cur, d.prev} {
		if last, ok := m[k]; ok {
			if el := t.Sub(last); el >= 0 && el < time.Second {
				return true
			}
		}
	}
	if len(d.cur) < maxFlows {
		d.cur[k] = t
	}
	return false
}

// PolicyLabels returns the namespace and name that metrics give d: for
// NetworkPolicies the namespace and the comma-joined names of every policy
// of the decider (a default deny's isolating policies are all in the pod's
// namespace), so that each packet is counted in one series; for a
// ClusterNetworkPolicy "" and its name; for ct-invalid "" and "".
func PolicyLabels(d decider.Decider) (namespace, name string) {
	switch d.Kind {
	case decider.KindClusterNetworkPolicy:
		return "", strings.Join(d.Policies, ",")
	case decider.KindNetworkPolicy:
		names := make([]string, len(d.Policies))
		for i, key := range d.Policies {
			ns, n, ok := strings.Cut(key, "/")
			if !ok || (i > 0 && ns != namespace) {
				return "", strings.Join(d.Policies, ",") // not one namespace: full keys
			}
			namespace, names[i] = ns, n
		}
		return namespace, strings.Join(names, ",")
	case decider.KindCtInvalid, decider.KindInvalid:
	}
	return "", ""
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
