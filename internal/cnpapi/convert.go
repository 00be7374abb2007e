package cnpapi

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	npav1alpha2 "sigs.k8s.io/network-policy-api/apis/v1alpha2"
	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// The conversion is written out field by field, so that a field one version
// gains is a compile error or a failing test (TestToV1beta1_EveryField),
// never a value silently dropped. Nothing is shared with the input: label
// selectors and slices are deep-copied.

// ListToV1beta1 converts a v1alpha2 list.
func ListToV1beta1(in *npav1alpha2.ClusterNetworkPolicyList) *npav1beta1.ClusterNetworkPolicyList {
	out := &npav1beta1.ClusterNetworkPolicyList{
		TypeMeta: metav1.TypeMeta{APIVersion: V1beta1.GroupVersion(), Kind: Kind + "List"},
		ListMeta: *in.ListMeta.DeepCopy(),
	}
	if in.Items != nil {
		out.Items = make([]npav1beta1.ClusterNetworkPolicy, len(in.Items))
		for i := range in.Items {
			out.Items[i] = *ToV1beta1(&in.Items[i])
		}
	}
	return out
}

// ToV1beta1 converts a v1alpha2 ClusterNetworkPolicy to v1beta1: the two
// versions have one schema.
func ToV1beta1(in *npav1alpha2.ClusterNetworkPolicy) *npav1beta1.ClusterNetworkPolicy {
	return &npav1beta1.ClusterNetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: V1beta1.GroupVersion(), Kind: Kind},
		ObjectMeta: *in.ObjectMeta.DeepCopy(),
		Spec: npav1beta1.ClusterNetworkPolicySpec{
			Tier:     npav1beta1.Tier(in.Spec.Tier),
			Priority: in.Spec.Priority,
			Subject: npav1beta1.ClusterNetworkPolicySubject{
				Namespaces: in.Spec.Subject.Namespaces.DeepCopy(),
				Pods:       namespacedPod(in.Spec.Subject.Pods),
			},
			Ingress: ingressRules(in.Spec.Ingress),
			Egress:  egressRules(in.Spec.Egress),
		},
		Status: npav1beta1.ClusterNetworkPolicyStatus{Conditions: conditions(in.Status.Conditions)},
	}
}

func conditions(in []metav1.Condition) []metav1.Condition {
	if in == nil {
		return nil
	}
	out := make([]metav1.Condition, len(in))
	for i := range in {
		in[i].DeepCopyInto(&out[i])
	}
	return out
}

func namespacedPod(in *npav1alpha2.NamespacedPod) *npav1beta1.NamespacedPod {
	if in == nil {
		return nil
	}
	return &npav1beta1.NamespacedPod{
		NamespaceSelector: *in.NamespaceSelector.DeepCopy(),
		PodSelector:       *in.PodSelector.DeepCopy(),
	}
}

func ingressRules(in []npav1alpha2.ClusterNetworkPolicyIngressRule) []npav1beta1.ClusterNetworkPolicyIngressRule {
	if in == nil {
		return nil
	}
	out := make([]npav1beta1.ClusterNetworkPolicyIngressRule, len(in))
	for i, r := range in {
		out[i] = npav1beta1.ClusterNetworkPolicyIngressRule{
			Name:      r.Name,
			Action:    npav1beta1.ClusterNetworkPolicyRuleAction(r.Action),
			Protocols: protocols(r.Protocols),
		}
		if r.From != nil {
			out[i].From = make([]npav1beta1.ClusterNetworkPolicyIngressPeer, len(r.From))
			for j, p := range r.From {
				out[i].From[j] = npav1beta1.ClusterNetworkPolicyIngressPeer{
					Namespaces: p.Namespaces.DeepCopy(),
					Pods:       namespacedPod(p.Pods),
				}
			}
		}
	}
	return out
}

func egressRules(in []npav1alpha2.ClusterNetworkPolicyEgressRule) []npav1beta1.ClusterNetworkPolicyEgressRule {
	if in == nil {
		return nil
	}
	out := make([]npav1beta1.ClusterNetworkPolicyEgressRule, len(in))
	for i, r := range in {
		out[i] = npav1beta1.ClusterNetworkPolicyEgressRule{
			Name:      r.Name,
			Action:    npav1beta1.ClusterNetworkPolicyRuleAction(r.Action),
			Protocols: protocols(r.Protocols),
		}
		if r.To != nil {
			out[i].To = make([]npav1beta1.ClusterNetworkPolicyEgressPeer, len(r.To))
			for j, p := range r.To {
				out[i].To[j] = egressPeer(p)
			}
		}
	}
	return out
}

func egressPeer(p npav1alpha2.ClusterNetworkPolicyEgressPeer) npav1beta1.ClusterNetworkPolicyEgressPeer {
	out := npav1beta1.ClusterNetworkPolicyEgressPeer{
		Namespaces: p.Namespaces.DeepCopy(),
		Pods:       namespacedPod(p.Pods),
		Nodes:      p.Nodes.DeepCopy(),
	}
	if p.Networks != nil {
		out.Networks = make([]npav1beta1.CIDR, len(p.Networks))
		for k, c := range p.Networks {
			out.Networks[k] = npav1beta1.CIDR(c)
		}
	}
	if p.DomainNames != nil {
		out.DomainNames = make([]npav1beta1.DomainName, len(p.DomainNames))
		for k, d := range p.DomainNames {
			out.DomainNames[k] = npav1beta1.DomainName(d)
		}
	}
	return out
}

func protocols(in []npav1alpha2.ClusterNetworkPolicyProtocol) []npav1beta1.ClusterNetworkPolicyProtocol {
	if in == nil {
		return nil
	}
	out := make([]npav1beta1.ClusterNetworkPolicyProtocol, len(in))
	for i, p := range in {
		out[i].DestinationNamedPort = p.DestinationNamedPort
		if p.TCP != nil {
			out[i].TCP = &npav1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: port(p.TCP.DestinationPort)}
		}
		if p.UDP != nil {
			out[i].UDP = &npav1beta1.ClusterNetworkPolicyProtocolUDP{DestinationPort: port(p.UDP.DestinationPort)}
		}
		if p.SCTP != nil {
			out[i].SCTP = &npav1beta1.ClusterNetworkPolicyProtocolSCTP{DestinationPort: port(p.SCTP.DestinationPort)}
		}
	}
	return out
}

func port(in *npav1alpha2.Port) *npav1beta1.Port {
	if in == nil {
		return nil
	}
	out := &npav1beta1.Port{Number: in.Number}
	if in.Range != nil {
		out.Range = &npav1beta1.PortRange{Start: in.Range.Start, End: in.Range.End}
	}
	return out
}
