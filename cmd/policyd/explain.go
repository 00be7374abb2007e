package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/conformance/truthtable"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/model"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/policy/trace"
	"github.com/policyd/policyd/selectors"
)

type explainOptions struct {
	kube      kubeFlags
	manifests string
	port      int32
	protocol  string
	output    string
	matrix    bool
	trace     bool
}

func newExplainCommand() *cobra.Command {
	o := &explainOptions{}
	cmd := &cobra.Command{
		Use:   "explain SRC DST | explain --matrix",
		Short: "Say whether traffic between two pods is allowed, and which policy and rule decide it",
		Long: `Explain whether SRC may open a connection to DST, and why.

SRC and DST are pods, written namespace/name, or IP addresses. The cluster is
read from the API server (--kubeconfig, --context, as kubectl does), or
offline from --manifests. The verdict
comes first, then, for each direction, whether the pod is isolated and by
which policies, and the rule that admitted the traffic, or the rule that came
closest and what did not match. Traffic is allowed only if the source's
egress and the destination's ingress both allow it.

Without --port, every port the destination pod declares in its
containerPorts is explained. With --trace, the nftables ruleset policyd
compiles for the nodes on the path is walked for the same packet and shown
beside the model's reasons; a disagreement between the two is reported
loudly and makes the command fail.

--matrix prints the reachability of every ordered pod pair (not a pod to
itself) for every port/protocol the destination declares: as truth tables
(. allowed, X denied; rows are sources, columns destinations), or with
-o jsonl as one JSON object per line.

Exit status: 0 when every explained connection is allowed (or with --matrix),
1 when one is denied, 2 on bad usage.`,
		Example: `  policyd explain --manifests examples/ shop/frontend-1 shop/api
  policyd explain --manifests examples/ shop/api shop/db --port 5432 -o json
  policyd explain --manifests examples/ monitoring/prometheus shop/db --trace
  policyd explain --manifests examples/ --matrix`,
		Args: func(cmd *cobra.Command, args []string) error {
			if o.matrix {
				if len(args) != 0 {
					return fmt.Errorf("--matrix takes no SRC DST")
				}
				return nil
			}
			if len(args) != 2 {
				return fmt.Errorf("want SRC DST (namespace/pod or IP), got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var snap *cluster.Snapshot
			var err error
			if o.manifests != "" {
				snap, err = loadSnapshot(cmd, o.manifests)
			} else {
				snap, err = liveSnapshot(cmd, &o.kube)
			}
			if err != nil {
				return err
			}
			if o.matrix {
				return runMatrix(cmd.OutOrStdout(), snap, o)
			}
			return runExplain(cmd.OutOrStdout(), snap, args[0], args[1], o)
		},
	}
	o.kube.add(cmd)
	f := cmd.Flags()
	f.StringVar(&o.manifests, "manifests", "", "file or directory of Kubernetes manifests (Namespace, Pod, NetworkPolicy); default: read the cluster through --kubeconfig/--context")
	f.Int32Var(&o.port, "port", 0, "destination port (default: every port the destination pod declares)")
	f.StringVar(&o.protocol, "protocol", "", "TCP, UDP or SCTP (default: TCP with --port, else the declared ports' protocols)")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or json (with --matrix: text or jsonl)")
	f.BoolVar(&o.matrix, "matrix", false, "print the whole reachability matrix")
	f.BoolVar(&o.trace, "trace", false, "also walk the compiled nftables ruleset and compare it with the model")
	return cmd
}

// explained is one explained connection; its JSON form is documented in
// docs/explain-json.md and is stable.
type explained struct {
	From     string          `json:"from"`
	To       string          `json:"to"`
	Port     int32           `json:"port"`
	Protocol string          `json:"protocol"`
	Allowed  bool            `json:"allowed"`
	Egress   model.Direction `json:"egress"`
	Ingress  model.Direction `json:"ingress"`
	Trace    *tracedPath     `json:"trace,omitempty"`
}

type tracedPath struct {
	Allowed bool        `json:"allowed"`
	Agrees  bool        `json:"agrees"`
	Hops    []tracedHop `json:"hops"`
}

type tracedHop struct {
	Node    string       `json:"node"`
	Hook    string       `json:"hook"`
	Verdict string       `json:"verdict"`
	Rules   []trace.Step `json:"rules"`
}

// liveSnapshot lists namespaces, pods and policies from the API server.
func liveSnapshot(cmd *cobra.Command, k *kubeFlags) (*cluster.Snapshot, error) {
	cfg, err := k.restConfig()
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	ctx := cmd.Context()
	nsl, err := client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing namespaces: %w", err)
	}
	pl, err := client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	npl, err := client.NetworkingV1().NetworkPolicies("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing networkpolicies: %w", err)
	}
	var nss []*corev1.Namespace
	for i := range nsl.Items {
		nss = append(nss, &nsl.Items[i])
	}
	var pods []*corev1.Pod
	for i := range pl.Items {
		pods = append(pods, &pl.Items[i])
	}
	var pols []*networkingv1.NetworkPolicy
	for i := range npl.Items {
		pols = append(pols, &npl.Items[i])
	}
	snap, errs := cluster.NewSnapshot(nss, pods, pols)
	for _, e := range errs {
		fmt.Fprintln(cmd.ErrOrStderr(), "invalid:", e)
	}
	return snap, nil
}

