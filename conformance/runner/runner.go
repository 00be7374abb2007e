// Package runner drives the conformance lab: it builds a lab cluster, runs one
// policyd enforcement instance per lab node (the same compile → policy/nft path
// as the node agent, applied inside that node's network namespace), applies
// each step of a scenario incrementally, probes every pod pair with real
// packets, and compares what it observed with the semantics model and, for the
// upstream cases, with the case's own truth tables; the ClusterNetworkPolicy
// suite (CNPScenarios) runs its own probes against its data's expectations.
package runner

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/conformance"
	"github.com/policyd/policyd/conformance/lab"
	"github.com/policyd/policyd/conformance/truthtable"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/decider"
	"github.com/policyd/policyd/policy/model"
	"github.com/policyd/policyd/policy/nft"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/selectors"
	"github.com/policyd/policyd/verdicts"
)

// Step is the desired cluster state after one step of a scenario.
type Step struct {
	Name       string
	Namespaces []*corev1.Namespace
	Pods       []*corev1.Pod
	Policies   []*networkingv1.NetworkPolicy
	// ClusterPolicies and Nodes join Policies when Snapshot is not set.
	ClusterPolicies []*npav1beta1.ClusterNetworkPolicy
	Nodes           []*corev1.Node
	// Probes are the destination ports probed; nil means every containerPort
	// each destination pod declares.
	Probes []model.PortProto
	// Expect holds the scenario's own truth tables, if it has them (the
	// upstream cases do). The model must agree with them, and so must the
	// packets.
	Expect truthtable.Tables
	// Snapshot, when set, is the cluster state enforced in this step,
	// instead of one built from Namespaces, Pods and Policies (which cannot
	// hold ClusterNetworkPolicies or Nodes). Pods still build the lab, and
	// every snapshot pod must have the address the lab gave it.
	Snapshot *cluster.Snapshot
	// Services and EndpointSlices are the Services the lab's kube-proxy-like
	// table translates (see planServices); ServiceExpect the scenario's own
	// verdicts on them. A Service without a ClusterIP or NodePort gets one
	// (prepareServices); with Services, the snapshot's Nodes carry the lab's
	// node addresses.
	Services       []*corev1.Service
	EndpointSlices []*discoveryv1.EndpointSlice
	ServiceExpect  []ServiceExpect
	// Checks, when set, are the step's only probes, each with the verdict
	// the scenario's data expects; the packets must agree with them (the
	// model is not consulted). Probes, Expect and the all-pairs matrix are
	// then unused. A step may have Checks of length zero: it is synced and
	// nothing is probed.
	Checks []Check
}

// Check is one probe with its expected verdict.
type Check struct {
	From, To string // namespace/pod
	Port     int32
	Protocol cluster.Protocol
	Allowed  bool
}

// Scenario is a named sequence of steps over one set of pods.
type Scenario struct {
	Name  string
	Steps []Step
}

// Config says how to run.
type Config struct {
	Lab lab.Config
	// Protocols are the protocols probed; default TCP and UDP. SCTP is
	// reported as not probed (this kernel has no SCTP sockets).
	Protocols []cluster.Protocol
	// Mutate, when set, edits each node's compiled ruleset before it is
	// applied. It exists to prove the lab can fail (a deliberately wrong
	// ruleset must show up as disagreeing cells).
	Mutate func(node string, rs *ruleset.Ruleset)
	// Verdicts makes every node's table log what it drops (every packet,
	// no rate limit) and checks each denied TCP and UDP probe's kernel
	// record against the decider policyd explain names (see KernelRecord and
	// StepResult.Verdicts). LogAllowed also logs the new connections rules
	// admit and checks the allowed probes the same way.
	Verdicts, LogAllowed bool
}

