package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	npaclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/internal/cnpapi"
	"github.com/policyd/policyd/manifest"
)

// source is where explain and compile read the cluster from: -f/--filename
// (files, directories, or - for stdin; repeatable), else the API server.
type source struct {
	kube        kubeFlags
	manifests   manifestPaths
	allReplicas bool

	// What snapshot read, for resolving workloads (workloadPods): the
	// manifests' objects, or the API server's client.
	objs   *manifest.Objects
	client kubernetes.Interface
}

func (s *source) add(cmd *cobra.Command) {
	s.kube.add(cmd)
	s.manifests.add(cmd.Flags(), "Kubernetes manifests (Namespace, Pod, NetworkPolicy, Deployment, …) to read instead of the cluster")
	addAllReplicas(cmd.Flags(), &s.allReplicas)
}

// addAllReplicas registers --all-replicas, which the verbs that read
// manifests share.
func addAllReplicas(fs *pflag.FlagSet, v *bool) {
	fs.BoolVar(v, "all-replicas", false, "with -f: make each workload's replicas pods (up to 20 each) instead of one representative pod per Deployment, StatefulSet, DaemonSet, ReplicaSet, Job or CronJob")
}

// snapshot reads the cluster from the manifests or the API server. Notes
// and validation errors go to stderr; validation errors do not stop the
// command: the snapshot holds the invalid policies in their fail-closed form.
func (s *source) snapshot(cmd *cobra.Command) (*cluster.Snapshot, error) {
	if s.manifests.given() {
		snap, objs, err := readManifests(cmd, s.manifests, manifest.Options{AllReplicas: s.allReplicas})
		if err != nil {
			return nil, err
		}
		s.objs = objs
		writeInvalid(cmd, snap)
		return snap, nil
	}
	snap, client, err := readLive(cmd, &s.kube)
	if err != nil {
		return nil, err
	}
	s.client = client
	writeInvalid(cmd, snap)
	return snap, nil
}

// manifestPaths is a repeatable -f/--filename flag (also spelled
// --manifests): every path given is read, and the objects are their union,
// as kubectl reads repeated -f flags. A plain string flag kept only the last
// one, silently.
type manifestPaths []string

func (m *manifestPaths) String() string { return strings.Join(*m, ",") }

// Set appends one path; a comma is part of a file name, not a separator.
func (m *manifestPaths) Set(v string) error {
	if v == "" {
		return errors.New("empty path")
	}
	*m = append(*m, v)
	return nil
}

func (m *manifestPaths) Type() string { return "path" }

func (m *manifestPaths) given() bool { return len(*m) > 0 }

// add registers -f/--filename and its older spelling --manifests on fs,
// both appending to m.
func (m *manifestPaths) add(fs *pflag.FlagSet, what string) {
	fs.VarP(m, "filename", "f", what+": a file, a directory (read recursively, symlinks followed), or - for stdin; repeat it to read the union; default: read the cluster through --kubeconfig/--context")
	fs.Var(m, "manifests", "same as -f/--filename")
}

// loadSnapshot reads the union of the manifests at paths ("-" is stdin),
// and writes its invalid objects and fields to stderr.
func loadSnapshot(cmd *cobra.Command, paths manifestPaths, opts manifest.Options) (*cluster.Snapshot, error) {
	snap, _, err := readManifests(cmd, paths, opts)
	if err != nil {
		return nil, err
	}
	writeInvalid(cmd, snap)
	return snap, nil
}

// readManifests is loadSnapshot without the invalid lines: the snapshot
// keeps them (cluster.Snapshot.Invalid) for a verb that reports them its
// own way (lint). It also returns the objects read (workloads: deploy/NAME).
func readManifests(cmd *cobra.Command, paths manifestPaths, opts manifest.Options) (*cluster.Snapshot, *manifest.Objects, error) {
	objs, err := manifest.LoadWith(paths, cmd.InOrStdin(), opts)
	if err != nil {
		return nil, nil, usagef("-f %s: %w", strings.Join(paths, " -f "), err)
	}
	snap, _ := objs.Snapshot() // the errors are in snap.Errors
	writeNotes(cmd, objs.Notes)
	return snap, objs, nil
}

// writeInvalid writes each conversion error of snap to stderr as an
// "invalid:" line.
func writeInvalid(cmd *cobra.Command, snap *cluster.Snapshot) {
	for _, e := range snap.Errors {
		fmt.Fprintln(cmd.ErrOrStderr(), "invalid:", e)
	}
}

