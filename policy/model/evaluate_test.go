package model

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policyd/policyd/cluster"
)

const (
	tcp  = cluster.ProtocolTCP
	udp  = cluster.ProtocolUDP
	sctp = cluster.ProtocolSCTP
)

// probe is one packet of a test case and its expected verdicts.
type probe struct {
	from, to string
	proto    cluster.Protocol
	port     int32
	want     bool
	// Optional expectations on the explanation.
	wantEgress, wantIngress *bool
	check                   func(t *testing.T, d Decision)
}

func yes(from, to string, proto cluster.Protocol, port int32) probe {
	return probe{from: from, to: to, proto: proto, port: port, want: true}
}

func no(from, to string, proto cluster.Protocol, port int32) probe {
	return probe{from: from, to: to, proto: proto, port: port, want: false}
}

func (p probe) with(check func(t *testing.T, d Decision)) probe { p.check = check; return p }

func (p probe) sides(egress, ingress bool) probe {
	p.wantEgress, p.wantIngress = &egress, &ingress
	return p
}

func TestEvaluate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		policies []*networkingv1.NetworkPolicy
		invalid  bool // policies are expected to fail validation
		probes   []probe
	}{
		{
			name: "no policies: nothing is isolated",
			probes: []probe{
				yes("x/a", "y/b", tcp, 80).with(func(t *testing.T, d Decision) {
					if d.Ingress.Isolated || d.Egress.Isolated || d.Ingress.Match != nil {
						t.Errorf("not isolated expected: %+v", d)
					}
					wantContains(t, d.Ingress.Reason, "no policy in namespace y selects y/b for ingress")
				}),
				yes("192.168.1.1", "x/a", udp, 5353),
			},
		},
		{
			name:     "ingress policy without rules denies all ingress",
			policies: []*networkingv1.NetworkPolicy{np("x", "deny", types(tIn))},
			probes: []probe{
				no("x/b", "x/a", tcp, 80).sides(true, false).with(func(t *testing.T, d Decision) {
					if !d.Ingress.Isolated || !reflect.DeepEqual(d.Ingress.Policies, []string{"x/deny"}) {
						t.Errorf("ingress = %+v, want isolated by x/deny", d.Ingress)
					}
					if d.Ingress.NearestMiss != nil || d.Ingress.Match != nil {
						t.Errorf("no rules: want neither Match nor NearestMiss, got %+v", d.Ingress)
					}
					wantContains(t, d.Ingress.Reason, "x/deny, which has no ingress rules, so all ingress is denied")
				}),
				no("y/a", "x/b", udp, 81),
				// Egress from x is untouched: the policy only isolates ingress.
				yes("x/a", "y/a", tcp, 80),
			},
		},
		{
			name:     "empty ingress list without policyTypes still isolates ingress",
			policies: []*networkingv1.NetworkPolicy{np("x", "deny", ingress())},
			probes:   []probe{no("y/a", "x/a", tcp, 80), yes("x/a", "y/a", tcp, 80)},
		},
		{
			name:     "empty rule {} allows everything, even external addresses",
			policies: []*networkingv1.NetworkPolicy{np("x", "all", types(tIn), ingress(in(nil)))},
			probes: []probe{
				yes("y/a", "x/a", sctp, 81).with(func(t *testing.T, d Decision) {
					want := &RuleRef{Policy: "x/all", Direction: "ingress", Rule: 0, Peer: All, Port: All}
					if !reflect.DeepEqual(d.Ingress.Match, want) {
						t.Errorf("Match = %+v, want %+v", d.Ingress.Match, want)
					}
					wantContains(t, d.Ingress.Reason, "allowed by x/all ingress[0] all peers all ports")
				}),
				yes("203.0.113.9", "x/b", tcp, 8080),
			},
		},
		{
			name:     "empty peer list and empty ports list mean all",
			policies: []*networkingv1.NetworkPolicy{np("x", "all", types(tIn), ingress(in(peers(), []networkingv1.NetworkPolicyPort{}...)))},
			probes:   []probe{yes("z/c", "x/a", udp, 9)},
		},
		{
			name:     "egress deny all isolates the source only",
			policies: []*networkingv1.NetworkPolicy{np("x", "deny-eg", types(tEg))},
			probes: []probe{
				no("x/a", "y/a", tcp, 80).sides(false, true).with(func(t *testing.T, d Decision) {
					if !d.Egress.Isolated || d.Ingress.Isolated || d.Egress.Pod != "x/a" {
						t.Errorf("want egress of x/a isolated, ingress not: %+v", d)
					}
				}),
				no("x/a", "8.8.8.8", udp, 53),
				yes("y/a", "x/a", tcp, 80),
			},
		},
		{
			name:     "egress rules without policyTypes isolate egress too",
			policies: []*networkingv1.NetworkPolicy{np("x", "eg", selecting("app", "a"), egress(eg(peers(nsPeer(labelsSel("ns", "y"))))))},
			probes: []probe{
				yes("x/a", "y/b", tcp, 80),
				no("x/a", "z/c", tcp, 80).sides(false, true),
				no("y/a", "x/a", tcp, 80).sides(true, false), // ingress isolated by default, no ingress rules
			},
		},
		{
			name: "policyTypes Egress ignores ingress rules",
			policies: []*networkingv1.NetworkPolicy{np("x", "eg-only", types(tEg),
				ingress(in(peers(podPeer(labelsSel("app", "nothing"))))), egress())},
			probes: []probe{yes("y/a", "x/a", tcp, 80), no("x/a", "y/a", tcp, 80)},
		},
		{
			name:     "a policy in another namespace never selects the pod",
			policies: []*networkingv1.NetworkPolicy{np("y", "deny-app-a", selecting("app", "a"), types(tIn, tEg))},
			probes: []probe{
				yes("x/b", "x/a", tcp, 80).with(func(t *testing.T, d Decision) {
					if d.Ingress.Isolated {
						t.Errorf("x/a isolated by a policy of namespace y: %+v", d.Ingress)
					}
				}),
				no("x/b", "y/a", tcp, 80),
				yes("x/b", "y/b", tcp, 80),
			},
		},
		{
			name: "namespaceSelector and podSelector in one peer: both must match",
			policies: []*networkingv1.NetworkPolicy{np("x", "and", selecting("app", "a"),
				ingress(in(peers(nsPodPeer(labelsSel("ns", "y"), labelsSel("app", "b"))))))},
			probes: []probe{yes("y/b", "x/a", tcp, 80), no("y/a", "x/a", tcp, 80), no("x/b", "x/a", tcp, 80)},
		},
		{
			name: "namespaceSelector and podSelector as two peers: either matches",
			policies: []*networkingv1.NetworkPolicy{np("x", "or", selecting("app", "a"),
				ingress(in(peers(nsPeer(labelsSel("ns", "y")), podPeer(labelsSel("app", "b"))))))},
			probes: []probe{
				yes("y/a", "x/a", tcp, 80).with(wantMatch("x/or", 0, 0, All)),
				yes("x/b", "x/a", tcp, 80).with(wantMatch("x/or", 0, 1, All)),
				no("z/c", "x/a", tcp, 80),
			},
		},
		{
			name: "podSelector alone means the policy's own namespace",
			policies: []*networkingv1.NetworkPolicy{np("x", "same-ns", selecting("app", "b"),
				ingress(in(peers(podPeer(labelsSel("app", "a"))))))},
			probes: []probe{yes("x/a", "x/b", tcp, 80), no("y/a", "x/b", tcp, 80)},
		},
		{
			name: "namespaceSelector {} is every pod of every namespace but no external address",
			policies: []*networkingv1.NetworkPolicy{np("x", "pods", selecting("app", "a"),
				ingress(in(peers(nsPeer(&metav1.LabelSelector{})))))},
			probes: []probe{
				yes("z/c", "x/a", tcp, 80),
				no("192.168.1.1", "x/a", tcp, 80).with(func(t *testing.T, d Decision) {
					wantContains(t, d.Ingress.NearestMiss.Reason, "192.168.1.1 matches none of [all pods in all namespaces] (it is not a pod, so only ipBlock peers can match it)")
				}),
				yes("node:10.255.0.1", "x/a", tcp, 80), // node traffic needs no peer
			},
		},
		{
			name: "namespaceSelector on the kubernetes.io/metadata.name label the API server sets",
			policies: []*networkingv1.NetworkPolicy{np("x", "by-name", selecting("app", "a"),
				ingress(in(peers(nsPeer(labelsSel("kubernetes.io/metadata.name", "z"))))))},
			probes: []probe{yes("z/c", "x/a", tcp, 80), no("y/a", "x/a", tcp, 80)},
		},
		{
			name: "ipBlock with except, IPv4; matches pod addresses too",
			policies: []*networkingv1.NetworkPolicy{np("x", "cidr", selecting("app", "a"),
				ingress(in(peers(ipPeer("10.0.1.0/24", "10.0.1.2/32")))))},
			probes: []probe{
				yes("y/a", "x/a", tcp, 80),
				no("y/b", "x/a", tcp, 80).with(func(t *testing.T, d Decision) {
					wantContains(t, d.Ingress.NearestMiss.Reason, "y/b (10.0.1.2) matches none of [ipBlock 10.0.1.0/24 except 10.0.1.2/32]")
				}),
				yes("10.0.1.77", "x/a", udp, 1),
				no("10.0.2.1", "x/a", tcp, 80),
				// An IPv4 block never matches an IPv6 source.
				no("y/a@6", "x/a@6", tcp, 80),
			},
		},
		{
			name: "ipBlock with except, IPv6",
			policies: []*networkingv1.NetworkPolicy{np("x", "cidr6", selecting("app", "a"),
				ingress(in(peers(ipPeer("fd00::100/120", "fd00::180/121")))))},
			probes: []probe{
				yes("y/a@6", "x/a@6", tcp, 80),
				no("fd00::1ff", "x/a@6", tcp, 80),
				yes("fd00::17f", "x/a@6", tcp, 80),
				no("fd00::180", "x/a@6", tcp, 80),
				no("y/a", "x/a", tcp, 80), // the pod's IPv4 address is not in the block
			},
		},
		{
			name: "egress ipBlock to external addresses",
			policies: []*networkingv1.NetworkPolicy{np("x", "dns", selecting("app", "a"), types(tEg),
				egress(eg(peers(ipPeer("0.0.0.0/0", "10.0.0.0/8")), port(udp, 53))))},
			probes: []probe{yes("x/a", "8.8.8.8", udp, 53), no("x/a", "8.8.8.8", tcp, 53), no("x/a", "y/a", udp, 53)},
		},
		{
			name: "NotIn matches a pod lacking the key; DoesNotExist and Exists",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "notin", selecting("app", "a"), ingress(in(peers(nsPodPeer(&metav1.LabelSelector{}, exprSel("app", metav1.LabelSelectorOpNotIn, "a"))), port(tcp, 80)))),
				np("x", "dne", selecting("app", "a"), ingress(in(peers(nsPodPeer(&metav1.LabelSelector{}, exprSel("env", metav1.LabelSelectorOpDoesNotExist))), port(tcp, 81)))),
				np("x", "exists", selecting("app", "a"), ingress(in(peers(nsPodPeer(&metav1.LabelSelector{}, exprSel("env", metav1.LabelSelectorOpExists))), port(udp, 80)))),
			},
			probes: []probe{
				yes("z/c", "x/a", tcp, 80).with(wantMatch("x/notin", 0, 0, 0)), // z/c has no app label
				yes("y/b", "x/a", tcp, 80),
				no("y/a", "x/a", tcp, 80),
				yes("z/c", "x/a", tcp, 81),
				no("y/b", "x/a", tcp, 81), // y/b has env=""
				yes("y/b", "x/a", udp, 80),
				no("z/c", "x/a", udp, 80),
			},
		},
		{
			name: "matchLabels {env: \"\"} matches only a pod whose env label is empty",
			policies: []*networkingv1.NetworkPolicy{np("x", "empty-val", selecting("app", "a"),
				ingress(in(peers(nsPodPeer(&metav1.LabelSelector{}, labelsSel("env", ""))))))},
			probes: []probe{yes("y/b", "x/a", tcp, 80), no("y/a", "x/a", tcp, 80), no("z/c", "x/a", tcp, 80)},
		},
		{
			name: "named port resolves on the destination by name and protocol",
			policies: []*networkingv1.NetworkPolicy{np("x", "named", selecting("app", "a"),
				ingress(in(nil, namedPort(tcp, "serve-80-tcp"), namedPort(udp, "serve-81-tcp"))))},
			probes: []probe{
				yes("y/a", "x/a", tcp, 80),
				no("y/a", "x/a", tcp, 81).with(func(t *testing.T, d Decision) {
					m := d.Ingress.NearestMiss
					if m == nil || m.Peer != All || m.Port != None {
						t.Fatalf("NearestMiss = %+v, want all peers, no port", m)
					}
					wantContains(t, m.Reason, "peer matched but port TCP/81 is not in [TCP/serve-80-tcp (=80 on x/a), UDP/serve-81-tcp (x/a declares no UDP port named serve-81-tcp)]")
				}),
				// serve-81-tcp is a TCP port: a UDP entry naming it matches nothing.
				no("y/a", "x/a", udp, 81),
			},
		},
		{
			name: "the same port name resolves per destination pod",
			policies: []*networkingv1.NetworkPolicy{np("x", "http-out", selecting("app", "a"), types(tEg),
				egress(eg(nil, namedPort(tcp, "http"))))},
			probes: []probe{
				yes("x/a", "x/b", tcp, 80), // x/b: http = 80
				no("x/a", "y/b", tcp, 80),  // y/b: http = 81
				yes("x/a", "y/b", tcp, 81),
				no("x/a", "y/a", tcp, 80),         // y/a declares no http port
				no("x/a", "203.0.113.1", tcp, 80), // not a pod: named ports never match
			},
		},
		{
			name: "named ports never match a hostNetwork destination",
			policies: []*networkingv1.NetworkPolicy{np("x", "named-out", selecting("app", "a"), types(tEg),
				egress(eg(nil, namedPort(tcp, "serve-80-tcp")), eg(peers(ipPeer("10.255.0.0/24")), port(tcp, 81))))},
			probes: []probe{
				yes("x/a", "x/b", tcp, 80),
				no("x/a", "x/host", tcp, 80).with(func(t *testing.T, d Decision) {
					wantContains(t, d.Egress.NearestMiss.Reason, "TCP/serve-80-tcp (named ports only match pod destinations, not hostNetwork pods or other addresses)")
				}),
				yes("x/a", "x/host", tcp, 81), // numeric ports and ipBlocks do
			},
		},
		{
			name: "port ranges with endPort, per protocol",
			policies: []*networkingv1.NetworkPolicy{np("x", "range", selecting("app", "a"),
				ingress(in(nil, portRange(tcp, 80, 81), portRange(sctp, 1000, 2000))))},
			probes: []probe{
				yes("y/a", "x/a", tcp, 80), yes("y/a", "x/a", tcp, 81).with(wantMatch("x/range", 0, All, 0)),
				no("y/a", "x/a", tcp, 79), no("y/a", "x/a", tcp, 82), no("y/a", "x/a", udp, 80),
				yes("y/a", "x/a", sctp, 1000), yes("y/a", "x/a", sctp, 2000), no("y/a", "x/a", sctp, 2001),
			},
		},
		{
			name: "protocol without port allows every port of that protocol only",
			policies: []*networkingv1.NetworkPolicy{np("x", "udp", selecting("app", "a"),
				ingress(in(nil, protoOnly(udp))))},
			probes: []probe{yes("y/a", "x/a", udp, 81), yes("y/a", "x/a", udp, 65535), no("y/a", "x/a", tcp, 80), no("y/a", "x/a", sctp, 80)},
		},
		{
			name: "several policies add up",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "p2", selecting("app", "a"), ingress(in(peers(nsPodPeer(labelsSel("ns", "y"), labelsSel("app", "b"))), port(tcp, 81)))),
				np("x", "p1", selecting("app", "a"), ingress(in(peers(nsPodPeer(labelsSel("ns", "y"), labelsSel("app", "a"))), port(tcp, 80)))),
				np("x", "p3", types(tIn)), // deny-all adds nothing and removes nothing
			},
			probes: []probe{
				yes("y/a", "x/a", tcp, 80).with(func(t *testing.T, d Decision) {
					if got := strings.Join(d.Ingress.Policies, ","); got != "x/p1,x/p2,x/p3" {
						t.Errorf("Policies = %s, want sorted x/p1,x/p2,x/p3", got)
					}
					wantMatch("x/p1", 0, 0, 0)(t, d)
				}),
				no("y/a", "x/a", tcp, 81),
				yes("y/b", "x/a", tcp, 81).with(wantMatch("x/p2", 0, 0, 0)),
				no("y/b", "x/a", tcp, 80),
				no("y/a", "x/b", tcp, 80), // x/b only by p3
			},
		},
		{
			name: "allowed only when egress and ingress both allow",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "eg", selecting("app", "a"), types(tEg), egress(eg(peers(nsPeer(labelsSel("ns", "y")))))),
				np("y", "in", selecting("app", "b"), types(tIn), ingress(in(peers(nsPeer(labelsSel("ns", "z")))))),
			},
			probes: []probe{
				yes("x/a", "y/a", tcp, 80).sides(true, true),
				no("x/a", "y/b", tcp, 80).sides(true, false),
				no("x/a", "z/c", tcp, 80).sides(false, true),
				yes("z/c", "y/b", tcp, 80),
			},
		},
		{
			name:     "hostNetwork pods are never isolated and never match pod selectors",
			policies: []*networkingv1.NetworkPolicy{np("x", "deny-all", types(tIn, tEg)), np("x", "from-x", ingress(in(peers(podPeer(&metav1.LabelSelector{})))))},
			probes: []probe{
				no("x/host", "x/a", tcp, 80).with(func(t *testing.T, d Decision) {
					if d.Egress.Pod != "" || !d.Egress.Allowed {
						t.Errorf("egress of a hostNetwork source judged: %+v", d.Egress)
					}
					wantContains(t, d.Egress.Reason, "hostNetwork pod")
				}).sides(true, false),
				yes("y/a", "x/host", tcp, 80).with(func(t *testing.T, d Decision) {
					if d.Ingress.Pod != "" || d.Ingress.Isolated {
						t.Errorf("hostNetwork destination judged: %+v", d.Ingress)
					}
				}),
			},
		},
		{
			name: "hostNetwork pods match ipBlocks by their node address",
			policies: []*networkingv1.NetworkPolicy{np("x", "nodes", selecting("app", "a"),
				ingress(in(peers(ipPeer("10.255.0.0/24")))))},
			probes: []probe{yes("x/host", "x/a", tcp, 80), no("x/b", "x/a", tcp, 80)},
		},
		{
			name:     "node traffic to its pods is always allowed in",
			policies: []*networkingv1.NetworkPolicy{np("x", "deny-all", types(tIn, tEg))},
			probes: []probe{
				yes("node:10.255.0.1", "x/a", tcp, 8080).with(func(t *testing.T, d Decision) {
					if !d.Ingress.Isolated || d.Ingress.Match != nil {
						t.Errorf("node traffic: want isolated and no Match, got %+v", d.Ingress)
					}
					wantContains(t, d.Ingress.Reason, "own node")
				}),
				no("x/a", "10.255.0.1", tcp, 10250), // egress to the node is judged like any destination (see Evaluate)
			},
		},
		{
			name:     "a pod cannot block traffic to itself",
			policies: []*networkingv1.NetworkPolicy{np("x", "deny-all", types(tIn, tEg))},
			probes: []probe{
				yes("x/a", "x/a", tcp, 80).with(func(t *testing.T, d Decision) {
					if !d.Egress.Isolated || !d.Ingress.Isolated || d.Ingress.Match != nil {
						t.Errorf("want both directions isolated, no Match: %+v", d)
					}
					wantContains(t, d.Ingress.Reason, "to itself is always allowed")
				}),
				yes("x/a@6", "x/a", tcp, 80), // across its own addresses too
				no("x/b", "x/a", tcp, 80),
			},
		},
		{
			name: "Match names the first admitting rule, peer and port",
			policies: []*networkingv1.NetworkPolicy{np("x", "m", selecting("app", "a"), ingress(
				in(peers(podPeer(labelsSel("app", "b"))), port(udp, 80)),
				in(peers(ipPeer("192.168.0.0/16"), nsPeer(labelsSel("team", "b")), nsPeer(&metav1.LabelSelector{})), port(tcp, 81), port(tcp, 80), portRange(tcp, 1, 100)),
			))},
			probes: []probe{
				yes("y/a", "x/a", tcp, 80).with(wantMatch("x/m", 1, 1, 1)),
				yes("z/c", "x/a", tcp, 81).with(wantMatch("x/m", 1, 2, 0)),
				yes("x/b", "x/a", udp, 80).with(wantMatch("x/m", 0, 0, 0)),
			},
		},
		{
			name: "NearestMiss prefers a rule whose peer matched",
			policies: []*networkingv1.NetworkPolicy{np("x", "m", selecting("app", "a"), ingress(
				in(peers(podPeer(labelsSel("app", "zzz"))), port(tcp, 443)),
				in(peers(podPeer(labelsSel("app", "zzz"))), port(tcp, 81)),
				in(peers(nsPeer(labelsSel("ns", "y"))), port(tcp, 80)),
			))},
			probes: []probe{
				no("y/a", "x/a", tcp, 81).with(func(t *testing.T, d Decision) {
					want := &Miss{RuleRef: RuleRef{Policy: "x/m", Direction: "ingress", Rule: 2, Peer: 0, Port: None},
						Reason: "peer matched but port TCP/81 is not in [TCP/80]"}
					if !reflect.DeepEqual(d.Ingress.NearestMiss, want) {
						t.Errorf("NearestMiss = %+v, want %+v", d.Ingress.NearestMiss, want)
					}
					wantContains(t, d.Ingress.Reason, "denied: no ingress rule of policy x/m admits y/a (10.0.1.1) on TCP/81; nearest is x/m ingress[2] peer 0, no port entry matched: peer matched")
				}),
				no("z/c", "x/a", tcp, 81).with(func(t *testing.T, d Decision) {
					m := d.Ingress.NearestMiss
					if m == nil || m.Rule != 1 || m.Peer != None || m.Port != 0 {
						t.Fatalf("NearestMiss = %+v, want rule 1 with the port matched", m)
					}
					wantContains(t, m.Reason, "port matched but z/c (10.0.2.1) matches none of [pods with app=zzz in namespace x]")
				}),
				no("z/c", "x/a", udp, 1).with(func(t *testing.T, d Decision) {
					m := d.Ingress.NearestMiss
					if m == nil || m.Rule != 0 {
						t.Fatalf("NearestMiss = %+v, want rule 0 (nothing matched anywhere)", m)
					}
					wantContains(t, m.Reason, "neither peer nor port matched")
				}),
			},
		},
		{
			name: "a rule whose only peer is invalid matches nothing, not everything",
			policies: []*networkingv1.NetworkPolicy{np("x", "bad", selecting("app", "a"),
				ingress(in(peers(ipPeer("10.0.0.0/33")))))},
			invalid: true,
			probes: []probe{no("y/a", "x/a", tcp, 80).with(func(t *testing.T, d Decision) {
				wantContains(t, d.Ingress.NearestMiss.Reason, "lists no valid from peer")
			})},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := snapshot(t, tt.policies, tt.invalid)
			for _, pr := range tt.probes {
				name := pr.from + "->" + pr.to + "/" + pr.proto.String() + "/" + itoa(pr.port)
				t.Run(name, func(t *testing.T) {
					d := Evaluate(s, packet(t, s, pr.from, pr.to, pr.proto, pr.port))
					checkInvariants(t, d)
					if d.Allowed != pr.want {
						t.Fatalf("Allowed = %v, want %v\negress:  %s\ningress: %s", d.Allowed, pr.want, d.Egress.Reason, d.Ingress.Reason)
					}
					if pr.wantEgress != nil && d.Egress.Allowed != *pr.wantEgress {
						t.Errorf("Egress.Allowed = %v, want %v: %s", d.Egress.Allowed, *pr.wantEgress, d.Egress.Reason)
					}
					if pr.wantIngress != nil && d.Ingress.Allowed != *pr.wantIngress {
						t.Errorf("Ingress.Allowed = %v, want %v: %s", d.Ingress.Allowed, *pr.wantIngress, d.Ingress.Reason)
					}
					if pr.check != nil {
						pr.check(t, d)
					}
				})
			}
		})
	}
}

