package agent

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The informer transforms keep only what compile needs, so the agent's
// memory is bounded by the policy-relevant state of the cluster, not by pod
// specs, annotations and managed fields.

func stripMeta(m metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:              m.Name,
		Namespace:         m.Namespace,
		UID:               m.UID,
		ResourceVersion:   m.ResourceVersion,
		Generation:        m.Generation,
		Labels:            m.Labels,
		DeletionTimestamp: m.DeletionTimestamp,
		CreationTimestamp: m.CreationTimestamp,
	}
}

func stripPod(obj interface{}) (interface{}, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // tombstones and anything unexpected pass through
	}
	out := &corev1.Pod{
		ObjectMeta: stripMeta(p.ObjectMeta),
		Spec: corev1.PodSpec{
			NodeName:    p.Spec.NodeName,
			HostNetwork: p.Spec.HostNetwork,
		},
		Status: corev1.PodStatus{
			Phase:  p.Status.Phase,
			PodIP:  p.Status.PodIP,
			PodIPs: p.Status.PodIPs,
		},
	}
	for _, c := range p.Spec.Containers {
		if len(c.Ports) == 0 {
			continue
		}
		sc := corev1.Container{Name: c.Name}
		for _, cp := range c.Ports {
			sc.Ports = append(sc.Ports, corev1.ContainerPort{Name: cp.Name, ContainerPort: cp.ContainerPort, Protocol: cp.Protocol})
		}
		out.Spec.Containers = append(out.Spec.Containers, sc)
	}
	return out, nil
}

func stripNamespace(obj interface{}) (interface{}, error) {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return obj, nil
	}
	return &corev1.Namespace{ObjectMeta: stripMeta(ns.ObjectMeta)}, nil
}

func stripPolicy(obj interface{}) (interface{}, error) {
	np, ok := obj.(*networkingv1.NetworkPolicy)
	if !ok {
		return obj, nil
	}
	// The spec is what the policy is; keep it whole. The Kind is kept for
	// the Events the agent posts about invalid policies.
	return &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: stripMeta(np.ObjectMeta),
		Spec:       np.Spec,
	}, nil
}
