// Package explain owns the answers of `policyd explain`: whether one endpoint
// may open a connection to another, and why.
//
// It resolves the endpoints a person names ("namespace/pod" or an IP address)
// in a cluster snapshot, asks the semantics model (package model) for the
// verdict of every port in question, and, when asked, walks the nftables
// rulesets policyd compiles for the nodes on the path (package trace) and
// checks that they agree with the model. Its results have a stable JSON form,
// documented in docs/explain-json.md, and a text form for people; it also
// renders the model's reachability matrix as truth tables or JSON lines.
//
// Nothing here reads flags, the API server or the kernel: the caller loads the
// snapshot and chooses the output.
package explain

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/model"
	"github.com/policyd/policyd/policy/quarantine"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/policy/trace"
	"github.com/policyd/policyd/selectors"
)

// Query says which connections to explain. Errors about its fields name the
// `policyd explain` flags they come from (--port, --protocol).
type Query struct {
	// Src and Dst are the endpoints, each "namespace/pod" or an IP address
	// (see ResolveEndpoint).
	Src, Dst string
	// Port is the destination port. Zero explains every port the destination
	// pod declares in its containerPorts.
	Port int32
	// PortName, instead of Port, is the destination port by name: the
	// destination pod's container port of that name, or, for a Service, its
	// port of that name (the name a NetworkPolicy's named port would use).
	PortName string
	// Protocol is TCP, UDP or SCTP, in any case. With Port it is the
	// protocol of that port ("" means TCP); without, only the declared ports
	// of that protocol are explained ("" means all of them).
	Protocol string
	// Trace also walks the compiled rulesets of the nodes on the path for
	// each connection and compares their verdict with the model's (see
	// CheckTrace).
	Trace bool
	// Budget is the nodes' budget (policyd run's flags): an object over it
	// is quarantined on a node (policy/quarantine), and each direction is
	// judged, and traced, as the node that judges it enforces it, with
	// the quarantined objects in their stripped forms. The zero Budget
	// quarantines nothing.
	Budget compile.Budget

	// view judges packets with the nodes' quarantine (set by Explain).
	view *model.Quarantined
}

// evaluate judges pkt as the nodes enforce it.
func (q Query) evaluate(snap *cluster.Snapshot, pkt model.Packet) model.Decision {
	if q.view != nil {
		return q.view.Evaluate(pkt)
	}
	return model.Evaluate(snap, pkt)
}

// compileNodes compiles the rulesets of the endpoints' nodes with q's
// budget.
func (q Query) compileNodes(snap *cluster.Snapshot, eps ...model.Endpoint) (map[string]*ruleset.Ruleset, error) {
	return CompileNodesWith(snap, compile.Options{Budget: q.Budget}, eps...)
}

// QuarantineView returns the model's view of snap as the nodes enforce it
// with budget b: each node's quarantine decided, when first asked, exactly
// as the node's compile decides it.
func QuarantineView(snap *cluster.Snapshot, b compile.Budget) *model.Quarantined {
	var src compile.Source
	return model.NewQuarantined(snap, func(node string) []quarantine.Decision {
		if src == nil {
			src = selectors.FromSnapshot(snap)
		}
		return compile.Quarantines(src, []string{node}, compile.Options{Budget: b}).Node(node)
	})
}

// Result is one explained connection: one (port, protocol) from one endpoint
// to another. Its JSON form is documented in docs/explain-json.md and is
// stable: fields are only ever added.
type Result struct {
	// From and To are "namespace/pod", or the IP address when the endpoint
	// is not a pod.
	From string `json:"from"`
	To   string `json:"to"`
	// Port and Protocol are the destination port and its protocol ("TCP").
	Port     int32  `json:"port"`
	Protocol string `json:"protocol"`
	// Allowed is the model's verdict: egress of From and ingress of To both
	// allow the connection.
	Allowed bool `json:"allowed"`
	// Egress and Ingress are the model's verdicts of each direction.
	Egress  model.Direction `json:"egress"`
	Ingress model.Direction `json:"ingress"`
	// Trace is set when the query asked for it: the compiled rulesets walked
	// for the same packet.
	Trace *Trace `json:"trace,omitempty"`
	// Service is set when To was reached through a Service: the packet
	// explained is the one kube-proxy delivers to this backend (To, Port).
	Service *ServicePath `json:"service,omitempty"`
	// HostPort is set when To was reached through a node address and a
	// pod's hostPort: the packet explained is the one the node DNATs to
	// the pod (To, Port).
	HostPort *HostPortPath `json:"hostPort,omitempty"`
	// Invalid lists the invalid objects and fields of the input that bear
	// on this answer (see invalidFor): each such object is judged in its
	// fail-closed form, which the verdict already reflects.
	Invalid []cluster.Invalid `json:"invalid,omitempty"`
}

