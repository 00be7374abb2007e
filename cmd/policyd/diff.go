package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/manifest"
	"github.com/policyd/policyd/policy/explain"
)

type diffOptions struct {
	kube                kubeFlags
	oldPaths, newPaths  manifestPaths
	allReplicas         bool
	namespace, selector string
	from, to            string
	output              string
}

func newDiffCommand() *cobra.Command {
	o := &diffOptions{}
	cmd := &cobra.Command{
		Use:   "diff OLD NEW",
		Short: "What a change of policies (or pods) does to reachability: the connections it denies and allows",
		Long: `diff compares the reachability of two inputs and prints every connection
whose verdict changes: (source, destination, port, protocol) of the matrix, and
pod to Service port through its backends. Connections allowed before and denied
after come first, then those denied before and allowed after, grouped by
namespace pair, each with what decided before and after.

OLD and NEW are each a manifest file, a folder, - (stdin, one side only), or
"cluster" for the live cluster through --kubeconfig/--context (a side of its
own). --old-f and --new-f add paths to a side (repeatable: the side is their
union), so a repository of workloads and policies is compared as
  policyd diff --old-f apps/ --old-f policies-main/ --new-f apps/ --new-f policies-pr/

Pods are matched by namespace/name; pods on one side only are listed apart.
Workload manifests (Deployments, ...) count as their pods, as in explain.

Exit status: 0 nothing changes, 1 something does (a CI gate: "this change
denies 14 connections that are allowed today"), 2 bad input.`,
		Example: `  policyd diff main-branch/ pr-branch/
  policyd diff cluster ./desired/ -n shop
  policyd diff old/ new/ -o jsonl | jq -c 'select(.before and (.after|not))'`,
		Args: cobra.MaximumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDiff(cmd, o, args)
		},
	}
	o.kube.add(cmd)
	f := cmd.Flags()
	f.Var(&o.oldPaths, "old-f", "a manifest file or folder to add to OLD (repeatable)")
	f.Var(&o.newPaths, "new-f", "a manifest file or folder to add to NEW (repeatable)")
	addAllReplicas(f, &o.allReplicas)
	f.StringVarP(&o.namespace, "namespace", "n", "", "only connections with both ends in this namespace")
	f.StringVarP(&o.selector, "selector", "l", "", "only connections between pods matching this label selector at both ends")
	f.StringVar(&o.from, "from", "", "only connections from pods matching this label selector")
	f.StringVar(&o.to, "to", "", "only connections to pods matching this label selector")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text, jsonl (one change per line) or json")
	return cmd
}

func runDiff(cmd *cobra.Command, o *diffOptions, args []string) error {
	if !contains([]string{"text", "jsonl", "json"}, o.output) {
		return usagef("-o %s: want text, jsonl or json", o.output)
	}
	oldSide, newSide := append(manifestPaths{}, o.oldPaths...), append(manifestPaths{}, o.newPaths...)
	switch len(args) {
	case 2:
		oldSide, newSide = append(manifestPaths{args[0]}, oldSide...), append(manifestPaths{args[1]}, newSide...)
	case 1:
		return usagef("diff takes OLD and NEW (or --old-f and --new-f), got one argument %q", args[0])
	}
	if len(oldSide) == 0 || len(newSide) == 0 {
		return usagef("diff needs OLD and NEW: give two arguments, or --old-f and --new-f")
	}
	if contains(oldSide, "-") && contains(newSide, "-") {
		return usagef("- (stdin) can be one side only")
	}
	sels := map[string]*podSelection{}
	for _, s := range []struct{ flag, v string }{{"-l", o.selector}, {"--from", o.from}, {"--to", o.to}} {
		if s.v != "" {
			p, err := parseSelection(s.flag, s.v, o.namespace)
			if err != nil {
				return err
			}
			sels[s.flag] = p
		}
	}
	before, err := diffSide(cmd, o, "OLD", oldSide)
	if err != nil {
		return err
	}
	after, err := diffSide(cmd, o, "NEW", newSide)
	if err != nil {
		return err
	}
	d, err := explain.Diff(before, after)
	if err != nil {
		return err
	}
	keep := func(key string, sel *podSelection) bool {
		if strings.HasPrefix(key, "svc/") {
			ns := explain.NamespaceOf(key)
			return (o.namespace == "" || ns == o.namespace) && sel == nil && sels["-l"] == nil
		}
		p := after.Pod(key)
		if p == nil {
			p = before.Pod(key)
		}
		if p == nil || o.namespace != "" && p.Namespace != o.namespace {
			return false
		}
		return sels["-l"].matches(p) && sel.matches(p)
	}
	var changes []explain.Change
	for _, c := range d.Changes {
		if keep(c.From, sels["--from"]) && keep(c.To, sels["--to"]) {
			changes = append(changes, c)
		}
	}
	w := cmd.OutOrStdout()
	switch o.output {
	case "jsonl":
		enc := json.NewEncoder(w)
		for _, c := range changes {
			if err := enc.Encode(c); err != nil {
				return err
			}
		}
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if changes == nil {
			changes = []explain.Change{}
		}
		if err := enc.Encode(struct {
			Changes    []explain.Change `json:"changes"`
			OnlyBefore []string         `json:"only_before"`
			OnlyAfter  []string         `json:"only_after"`
		}{changes, orEmpty(d.OnlyBefore), orEmpty(d.OnlyAfter)}); err != nil {
			return err
		}
	default:
		writeDiffText(w, changes, d)
	}
	if len(changes) > 0 {
		return &exitError{code: exitFindings}
	}
	return nil
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// diffSide reads one side: the live cluster ("cluster") or the union of
// the manifest paths.
func diffSide(cmd *cobra.Command, o *diffOptions, name string, paths manifestPaths) (*cluster.Snapshot, error) {
	if contains(paths, "cluster") {
		if len(paths) > 1 {
			return nil, usagef("%s: \"cluster\" is a side of its own, not to be mixed with manifest paths", name)
		}
		return liveSnapshot(cmd, &o.kube)
	}
	snap, err := loadSnapshot(cmd, paths, manifest.Options{AllReplicas: o.allReplicas})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return snap, nil
}

func writeDiffText(w io.Writer, changes []explain.Change, d explain.ReachDiff) {
	denied, allowed := 0, 0
	for _, c := range changes {
		if c.Denies() {
			denied++
		} else {
			allowed++
		}
	}
	if len(changes) == 0 {
		fmt.Fprintln(w, "no connection changes its verdict")
	} else {
		fmt.Fprintf(w, "%d connection(s) allowed before are DENIED after; %d denied before are ALLOWED after\n", denied, allowed)
	}
	group := ""
	for _, c := range changes {
		head := "ALLOWED -> DENIED"
		if !c.Denies() {
			head = "DENIED -> ALLOWED"
		}
		if g := head + "  " + explain.NamespaceOf(c.From) + " -> " + explain.NamespaceOf(c.To); g != group {
			group = g
			fmt.Fprintf(w, "\n%s\n", g)
		}
		fmt.Fprintf(w, "  %s -> %s  %s/%d\n      before: %s\n      after:  %s\n", c.From, c.To, c.Protocol, c.Port, c.BeforeRule, c.AfterRule)
	}
	if len(d.OnlyBefore) > 0 {
		fmt.Fprintf(w, "\npods only in OLD (not compared): %s\n", strings.Join(d.OnlyBefore, ", "))
	}
	if len(d.OnlyAfter) > 0 {
		fmt.Fprintf(w, "\npods only in NEW (not compared): %s\n", strings.Join(d.OnlyAfter, ", "))
	}
}
