package ruleset

import (
	"net"
	"net/netip"
)

// Rule is one rule of a chain. The set of rule shapes is closed: Rule has an
// unexported method, so the concrete types of this package are all there is,
// and Shapes lists one sample of each. Every shape states its own contract
// (Refs and Validate, which Check enforces), and every consumer has one form
// per shape: text here (Text), netlink in policy/nft, a step in
// policy/trace; the tests of those packages iterate over Shapes and fail on
// a shape without its form. shapes.go says how to add one.
type Rule interface {
	// Text renders the rule as nft text, without its comment.
	Text() string
	// RuleComment returns the rule's comment ("" for none).
	RuleComment() string
	// RuleVerdict returns the verdict the rule applies when it matches. It
	// is the zero Verdict for a rule whose verdict is not its own: a
	// DispatchRule takes it from its map's entry, and a KernelRule's is
	// unknown.
	RuleVerdict() Verdict
	// Refs returns the objects the rule refers to by name: the sets and
	// maps it looks up, each with the type its lookup needs, the limit
	// object it names, the chain its verdict jumps or goes to. CheckRule
	// resolves them.
	Refs() []Ref
	// Validate reports the first invariant of the rule's own fields it
	// breaks (a family, a field, a verdict…), its references aside.
	Validate() error
	// SetRefs returns the names of the sets and maps the rule looks up, in
	// the order its text names them: the sets among Refs.
	SetRefs() []string

	// shape seals the interface and names the shape.
	shape() Shape
}

// Shape names one of the rule shapes. The zero value is invalid.
type Shape uint8

// Rule shapes, one per concrete type implementing Rule.
const (
	ShapeInvalid Shape = iota
	ShapeCt
	ShapeFibLocal
	ShapeND
	ShapeDispatch
	ShapeAllow
	ShapeUnknownAddr
	ShapeVerdict
	ShapeKernel
	ShapeCtMark
	ShapeTCPPickup
	ShapeLog
	ShapeCutMark
	ShapePortDispatch
	// numShapes counts the shapes, ShapeInvalid included; it must stay last.
	numShapes
)

// ShapeOf returns the shape of r, or ShapeInvalid for nil.
func ShapeOf(r Rule) Shape {
	if r == nil {
		return ShapeInvalid
	}
	return r.shape()
}

// Writable reports whether a rule of this shape can be written to the
// kernel: every shape but ShapeKernel (and ShapeInvalid).
func (s Shape) Writable() bool { return s != ShapeInvalid && s != ShapeKernel && s < numShapes }

// JumpTarget returns the chain r jumps (or goes) to when it matches, or
// "". A DispatchRule's jumps are in its map's entries, not here.
func JumpTarget(r Rule) string {
	if v := r.RuleVerdict(); v.Kind == Jump || v.Kind == Goto {
		return v.Chain
	}
	return ""
}

// CtRule matches `ct state` against States (any of the bits) and applies Verdict.
//
//	ct state established,related accept
type CtRule struct {
	States  CtState
	Verdict Verdict
	Comment string
}

// FibLocalRule matches packets whose source address is local to the node
// (`fib saddr type local`): traffic the node itself sends, such as kubelet
// probes.
type FibLocalRule struct {
	Verdict Verdict
	Comment string
}

// NDRule matches IPv6 neighbour discovery (router and neighbour solicitation
// and advertisement), which must never be cut by an egress policy.
type NDRule struct {
	Verdict Verdict
	Comment string
}

// DispatchRule looks the packet's Field address up in verdict map Map:
//
//	ip saddr vmap @egress4
//
// With Ports the key is the address, the protocol and the destination port
// (a map of type ipv4_addr . inet_proto . inet_service, flags interval),
// which is how a tier chain looks a run of ClusterNetworkPolicy rules up at
// once:
//
//	ip saddr . meta l4proto . th dport vmap @tmap4-0123456789abcdef
//
// With Prefix (1 to the family's bits − 1, never with Ports) the address is
// masked to its first Prefix bits before the lookup, so an exact map of
// network addresses matches whole prefixes in one hashed lookup:
//
//	ip daddr & 255.255.255.0 vmap @tmap4-0123456789abcdef
type DispatchRule struct {
	Family  int // 4 or 6
	Field   Field
	Map     string
	Ports   bool
	Prefix  int
	Comment string
}

// Mask returns the address the rule masks the packet's address with: the
// first Prefix bits set; invalid when the rule has no Prefix.
func (r *DispatchRule) Mask() netip.Addr {
	if r.Prefix <= 0 || r.Prefix >= AddrBits(r.Family) {
		return netip.Addr{}
	}
	a, _ := netip.AddrFromSlice(net.CIDRMask(r.Prefix, AddrBits(r.Family)))
	return a
}