// checkInvariants holds for every decision.
func checkInvariants(t *testing.T, d Decision) {
	t.Helper()
	if d.Allowed != (d.Egress.Allowed && d.Ingress.Allowed) {
		t.Errorf("Allowed %v but egress %v, ingress %v", d.Allowed, d.Egress.Allowed, d.Ingress.Allowed)
	}
	for _, dir := range []Direction{d.Egress, d.Ingress} {
		if dir.Reason == "" {
			t.Errorf("%s: empty reason", dir.Direction)
		}
		if dir.Match != nil && (!dir.Allowed || !dir.Isolated) {
			t.Errorf("%s: Match set on a direction that is not isolated and allowed: %+v", dir.Direction, dir)
		}
		if dir.NearestMiss != nil && dir.Allowed {
			t.Errorf("%s: NearestMiss on an allowed direction: %+v", dir.Direction, dir)
		}
		// A denial is made by NetworkPolicies isolating the pod or by a
		// ClusterNetworkPolicy rule selecting it.
		if !dir.Allowed && ((!dir.Isolated && dir.ClusterRule == nil) || dir.Pod == "") {
			t.Errorf("%s: denied but not an isolated pod: %+v", dir.Direction, dir)
		}
		if dir.Isolated != (len(dir.Policies) > 0) {
			t.Errorf("%s: Isolated %v with policies %v", dir.Direction, dir.Isolated, dir.Policies)
		}
		if dir.Allowed == strings.HasPrefix(dir.Reason, "denied") {
			t.Errorf("%s: reason %q disagrees with Allowed %v", dir.Direction, dir.Reason, dir.Allowed)
		}
	}
}