// Cell is one probe's outcome.
type Cell struct {
	From     string           `json:"from"`
	To       string           `json:"to"`
	Port     int32            `json:"port"`
	Protocol cluster.Protocol `json:"-"`
	Proto    string           `json:"protocol"`
	// Expected is the semantics model's verdict.
	Expected bool `json:"expected"`
	// Observed is what the packets did; meaningless when Probed is false.
	Observed bool `json:"observed"`
	Probed   bool `json:"probed"`
	// Case is the case table's verdict, when the scenario has one for this cell.
	Case *bool `json:"case,omitempty"`
	// Via is set for a probe through a Service: the Service, its port and
	// the address used; To is the backend explain names, pinned, and
	// Expected explain's verdict for it.
	Via string `json:"via,omitempty"`
	// Family is 6 for a probe over IPv6 (the dual-stack pairs of a
	// dual-stack lab are probed over both families); absent for IPv4.
	Family int    `json:"family,omitempty"`
	Detail string `json:"detail,omitempty"`
	Err    string `json:"error,omitempty"`
	// With Config.Verdicts, for a checked probe (a denied one; an allowed
	// one with Config.LogAllowed): Kernel is the deciding kernel record of
	// its first packet (the drop; for an allowed probe the ingress accept,
	// else the egress one) and KernelEgress, when the packet was logged in
	// both directions, the egress record; Explained and ExplainedEgress are
	// the same as policyd explain names them. VerdictCheck is VerdictAgree,
	// VerdictDisagree or VerdictMissing.
	Kernel          *KernelRecord    `json:"kernel,omitempty"`
	KernelEgress    *KernelRecord    `json:"kernelEgress,omitempty"`
	Explained       *decider.Decider `json:"explained,omitempty"`
	ExplainedEgress *decider.Decider `json:"explainedEgress,omitempty"`
	VerdictCheck    string           `json:"verdicts,omitempty"`
}

// Agrees reports whether the cell's observed, expected and case verdicts
// agree. Unprobed cells agree (the caller counts them apart); lab faults
// never do. A cell expected to be denied agrees only when the packets were
// dropped (DeniedNotByDrop): a refused or unreachable answer means the
// server was missing or something rejected the packet, which no policy here
// asks for.
func (c Cell) Agrees() bool {
	if c.Err != "" {
		return false
	}
	if c.Case != nil && *c.Case != c.Expected {
		return false
	}
	if !c.Probed {
		return true
	}
	return c.Observed == c.Expected && !c.DeniedNotByDrop()
}

// DeniedNotByDrop reports whether a probed, denied cell failed some other
// way than by its packets being dropped: a timeout, or a local send refused
// by the source's output hook ("blocked locally", EPERM), are drops; a
// refusal (RST or ICMP port unreachable), an ICMP unreachable or a
// connection that opened and then gave no answer are not.
func (c Cell) DeniedNotByDrop() bool {
	if !c.Probed || c.Observed {
		return false
	}
	return c.Detail != "timeout" && c.Detail != "blocked locally"
}

// StepResult is the outcome of one step.
type StepResult struct {
	Scenario string
	Step     string
	Index    int
	Cells    []Cell
	// Agree, Disagree and NotProbed count cells; each cell is in exactly one
	// of them. A cell that could not be probed (SCTP) is NotProbed, never
	// Agree, unless its expectations disagree among themselves (model vs
	// case table), or it hit a lab fault: then it is Disagree.
	Agree, Disagree, NotProbed int
	// SyncOps is the number of netlink operations the step's sync wrote over
	// all nodes; FullSyncs how many nodes read the kernel back first.
	SyncOps, FullSyncs int
	// Invalid lists validation errors of the step's objects.
	Invalid  []string
	Duration time.Duration
	// Verdicts counts the verdict checks (Config.Verdicts).
	Verdicts VerdictStats
}