// PortDispatchRule looks the packet's protocol and destination port up in
// verdict map Map (type inet_proto . inet_service, no intervals):
//
//	meta l4proto . th dport vmap @gports-0123456789abcdef
//
// It is how a group chain with several rules on single ports sends a
// packet straight to the rules of its port: each entry goes to a chain
// holding the peer lookups of the rules that name that port, then the
// group's rules that hold for any port, then its final verdict. A packet
// whose port no entry names goes on with the group chain's next rule. The
// key holds no address, so one map serves both families.
type PortDispatchRule struct {
	Map     string
	Comment string
}

// AllowRule is the policy rule shape. Every part is optional; an empty part
// matches every packet of Family:
//
//	meta l4proto . th dport @PortSet ip saddr @PeerSet ip daddr . meta l4proto . th dport @NamedPortSet accept
//
// The port lookup comes first: port sets are small and most packets a chain
// sees miss most of its rules on the port, so a miss costs one probe of a
// small set instead of a probe of a large peer set first.
// PeerSet is looked up with the PeerField address (saddr for ingress, daddr for
// egress); PortSet holds inet_proto . inet_service ranges; NamedPortSet holds
// (destination address . protocol . port) triples resolved from named ports.
// When Family is 0 the rule matches both families and only PortSet (or
// the literal port) may be set.
//
// Proto and Port, instead of PortSet, match one protocol and destination
// port literally, which costs two comparisons where a set costs a hash
// lookup; compile writes a port set of one port that way:
//
//	tcp dport 8080 ip saddr @PeerSet accept
type AllowRule struct {
	Family       int
	PeerField    Field
	PeerSet      string
	PortSet      string
	Proto        uint8 // 6, 17 or 132 with Port; 0: no literal port
	Port         uint16
	NamedPortSet string
	Verdict      Verdict
	Comment      string
}

// VerdictRule applies Verdict to every packet that reaches it.
type VerdictRule struct {
	Verdict Verdict
	Comment string
}

// UnknownAddrRule matches a packet whose Field address lies inside the pod
// network (CIDRSet, an interval set) but belongs to no pod policyd knows
// (KnownSet): a pod whose address the API server has not reported yet.
// Dropping it closes the window between a pod getting its address and
// policyd learning who it is.
//
//	ip saddr @podcidr4 ip saddr != @known4 drop
type UnknownAddrRule struct {
	Family   int
	Field    Field
	CIDRSet  string
	KnownSet string
	Verdict  Verdict
	Comment  string
}

// KernelRule stands for a rule of a chain read back from the kernel that
// matched no wanted rule. policyd never decodes rule expressions
// (google/nftables drops those it cannot decode), so the rule is opaque: its
// text differs from every other rule's, it has no verdict or set references
// policyd knows, and it can be neither written nor traced. It only ever
// stands on the old side of Diff, where it makes the chain be refilled, base
// or regular.
type KernelRule struct {
	// Handle is the kernel's handle of the rule. The kernel numbers rules
	// from 1; Handle 0 stands for the rules a chain read back empty lacks.
	Handle uint64
	// Comment is the comment the rule's userdata carries, if any.
	Comment string
}

// CtMarkRule sets the bits of Mark in the conntrack mark of a connection
// whose Field address is in Set, keeping the other bits (other programs may
// use them). It has no verdict: the packet goes on to the next rule. The
// compiled table marks the connections of this node's pods with it, so that
// strict mode (the agent's --cut-established) dumps only those from the
// kernel.
//
//	ip saddr @local4 ct mark set ct mark | 0x00100000
type CtMarkRule struct {
	Family  int
	Field   Field
	Set     string
	Mark    uint32
	Comment string
}

// CutMarkRule applies Verdict to a packet whose connection carries every
// bit of Mark in its conntrack mark. Strict mode sets that bit on the
// connections it cuts but keeps (UDP and SCTP, whose entries, if deleted,
// a reply could recreate in the other direction), and the rule, first in
// each base chain, drops every later packet of theirs, either way. A new
// connection's mark is 0: the rule never matches a first packet.
//
//	ct mark & 0x00200000 == 0x00200000 drop
type CutMarkRule struct {
	Mark    uint32
	Verdict Verdict
	Comment string
}

// TCPPickupRule matches a TCP packet that would start a connection without
// a SYN (conntrack picks up a connection in mid-stream, as after its entry
// was deleted) when its Field address is in Set, and applies Verdict. In the
// base chains, after the established rule, only a connection's first packet
// reaches it, so it refuses exactly the pickups: strict mode drops them so
// that a cut connection's peer cannot revive it from the other end.
//
//	ip saddr @local4 tcp flags != syn / fin,syn,rst,ack drop
type TCPPickupRule struct {
	Family  int
	Field   Field
	Set     string
	Verdict Verdict
	Comment string
}

