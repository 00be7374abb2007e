package cluster_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/policyd/policyd/cluster"
)

func cnp(tweak func(*npav1beta1.ClusterNetworkPolicySpec)) *npav1beta1.ClusterNetworkPolicy {
	all := metav1.LabelSelector{}
	c := &npav1beta1.ClusterNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "c"},
		Spec: npav1beta1.ClusterNetworkPolicySpec{
			Tier: npav1beta1.AdminTier, Priority: 10,
			Subject: npav1beta1.ClusterNetworkPolicySubject{Namespaces: &all},
			Ingress: []npav1beta1.ClusterNetworkPolicyIngressRule{{
				Name: "r", Action: npav1beta1.ClusterNetworkPolicyRuleActionAccept,
				From: []npav1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: &all}},
			}},
		},
	}
	tweak(&c.Spec)
	return c
}

// TestConvertClusterPolicy_FailsClosed: every invalid part is reported with
// the object and field, and read so that it can only deny more.
func TestConvertClusterPolicy_FailsClosed(t *testing.T) {
	t.Parallel()
	bad := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Near"}}}
	deny, pass := npav1beta1.ClusterNetworkPolicyRuleActionDeny, npav1beta1.ClusterNetworkPolicyRuleActionPass
	tests := []struct {
		name  string
		tweak func(*npav1beta1.ClusterNetworkPolicySpec)
		path  string
		check func(t *testing.T, p *cluster.ClusterPolicy)
	}{
		{"Accept with a bad peer matches nothing", func(s *npav1beta1.ClusterNetworkPolicySpec) {
			s.Ingress[0].From = []npav1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: bad}}
		}, "spec.ingress[0].from[0].namespaces", func(t *testing.T, p *cluster.ClusterPolicy) {
			r := p.Ingress[0]
			assert.Equal(t, cluster.ActionAccept, r.Action)
			assert.Empty(t, r.Peers)
			assert.False(t, r.MatchAll)
		}},
		{"Deny with a bad peer denies everything", func(s *npav1beta1.ClusterNetworkPolicySpec) {
			s.Ingress[0].Action = deny
			s.Ingress[0].From = append(s.Ingress[0].From, npav1beta1.ClusterNetworkPolicyIngressPeer{})
		}, "spec.ingress[0].from[1]", func(t *testing.T, p *cluster.ClusterPolicy) {
			assert.Equal(t, cluster.ClusterRule{Name: "r", Action: cluster.ActionDeny, MatchAll: true}, p.Ingress[0])
		}},
		{"Pass with a bad port denies everything", func(s *npav1beta1.ClusterNetworkPolicySpec) {
			s.Ingress[0].Action = pass
			s.Ingress[0].Protocols = []npav1beta1.ClusterNetworkPolicyProtocol{{TCP: &npav1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: &npav1beta1.Port{Number: 70000}}}}
		}, "spec.ingress[0].protocols[0].tcp.destinationPort.number", func(t *testing.T, p *cluster.ClusterPolicy) {
			assert.Equal(t, cluster.ClusterRule{Name: "r", Action: cluster.ActionDeny, MatchAll: true}, p.Ingress[0])
		}},
		{"a range with start not below end is invalid", func(s *npav1beta1.ClusterNetworkPolicySpec) {
			s.Ingress[0].Protocols = []npav1beta1.ClusterNetworkPolicyProtocol{{UDP: &npav1beta1.ClusterNetworkPolicyProtocolUDP{DestinationPort: &npav1beta1.Port{Range: &npav1beta1.PortRange{Start: 90, End: 80}}}}}
		}, "spec.ingress[0].protocols[0].udp.destinationPort.range", func(t *testing.T, p *cluster.ClusterPolicy) {
			r := p.Ingress[0]
			assert.False(t, r.AllPorts, "an Accept whose every protocol entry is invalid must not match every port")
			assert.Empty(t, r.Ports)
		}},
		{"unknown tier: read as Admin, Accept matches nothing", func(s *npav1beta1.ClusterNetworkPolicySpec) {
			s.Tier = "Middle"
		}, "spec.tier", func(t *testing.T, p *cluster.ClusterPolicy) {
			assert.Equal(t, cluster.TierAdmin, p.Tier)
			assert.Empty(t, p.Ingress[0].Peers)
			assert.False(t, p.Ingress[0].AllPorts)
		}},
		{"priority out of range: first, Pass becomes Deny", func(s *npav1beta1.ClusterNetworkPolicySpec) {
			s.Priority = 5000
			s.Ingress[0].Action = pass
		}, "spec.priority", func(t *testing.T, p *cluster.ClusterPolicy) {
			assert.Equal(t, int32(0), p.Priority)
			assert.Equal(t, cluster.ActionDeny, p.Ingress[0].Action)
		}},
		{"bad subject selects every pod, allowing nothing", func(s *npav1beta1.ClusterNetworkPolicySpec) {
			s.Subject = npav1beta1.ClusterNetworkPolicySubject{Namespaces: bad}
		}, "spec.subject.namespaces", func(t *testing.T, p *cluster.ClusterPolicy) {
			assert.True(t, p.SubjectNamespaces.Empty())
			assert.Nil(t, p.SubjectPods)
			assert.Empty(t, p.Ingress[0].Peers)
		}},
		{"both subject fields", func(s *npav1beta1.ClusterNetworkPolicySpec) {
			s.Subject.Pods = &npav1beta1.NamespacedPod{}
		}, "spec.subject", nil},
		{"domainNames is refused and matches nothing", func(s *npav1beta1.ClusterNetworkPolicySpec) {
			s.Egress = []npav1beta1.ClusterNetworkPolicyEgressRule{{Action: npav1beta1.ClusterNetworkPolicyRuleActionAccept, To: []npav1beta1.ClusterNetworkPolicyEgressPeer{{DomainNames: []npav1beta1.DomainName{"example.com"}}}}}
		}, "spec.egress[0].to[0].domainNames", func(t *testing.T, p *cluster.ClusterPolicy) {
			assert.Empty(t, p.Egress[0].Peers)
		}},
		{"a networks CIDR with host bits", func(s *npav1beta1.ClusterNetworkPolicySpec) {
			s.Egress = []npav1beta1.ClusterNetworkPolicyEgressRule{{Action: deny, To: []npav1beta1.ClusterNetworkPolicyEgressPeer{{Networks: []npav1beta1.CIDR{"10.0.0.1/8"}}}}}
		}, "spec.egress[0].to[0].networks[0]", func(t *testing.T, p *cluster.ClusterPolicy) {
			assert.True(t, p.Egress[0].MatchAll)
		}},
		{"named port beside a networks peer", func(s *npav1beta1.ClusterNetworkPolicySpec) {
			s.Egress = []npav1beta1.ClusterNetworkPolicyEgressRule{{Action: npav1beta1.ClusterNetworkPolicyRuleActionAccept,
				To:        []npav1beta1.ClusterNetworkPolicyEgressPeer{{Networks: []npav1beta1.CIDR{"10.0.0.0/8"}}},
				Protocols: []npav1beta1.ClusterNetworkPolicyProtocol{{DestinationNamedPort: "http"}}}}
		}, "spec.egress[0].to[0].networks", func(t *testing.T, p *cluster.ClusterPolicy) {
			assert.Empty(t, p.Egress[0].Peers)
		}},
		{"unknown action denies everything", func(s *npav1beta1.ClusterNetworkPolicySpec) {
			s.Ingress[0].Action = "Maybe"
		}, "spec.ingress[0].action", func(t *testing.T, p *cluster.ClusterPolicy) {
			assert.Equal(t, cluster.ClusterRule{Name: "r", Action: cluster.ActionDeny, MatchAll: true}, p.Ingress[0])
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, errs := cluster.ConvertClusterPolicy(cnp(tt.tweak))
			require.NotEmpty(t, errs)
			msg := errs[0].Error()
			assert.True(t, strings.HasPrefix(msg, "clusternetworkpolicy c: "+tt.path), "error %q does not name %s", msg, tt.path)
			if tt.check != nil {
				tt.check(t, p)
			}
		})
	}
}

