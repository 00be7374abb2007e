package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	npaclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/explain"
	"github.com/policyd/policyd/policy/lint"
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
-o jsonl as one JSON object per line, or with -o html as one self-contained
page of colour-coded grids, each cell's deciding rule in its tooltip.

Exit status: 0 when every explained connection is allowed (or with --matrix),
1 when one is denied, 2 on bad usage.`,
		Example: `  policyd explain --manifests examples/ shop/frontend-1 shop/api
  policyd explain --manifests examples/ shop/api shop/db --port 5432 -o json
  policyd explain --manifests examples/ monitoring/prometheus shop/db --trace
  policyd explain --manifests examples/ --matrix
  policyd explain --manifests examples/ --matrix -o html > matrix.html`,
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
				return runMatrix(cmd.OutOrStdout(), cmd.ErrOrStderr(), snap, o)
			}
			return runExplain(cmd.OutOrStdout(), cmd.ErrOrStderr(), snap, args[0], args[1], o)
		},
	}
	o.kube.add(cmd)
	f := cmd.Flags()
	f.StringVar(&o.manifests, "manifests", "", "file or directory of Kubernetes manifests (Namespace, Pod, NetworkPolicy); default: read the cluster through --kubeconfig/--context")
	f.Int32Var(&o.port, "port", 0, "destination port (default: every port the destination pod declares)")
	f.StringVar(&o.protocol, "protocol", "", "TCP, UDP or SCTP (default: TCP with --port, else the declared ports' protocols)")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or json (with --matrix: text, jsonl or html)")
	f.BoolVar(&o.matrix, "matrix", false, "print the whole reachability matrix")
	f.BoolVar(&o.trace, "trace", false, "also walk the compiled nftables ruleset and compare it with the model")
	return cmd
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
	extra, err := liveExtras(ctx, cfg, client, snap)
	if err != nil {
		return nil, err
	}
	for _, e := range append(errs, extra...) {
		fmt.Fprintln(cmd.ErrOrStderr(), "invalid:", e)
	}
	return snap, nil
}

// liveExtras adds to snap what explain reads besides pods and policies:
// Nodes, Services and EndpointSlices, and ClusterNetworkPolicies when the
// cluster serves them (a cluster without the CRD has none). It returns the
// conversion errors.
func liveExtras(ctx context.Context, cfg *rest.Config, client kubernetes.Interface, snap *cluster.Snapshot) ([]error, error) {
	nl, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	sl, err := client.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing services: %w", err)
	}
	el, err := client.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing endpointslices: %w", err)
	}
	var cnps []*npav1beta1.ClusterNetworkPolicy
	if res, err := client.Discovery().ServerResourcesForGroupVersion(npav1beta1.GroupVersion.String()); err == nil && slices.ContainsFunc(res.APIResources, func(r metav1.APIResource) bool { return r.Name == "clusternetworkpolicies" }) {
		npa, err := npaclient.NewForConfig(cfg)
		if err != nil {
			return nil, err
		}
		cl, err := npa.PolicyV1beta1().ClusterNetworkPolicies().List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("listing clusternetworkpolicies: %w", err)
		}
		for i := range cl.Items {
			cnps = append(cnps, &cl.Items[i])
		}
	}
	var nodes []*corev1.Node
	for i := range nl.Items {
		nodes = append(nodes, &nl.Items[i])
	}
	var svcs []*corev1.Service
	for i := range sl.Items {
		svcs = append(svcs, &sl.Items[i])
	}
	var eps []*discoveryv1.EndpointSlice
	for i := range el.Items {
		eps = append(eps, &el.Items[i])
	}
	errs := snap.AddClusterPolicies(cnps, nodes)
	return append(errs, snap.AddServices(svcs, eps)...), nil
}

func runExplain(w, errw io.Writer, snap *cluster.Snapshot, src, dst string, o *explainOptions) error {
	results, err := explain.Explain(snap, explain.Query{Src: src, Dst: dst, Port: o.port, Protocol: o.protocol, Trace: o.trace})
	if err != nil {
		return usageOr(err)
	}
	switch o.output {
	case "json":
		err = explain.WriteJSON(w, results)
	case "text":
		err = explain.WriteText(w, results)
	default:
		return &exitError{2, fmt.Errorf("-o %s: want text or json", o.output)}
	}
	if err != nil {
		return err
	}
	if err := explain.Disagreement(results); err != nil {
		return err
	}
	if src, err := explain.ResolveEndpoint(snap, src); err == nil && src.Pod != nil {
		if w := lint.DNSWarning(snap, src.Pod, lint.Options{}); w != "" {
			fmt.Fprintln(errw, "warning:", w)
		}
	}
	if !explain.AllAllowed(results) {
		return &exitError{code: 1} // the verdict is the output; nothing more to say
	}
	return nil
}

func runMatrix(w, errw io.Writer, snap *cluster.Snapshot, o *explainOptions) error {
	for _, p := range snap.Pods {
		if warn := lint.DNSWarning(snap, p, lint.Options{}); warn != "" {
			fmt.Fprintln(errw, "warning:", warn)
		}
	}
	switch o.output {
	case "jsonl":
		return explain.WriteMatrixJSONL(w, snap)
	case "text":
		return explain.WriteMatrixText(w, snap)
	case "html":
		return explain.WriteMatrixHTML(w, snap)
	}
	return &exitError{2, fmt.Errorf("-o %s: with --matrix want text, jsonl or html", o.output)}
}

// usageOr gives a usage error in the query exit status 2.
func usageOr(err error) error {
	var ue *explain.UsageError
	if errors.As(err, &ue) {
		return &exitError{2, err}
	}
	return err
}