func wantMatch(policy string, rule, peer, port int) func(t *testing.T, d Decision) {
	return func(t *testing.T, d Decision) {
		t.Helper()
		want := &RuleRef{Policy: policy, Direction: "ingress", Rule: rule, Peer: peer, Port: port}
		got := d.Ingress.Match
		if got != nil && got.Direction == "egress" {
			want.Direction = "egress"
		}
		if d.Ingress.Match == nil && d.Egress.Match != nil {
			got, want.Direction = d.Egress.Match, "egress"
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Match = %+v, want %+v", got, want)
		}
	}
}

func wantContains(t *testing.T, got, want string) {
	t.Helper()
	if !strings.Contains(got, want) {
		t.Errorf("reason %q\ndoes not contain %q", got, want)
	}
}

func TestDecision_JSON(t *testing.T) {
	t.Parallel()
	s := snapshot(t, []*networkingv1.NetworkPolicy{np("x", "deny", types(tIn), ingress(in(nil, port(tcp, 80))))}, false)
	d := Evaluate(s, packet(t, s, "y/a", "x/a", tcp, 81))
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"allowed":false`, `"egress":{"direction":"egress"`, `"ingress":{"direction":"ingress","pod":"x/a","isolated":true,"policies":["x/deny"]`,
		`"nearestMiss":{"policy":"x/deny","direction":"ingress","rule":0,"peer":-1,"port":-2,"reason":"peer matched but port TCP/81 is not in [TCP/80]"}`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("JSON lacks %s:\n%s", key, b)
		}
	}
	c := Cell{From: "x/a", To: "x/b", Port: 80, Protocol: udp, Allowed: true}
	b, err = json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"from":"x/a","to":"x/b","port":80,"protocol":"UDP","allowed":true}` {
		t.Errorf("Cell JSON = %s", b)
	}
	var back Cell
	if err := json.Unmarshal(b, &back); err != nil || back != c {
		t.Errorf("Cell JSON round trip = %+v, %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"protocol":"ICMP"}`), &back); err == nil {
		t.Errorf("Cell with protocol ICMP unmarshalled without error")
	}
}