// TestConvertClusterPolicy_Valid: the forms the API allows convert without
// error; a destinationNamedPort applies to each protocol.
func TestConvertClusterPolicy_Valid(t *testing.T) {
	t.Parallel()
	p, errs := cluster.ConvertClusterPolicy(cnp(func(s *npav1beta1.ClusterNetworkPolicySpec) {
		s.Tier = npav1beta1.BaselineTier
		s.Ingress[0].Protocols = []npav1beta1.ClusterNetworkPolicyProtocol{
			{TCP: &npav1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: &npav1beta1.Port{Number: 80}}},
			{UDP: &npav1beta1.ClusterNetworkPolicyProtocolUDP{DestinationPort: &npav1beta1.Port{Range: &npav1beta1.PortRange{Start: 1000, End: 2000}}}},
			{SCTP: &npav1beta1.ClusterNetworkPolicyProtocolSCTP{}},
			{DestinationNamedPort: "http"},
		}
		s.Egress = []npav1beta1.ClusterNetworkPolicyEgressRule{{Action: npav1beta1.ClusterNetworkPolicyRuleActionPass, To: []npav1beta1.ClusterNetworkPolicyEgressPeer{
			{Networks: []npav1beta1.CIDR{"10.0.0.0/8", "fd00::/8"}}, {Nodes: &metav1.LabelSelector{}},
		}}}
	}))
	require.Empty(t, errs)
	assert.Equal(t, cluster.TierBaseline, p.Tier)
	assert.Len(t, p.Ingress[0].Ports, 6)
	assert.Len(t, p.Egress[0].Peers, 3)
	assert.Equal(t, cluster.PeerNodes, p.Egress[0].Peers[2].Kind)
}

