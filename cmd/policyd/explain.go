package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/conformance/truthtable"
	"github.com/policyd/policyd/policy/explain"
	"github.com/policyd/policyd/policy/lint"
	"github.com/policyd/policyd/policy/model"
)

type explainOptions struct {
	src       source
	namespace string
	port      string
	protocol  string
	output    string
	matrix    bool
	services  bool
	trace     bool
	// from, to and selector are label selectors (-l applies to both ends).
	from, to, selector string
	budget             budgetFlags
}

func newExplainCommand() *cobra.Command {
	o := &explainOptions{}
	cmd := &cobra.Command{
		Use:   "explain SRC DST | explain --from SELECTOR --to SELECTOR | explain --matrix",
		Short: "Say whether traffic between two pods is allowed, and which policy and rule decide it",
		Long: `Explain whether SRC may open a connection to DST, and why.

SRC and DST are pods, workloads or IP addresses. A pod is written as kubectl
writes it: NAME or pod/NAME (in --namespace), or NAMESPACE/NAME. A workload,
TYPE/NAME in --namespace (deploy/web, sts/db, ds/, rs/ or job/), stands for
every pod its selector selects, each explained as --from/--to would (a
namespace named like a type is written pod/NAMESPACE/NAME). The cluster is read
from the API server (--kubeconfig, --context, as kubectl does), or offline
from -f/--filename (files, directories, or - for stdin; repeat it for a union, e.g. from
kubectl get pods,networkpolicies,namespaces -A -o yaml).

The verdict comes first, then, for each direction, whether the pod is
isolated and by which policies, and the rule that admitted the traffic, or
the rule that came closest and what did not match. Traffic is allowed only
if the source's egress and the destination's ingress both allow it.

Without --port, every port the destination pod declares in its
containerPorts is explained. With --trace, the nftables ruleset policyd
compiles for the nodes on the path is walked for the same packet and shown
beside the model's reasons; a disagreement between the two is reported
loudly and makes the command fail.

--from SELECTOR and --to SELECTOR (label selectors, as kubectl -l takes
them) stand for SRC and DST: every selected source is explained against
every selected destination, e.g. --from app=web --to app=db -n shop; give
one of them and the other end as an argument (explain --from app=web
shop/db). With --namespace they select in that namespace only, else in all.

--matrix prints the reachability of every ordered pod pair (not a pod to
itself) for every port/protocol the destination declares: as truth tables
(. allowed, X denied; rows are sources, columns destinations), or with
-o jsonl as one JSON object per line, or with -o html as one self-contained
page of colour-coded grids, each cell's deciding rule in its tooltip. -n, -l,
--from and --to narrow it:
-n to one namespace, -l to the pods it selects at both ends, --from to the
rows, --to to the columns.

A policy the node judging a direction quarantines (over the budgets, as the
agent decides with the same flags) is judged in its fail-closed form, and
the direction says QUARANTINED (JSON: "quarantined"); --matrix judges its
cells so too (-o html draws the policies as written).

Exit status: 0 when every explained connection is allowed (and always with
--matrix), 1 when one is denied or --trace finds a disagreement, 2 on bad
usage or input (an unknown pod, a bad --port, no cluster found), 3 when the
API server cannot be read.`,
		Example: `  policyd explain -f examples/ shop/frontend-1 shop/api
  policyd explain -f examples/ -n shop frontend-1 api --port 9090
  policyd explain -n shop deploy/frontend sts/db --port 5432
  policyd explain -f examples/ shop/api shop/db --port 5432 -o yaml
  policyd explain -f examples/ -n shop --from app=frontend --to app=db
  policyd explain -f examples/ monitoring/prometheus shop/db --trace
  policyd explain -f examples/ --matrix -n shop
  policyd explain -f examples/ --matrix -o html > matrix.html
  kubectl get pods,networkpolicies,namespaces -A -o yaml | policyd explain -f - shop/frontend-1 shop/api
  kubectl policyd explain -n shop frontend-1 api`,
		Args: func(cmd *cobra.Command, args []string) error {
			if o.matrix {
				if len(args) != 0 {
					return fmt.Errorf("--matrix takes no SRC DST (narrow it with -n, -l, --from, --to)")
				}
				return nil
			}
			want := 2
			if o.from != "" {
				want--
			}
			if o.to != "" {
				want--
			}
			if len(args) != want {
				return fmt.Errorf("%s, got %d arguments", o.wantArgs(), len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(cmd); err != nil {
				return err
			}
			snap, err := o.src.snapshot(cmd)
			if err != nil {
				return err
			}
			if o.matrix {
				return runMatrix(cmd.OutOrStdout(), cmd.ErrOrStderr(), snap, o)
			}
			return runExplain(cmd, snap, args, o)
		},
	}
	o.src.add(cmd)
	f := cmd.Flags()
	f.StringVarP(&o.namespace, "namespace", "n", "", "namespace of pods written without one (default: the kubeconfig context's, else default); with -l, --from, --to, --matrix: only this namespace")
	f.StringVar(&o.port, "port", "", "destination port: a number 1-65535, or a name (the destination pod's container port, or the Service's port, of that name) (default: every port the destination pod declares)")
	f.StringVar(&o.protocol, "protocol", "", "TCP, UDP or SCTP (default: TCP with --port, else the declared ports' protocols)")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text, json or yaml (with --matrix: text, jsonl, json, yaml or html)")
	f.BoolVar(&o.matrix, "matrix", false, "print the whole reachability matrix")
	f.BoolVar(&o.services, "services", false, "with --matrix: also every pod to every Service port, through its backends")
	f.BoolVar(&o.trace, "trace", false, "also walk the compiled nftables ruleset and compare it with the model")
	f.StringVar(&o.from, "from", "", "label selector for the sources, instead of SRC (e.g. app=web)")
	f.StringVar(&o.to, "to", "", "label selector for the destinations, instead of DST (e.g. app=db)")
	f.StringVarP(&o.selector, "selector", "l", "", "with --matrix: label selector for the pods at both ends")
	o.budget.add(cmd)
	return cmd
}

func (o *explainOptions) wantArgs() string {
	switch {
	case o.from != "" && o.to != "":
		return "with --from and --to, want no SRC DST"
	case o.from != "":
		return "with --from, want DST only"
	case o.to != "":
		return "with --to, want SRC only"
	}
	return "want SRC DST (pod, namespace/pod or IP)"
}

// validate checks every flag before anything is read.
func (o *explainOptions) validate(cmd *cobra.Command) error {
	if cmd.Flags().Changed("port") {
		if _, _, err := parsePort(o.port); err != nil {
			return err
		}
	}
	if o.protocol != "" {
		if _, err := cluster.ParseProtocol(o.protocol); err != nil {
			return usagef("--protocol: %w", err)
		}
	}
	outputs := []string{"text", "json", "yaml"}
	if o.matrix {
		outputs = []string{"text", "jsonl", "json", "yaml", "html"}
	}
	if !contains(outputs, o.output) {
		return usagef("-o %s: want one of %v", o.output, outputs)
	}
	if o.selector != "" && !o.matrix {
		return usagef("-l/--selector narrows --matrix; for SRC and DST use --from and --to")
	}
	if o.matrix && (o.trace || cmd.Flags().Changed("port") || o.protocol != "") {
		return usagef("--matrix covers every declared port and takes no --port, --protocol or --trace")
	}
	for _, s := range []struct{ flag, v string }{{"--from", o.from}, {"--to", o.to}, {"-l", o.selector}} {
		if s.v != "" {
			if _, err := parseSelection(s.flag, s.v, ""); err != nil {
				return err
			}
		}
	}
	return nil
}

// whyNoCells says why a whole-cluster matrix has no cell: the pods there
// are (a matrix needs two pods, with addresses, not hostNetwork).
func whyNoCells(snap *cluster.Snapshot) string {
	var pods, hostNet, noAddr int
	for _, p := range snap.Pods {
		switch {
		case p.HostNetwork:
			hostNet++
		case len(p.IPs) == 0:
			noAddr++
		default:
			pods++
		}
	}
	return fmt.Sprintf("the input has %d pod(s) with an address, %d without one and %d hostNetwork pod(s) (a matrix needs two pods that are not hostNetwork); give Pods or workloads (Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs)", pods, noAddr, hostNet)
}

// parsePort reads --port: a number from 1 to 65535, or a port name as
// containers and Services spell them (IANA_SVC_NAME: "http", "metrics").
// The empty string is no port.
func parsePort(v string) (int32, string, error) {
	if v == "" {
		return 0, "", nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 1 || n > 65535 {
			return 0, "", usagef("--port %d: want a port from 1 to 65535, or a port name", n)
		}
		return int32(n), "", nil
	}
	if errs := validation.IsValidPortName(v); len(errs) > 0 {
		return 0, "", usagef("--port %q: neither a number nor a port name: %s", v, strings.Join(errs, "; "))
	}
	return 0, v, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// ends returns the sources and destinations to explain: from the arguments
// (qualified with the default namespace; a workload, deploy/NAME, stands
// for its pods) or the --from and --to selectors. many is true when an end
// may stand for several pods (a selector or a workload).
func (o *explainOptions) ends(ctx context.Context, snap *cluster.Snapshot, args []string) (srcs, dsts []string, many bool, err error) {
	ns := defaultNamespace(o.namespace, &o.src)
	many = o.from != "" || o.to != ""
	pick := func(flag, sel string) ([]string, error) {
		if sel == "" {
			arg := args[0]
			args = args[1:]
			if w, ok := parseWorkloadRef(arg, ns); ok {
				many = true
				return o.src.workloadPods(ctx, snap, w)
			}
			return []string{qualify(arg, ns)}, nil
		}
		p, err := parseSelection(flag, sel, o.namespace)
		if err != nil {
			return nil, err
		}
		return p.pods(snap)
	}
	if srcs, err = pick("--from", o.from); err != nil {
		return nil, nil, false, err
	}
	if dsts, err = pick("--to", o.to); err != nil {
		return nil, nil, false, err
	}
	return srcs, dsts, many, nil
}

func runExplain(cmd *cobra.Command, snap *cluster.Snapshot, args []string, o *explainOptions) error {
	srcs, dsts, selected, err := o.ends(cmd.Context(), snap, args)
	if err != nil {
		return err
	}
	budget, err := o.budget.budget()
	if err != nil {
		return err
	}
	var results []explain.Result
	for _, src := range srcs {
		for _, dst := range dsts {
			if src == dst && selected {
				continue // a pod to itself is always allowed
			}
			port, name, _ := parsePort(o.port)
			r, err := explain.Explain(snap, explain.Query{Src: src, Dst: dst, Port: port, PortName: name, Protocol: o.protocol, Trace: o.trace, Budget: budget})
			var ue *explain.UsageError
			if selected && errors.As(err, &ue) {
				fmt.Fprintf(cmd.ErrOrStderr(), "note: %s -> %s not explained: %v\n", src, dst, err)
				continue
			}
			if err != nil {
				return usageOr(err)
			}
			results = append(results, r...)
		}
	}
	if len(results) == 0 {
		return usagef("--from %q --to %q: no connection to explain (every selected pair was skipped)", o.from, o.to)
	}
	w := cmd.OutOrStdout()
	switch o.output {
	case "json":
		err = explain.WriteJSON(w, results)
	case "yaml":
		err = writeYAML(w, results)
	default:
		err = explain.WriteText(w, results)
	}
	if err != nil {
		return err
	}
	if err := explain.Disagreement(results); err != nil {
		return &exitError{exitFindings, err}
	}
	warned := map[string]bool{}
	for _, r := range results {
		if p := snap.Pod(r.From); p != nil && !warned[r.From] {
			warned[r.From] = true
			if w := lint.DNSWarning(snap, p, lint.Options{}); w != "" {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
			}
		}
	}
	if !explain.AllAllowed(results) {
		return &exitError{code: exitFindings} // the verdict is the output; nothing more to say
	}
	return nil
}

func runMatrix(w, errw io.Writer, snap *cluster.Snapshot, o *explainOptions) error {
	for _, p := range snap.Pods {
		if (o.namespace == "" || p.Namespace == o.namespace) && !p.HostNetwork {
			if warn := lint.DNSWarning(snap, p, lint.Options{}); warn != "" {
				fmt.Fprintln(errw, "warning:", warn)
			}
		}
	}
	if o.output == "html" {
		if o.namespace != "" || o.selector != "" || o.from != "" || o.to != "" {
			return usagef("-o html draws the whole cluster: -n, -l, --from and --to do not apply to it")
		}
		return explain.WriteMatrixHTML(w, snap)
	}
	var rows, cols, both *podSelection
	var err error
	if o.from != "" {
		if rows, err = parseSelection("--from", o.from, o.namespace); err != nil {
			return err
		}
	}
	if o.to != "" {
		if cols, err = parseSelection("--to", o.to, o.namespace); err != nil {
			return err
		}
	}
	if o.selector != "" {
		if both, err = parseSelection("-l", o.selector, o.namespace); err != nil {
			return err
		}
	}
	keep := map[string]*cluster.Pod{}
	for _, p := range snap.Pods {
		keep[p.Key()] = p
	}
	in := func(key string, sels ...*podSelection) bool {
		p := keep[key]
		if p == nil {
			return false
		}
		if o.namespace != "" && p.Namespace != o.namespace {
			return false
		}
		for _, s := range sels {
			if !s.matches(p) {
				return false
			}
		}
		return true
	}
	budget, err := o.budget.budget()
	if err != nil {
		return err
	}
	var cells []model.Cell
	for _, c := range explain.QuarantineView(snap, budget).Matrix() {
		if in(c.From, rows, both) && in(c.To, cols, both) {
			cells = append(cells, c)
		}
	}
	if len(cells) == 0 && (o.namespace != "" || rows != nil || cols != nil || both != nil) {
		return usagef("--matrix: no pod pair matches -n %q -l %q --from %q --to %q", o.namespace, o.selector, o.from, o.to)
	}
	if len(cells) == 0 {
		return usagef("--matrix: no pair of pods to judge: %s", whyNoCells(snap))
	}
	var svcCells []explain.ServiceCell
	if o.services {
		all, err := explain.ServiceMatrix(snap)
		if err != nil {
			return err
		}
		for _, c := range all {
			// --to selects pods, not Services: -n and --from narrow the sources.
			if in(c.From, rows, both) && (o.namespace == "" || strings.HasPrefix(c.To, "svc/"+o.namespace+"/")) {
				svcCells = append(svcCells, c)
			}
		}
	}
	switch o.output {
	case "jsonl":
		enc := json.NewEncoder(w)
		for _, c := range cells {
			if err := enc.Encode(c); err != nil {
				return err
			}
		}
		for _, c := range svcCells {
			if err := enc.Encode(c); err != nil {
				return err
			}
		}
		return nil
	case "json", "yaml":
		var v any = cells
		if o.services {
			v = map[string]any{"pods": cells, "services": svcCells}
		}
		if o.output == "yaml" {
			return writeYAML(w, v)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	if _, err = fmt.Fprint(w, truthtable.FromCells(cells).String()); err != nil {
		return err
	}
	if len(svcCells) > 0 {
		fmt.Fprintln(w, "\nServices (allowed when every backend is; counts are backends allowed of backends):")
		for _, c := range svcCells {
			v := "X"
			if c.Allowed {
				v = "."
			}
			fmt.Fprintf(w, "%s  %s -> %s %s/%d  %d of %d\n", v, c.From, c.To, c.Protocol, c.Port, c.AllowedBackends, c.Backends)
		}
	}
	return nil
}

// writeYAML writes v as YAML through its JSON form, so that the YAML has
// the same fields as -o json (docs/explain-json.md).
func writeYAML(w io.Writer, v any) error {
	b, err := yaml.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// usageOr gives a usage error in the query exit status 2.
func usageOr(err error) error {
	var ue *explain.UsageError
	if errors.As(err, &ue) {
		return usageError(err)
	}
	return err
}