// HostPortPath says how a connection to a node's address reaches a pod
// through its hostPort.
type HostPortPath struct {
	// Node and Address are the node and the address the client used;
	// HostPort the port it used.
	Node     string `json:"node"`
	Address  string `json:"address"`
	HostPort int32  `json:"hostPort"`
	Note     string `json:"note"`
}

// ServicePath says how a connection to a Service reaches one backend.
type ServicePath struct {
	// Service is "namespace/name"; Address the address the client used (a
	// ClusterIP, external or load-balancer IP; "" when named svc/…).
	Service string `json:"service"`
	Address string `json:"address,omitempty"`
	// Port and Protocol are the service port; the result's Port is the
	// backend's target port.
	Port     int32  `json:"port"`
	Protocol string `json:"protocol"`
	// Backends and Ready count the backends of that port, and Allowed those
	// the connection is allowed to (the same on every result of the port).
	Backends int `json:"backends"`
	Ready    int `json:"ready"`
	Allowed  int `json:"allowed"`
	// Path describes the client's source address as the backend's policy
	// sees it: "pod" (a pod's own address: kube-proxy does not SNAT it),
	// "external" (an outside client's address, kept by
	// externalTrafficPolicy Local), "node" (the node the traffic entered,
	// after kube-proxy's SNAT under externalTrafficPolicy Cluster).
	Path string `json:"path"`
	// Entry is the node the traffic enters under externalTrafficPolicy
	// Cluster: the backend sees that node's address, or, on the backend's
	// own node, the client's ("" on other paths).
	Entry string `json:"entry,omitempty"`
	// Note explains the path, or why a backend was not explained.
	Note string `json:"note,omitempty"`
}

// Trace is the compiled nftables rulesets' verdict on one connection, beside
// the model's.
type Trace struct {
	// Allowed is the rulesets' verdict.
	Allowed bool `json:"allowed"`
	// Agrees reports whether Allowed equals the model's verdict. False is a
	// policyd bug.
	Agrees bool `json:"agrees"`
	// Hops are the places on the path where policyd's table sees the first
	// packet, in path order.
	Hops []Hop `json:"hops"`
}

// Hop is the walk of one node's ruleset at one hook.
type Hop struct {
	// Node is the node's name.
	Node string `json:"node"`
	// Hook is "postrouting" or "input".
	Hook string `json:"hook"`
	// Verdict is the hook's verdict in nft syntax ("accept", "drop").
	Verdict string `json:"verdict"`
	// Rules are the rules walked, in order, matched or not.
	Rules []trace.Step `json:"rules"`
}

// UsageError is an error in what was asked (an endpoint that does not
// resolve, a protocol policyd does not know, a port that must be given), as
// opposed to a failure while answering it. `policyd explain` exits 2 on it.
type UsageError struct {
	Err error
}

func (e *UsageError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *UsageError) Unwrap() error { return e.Err }