// Tables returns the expected and observed truth tables by port/protocol.
func (r *StepResult) Tables() (expected, observed truthtable.Tables) {
	expected, observed = truthtable.Tables{}, truthtable.Tables{}
	names := map[string]bool{}
	for _, c := range r.Cells {
		if c.Via == "" && c.Family != 6 {
			names[c.From], names[c.To] = true, true
		}
	}
	list := slices.Sorted(maps.Keys(names))
	for _, c := range r.Cells {
		if c.Via != "" || c.Family == 6 {
			continue // through a Service, or over IPv6: listed apart
		}
		pp := model.PortProto{Port: c.Port, Protocol: c.Protocol}
		if expected[pp] == nil {
			expected[pp], observed[pp] = truthtable.New(list), truthtable.New(list)
		}
		expected[pp].Set(c.From, c.To, c.Expected)
		if c.Probed {
			observed[pp].Set(c.From, c.To, c.Observed)
		}
	}
	return expected, observed
}

// ProbedTables is Tables restricted to the cells that were probed: an
// observed table compared with its expected one then differs only where the
// packets did. Port/protocols with no probed cell have no table.
func (r *StepResult) ProbedTables() (expected, observed truthtable.Tables) {
	probed := r.Cells[:0:0]
	for _, c := range r.Cells {
		if c.Probed {
			probed = append(probed, c)
		}
	}
	return (&StepResult{Cells: probed}).Tables()
}

// Run builds the lab for the scenarios' pods (every scenario must use the same
// pods, as the upstream cases do), runs every step, calls report after each
// one, and tears the lab down, also when ctx is cancelled. It returns an error
// for lab or enforcement faults, not for disagreements: those are in the
// results.
func Run(ctx context.Context, cfg Config, scenarios []Scenario, report func(StepResult)) (err error) {
	if len(scenarios) == 0 || len(scenarios[0].Steps) == 0 {
		return errors.New("runner: nothing to run")
	}
	if len(cfg.Protocols) == 0 {
		cfg.Protocols = []cluster.Protocol{cluster.ProtocolTCP, cluster.ProtocolUDP}
	}
	for _, sc := range scenarios {
		for _, st := range sc.Steps {
			cfg.Lab.External = cfg.Lab.External || len(st.Services) > 0
		}
	}
	l, err := lab.New(ctx, cfg.Lab, scenarios[0].Steps[0].Pods)
	if err != nil {
		return fmt.Errorf("building the lab: %w", err)
	}
	defer func() {
		if cerr := l.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("tearing the lab down: %w", cerr)
		}
	}()
	e := &enforcer{lab: l, backends: map[string]*nft.Backend{}, opts: logOptions(cfg)}
	for _, n := range l.Nodes() {
		h, ok := l.NodeNetNSHandle(n.Name)
		if !ok {
			return fmt.Errorf("lab has no netns for node %s", n.Name)
		}
		b, err := nft.New(nft.Options{NetNS: int(h)})
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		e.backends[n.Name] = b
		e.nodes = append(e.nodes, n.Name)
	}
	if cfg.Verdicts {
		if e.klog, err = openKernelLog(l, e.nodes); err != nil {
			return err
		}
		defer e.klog.close()
		e.resolver = newVerdictResolver()
		e.ports = &srcPorts{skip: servedPorts(l)}
	}
	// With verdicts, a step is reported once its records are in. The log
	// delivers a batch up to a second after its first record, so steps
	// wait in a queue, and every step that is ready is resolved after each
	// step's probes: waiting overlaps with the next steps' work.
	var queue []*verdictStep
	resolve := func(wait bool) error {
		for len(queue) > 0 {
			vs := queue[0]
			if !wait && !e.verdictsReady(cfg, vs) {
				return nil
			}
			e.resolveVerdicts(ctx, cfg, vs)
			if _, err := e.klog.stats(); err != nil {
				return err
			}
			report(vs.res)
			e.lastProbes = vs.end
			queue = queue[1:]
		}
		return nil
	}
	for _, sc := range scenarios {
		for i, st := range sc.Steps {
			if err := ctx.Err(); err != nil {
				return err
			}
			if e.klog != nil && len(st.Services) > 0 {
				// Its pinned probes' flows may be an earlier step's:
				// start on a log holding nothing of earlier steps.
				if err := resolve(true); err != nil {
					return err
				}
				e.awaitLog(ctx)
			}
			res, vs, err := e.step(ctx, cfg, sc.Name, i, st)
			if err != nil {
				return fmt.Errorf("%s step %d (%s): %w", sc.Name, i, st.Name, err)
			}
			if vs == nil {
				report(res)
				continue
			}
			queue = append(queue, vs)
			// A step with pinned probes is resolved before the next one
			// starts: its flows repeat there.
			if err := resolve(vs.pinned); err != nil {
				return err
			}
		}
	}
	return resolve(true)
}

