package agent_test

import (
	"context"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	npaclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/policyd/policyd/agent"
	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/selectors"
)

// freshCompile reads the whole API state (every namespace, pod,
// NetworkPolicy, Node and, when served, ClusterNetworkPolicy) and compiles
// node's table from nothing, with the options an agent without
// --pod-network uses: what the agent's table must equal once it has caught
// up. cnpc may be nil when ClusterNetworkPolicies are not served.
func freshCompile(t testing.TB, c kubernetes.Interface, cnpc npaclient.Interface, node string) *ruleset.Ruleset {
	t.Helper()
	ctx := context.Background()
	nsl, err := c.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	pl, err := c.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	npl, err := c.NetworkingV1().NetworkPolicies("").List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	nl, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
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
	var nodes []*corev1.Node
	for i := range nl.Items {
		nodes = append(nodes, &nl.Items[i])
	}
	// Conversion errors are reported by the agent and enforced
	// fail-closed by both sides alike: not the concern here.
	snap, _ := cluster.NewSnapshot(nss, pods, pols)
	var cnps []*npav1beta1.ClusterNetworkPolicy
	if cnpc != nil {
		if cl, err := cnpc.PolicyV1beta1().ClusterNetworkPolicies().List(ctx, metav1.ListOptions{}); err == nil {
			for i := range cl.Items {
				cnps = append(cnps, &cl.Items[i])
			}
		}
	}
	_ = snap.AddClusterPolicies(cnps, nodes)
	idx := selectors.FromSnapshot(snap)
	cmp := &compile.Compiler{Options: compile.Options{PodNetwork: agent.PodNetworkOf(nil, idx.Nodes())}}
	rs, err := cmp.Compile(idx, node)
	require.NoError(t, err)
	return rs
}

// normalizeListing is `nft list table` output with its blocks (sets, maps,
// chains) sorted and the elements of each set sorted, so that tables with
// the same content compare equal whatever order their objects were created
// in. Rule order within a chain is kept.
func normalizeListing(s string) string {
	var blocks, cur []string
	lines := strings.Split(s, "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		switch {
		case strings.HasPrefix(line, "\t") && !strings.HasPrefix(line, "\t\t") && strings.HasSuffix(line, "{"):
			cur = []string{line}
		case line == "\t}":
			blocks = append(blocks, strings.Join(append(cur, line), "\n"))
			cur = nil
		case cur != nil && strings.HasPrefix(strings.TrimSpace(line), "elements = {"):
			var sb strings.Builder
			sb.WriteString(strings.TrimSpace(line))
			for !strings.HasSuffix(strings.TrimSpace(lines[i]), "}") && i+1 < len(lines) {
				i++
				sb.WriteString(" " + strings.TrimSpace(lines[i]))
			}
			text := strings.TrimSuffix(strings.TrimPrefix(sb.String(), "elements = {"), "}")
			elems := strings.Split(text, ",")
			for j := range elems {
				elems[j] = strings.TrimSpace(elems[j])
			}
			sort.Strings(elems)
			cur = append(cur, "\t\telements = { "+strings.Join(elems, ", ")+" }")
		case cur != nil && line != "":
			cur = append(cur, line)
		}
	}
	sort.Strings(blocks)
	return strings.Join(blocks, "\n")
}