func usageErrorf(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// ErrDisagree is returned by Disagreement when a compiled ruleset and the
// semantics model decide a connection differently.
var ErrDisagree = errors.New("the compiled ruleset and the semantics model DISAGREE: this is a policyd bug, please report it with the manifests")

// Explain answers q in snap: one Result per explained (port, protocol),
// sorted by port, then protocol number, each listing the invalid objects
// and fields that bear on it. Errors in q itself are *UsageError.
func Explain(snap *cluster.Snapshot, q Query) ([]Result, error) {
	results, err := explain(snap, q)
	if err != nil {
		return nil, err
	}
	if all := snap.Invalid(); len(all) > 0 {
		for i := range results {
			results[i].Invalid = invalidFor(snap, all, results[i])
		}
	}
	return results, nil
}

func explain(snap *cluster.Snapshot, q Query) ([]Result, error) {
	src, err := ResolveEndpoint(snap, q.Src)
	if err != nil {
		return nil, err
	}
	if !q.Budget.IsZero() {
		q.view = QuarantineView(snap, q.Budget)
	}
	if svc, addr, ok, err := resolveService(snap, q.Dst); err != nil {
		return nil, err
	} else if ok {
		return explainService(snap, q, src, svc, addr)
	}
	if rs, ok, err := explainHostPort(snap, q, src); ok || err != nil {
		return rs, err
	}
	dst, err := ResolveEndpoint(snap, q.Dst)
	if err != nil {
		return nil, err
	}
	if err := pickAddrs(&src, &dst); err != nil {
		return nil, err
	}
	markNodeTraffic(snap, &src, dst)
	targets, err := targetsOf(q, dst)
	if err != nil {
		return nil, err
	}

	var rulesets map[string]*ruleset.Ruleset
	if q.Trace {
		if rulesets, err = q.compileNodes(snap, src, dst); err != nil {
			return nil, err
		}
	}
	var results []Result
	for _, t := range targets {
		pkt := model.Packet{Src: src, Dst: dst, Protocol: t.Protocol, Port: t.Port}
		d := q.evaluate(snap, pkt)
		r := Result{From: endpointName(src), To: endpointName(dst), Port: t.Port, Protocol: t.Protocol.String(), Allowed: d.Allowed, Egress: d.Egress, Ingress: d.Ingress}
		if q.Trace {
			if r.Trace, err = CheckTrace(rulesets, pkt, d); err != nil {
				return nil, err
			}
		}
		results = append(results, r)
	}
	return results, nil
}

// targetsOf returns the ports and protocols q asks about for connections to
// dst, sorted.
func targetsOf(q Query, dst model.Endpoint) ([]model.PortProto, error) {
	var targets []model.PortProto
	switch {
	case q.PortName != "":
		if dst.Pod == nil {
			return nil, usageErrorf("--port %s: %s is not a pod, so it has no named ports: give a number", q.PortName, q.Dst)
		}
		var names []string
		for _, cp := range dst.Pod.Ports {
			if cp.Name == "" {
				continue
			}
			if q.Protocol != "" && !strings.EqualFold(q.Protocol, cp.Protocol.String()) {
				continue
			}
			names = append(names, cp.Name)
			if cp.Name == q.PortName {
				targets = append(targets, model.PortProto{Port: cp.Port, Protocol: cp.Protocol})
			}
		}
		if len(targets) == 0 {
			return nil, usageErrorf("--port %s: %s declares no container port of that name%s (named ports: %s)", q.PortName, dst.Pod.Key(), protoSuffix(q.Protocol), namesOrNone(names))
		}
	case q.Port != 0:
		proto := cluster.ProtocolTCP
		if q.Protocol != "" {
			var err error
			if proto, err = cluster.ParseProtocol(q.Protocol); err != nil {
				return nil, usageErrorf("--protocol: %w", err)
			}
		}
		targets = append(targets, model.PortProto{Port: q.Port, Protocol: proto})
	case dst.Pod == nil:
		return nil, usageErrorf("%s is not a pod: give --port", q.Dst)
	default:
		for _, cp := range dst.Pod.Ports {
			if q.Protocol != "" && !strings.EqualFold(q.Protocol, cp.Protocol.String()) {
				continue
			}
			targets = append(targets, model.PortProto{Port: cp.Port, Protocol: cp.Protocol})
		}
		if len(targets) == 0 {
			return nil, usageErrorf("%s declares no container ports%s: give --port", dst.Pod.Key(), protoSuffix(q.Protocol))
		}
	}
	// Equal keys are equal values, so the order does not depend on the sort.
	slices.SortFunc(targets, model.PortProto.Compare)
	return targets, nil
}

func namesOrNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	slices.Sort(names)
	return strings.Join(slices.Compact(names), ", ")
}

func protoSuffix(p string) string {
	if p == "" {
		return ""
	}
	return " for " + strings.ToUpper(p)
}

// Disagreement returns ErrDisagree when the trace of some result disagrees
// with the model, and nil otherwise (also when nothing was traced).
func Disagreement(results []Result) error {
	for _, r := range results {
		if r.Trace != nil && !r.Trace.Agrees {
			return ErrDisagree
		}
	}
	return nil
}

// AllAllowed reports whether the model allows every result's connection.
func AllAllowed(results []Result) bool {
	for _, r := range results {
		if !r.Allowed {
			return false
		}
	}
	return true
}

// markNodeTraffic marks traffic from the destination pod's own node as
// node traffic: a hostNetwork pod's of that node, or an address of the
// node itself (its status.addresses, or a gateway its CNI gives it, that
// no pod holds and no other Node claims: cluster.Snapshot.NodeLocal). It
// comes from an address local to the node, which the kernel lets into the
// node's pods whatever the policies say (kubelet probes), so the model
// must judge it so too. A node's address into a pod of another node is
// that node's traffic, judged by the policies like any other address.
func markNodeTraffic(snap *cluster.Snapshot, src *model.Endpoint, dst model.Endpoint) {
	if dst.Pod == nil || dst.Pod.HostNetwork || dst.Pod.NodeName == "" {
		return
	}
	switch {
	case src.Pod != nil && src.Pod.HostNetwork:
		src.Node = src.Pod.NodeName == dst.Pod.NodeName
	case src.Pod == nil && src.IP.IsValid():
		src.Node = snap.NodeLocal(src.IP, dst.Pod.NodeName)
	}
}
