package main

import (
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/spf13/cobra"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/manifest"
	"github.com/policyd/policyd/policy/lint"
)

type lintOptions struct {
	kube        kubeFlags
	manifests   manifestPaths
	allReplicas bool
	output      string
	dnsService  string
	dnsAddrs    []string
	budget      budgetFlags
}

func newLintCommand() *cobra.Command {
	o := &lintOptions{}
	cmd := &cobra.Command{
		Use:   "lint [-f PATH...]",
		Short: "Report invalid objects, and policies that are valid but probably not what was meant",
		Long: `Report, for the cluster read from the API server (--kubeconfig, --context) or
offline from -f/--filename:

  invalid               an object or field the API server would refuse (a port
                        80800, protocol tcp, endPort below port, a
                        ClusterNetworkPolicy action Drop), named by its field
                        path; it is enforced in its fail-closed form, which
                        may deny more than was meant and never allows more
  egress-without-dns    a policy isolates a pod's egress and nothing lets it
                        reach the cluster DNS on UDP and TCP 53
  selects-no-pod        a policy (or ClusterNetworkPolicy) selects no pod
  peer-selects-nothing  a pod peer selects no pod
  named-port-unserved   a named port no candidate pod declares
  shadowed-rule         a rule another rule makes redundant, or a
                        ClusterNetworkPolicy rule after one that matches all
  quarantined           a policy over the budgets on some node, enforced
                        there in its fail-closed form (as the agent would
                        with the same --max-*/--memory-limit flags)

The cluster DNS is --dns-service (default kube-system/kube-dns) or the
addresses given with --dns. docs/lint.md describes each finding. Exit
status: 0 no findings, 1 findings (an invalid one included), 2 usage.`,
		Example: `  policyd lint -f examples/
  policyd lint -f examples/ -o json
  policyd lint --dns 10.96.0.10`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.output != "text" && o.output != "json" {
				return &exitError{2, fmt.Errorf("-o %s: want text or json", o.output)}
			}
			budget, err := o.budget.budget()
			if err != nil {
				return err
			}
			opts := lint.Options{DNSService: o.dnsService, Budget: budget}
			for _, s := range o.dnsAddrs {
				a, err := netip.ParseAddr(s)
				if err != nil {
					return &exitError{2, fmt.Errorf("--dns %q: %w", s, err)}
				}
				opts.DNSAddrs = append(opts.DNSAddrs, a.Unmap())
			}
			var snap *cluster.Snapshot
			if o.manifests.given() {
				snap, _, err = readManifests(cmd, o.manifests, manifest.Options{AllReplicas: o.allReplicas})
			} else {
				snap, _, err = readLive(cmd, &o.kube)
			}
			if err != nil {
				return err
			}
			findings := lint.Lint(snap, opts)
			w := cmd.OutOrStdout()
			if o.output == "json" {
				if findings == nil {
					findings = []lint.Finding{}
				}
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				if err := enc.Encode(findings); err != nil {
					return err
				}
			} else {
				for _, f := range findings {
					fmt.Fprintln(w, f)
				}
				if len(findings) == 0 {
					fmt.Fprintln(w, "no findings")
				}
			}
			if len(findings) > 0 {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	o.kube.add(cmd)
	f := cmd.Flags()
	o.manifests.add(f, "Kubernetes manifests to lint instead of the cluster")
	addAllReplicas(f, &o.allReplicas)
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	f.StringVar(&o.dnsService, "dns-service", lint.DefaultDNSService, "the cluster DNS Service, namespace/name")
	f.StringSliceVar(&o.dnsAddrs, "dns", nil, "cluster DNS server addresses, instead of --dns-service (repeatable)")
	o.budget.add(cmd)
	return cmd
}