func (*CtRule) shape() Shape           { return ShapeCt }
func (*FibLocalRule) shape() Shape     { return ShapeFibLocal }
func (*NDRule) shape() Shape           { return ShapeND }
func (*DispatchRule) shape() Shape     { return ShapeDispatch }
func (*AllowRule) shape() Shape        { return ShapeAllow }
func (*UnknownAddrRule) shape() Shape  { return ShapeUnknownAddr }
func (*VerdictRule) shape() Shape      { return ShapeVerdict }
func (*KernelRule) shape() Shape       { return ShapeKernel }
func (*CtMarkRule) shape() Shape       { return ShapeCtMark }
func (*CutMarkRule) shape() Shape      { return ShapeCutMark }
func (*TCPPickupRule) shape() Shape    { return ShapeTCPPickup }
func (*PortDispatchRule) shape() Shape { return ShapePortDispatch }

// RuleComment implements Rule.
func (r *PortDispatchRule) RuleComment() string { return r.Comment }

// RuleVerdict implements Rule: the zero Verdict, the map entry decides.
func (r *PortDispatchRule) RuleVerdict() Verdict { return Verdict{} }

// SetRefs implements Rule.
func (r *PortDispatchRule) SetRefs() []string { return refSetNames(r.Refs()) }

// RuleComment implements Rule.
func (r *CtRule) RuleComment() string { return r.Comment }

// RuleComment implements Rule.
func (r *FibLocalRule) RuleComment() string { return r.Comment }

// RuleComment implements Rule.
func (r *NDRule) RuleComment() string { return r.Comment }

// RuleComment implements Rule.
func (r *DispatchRule) RuleComment() string { return r.Comment }

// RuleComment implements Rule.
func (r *AllowRule) RuleComment() string { return r.Comment }

// RuleComment implements Rule.
func (r *UnknownAddrRule) RuleComment() string { return r.Comment }

// RuleComment implements Rule.
func (r *VerdictRule) RuleComment() string { return r.Comment }

// RuleComment implements Rule.
func (r *KernelRule) RuleComment() string { return r.Comment }

// RuleComment implements Rule.
func (r *CtMarkRule) RuleComment() string { return r.Comment }

// RuleComment implements Rule.
func (r *CutMarkRule) RuleComment() string { return r.Comment }

// RuleVerdict implements Rule.
func (r *CutMarkRule) RuleVerdict() Verdict { return r.Verdict }

// SetRefs implements Rule.
func (r *CutMarkRule) SetRefs() []string { return refSetNames(r.Refs()) }

// RuleComment implements Rule.
func (r *TCPPickupRule) RuleComment() string { return r.Comment }

// RuleVerdict implements Rule: the zero Verdict, the rule has none (the
// packet continues).
func (r *CtMarkRule) RuleVerdict() Verdict { return Verdict{} }

// RuleVerdict implements Rule.
func (r *TCPPickupRule) RuleVerdict() Verdict { return r.Verdict }

// SetRefs implements Rule.
func (r *CtMarkRule) SetRefs() []string { return refSetNames(r.Refs()) }

// SetRefs implements Rule.
func (r *TCPPickupRule) SetRefs() []string { return refSetNames(r.Refs()) }

// RuleVerdict implements Rule.
func (r *CtRule) RuleVerdict() Verdict { return r.Verdict }

// RuleVerdict implements Rule.
func (r *FibLocalRule) RuleVerdict() Verdict { return r.Verdict }

// RuleVerdict implements Rule.
func (r *NDRule) RuleVerdict() Verdict { return r.Verdict }

// RuleVerdict implements Rule: the zero Verdict, the map entry decides.
func (r *DispatchRule) RuleVerdict() Verdict { return Verdict{} }

// RuleVerdict implements Rule.
func (r *AllowRule) RuleVerdict() Verdict { return r.Verdict }

// RuleVerdict implements Rule.
func (r *UnknownAddrRule) RuleVerdict() Verdict { return r.Verdict }

// RuleVerdict implements Rule.
func (r *VerdictRule) RuleVerdict() Verdict { return r.Verdict }

// RuleVerdict implements Rule: the zero Verdict, it is unknown.
func (r *KernelRule) RuleVerdict() Verdict { return Verdict{} }

// SetRefs implements Rule.
func (r *CtRule) SetRefs() []string { return refSetNames(r.Refs()) }

// SetRefs implements Rule.
func (r *FibLocalRule) SetRefs() []string { return refSetNames(r.Refs()) }

// SetRefs implements Rule.
func (r *NDRule) SetRefs() []string { return refSetNames(r.Refs()) }

// SetRefs implements Rule.
func (r *DispatchRule) SetRefs() []string { return refSetNames(r.Refs()) }

// SetRefs implements Rule.
func (r *AllowRule) SetRefs() []string { return refSetNames(r.Refs()) }

// SetRefs implements Rule.
func (r *UnknownAddrRule) SetRefs() []string { return refSetNames(r.Refs()) }

// SetRefs implements Rule.
func (r *VerdictRule) SetRefs() []string { return refSetNames(r.Refs()) }

// SetRefs implements Rule.
func (r *KernelRule) SetRefs() []string { return refSetNames(r.Refs()) }