// writeNotes lists the notes with --verbose. Without it, notes about
// skipped objects (Services, Deployments: the usual company of pods in a
// manifest) become one line, and other notes (ignored fields) are listed.
func writeNotes(cmd *cobra.Command, notes []string) {
	skipped, placed, collapsed := 0, 0, 0
	for _, n := range notes {
		if !isVerbose(cmd) {
			switch {
			case strings.Contains(n, ": skipped "):
				skipped++
				continue
			case strings.Contains(n, ": no status.podIP: judged as ") || strings.Contains(n, ": no spec.nodeName: judged on node "):
				placed++
				continue
			case strings.Contains(n, " replicas, judged as one pod "):
				collapsed++
				continue
			}
		}
		fmt.Fprintln(cmd.ErrOrStderr(), "note:", n)
	}
	if placed > 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "note: %d pod(s) without an address or a node are judged where policyd lab would place them (-v lists them)\n", placed)
	}
	if collapsed > 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "note: %d workload(s) with replicas are judged as one pod each (--all-replicas makes each replica; -v lists them)\n", collapsed)
	}
	if skipped > 0 {
		what := "objects"
		if skipped == 1 {
			what = "object"
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "note: skipped %d %s of kinds policyd does not use (-v lists them)\n", skipped, what)
	}
}

// noClusterHint replaces client-go's "try setting KUBERNETES_MASTER".
const noClusterHint = "no cluster found: not running in a pod, and no kubeconfig ($KUBECONFIG, ~/.kube/config or --kubeconfig) with a usable --context; give -f PATH (or -f - for stdin) to work offline"

// liveSnapshot lists namespaces, pods and policies from the API server,
// and writes its invalid objects and fields to stderr.
func liveSnapshot(cmd *cobra.Command, k *kubeFlags) (*cluster.Snapshot, error) {
	snap, _, err := readLive(cmd, k)
	if err != nil {
		return nil, err
	}
	writeInvalid(cmd, snap)
	return snap, nil
}

// readLive is liveSnapshot without the invalid lines (see readManifests).
// It also returns the client it read the cluster with.
func readLive(cmd *cobra.Command, k *kubeFlags) (*cluster.Snapshot, kubernetes.Interface, error) {
	cfg, err := k.restConfig()
	if err != nil {
		if clusterCause(err) == "" {
			return nil, nil, usageError(errors.New(noClusterHint))
		}
		return nil, nil, usagef("%w; or give -f PATH (-f - for stdin) to work offline", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	ctx := cmd.Context()
	nsl, err := client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, nil, listError("namespaces", err)
	}
	pl, err := client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, nil, listError("pods", err)
	}
	npl, err := client.NetworkingV1().NetworkPolicies("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, nil, listError("networkpolicies", err)
	}
	nss := ptrs(nsl.Items)
	pods := ptrs(pl.Items)
	pols := ptrs(npl.Items)
	snap, _ := cluster.NewSnapshot(nss, pods, pols) // the errors are in snap.Errors
	if _, err := liveExtras(ctx, cfg, client, snap, func(w string) { fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w) }); err != nil {
		return nil, nil, err
	}
	return snap, client, nil
}

// liveExtras adds to snap what explain reads besides pods and policies:
// Nodes, Services and EndpointSlices, and ClusterNetworkPolicies in the
// version the cluster serves them (cnpapi.Served; a cluster without the CRD
// has none, and a discovery failure is an error). It returns the
// conversion errors.
func liveExtras(ctx context.Context, cfg *rest.Config, client kubernetes.Interface, snap *cluster.Snapshot, warn func(string)) ([]error, error) {
	// Nodes, Services and EndpointSlices refine the answer but are not
	// needed for one: a person whose role does not let them list these
	// (deploy/cli/explain-rbac.yaml is what the CLI reads) gets a warning
	// naming what was left out instead of no answer.
	optional := func(what, without string, err error) error {
		if apierrors.IsForbidden(err) {
			warn(fmt.Sprintf("cannot list %s (forbidden): %s; deploy/cli/explain-rbac.yaml is the role that reads everything", what, without))
			return nil
		}
		if err != nil {
			return fmt.Errorf("listing %s: %w", what, err)
		}
		return nil
	}
	nl, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err := optional("nodes", "node addresses are unknown, so traffic from nodes is judged as traffic from outside the cluster", err); err != nil {
		return nil, err
	}
	sl, err := client.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err := optional("services", "explain through a Service is not available", err); err != nil {
		return nil, err
	}
	el, err := client.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
	if err := optional("endpointslices", "Services have no backends", err); err != nil {
		return nil, err
	}
	// A discovery failure is not "no ClusterNetworkPolicies": judging
	// without them could say ALLOWED where an Admin Deny denies.
	v, err := cnpapi.Served(client.Discovery())
	if err != nil {
		return nil, fmt.Errorf("cannot tell whether the cluster serves ClusterNetworkPolicies, and a verdict without them could be wrong: %w", err)
	}
	var cnps []*npav1beta1.ClusterNetworkPolicy
	if v != cnpapi.None {
		npa, err := npaclient.NewForConfig(cfg)
		if err != nil {
			return nil, err
		}
		cl, err := cnpapi.List(ctx, npa, v, metav1.ListOptions{})
		if err != nil {
			return nil, listError(fmt.Sprintf("clusternetworkpolicies (%s)", v.GroupVersion()), err)
		}
		cnps = ptrs(cl.Items)
	}
	var nodes []*corev1.Node
	var svcs []*corev1.Service
	var eps []*discoveryv1.EndpointSlice
	if nl != nil {
		nodes = ptrs(nl.Items)
	}
	if sl != nil {
		svcs = ptrs(sl.Items)
	}
	if el != nil {
		eps = ptrs(el.Items)
	}
	errs := snap.AddClusterPolicies(cnps, nodes)
	return append(errs, snap.AddServices(svcs, eps)...), nil
}

