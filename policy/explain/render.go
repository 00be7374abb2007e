package explain

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/conformance/truthtable"
	"github.com/policyd/policyd/policy/model"
)

// WriteJSON writes results as one indented JSON array, the form documented
// in docs/explain-json.md.
func WriteJSON(w io.Writer, results []Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(results)
}

// WriteText writes results for a person: per result, the verdict line, then
// each direction's verdict with the policy and rule behind it (or the
// nearest miss), then the trace when there is one. Results are separated by
// a blank line.
func WriteText(w io.Writer, results []Result) error {
	var b strings.Builder
	for i, r := range results {
		if i > 0 {
			b.WriteString("\n")
		}
		if sp := r.Service; sp != nil && (i == 0 || results[i-1].Service == nil || !sameServicePort(results[i-1].Service, sp)) {
			addr := ""
			if sp.Address != "" {
				addr = " at " + sp.Address
			}
			fmt.Fprintf(&b, "SERVICE %s %s/%d%s: %d of %d backends allowed (%d ready)\n\n", sp.Service, sp.Protocol, sp.Port, addr, sp.Allowed, sp.Backends, sp.Ready)
		}
		writeResult(&b, r)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func sameServicePort(a, b *ServicePath) bool {
	return a.Service == b.Service && a.Port == b.Port && a.Protocol == b.Protocol
}

func writeResult(w *strings.Builder, e Result) {
	verdict := "ALLOWED"
	if !e.Allowed {
		verdict = "DENIED"
	}
	fmt.Fprintf(w, "%s  %s -> %s  %s/%d\n", verdict, e.From, e.To, e.Protocol, e.Port)
	if sp := e.Service; sp != nil {
		fmt.Fprintf(w, "  via     svc/%s %s/%d: %s\n", sp.Service, sp.Protocol, sp.Port, sp.Note)
	}
	if hp := e.HostPort; hp != nil {
		fmt.Fprintf(w, "  via     %s:%d: %s\n", hp.Address, hp.HostPort, hp.Note)
	}
	for _, d := range []model.Direction{e.Egress, e.Ingress} {
		who := d.Pod
		if who == "" {
			who = "not a pod"
		}
		for _, ps := range d.Passed {
			if ps.Tier == "Admin" {
				fmt.Fprintf(w, "  %-7s %s: passed to NetworkPolicies by %s\n", d.Direction, who, describeMarkedClusterRule(ps, e.Invalid))
			}
		}
		switch {
		case d.ClusterRule != nil:
			verb := "DENIES"
			if d.Allowed {
				verb = "allows"
			}
			fmt.Fprintf(w, "  %-7s %s: %s, by %s\n", d.Direction, who, verb, describeMarkedClusterRule(*d.ClusterRule, e.Invalid))
		case !d.Isolated || (d.Allowed && d.Match == nil):
			// The reason starts "allowed: "; the verb already says it.
			fmt.Fprintf(w, "  %-7s %s: allows: %s\n", d.Direction, who, strings.TrimPrefix(d.Reason, "allowed: "))
		case d.Allowed:
			fmt.Fprintf(w, "  %-7s %s: allows, by %s\n", d.Direction, who, d.Match)
			fmt.Fprintf(w, "          isolated by %s\n", strings.Join(d.Policies, ", "))
		default:
			fmt.Fprintf(w, "  %-7s %s: DENIES: isolated by %s, and none of their %s rules admits this\n", d.Direction, who, strings.Join(d.Policies, ", "), d.Direction)
			if d.NearestMiss != nil {
				fmt.Fprintf(w, "          nearest miss: %s: %s\n", d.NearestMiss.RuleRef, d.NearestMiss.Reason)
			}
		}
		for _, qn := range d.Quarantined {
			fmt.Fprintf(w, "          QUARANTINED: %s\n", qn.Message)
		}
		if len(d.Claimants) > 1 {
			fmt.Fprintf(w, "          WARNING: pods %s all claim this address; it is policed as the strictest of them (allowed only where each one's policies allow)\n", strings.Join(d.Claimants, ", "))
		}
	}
	for _, v := range e.Invalid {
		fmt.Fprintf(w, "  invalid: %s\n", v)
	}
	if len(e.Invalid) > 0 {
		fmt.Fprintln(w, "          (each invalid object is judged in its fail-closed form: it may deny more than its author meant, never allow more)")
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

// WriteMatrixText writes the reachability matrix of snap (model.Matrix) as
// truth tables, one per (port, protocol): "." allowed, "X" denied, rows are
// sources, columns destinations.
func WriteMatrixText(w io.Writer, snap *cluster.Snapshot) error {
	_, err := fmt.Fprint(w, truthtable.FromCells(model.Matrix(snap)).String())
	return err
}

// WriteMatrixJSONL writes the reachability matrix of snap (model.Matrix) as
// one JSON object per line and cell, the form documented in
// docs/explain-json.md.
func WriteMatrixJSONL(w io.Writer, snap *cluster.Snapshot) error {
	enc := json.NewEncoder(w)
	for _, c := range model.Matrix(snap) {
		if err := enc.Encode(c); err != nil {
			return err
		}
	}
	return nil
}

// describeClusterRule renders `Admin ClusterNetworkPolicy x (priority 10)
// ingress[0] "name": Deny`.
func describeClusterRule(r model.ClusterRuleRef) string {
	name := ""
	if r.Name != "" {
		name = fmt.Sprintf(" %q", r.Name)
	}
	return fmt.Sprintf("%s ClusterNetworkPolicy %s (priority %d) %s[%d]%s: %s", r.Tier, r.Policy, r.Priority, r.Direction, r.Rule, name, r.Action)
}