func resolveEndpoint(snap *cluster.Snapshot, s string) (model.Endpoint, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		ep := model.Endpoint{IP: a}
		if p := snap.PodByIP(a); p != nil {
			ep.Pod = p
		}
		return ep, nil
	}
	if !strings.Contains(s, "/") {
		return model.Endpoint{}, &exitError{2, fmt.Errorf("%q is neither namespace/pod nor an IP address", s)}
	}
	p := snap.Pod(s)
	if p == nil {
		return model.Endpoint{}, &exitError{2, fmt.Errorf("pod %s not found in the manifests", s)}
	}
	return model.Endpoint{Pod: p}, nil
}

// pickAddrs fills in the endpoints' addresses, preferring IPv4 when both
// ends have one.
func pickAddrs(src, dst *model.Endpoint) error {
	for _, fam := range []int{4, 6} {
		sa, sok := addrOf(*src, fam)
		da, dok := addrOf(*dst, fam)
		if sok && dok {
			src.IP, dst.IP = sa, da
			return nil
		}
	}
	return fmt.Errorf("%s and %s have no address family in common (does each pod have status.podIP?)", endpointName(*src), endpointName(*dst))
}

func addrOf(ep model.Endpoint, fam int) (netip.Addr, bool) {
	if ep.IP.IsValid() {
		return ep.IP, (fam == 4) == ep.IP.Is4()
	}
	if ep.Pod != nil {
		return ep.Pod.IP(fam)
	}
	return netip.Addr{}, false
}

func endpointName(ep model.Endpoint) string {
	if ep.Pod != nil {
		return ep.Pod.Key()
	}
	return ep.IP.String()
}

func runExplain(w io.Writer, snap *cluster.Snapshot, srcArg, dstArg string, o *explainOptions) error {
	src, err := resolveEndpoint(snap, srcArg)
	if err != nil {
		return err
	}
	dst, err := resolveEndpoint(snap, dstArg)
	if err != nil {
		return err
	}
	if err := pickAddrs(&src, &dst); err != nil {
		return err
	}
	var targets []model.PortProto
	switch {
	case o.port != 0:
		proto := cluster.ProtocolTCP
		if o.protocol != "" {
			if proto, err = cluster.ParseProtocol(o.protocol); err != nil {
				return &exitError{2, fmt.Errorf("--protocol: %w", err)}
			}
		}
		targets = append(targets, model.PortProto{Port: o.port, Protocol: proto})
	case dst.Pod == nil:
		return &exitError{2, fmt.Errorf("%s is not a pod: give --port", dstArg)}
	default:
		for _, cp := range dst.Pod.Ports {
			if o.protocol != "" && !strings.EqualFold(o.protocol, cp.Protocol.String()) {
				continue
			}
			targets = append(targets, model.PortProto{Port: cp.Port, Protocol: cp.Protocol})
		}
		if len(targets) == 0 {
			return &exitError{2, fmt.Errorf("%s declares no container ports%s: give --port", dst.Pod.Key(), protoSuffix(o.protocol))}
		}
	}
	sort.Slice(targets, func(i, j int) bool { return targets[i].Less(targets[j]) })

	var rulesets map[string]*ruleset.Ruleset
	if o.trace {
		if rulesets, err = compileNodes(snap, src, dst); err != nil {
			return err
		}
	}
	var results []explained
	mismatch := false
	for _, t := range targets {
		d := model.Evaluate(snap, model.Packet{Src: src, Dst: dst, Protocol: t.Protocol, Port: t.Port})
		e := explained{From: endpointName(src), To: endpointName(dst), Port: t.Port, Protocol: t.Protocol.String(), Allowed: d.Allowed, Egress: d.Egress, Ingress: d.Ingress}
		if o.trace {
			tp, err := tracePacket(rulesets, src, dst, t)
			if err != nil {
				return err
			}
			tp.Agrees = tp.Allowed == d.Allowed
			mismatch = mismatch || !tp.Agrees
			e.Trace = tp
		}
		results = append(results, e)
	}

	switch o.output {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(results); err != nil {
			return err
		}
	case "text":
		for i, e := range results {
			if i > 0 {
				fmt.Fprintln(w)
			}
			writeExplanation(w, e)
		}
	default:
		return &exitError{2, fmt.Errorf("-o %s: want text or json", o.output)}
	}
	if mismatch {
		return fmt.Errorf("the compiled ruleset and the semantics model DISAGREE: this is a policyd bug, please report it with the manifests")
	}
	for _, e := range results {
		if !e.Allowed {
			return &exitError{code: 1} // the verdict is the output; nothing more to say
		}
	}
	return nil
}