func TestConvertNode_PodCIDRs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		spec     corev1.NodeSpec
		want     []string
		wantErrs int
	}{
		{name: "none", spec: corev1.NodeSpec{}},
		{name: "podCIDRs, sorted, masked, unique", spec: corev1.NodeSpec{PodCIDRs: []string{"fd00:10::/64", "10.244.1.7/24", "10.244.1.0/24"}}, want: []string{"10.244.1.0/24", "fd00:10::/64"}},
		{name: "podCIDR when podCIDRs is empty", spec: corev1.NodeSpec{PodCIDR: "10.244.2.0/24"}, want: []string{"10.244.2.0/24"}},
		{name: "podCIDRs win over podCIDR", spec: corev1.NodeSpec{PodCIDR: "10.244.2.0/24", PodCIDRs: []string{"10.244.3.0/24"}}, want: []string{"10.244.3.0/24"}},
		{name: "IPv4-mapped is unmapped", spec: corev1.NodeSpec{PodCIDRs: []string{"::ffff:10.244.4.0/120"}}, want: []string{"10.244.4.0/24"}},
		{name: "IPv4-mapped in hex is unmapped", spec: corev1.NodeSpec{PodCIDRs: []string{"::ffff:af4:400/120"}}, want: []string{"10.244.4.0/24"}},
		{name: "as the API server reads them", spec: corev1.NodeSpec{PodCIDRs: []string{"010.244.6.0/024", "::ffff:0:0/80"}}, want: []string{"10.244.6.0/24", "::/80"}},
		{name: "unparsable skipped and reported", spec: corev1.NodeSpec{PodCIDRs: []string{"nope", "10.244.5.0/24", "fd00::%eth0/64", "10.0.0.0/33"}}, want: []string{"10.244.5.0/24"}, wantErrs: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n, errs := cluster.ConvertNode(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n"}, Spec: tt.spec})
			assert.Len(t, errs, tt.wantErrs, "%v", errs)
			var got []string
			for _, p := range n.PodCIDRs {
				got = append(got, p.String())
			}
			assert.Equal(t, tt.want, got)
		})
	}
}