type enforcer struct {
	lab      *lab.Lab
	nodes    []string
	backends map[string]*nft.Backend
	opts     compile.Options
	// With Config.Verdicts: the nodes' logs, the ids of every ruleset
	// committed, the probes' source ports, and the log overruns counted in
	// a step so far.
	klog         *kernelLog
	resolver     *verdicts.Resolver
	ports        *srcPorts
	overrunsSeen int
	// lastProbes is when the probes of the last step resolved ended.
	lastProbes time.Time
}

// servedPorts returns every port a pod of l serves.
func servedPorts(l *lab.Lab) map[int]bool {
	out := map[int]bool{}
	for _, p := range l.Pods() {
		for _, port := range p.Ports {
			out[int(port)] = true
		}
		for _, pp := range p.Listen {
			out[int(pp.Port)] = true
		}
	}
	return out
}

// step runs one step. With Config.Verdicts it also returns what checking
// the step's kernel records needs; the result is then complete only after
// resolveVerdicts.
func (e *enforcer) step(ctx context.Context, cfg Config, scenario string, index int, st Step) (StepResult, *verdictStep, error) {
	start := time.Now()
	res := StepResult{Scenario: scenario, Step: st.Name, Index: index}
	// The lab may have allocated addresses and nodes: use its view of the pods,
	// with this step's labels.
	if err := e.lab.UpdatePods(ctx, st.Pods); err != nil {
		return res, nil, err
	}
	var snap *cluster.Snapshot
	if st.Snapshot != nil {
		snap = st.Snapshot
		if err := e.checkAddresses(snap); err != nil {
			return res, nil, err
		}
	} else {
		var errs []error
		snap, errs = cluster.NewSnapshot(st.Namespaces, e.lab.PodObjects(), st.Policies)
		nodes := st.Nodes
		if len(st.Services) > 0 {
			nodes = e.labNodeObjects(nodes)
		}
		errs = append(errs, snap.AddClusterPolicies(st.ClusterPolicies, nodes)...)
		errs = append(errs, snap.AddServices(prepareServices(st.Services), st.EndpointSlices)...)
		for _, err := range errs {
			res.Invalid = append(res.Invalid, err.Error())
		}
	}
	ix := selectors.FromSnapshot(snap)
	for _, node := range e.nodes {
		rs, err := (&compile.Compiler{Options: e.opts}).Compile(ix, node)
		if err != nil {
			return res, nil, fmt.Errorf("compile %s: %w", node, err)
		}
		if cfg.Mutate != nil {
			cfg.Mutate(node, rs)
		}
		stats, err := e.backends[node].Sync(ctx, rs)
		if err != nil {
			return res, nil, fmt.Errorf("sync %s: %w", node, err)
		}
		if e.resolver != nil {
			e.resolver.Learn(rs)
		}
		res.SyncOps += stats.Ops
		if stats.Full {
			res.FullSyncs++
		}
	}

	// Probes must be new connections, as upstream's are. A UDP probe whose
	// ephemeral port happens to repeat one from an earlier step would match
	// that step's conntrack entry, which ct established accepts (by design:
	// policy changes never cut established flows), so start each step with
	// empty conntrack tables.
	for _, node := range e.nodes {
		if err := e.flushConntrack(node); err != nil {
			return res, nil, fmt.Errorf("node %s: flushing conntrack: %w", node, err)
		}
	}
	svcs := servicesOf(snap)
	if err := e.setServices(ctx, svcs); err != nil {
		return res, nil, err
	}
	probes, cells := e.plan(cfg, snap, st)
	refs := make([]verdictRef, len(cells))
	sp, sc, sr, inv := e.planServices(snap, svcs, st.ServiceExpect)
	probes, cells, refs = append(probes, sp...), append(cells, sc...), append(refs, sr...)
	res.Invalid = append(res.Invalid, inv...)
	pinned := false
	if e.ports != nil {
		for i := range probes {
			if probes[i].Pin == 0 {
				probes[i].SrcPort = e.ports.take(lab.Attempts)
			} else {
				pinned = true
			}
		}
	}
	probeStart := time.Now()
	results := e.lab.ProbeAll(ctx, probes)
	probeEnd := time.Now()
	for i, r := range results {
		c := &cells[i]
		c.Probed, c.Observed, c.Detail, c.Err = r.Probed, r.Observed, r.Detail, r.Err
		switch {
		case !c.Agrees():
			res.Disagree++
		case !c.Probed:
			res.NotProbed++
		default:
			res.Agree++
		}
	}
	res.Cells = cells
	res.Duration = time.Since(start)
	if e.klog == nil {
		return res, nil, nil
	}
	e.verdictRefs(cells, refs, results)
	return res, &verdictStep{res: res, snap: snap, refs: refs, start: probeStart, end: probeEnd, pinned: pinned}, nil
}

