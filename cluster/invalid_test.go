package cluster_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/policyd/policyd/cluster"
)

// TestSnapshot_Invalid: the snapshot keeps its conversion errors, and
// Invalid describes each once (a policy's errors are both in Errors and on
// the policy), naming kind, object, field and value, in the same words as
// the errors' text.
func TestSnapshot_Invalid(t *testing.T) {
	t.Parallel()
	port := intstr.FromInt32(80800)
	pol := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "p"},
		Spec:       networkingv1.NetworkPolicySpec{Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: &port}}}}},
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "a"},
		Spec:       corev1.PodSpec{NodeName: "n", Containers: []corev1.Container{{Ports: []corev1.ContainerPort{{ContainerPort: 70000}}}}},
	}
	s, errs := cluster.NewSnapshot(nil, []*corev1.Pod{pod}, []*networkingv1.NetworkPolicy{pol})
	require.Len(t, errs, 2)
	assert.Equal(t, errs, s.Errors)
	assert.Equal(t, "pod x/a: spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive (the port is ignored: a named port naming it matches nothing)", errs[0].Error())
	assert.Equal(t, []cluster.Invalid{
		{Kind: "NetworkPolicy", Name: "x/p", Field: "spec.ingress[0].ports[0].port", Value: "80800", Message: "Invalid value: 80800: must be between 1 and 65535, inclusive"},
		{Kind: "Pod", Name: "x/a", Field: "spec.containers[0].ports[0].containerPort", Message: "Invalid value: 70000: must be between 1 and 65535, inclusive (the port is ignored: a named port naming it matches nothing)"},
	}, s.Invalid())
	assert.Equal(t, "NetworkPolicy x/p spec.ingress[0].ports[0].port: Invalid value: 80800: must be between 1 and 65535, inclusive", s.Invalid()[0].String())

	// ClusterNetworkPolicies' and Nodes' errors join them.
	errs = s.AddClusterPolicies(nil, []*corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "n"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "nope"}}}}})
	require.Len(t, errs, 1)
	assert.Len(t, s.Errors, 3)
	assert.Equal(t, cluster.Invalid{Kind: "Node", Name: "n", Field: "status.addresses[0].address", Message: `Invalid value: "nope" is not an IP address (the address is ignored)`}, s.Invalid()[1])

	// Valid input: nothing.
	ok, errs := cluster.NewSnapshot(nil, nil, nil)
	assert.Empty(t, errs)
	assert.Empty(t, ok.Invalid())
}