func protoSuffix(p string) string {
	if p == "" {
		return ""
	}
	return " for " + strings.ToUpper(p)
}

func writeExplanation(w io.Writer, e explained) {
	verdict := "ALLOWED"
	if !e.Allowed {
		verdict = "DENIED"
	}
	fmt.Fprintf(w, "%s  %s -> %s  %s/%d\n", verdict, e.From, e.To, e.Protocol, e.Port)
	for _, d := range []model.Direction{e.Egress, e.Ingress} {
		who := d.Pod
		if who == "" {
			who = "not a pod"
		}
		switch {
		case !d.Isolated || (d.Allowed && d.Match == nil):
			fmt.Fprintf(w, "  %-7s %s: allows. %s\n", d.Direction, who, d.Reason)
		case d.Allowed:
			fmt.Fprintf(w, "  %-7s %s: allows, by %s\n", d.Direction, who, d.Match)
			fmt.Fprintf(w, "          isolated by %s\n", strings.Join(d.Policies, ", "))
		default:
			fmt.Fprintf(w, "  %-7s %s: DENIES: isolated by %s, and none of their %s rules admits this\n", d.Direction, who, strings.Join(d.Policies, ", "), d.Direction)
			if d.NearestMiss != nil {
				fmt.Fprintf(w, "          nearest miss: %s: %s\n", d.NearestMiss.RuleRef, d.NearestMiss.Reason)
			}
		}
	}
	if e.Trace != nil {
		fmt.Fprintf(w, "  nftables trace (compiled ruleset): %s\n", map[bool]string{true: "accept", false: "drop"}[e.Trace.Allowed])
		for _, h := range e.Trace.Hops {
			fmt.Fprintf(w, "    node %s, hook %s => %s\n", h.Node, h.Hook, h.Verdict)
			for _, s := range h.Rules {
				if !s.Matched {
					continue
				}
				fmt.Fprintf(w, "      %s[%d] %s", s.Chain, s.Rule, s.Text)
				if s.Comment != "" {
					fmt.Fprintf(w, "   # %s", s.Comment)
				}
				fmt.Fprintln(w)
			}
		}
		if !e.Trace.Agrees {
			fmt.Fprintln(w, "  !!! MISMATCH: the compiled ruleset and the semantics model disagree on this connection !!!")
		}
	}
}

// compileNodes compiles the rulesets of the nodes the endpoints run on.
func compileNodes(snap *cluster.Snapshot, eps ...model.Endpoint) (map[string]*ruleset.Ruleset, error) {
	ix := selectors.FromSnapshot(snap)
	out := map[string]*ruleset.Ruleset{}
	for _, ep := range eps {
		if ep.Pod == nil || ep.Pod.NodeName == "" {
			continue
		}
		if _, ok := out[ep.Pod.NodeName]; ok {
			continue
		}
		rs, err := compile.Compile(ix, ep.Pod.NodeName)
		if err != nil {
			return nil, fmt.Errorf("compile node %s: %w", ep.Pod.NodeName, err)
		}
		out[ep.Pod.NodeName] = rs
	}
	return out, nil
}

func traceEndpoint(ep model.Endpoint) trace.Endpoint {
	te := trace.Endpoint{Addr: ep.IP}
	if ep.Pod != nil {
		te.Node = ep.Pod.NodeName
		te.NodeLocal = ep.Pod.HostNetwork
	}
	return te
}

func tracePacket(rulesets map[string]*ruleset.Ruleset, src, dst model.Endpoint, t model.PortProto) (*tracedPath, error) {
	hops, allowed, err := trace.Path(rulesets, traceEndpoint(src), traceEndpoint(dst), uint8(t.Protocol), uint16(t.Port))
	if err != nil {
		return nil, err
	}
	tp := &tracedPath{Allowed: allowed}
	for _, h := range hops {
		tp.Hops = append(tp.Hops, tracedHop{Node: h.Node, Hook: h.Hook.String(), Verdict: ruleset.Verdict{Kind: h.Verdict}.String(), Rules: h.Steps})
	}
	return tp, nil
}

func runMatrix(w io.Writer, snap *cluster.Snapshot, o *explainOptions) error {
	cells := model.Matrix(snap)
	switch o.output {
	case "jsonl":
		enc := json.NewEncoder(w)
		for _, c := range cells {
			if err := enc.Encode(c); err != nil {
				return err
			}
		}
		return nil
	case "text":
		_, err := fmt.Fprint(w, truthtable.FromCells(cells).String())
		return err
	}
	return &exitError{2, fmt.Errorf("-o %s: with --matrix want text or jsonl", o.output)}
}