// checkAddresses makes sure policyd is told the addresses the packets carry:
// every pod of snap must be in the lab, on the same node, with the same IPv4
// address.
func (e *enforcer) checkAddresses(snap *cluster.Snapshot) error {
	built := map[string]lab.PodInfo{}
	for _, p := range e.lab.Pods() {
		built[p.Key] = p
	}
	for _, p := range snap.Pods {
		b, ok := built[p.Key()]
		if !ok {
			return fmt.Errorf("pod %s is in the snapshot but not in the lab", p.Key())
		}
		ip, _ := p.IP(4)
		if b.Node != p.NodeName || len(b.IPs) == 0 || b.IPs[0] != ip {
			return fmt.Errorf("pod %s: snapshot says %s on %s, the lab built %v on %s", p.Key(), ip, p.NodeName, b.IPs, b.Node)
		}
	}
	return nil
}

func (e *enforcer) flushConntrack(node string) error {
	ns, ok := e.lab.NodeNetNSHandle(node)
	if !ok {
		return fmt.Errorf("no netns")
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	// The lab probes IPv4; this flushes the IPv4 entries.
	return h.ConntrackTableFlush(netlink.ConntrackTable)
}

// plan lists the probes of a step with their expected verdicts.
func (e *enforcer) plan(cfg Config, snap *cluster.Snapshot, st Step) ([]lab.Probe, []Cell) {
	var probes []lab.Probe
	var cells []Cell
	if st.Checks != nil {
		for _, c := range st.Checks {
			cells = append(cells, Cell{From: c.From, To: c.To, Port: c.Port, Protocol: c.Protocol, Proto: c.Protocol.String(), Expected: c.Allowed})
			probes = append(probes, lab.Probe{From: c.From, To: c.To, Port: c.Port, Protocol: c.Protocol, Service: cfg.Lab.DNAT})
		}
		return probes, cells
	}
	var pods []*cluster.Pod
	for _, p := range snap.Pods {
		if !p.HostNetwork && len(p.IPs) > 0 {
			pods = append(pods, p)
		}
	}
	for _, src := range pods {
		for _, dst := range pods {
			if src == dst {
				continue
			}
			for _, pp := range probeTargets(cfg, st, dst) {
				sip, _ := src.IP(4)
				dip, _ := dst.IP(4)
				d := model.Evaluate(snap, model.Packet{
					Src: model.Endpoint{Pod: src, IP: sip}, Dst: model.Endpoint{Pod: dst, IP: dip},
					Protocol: pp.Protocol, Port: pp.Port,
				})
				c := Cell{From: src.Key(), To: dst.Key(), Port: pp.Port, Protocol: pp.Protocol, Proto: pp.Protocol.String(), Expected: d.Allowed}
				if t := st.Expect[pp]; t != nil {
					if want, probed := t.Get(src.Key(), dst.Key()); probed {
						c.Case = &want
					}
				}
				cells = append(cells, c)
				probes = append(probes, lab.Probe{From: src.Key(), To: dst.Key(), Port: pp.Port, Protocol: pp.Protocol, Service: cfg.Lab.DNAT})
				// Dual-stack pairs are probed over IPv6 too.
				sip6, ok1 := src.IP(6)
				dip6, ok2 := dst.IP(6)
				if cfg.Lab.IPv6 && ok1 && ok2 && !cfg.Lab.DNAT {
					d6 := model.Evaluate(snap, model.Packet{
						Src: model.Endpoint{Pod: src, IP: sip6}, Dst: model.Endpoint{Pod: dst, IP: dip6},
						Protocol: pp.Protocol, Port: pp.Port,
					})
					cells = append(cells, Cell{From: src.Key(), To: dst.Key(), Port: pp.Port, Protocol: pp.Protocol, Proto: pp.Protocol.String(), Expected: d6.Allowed, Family: 6})
					probes = append(probes, lab.Probe{From: src.Key(), To: dst.Key(), Port: pp.Port, Protocol: pp.Protocol, Family: lab.IPv6})
				}
			}
		}
	}
	return probes, cells
}

// probeTargets returns the ports probed on dst: the step's list, or what dst
// declares, widened to every configured protocol for the same port numbers.
func probeTargets(cfg Config, st Step, dst *cluster.Pod) []model.PortProto {
	seen := map[model.PortProto]bool{}
	var out []model.PortProto
	add := func(pp model.PortProto) {
		if !seen[pp] {
			seen[pp] = true
			out = append(out, pp)
		}
	}
	base := st.Probes
	if base == nil {
		for _, cp := range dst.Ports {
			base = append(base, model.PortProto{Port: cp.Port, Protocol: cp.Protocol})
		}
	}
	for _, pp := range base {
		if st.Expect[pp] != nil {
			add(pp) // the case's own probes, SCTP included (reported as not probed)
		}
		for _, proto := range cfg.Protocols {
			if st.Probes != nil || declares(dst, pp.Port, proto) {
				add(model.PortProto{Port: pp.Port, Protocol: proto})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}

func declares(p *cluster.Pod, port int32, proto cluster.Protocol) bool {
	for _, cp := range p.Ports {
		if cp.Port == port && cp.Protocol == proto {
			return true
		}
	}
	return false
}

// CaseScenarios turns the upstream cases into scenarios over the model
// cluster placed on nodes.
func CaseScenarios(cases []conformance.Case, nodes []string) ([]Scenario, error) {
	var out []Scenario
	for _, c := range cases {
		nss, pods := conformance.ModelCluster(nodes)
		var pols []*networkingv1.NetworkPolicy
		var svcs []*corev1.Service
		sc := Scenario{Name: c.Name}
		// Every case starts from no policies and the model's labels: the
		// first step's sync removes whatever the previous case left.
		for i, st := range c.Steps {
			var err error
			nss, pods, pols, err = st.Apply(nss, pods, pols)
			if err != nil {
				return nil, fmt.Errorf("%s step %d: %w", c.Name, i, err)
			}
			svcs = st.ApplyServices(svcs)
			var expect []ServiceExpect
			for _, x := range st.External {
				proto, err := cluster.ParseProtocol(x.Protocol)
				if err != nil {
					return nil, fmt.Errorf("%s step %d: %w", c.Name, i, err)
				}
				expect = append(expect, ServiceExpect{Service: x.Service, Port: x.Port, Protocol: proto, External: true, Allowed: x.Allowed})
			}
			sc.Steps = append(sc.Steps, Step{
				Name: st.Name, Namespaces: nss, Pods: pods, Policies: pols,
				Probes: st.Expect.Keys(), Expect: st.Expect,
				Services: svcs, ServiceExpect: expect,
			})
		}
		out = append(out, sc)
	}
	return out, nil
}
