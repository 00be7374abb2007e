//go:build linux

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/conformance"
	"github.com/policyd/policyd/conformance/cnp"
	"github.com/policyd/policyd/conformance/lab"
	"github.com/policyd/policyd/conformance/runner"
	"github.com/policyd/policyd/conformance/truthtable"
	"github.com/policyd/policyd/manifest"
)

type labOptions struct {
	manifests    manifestPaths
	allReplicas  bool
	conformance  bool
	suite        string
	caseFilter   string
	cni          string
	nodes        int
	dnat         bool
	output       string
	protocols    []string
	skipBaseline bool
	timeout      time.Duration
	verdicts     bool
	logAllowed   bool
}

func newLabCommand() *cobra.Command {
	o := &labOptions{}
	cmd := &cobra.Command{
		Use:   "lab (-f PATH... | --conformance) [--cni routed|bridged] [--nodes N] [--dnat]",
		Short: "Enforce policies in a cluster of network namespaces and probe it with real packets",
		Long: `Build a small cluster out of network namespaces on this machine (nodes joined
by an underlay, pods as namespaces with a veth into their node), run one
policyd enforcement instance per node (the same compile and netlink path as
the node agent, applied inside that node's namespace), and probe every
ordered pod pair with real TCP and UDP packets. The observed reachability is
printed beside what the NetworkPolicy semantics expect; any disagreement makes
the command exit 1.

-f PATH runs the pods and policies of PATH (repeat -f for a union): first with no policies
(skip with --skip-baseline), then with them, applied incrementally.
--conformance runs two suites, each in a lab of its own (--suite v1|cnp|all):
v1, the upstream Kubernetes e2e network-policy cases (x/y/z × a/b/c, ports
80/81), whose packets must agree with the model and with each case's own
truth table; and cnp, SIG Network's ClusterNetworkPolicy conformance tests
(network-policy-api v0.3.0, Admin and Baseline tiers, conformance/cnp), whose
own probes must agree with the test data. Each case's steps are applied
incrementally. A cell expected denied must be dropped (a refused connection
is a disagreement). The cnp suite needs 2 to 4 nodes; its nodes' InternalIPs
are the lab's node addresses.

--cni routed gives every pod a /32 route on its node (as kindnet and Calico
do); --cni bridged puts each node's pods on a Linux bridge with br_netfilter
(as flannel does). --dnat gives every pod a ClusterIP, DNATed in each node by
a kube-proxy-like table, and probes through it, so policy must be judged after
DNAT. Services in the manifests (and the one upstream case with a Service)
are always translated by that table, with or without --dnat: each is probed
per backend (the probe's source port pins the backend) from every pod through
its ClusterIP, and from an external client outside the cluster through each
node's NodePort and its load-balancer IP, and every probe must observe what
policyd explain says for the same query. SCTP cannot be probed on this kernel (no SCTP sockets): such cells are
reported as not probed.

--verdicts makes every node's table log what it drops to nfnetlink_log (every
packet, no rate limit), reads each node's log, and checks every denied TCP
and UDP probe: its first packet must have a kernel record, and the decider
the record names (the isolating NetworkPolicies of a default deny, or the
ClusterNetworkPolicy rule) must be the one policyd explain names.
--log-allowed also logs the new connections rules admit and checks the
allowed probes the same way, one record per direction a rule decided.
-o jsonl lines then carry the kernel's and explain's deciders; a missing
record or a different decider makes the command exit 1.

Needs root. Everything the lab creates is named pdlab-*; it is removed on exit,
on Ctrl-C, and at the start of the next run if a previous one crashed.`,
		Example: `  policyd lab -f examples/
  policyd lab --conformance --cni bridged --nodes 2 --dnat
  policyd lab --conformance --case 'default-deny' -o jsonl
  policyd lab --conformance --verdicts --log-allowed --case 'stacked'
  policyd lab --conformance --suite cnp --case 'AdminTier.*TCP'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runLab(cmd, o) },
	}
	f := cmd.Flags()
	o.manifests.add(f, "Kubernetes manifests to run")
	addAllReplicas(f, &o.allReplicas)
	f.BoolVar(&o.conformance, "conformance", false, "run the upstream conformance cases")
	f.StringVar(&o.suite, "suite", "all", "with --conformance: v1 (NetworkPolicy cases), cnp (ClusterNetworkPolicy tests) or all")
	f.StringVar(&o.caseFilter, "case", "", "with --conformance: only cases (of either suite) whose name matches this regular expression")
	f.StringVar(&o.cni, "cni", "routed", "CNI shape: routed or bridged")
	f.IntVar(&o.nodes, "nodes", 2, "number of nodes (pods without spec.nodeName are spread over them)")
	f.BoolVar(&o.dnat, "dnat", false, "probe through per-pod ClusterIPs DNATed by a kube-proxy-like table")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or jsonl (one line per probe)")
	f.StringSliceVar(&o.protocols, "protocols", []string{"TCP", "UDP"}, "protocols to probe")
	f.BoolVar(&o.skipBaseline, "skip-baseline", false, "with -f: do not run the step without policies first")
	f.DurationVar(&o.timeout, "probe-timeout", lab.DefaultProbeTimeout, "timeout of one probe attempt (each probe retries once)")
	f.BoolVar(&o.verdicts, "verdicts", false, "log the kernel's drops and check each denied probe's record against the decider explain names")
	f.BoolVar(&o.logAllowed, "log-allowed", false, "with --verdicts: also log allowed new connections and check the allowed probes")
	return cmd
}

func runLab(cmd *cobra.Command, o *labOptions) error {
	if !o.manifests.given() == !o.conformance {
		return &exitError{2, fmt.Errorf("give exactly one of -f/--filename and --conformance")}
	}
	if o.output != "text" && o.output != "jsonl" {
		return &exitError{2, fmt.Errorf("-o %s: want text or jsonl", o.output)}
	}
	if o.cni != string(lab.CNIRouted) && o.cni != string(lab.CNIBridged) {
		return &exitError{2, fmt.Errorf("--cni %s: want %s or %s", o.cni, lab.CNIRouted, lab.CNIBridged)}
	}
	if o.nodes < 1 {
		return &exitError{2, fmt.Errorf("--nodes must be at least 1")}
	}
	if o.logAllowed && !o.verdicts {
		return &exitError{2, fmt.Errorf("--log-allowed needs --verdicts")}
	}
	if os.Geteuid() != 0 {
		return &exitError{2, fmt.Errorf("the lab creates network namespaces: run it as root")}
	}
	cfg := runner.Config{Lab: lab.Config{CNI: lab.CNI(o.cni), DNAT: o.dnat, ProbeTimeout: o.timeout}, Verdicts: o.verdicts, LogAllowed: o.logAllowed}
	for _, p := range o.protocols {
		proto, err := cluster.ParseProtocol(p)
		if err != nil {
			return &exitError{2, fmt.Errorf("--protocols: %w", err)}
		}
		cfg.Protocols = append(cfg.Protocols, proto)
	}
	var nodes []string
	for i := 1; i <= o.nodes; i++ {
		nodes = append(nodes, fmt.Sprintf("node-%d", i))
	}

	var suites []suite
	var err error
	if o.conformance {
		suites, err = conformanceSuites(o, nodes)
		cfg.Lab.Nodes = nodes
	} else {
		var sc []runner.Scenario
		sc, err = manifestScenario(cmd, o, nodes)
		suites = []suite{{name: "manifests", scenarios: sc}}
		// A dual-stack manifest set gets a dual-stack lab.
		for _, p := range firstPods(sc) {
			for _, ip := range p.Status.PodIPs {
				cfg.Lab.IPv6 = cfg.Lab.IPv6 || strings.Contains(ip.IP, ":")
			}
		}
	}
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	w := cmd.OutOrStdout()
	var runs []suiteRun
	for _, su := range suites {
		run := suiteRun{name: su.name}
		start := time.Now()
		// Each suite has its own pods, so its own lab.
		err = runner.Run(ctx, cfg, su.scenarios, func(r runner.StepResult) {
			run.results = append(run.results, r)
			if o.output == "jsonl" {
				writeJSONL(w, su.name, r)
			} else {
				writeStepText(w, r, o.conformance)
			}
		})
		run.took = time.Since(start)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("interrupted; the lab was torn down: %w", err)
			}
			return fmt.Errorf("suite %s: %w", su.name, err)
		}
		runs = append(runs, run)
	}
	disagree := 0
	var vs runner.VerdictStats
	for _, run := range runs {
		for _, r := range run.results {
			disagree += r.Disagree
			vs.Add(r.Verdicts)
		}
	}
	if o.output == "text" {
		writeSummary(w, runs, cfg, o)
	}
	var errs []string
	if disagree > 0 {
		errs = append(errs, fmt.Sprintf("%d cells disagree: the packets did not do what the policies say", disagree))
	}
	if vs.Failed() {
		errs = append(errs, fmt.Sprintf("%d probes' kernel records name another decider than explain, %d lack one",
			vs.Denied.Disagree+vs.Allowed.Disagree, vs.Denied.Missing+vs.Allowed.Missing))
	}
	if len(errs) > 0 {
		return &exitError{exitFindings, errors.New(strings.Join(errs, "; "))}
	}
	return nil
}

// Suite names for --suite.
const (
	suiteV1  = "v1"
	suiteCNP = "cnp"
	suiteAll = "all"
)

// suite is one suite's scenarios, run in a lab of its own.
type suite struct {
	name      string
	scenarios []runner.Scenario
}

// suiteRun is what a suite's run reported.
type suiteRun struct {
	name    string
	results []runner.StepResult
	took    time.Duration
}

// conformanceSuites returns the suites --suite names, with --case applied to
// both; a suite left with no case is dropped, and none left is an error.
func conformanceSuites(o *labOptions, nodes []string) ([]suite, error) {
	if o.suite != suiteV1 && o.suite != suiteCNP && o.suite != suiteAll {
		return nil, &exitError{2, fmt.Errorf("--suite %s: want %s, %s or %s", o.suite, suiteV1, suiteCNP, suiteAll)}
	}
	re, err := regexp.Compile(o.caseFilter)
	if err != nil {
		return nil, &exitError{2, fmt.Errorf("--case: %w", err)}
	}
	var out []suite
	if o.suite != suiteCNP {
		sc, err := conformanceScenarios(re, nodes)
		if err != nil {
			return nil, err
		}
		if len(sc) > 0 {
			out = append(out, suite{suiteV1, sc})
		}
	}
	if o.suite != suiteV1 {
		sc, err := cnpScenarios(re, nodes)
		if err != nil {
			return nil, err
		}
		if len(sc) > 0 {
			out = append(out, suite{suiteCNP, sc})
		}
	}
	if len(out) == 0 {
		return nil, &exitError{2, fmt.Errorf("no case of suite %s matches %q", o.suite, o.caseFilter)}
	}
	return out, nil
}

func cnpScenarios(re *regexp.Regexp, nodes []string) ([]runner.Scenario, error) {
	tests, err := cnp.Tests()
	if err != nil {
		return nil, err
	}
	var kept []cnp.Test
	for _, t := range tests {
		if re.MatchString(t.Name) {
			kept = append(kept, t)
		}
	}
	if len(kept) == 0 {
		return nil, nil
	}
	if len(nodes) < 2 || len(nodes) > 4 {
		return nil, &exitError{2, fmt.Errorf("--nodes %d: the cnp suite needs 2 to 4 nodes (run --suite v1 for other sizes)", len(nodes))}
	}
	return runner.CNPScenarios(kept, nodes)
}

func conformanceScenarios(re *regexp.Regexp, nodes []string) ([]runner.Scenario, error) {
	cases, err := conformance.Cases()
	if err != nil {
		return nil, err
	}
	kept := cases[:0]
	for _, c := range cases {
		if re.MatchString(c.Name) {
			kept = append(kept, c)
		}
	}
	if len(kept) == 0 {
		return nil, nil
	}
	return runner.CaseScenarios(kept, nodes)
}

func manifestScenario(cmd *cobra.Command, o *labOptions, nodes []string) ([]runner.Scenario, error) {
	objs, err := manifest.LoadWith(o.manifests, cmd.InOrStdin(), manifest.Options{AllReplicas: o.allReplicas})
	if err != nil {
		return nil, err
	}
	for _, n := range objs.Notes {
		fmt.Fprintln(cmd.ErrOrStderr(), "note:", n)
	}
	pods := objs.Pods
	// Pods without a node are spread over --nodes nodes.
	i := 0
	for _, p := range pods {
		if p.Spec.NodeName == "" {
			p.Spec.NodeName = nodes[i%len(nodes)]
			i++
		}
	}
	sc := runner.Scenario{Name: strings.Join(o.manifests, " ")}
	n := len(objs.Policies) + len(objs.ClusterPolicies)
	if !o.skipBaseline && n > 0 {
		sc.Steps = append(sc.Steps, runner.Step{Name: "without policies", Namespaces: objs.Namespaces, Pods: pods, Policies: []*networkingv1.NetworkPolicy{},
			Services: objs.Services, EndpointSlices: objs.EndpointSlices})
	}
	name := fmt.Sprintf("with %d policies", len(objs.Policies))
	if len(objs.ClusterPolicies) > 0 {
		name += fmt.Sprintf(" and %d cluster network policies", len(objs.ClusterPolicies))
	}
	sc.Steps = append(sc.Steps, runner.Step{Name: name, Namespaces: objs.Namespaces, Pods: pods, Policies: objs.Policies, ClusterPolicies: objs.ClusterPolicies, Nodes: objs.Nodes,
		Services: objs.Services, EndpointSlices: objs.EndpointSlices})
	return []runner.Scenario{sc}, nil
}

func firstPods(scs []runner.Scenario) []*corev1.Pod {
	if len(scs) == 0 || len(scs[0].Steps) == 0 {
		return nil
	}
	return scs[0].Steps[0].Pods
}

func writeJSONL(w io.Writer, suiteName string, r runner.StepResult) {
	enc := json.NewEncoder(w)
	for _, c := range r.Cells {
		_ = enc.Encode(struct {
			Suite string `json:"suite"`
			Case  string `json:"case"`
			Step  int    `json:"step"`
			runner.Cell
		}{suiteName, r.Scenario, r.Index, c})
	}
}

func writeStepText(w io.Writer, r runner.StepResult, brief bool) {
	disagree := fmt.Sprintf("%d disagree", r.Disagree)
	if r.Disagree > 0 {
		disagree = fmt.Sprintf("%d DISAGREE", r.Disagree)
	}
	verdicts := ""
	if v := r.Verdicts; v.Denied.Probes+v.Allowed.Probes > 0 {
		verdicts = fmt.Sprintf("; verdicts: %d of %d agree", v.Denied.Agree+v.Allowed.Agree, v.Denied.Probes+v.Allowed.Probes)
	}
	fmt.Fprintf(w, "== %s, step %d: %s: %d cells: %d agree, %s, %d not probed; %d netlink ops, %s%s\n",
		r.Scenario, r.Index, r.Step, len(r.Cells), r.Agree, disagree, r.NotProbed, r.SyncOps, r.Duration.Round(time.Millisecond), verdicts)
	for _, inv := range r.Invalid {
		fmt.Fprintf(w, "   invalid: %s\n", inv)
	}
	expected, observed := r.Tables()
	probedExpected, _ := r.ProbedTables()
	for _, pp := range expected.Keys() {
		// Only probed cells can differ: a cell that was not probed is
		// counted as not probed, never as a disagreement.
		n, diff := 0, ""
		if pe := probedExpected[pp]; pe != nil {
			n, diff = truthtable.Diff(pe, observed[pp])
		}
		switch {
		case n > 0:
			fmt.Fprintf(w, "\n%s: %d cells differ (expected by the policies vs observed with packets):\n%s\n", pp, n, diff)
		case probedExpected[pp] == nil:
			if !brief {
				fmt.Fprintf(w, "\n%s: not probed (this kernel has no SCTP sockets); expected:\n%s", pp, expected[pp])
			}
		case !brief:
			fmt.Fprintf(w, "\n%s (observed with packets; . allowed, X denied, - not probed; rows are sources):\n%s", pp, observed[pp])
		}
	}
	v6, v6agree := 0, 0
	for _, c := range r.Cells {
		if c.Family != 6 {
			continue
		}
		v6++
		if c.Agrees() {
			v6agree++
			continue
		}
		fmt.Fprintf(w, "   IPv6: %s -> %s %s/%d: expected %v, observed %v  DISAGREE\n", c.From, c.To, c.Proto, c.Port, c.Expected, c.Observed)
	}
	if v6 > 0 && !brief {
		fmt.Fprintf(w, "\nIPv6 (the dual-stack pairs, probed over both families): %d cells, %d agree\n", v6, v6agree)
	}
	for _, c := range r.Cells {
		if c.Via == "" || brief && c.Agrees() {
			continue
		}
		mark := func(b bool) string {
			if b {
				return "."
			}
			return "X"
		}
		obs, flag := "-", ""
		if c.Probed {
			obs = mark(c.Observed)
		}
		if !c.Agrees() {
			flag = "  DISAGREE"
		}
		fmt.Fprintf(w, "   service: %s -> %s %s/%d (%s): explain %s, observed %s%s\n", c.From, c.To, c.Proto, c.Port, c.Via, mark(c.Expected), obs, flag)
	}
	for _, c := range r.Cells {
		if c.Case != nil && *c.Case != c.Expected {
			fmt.Fprintf(w, "   model vs case table: %s -> %s %s/%d: model %v, case %v\n", c.From, c.To, c.Proto, c.Port, c.Expected, *c.Case)
		}
		if c.Expected == c.Observed && c.DeniedNotByDrop() {
			fmt.Fprintf(w, "   denied, but not by a drop: %s -> %s %s/%d: %s\n", c.From, c.To, c.Proto, c.Port, c.Detail)
		}
		if c.Err != "" {
			fmt.Fprintf(w, "   lab fault: %s -> %s %s/%d: %s\n", c.From, c.To, c.Proto, c.Port, c.Err)
		}
		writeVerdictCheck(w, c)
	}
	if !brief {
		fmt.Fprintln(w)
	}
}

// writeVerdictCheck prints a probe whose kernel record is missing or names
// another decider than explain.
func writeVerdictCheck(w io.Writer, c runner.Cell) {
	if c.VerdictCheck == "" || c.VerdictCheck == runner.VerdictAgree {
		return
	}
	observed := "denied"
	if c.Observed {
		observed = "allowed"
	}
	via := ""
	if c.Via != "" {
		via = " (" + c.Via + ")"
	}
	fmt.Fprintf(w, "   verdict %s: %s -> %s %s/%d%s, %s: kernel %s", strings.ToUpper(c.VerdictCheck), c.From, c.To, c.Proto, c.Port, via, observed, c.Kernel)
	if c.KernelEgress != nil {
		fmt.Fprintf(w, " after %s", c.KernelEgress)
	}
	explained := "none"
	if c.Explained != nil {
		explained = c.Explained.String()
	}
	fmt.Fprintf(w, "; explain %s", explained)
	if c.ExplainedEgress != nil {
		fmt.Fprintf(w, " after %s", c.ExplainedEgress)
	}
	fmt.Fprintln(w)
}

func writeSummary(w io.Writer, runs []suiteRun, cfg runner.Config, o *labOptions) {
	type row struct {
		cells, agree, disagree, notProbed int
		dur                               time.Duration
	}
	families := "IPv4"
	for _, run := range runs {
		for _, r := range run.results {
			if slices.ContainsFunc(r.Cells, func(c runner.Cell) bool { return c.Family == 6 && c.Probed }) {
				families = "IPv4,IPv6"
			}
		}
	}
	fmt.Fprintf(w, "\nSummary: cni=%s nodes=%d dnat=%v protocols=%s families=%s\n", cfg.Lab.CNI, o.nodes, cfg.Lab.DNAT, strings.Join(o.protocols, ","), families)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "suite\tcase\tcells\tagree\tdisagree\tnot probed\ttime")
	var totals []string
	for _, run := range runs {
		var order []string
		rows := map[string]*row{}
		for _, r := range run.results {
			if rows[r.Scenario] == nil {
				rows[r.Scenario] = &row{}
				order = append(order, r.Scenario)
			}
			x := rows[r.Scenario]
			x.cells += len(r.Cells)
			x.agree += r.Agree
			x.disagree += r.Disagree
			x.notProbed += r.NotProbed
			x.dur += r.Duration
		}
		var t row
		for _, name := range order {
			x := rows[name]
			t.cells, t.agree, t.disagree, t.notProbed = t.cells+x.cells, t.agree+x.agree, t.disagree+x.disagree, t.notProbed+x.notProbed
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\n", run.name, name, x.cells, x.agree, x.disagree, x.notProbed, x.dur.Round(time.Millisecond))
		}
		totals = append(totals, fmt.Sprintf("TOTAL %s (%d)\t\t%d\t%d\t%d\t%d\t%s\n", run.name, len(order), t.cells, t.agree, t.disagree, t.notProbed, run.took.Round(time.Millisecond)))
	}
	for _, t := range totals {
		fmt.Fprint(tw, t)
	}
	tw.Flush()
	if !cfg.Verdicts {
		return
	}
	for _, run := range runs {
		var vs runner.VerdictStats
		for _, r := range run.results {
			vs.Add(r.Verdicts)
		}
		d := vs.Denied
		fmt.Fprintf(w, "verdicts %s: %d denied probes, %d with kernel record, %d agree, %d disagree, %d missing\n",
			run.name, d.Probes, d.Recorded, d.Agree, d.Disagree, d.Missing)
		if cfg.LogAllowed {
			a := vs.Allowed
			fmt.Fprintf(w, "verdicts %s allowed: %d allowed probes, %d decided by a rule, %d with kernel record, %d agree, %d disagree, %d missing\n",
				run.name, a.Probes, a.Decided, a.Recorded, a.Agree, a.Disagree, a.Missing)
		}
		if vs.Overruns+vs.UnknownIDs > 0 {
			fmt.Fprintf(w, "verdicts %s: %d log socket overruns, %d records with an unknown id\n", run.name, vs.Overruns, vs.UnknownIDs)
		}
	}
}