// listError is the error of listing what an answer cannot do without; a
// Forbidden one names the role that grants what the CLI reads.
func listError(what string, err error) error {
	if apierrors.IsForbidden(err) {
		return fmt.Errorf("listing %s: %w (an answer without them would be wrong; deploy/cli/explain-rbac.yaml is the read-only role the CLI needs)", what, err)
	}
	return fmt.Errorf("listing %s: %w", what, err)
}

// clusterCause is what client-go said was wrong with the kubeconfig (a
// context or cluster it lacks), or "" when there is no configuration at
// all: client-go's message for that suggests KUBERNETES_MASTER, a hint for
// kubectl's own developers rather than for users.
func clusterCause(err error) string {
	if noCluster(err) {
		for e := err; e != nil; e = errors.Unwrap(e) {
			if clientcmd.IsEmptyConfig(e) {
				return ""
			}
		}
	}
	return err.Error()
}

// defaultNamespace is the namespace bare pod names are in: --namespace, else
// (reading a live cluster) the kubeconfig context's namespace, else "default".
func defaultNamespace(ns string, src *source) string {
	if ns != "" {
		return ns
	}
	if !src.manifests.given() {
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		if src.kube.kubeconfig != "" {
			rules.ExplicitPath = src.kube.kubeconfig
		}
		cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: src.kube.context})
		if n, _, err := cc.Namespace(); err == nil && n != "" {
			return n
		}
	}
	return metav1.NamespaceDefault
}

// qualify turns what a person wrote for one end of a connection into what
// policy/explain resolves: an IP address as it is, and a pod as
// "namespace/name". Pods are written as kubectl writes them: NAME (in ns),
// pod/NAME (also pods/ and po/), NAMESPACE/NAME, or pod/NAMESPACE/NAME (for
// a namespace that is itself called pod, pods or po).
func qualify(s, ns string) string {
	if _, err := netip.ParseAddr(s); err == nil {
		return s
	}
	for _, p := range []string{"pod/", "pods/", "po/"} {
		if rest, ok := strings.CutPrefix(s, p); ok && rest != "" {
			s = rest
			break
		}
	}
	if !strings.Contains(s, "/") {
		return ns + "/" + s
	}
	return s
}

// podSelection is a label selector over pods, limited to one namespace when
// namespace is set.
type podSelection struct {
	flag      string
	selector  labels.Selector
	namespace string
}

// parseSelection parses a -l/--from/--to value with apimachinery's label
// selector syntax (app=web, tier in (a,b), !canary).
func parseSelection(flag, value, namespace string) (*podSelection, error) {
	sel, err := labels.Parse(value)
	if err != nil {
		return nil, usagef("%s %q: %w", flag, value, err)
	}
	return &podSelection{flag: flag, selector: sel, namespace: namespace}, nil
}

func (p *podSelection) matches(pod *cluster.Pod) bool {
	if p == nil {
		return true
	}
	return (p.namespace == "" || pod.Namespace == p.namespace) && p.selector.Matches(pod.Labels)
}

// pods returns the keys of the selected pods of snap, sorted; none is a
// usage error naming the flag.
func (p *podSelection) pods(snap *cluster.Snapshot) ([]string, error) {
	var keys []string
	for _, pod := range snap.Pods {
		if !pod.HostNetwork && p.matches(pod) {
			keys = append(keys, pod.Key())
		}
	}
	sort.Strings(keys)
	if len(keys) == 0 {
		where := "in any namespace"
		if p.namespace != "" {
			where = "in namespace " + p.namespace
		}
		return nil, usagef("%s %s: no pod %s matches", p.flag, p.selector, where)
	}
	return keys, nil
}

// ptrs returns pointers to the items of a List, in order.
func ptrs[T any](items []T) []*T {
	out := make([]*T, len(items))
	for i := range items {
		out[i] = &items[i]
	}
	return out
}
