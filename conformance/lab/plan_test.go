package lab

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

var twoNodes = []string{"node-1", "node-2"}

// planSummary renders a plan as "key@node ips cips" lines for comparison.
func planSummary(plans []*podPlan) string {
	var b strings.Builder
	for _, p := range plans {
		fmt.Fprintf(&b, "%s@%d %v %v %v host=%v ports=%v\n", p.Key, p.Node, p.IPs[v4], p.IPs[v6], p.ClusterIPs[v4], p.HostNetwork, p.Ports)
	}
	return b.String()
}

func TestPlanPods(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		ipv6      bool
		dnat      bool
		pods      []*corev1.Pod
		want      string
		wantErr   string
		wantIPs   int
		wantNodes []int
	}{
		{
			name: "given addresses kept, missing ones allocated from the node's range in key order",
			pods: []*corev1.Pod{
				podFixture("y", "b", "node-2"),
				podFixture("x", "a", "node-2", withIP("10.244.1.10")),
				podFixture("x", "c", "node-2"),
				podFixture("x", "b", "node-1"),
			},
			want: "x/a@1 10.244.1.10 invalid IP invalid IP host=false ports=[80 81]\n" +
				"x/b@0 10.240.0.2 invalid IP invalid IP host=false ports=[80 81]\n" +
				"x/c@1 10.240.1.2 invalid IP invalid IP host=false ports=[80 81]\n" +
				"y/b@1 10.240.1.3 invalid IP invalid IP host=false ports=[80 81]\n",
		},
		{
			name: "allocation skips a given address inside the node range",
			pods: []*corev1.Pod{
				podFixture("x", "a", "node-1"),
				podFixture("x", "b", "node-2", withIP("10.240.0.2")),
			},
			want: "x/a@0 10.240.0.3 invalid IP invalid IP host=false ports=[80 81]\n" +
				"x/b@1 10.240.0.2 invalid IP invalid IP host=false ports=[80 81]\n",
		},
		{
			name: "unscheduled pods round-robin, hostNetwork pods take the node address, ClusterIPs in key order",
			dnat: true,
			pods: []*corev1.Pod{
				podFixture("x", "a", ""),
				podFixture("x", "b", ""),
				podFixture("x", "c", ""),
				podFixture("x", "h", "node-2", hostNetwork, withIP("192.168.0.1")),
			},
			want: "x/a@0 10.240.0.2 invalid IP 10.96.0.10 host=false ports=[80 81]\n" +
				"x/b@1 10.240.1.2 invalid IP 10.96.0.11 host=false ports=[80 81]\n" +
				"x/c@0 10.240.0.3 invalid IP 10.96.0.12 host=false ports=[80 81]\n" +
				"x/h@1 10.255.0.11 invalid IP 10.96.0.13 host=true ports=[80 81]\n",
		},
		{
			name: "dual stack allocates the missing family",
			ipv6: true,
			pods: []*corev1.Pod{
				podFixture("x", "a", "node-2", withIP("10.244.1.10")),
				podFixture("x", "b", "node-2", withIP("fd00:10:244::5")),
			},
			want: "x/a@1 10.244.1.10 fd00:10:240:1::2 invalid IP host=false ports=[80 81]\n" +
				"x/b@1 10.240.1.2 fd00:10:244::5 invalid IP host=false ports=[80 81]\n",
		},
		{
			name: "terminal pods are left out",
			pods: []*corev1.Pod{
				podFixture("x", "a", "node-1", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }),
				podFixture("x", "b", "node-1"),
			},
			want: "x/b@0 10.240.0.2 invalid IP invalid IP host=false ports=[80 81]\n",
		},
		{
			name:    "unknown node",
			pods:    []*corev1.Pod{podFixture("x", "a", "node-9")},
			wantErr: `pod x/a: spec.nodeName "node-9" is not a lab node`,
		},
		{
			name: "duplicate address names both pods",
			pods: []*corev1.Pod{
				podFixture("x", "a", "node-1", withIP("10.1.2.3")),
				podFixture("x", "b", "node-2", withIP("10.1.2.3")),
			},
			wantErr: "pod x/b: status.podIPs: 10.1.2.3 is also the address of pod x/a",
		},
		{
			name:    "address outside 10/8",
			pods:    []*corev1.Pod{podFixture("x", "a", "node-1", withIP("192.168.1.1"))},
			wantErr: "pod x/a: status.podIPs[0]: 192.168.1.1 is outside 10.0.0.0/8",
		},
		{
			name:    "address in the ClusterIP range",
			pods:    []*corev1.Pod{podFixture("x", "a", "node-1", withIP("10.96.0.1"))},
			wantErr: "inside the ClusterIP range",
		},
		{
			name:    "address of a gateway",
			pods:    []*corev1.Pod{podFixture("x", "a", "node-1", withIP("10.240.1.1"))},
			wantErr: "reserved for node 1's gateway",
		},
		{
			name:    "IPv6 address in an IPv4 lab",
			pods:    []*corev1.Pod{podFixture("x", "a", "node-1", withIP("10.1.1.1", "fd00::1"))},
			wantErr: "is IPv6 but the lab is IPv4-only",
		},
		{
			name:    "duplicate pod",
			pods:    []*corev1.Pod{podFixture("x", "a", "node-1"), podFixture("x", "a", "node-2")},
			wantErr: "pod x/a: given twice",
		},
		{
			name: "bad container port",
			pods: []*corev1.Pod{podFixture("x", "a", "node-1", func(p *corev1.Pod) {
				p.Spec.Containers[0].Ports[0].ContainerPort = 0
			})},
			wantErr: "pod x/a: spec.containers[0].ports[0].containerPort: Invalid value: 0",
		},
		{
			name:    "bad serves annotation",
			pods:    []*corev1.Pod{podFixture("x", "a", "node-1", withServes("TCP/80,http"))},
			wantErr: "pod x/a: annotation lab.policyd.io/serves: port \"http\"",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := planPods(twoNodes, tt.ipv6, tt.dnat, nil, tt.pods)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := planSummary(got); s != tt.want {
				t.Errorf("plan:\n%s\nwant:\n%s", s, tt.want)
			}
		})
	}
}

// TestPlanPods_UpdateKeepsAddresses: on an update, a pod keeps the address
// and ClusterIP the lab gave it even when a new pod sorts before it, and a
// pod moved to another node gets an address from that node's range.
func TestPlanPods_UpdateKeepsAddresses(t *testing.T) {
	t.Parallel()
	first, err := planPods(twoNodes, false, true, nil, []*corev1.Pod{
		podFixture("x", "b", "node-1"),
		podFixture("x", "c", "node-1"),
		podFixture("x", "d", "node-1"),
	})
	if err != nil {
		t.Fatal(err)
	}
	prev := map[string]*podPlan{}
	for _, p := range first {
		prev[p.Key] = p
	}
	second, err := planPods(twoNodes, false, true, prev, []*corev1.Pod{
		podFixture("x", "a", "node-1"),
		podFixture("x", "b", "node-1"),
		podFixture("x", "d", "node-2"),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "x/a@0 10.240.0.3 invalid IP 10.96.0.11 host=false ports=[80 81]\n" +
		"x/b@0 10.240.0.2 invalid IP 10.96.0.10 host=false ports=[80 81]\n" +
		"x/d@1 10.240.1.2 invalid IP 10.96.0.12 host=false ports=[80 81]\n"
	if s := planSummary(second); s != want {
		t.Errorf("plan after update:\n%s\nwant:\n%s", s, want)
	}
	if !first[0].sameTopology(second[1]) {
		t.Errorf("x/b should keep its topology")
	}
	if prev["x/d"].sameTopology(second[2]) {
		t.Errorf("x/d moved nodes and must be rebuilt")
	}
}

func TestConfigNormalize(t *testing.T) {
	t.Parallel()
	pods := []*corev1.Pod{podFixture("x", "a", "n2"), podFixture("x", "b", "n1"), podFixture("x", "c", "n2")}
	tests := []struct {
		name    string
		cfg     Config
		pods    []*corev1.Pod
		want    string
		wantErr string
	}{
		{name: "nodes from pods, sorted, defaults filled", cfg: Config{CNI: CNIRouted, RunID: "r1"}, pods: pods,
			want: "[n1 n2] r1 400ms 256"},
		{name: "zero CNI is invalid", cfg: Config{}, wantErr: "config.CNI"},
		{name: "no nodes anywhere", cfg: Config{CNI: CNIBridged}, pods: []*corev1.Pod{podFixture("x", "a", "")}, wantErr: "config.Nodes: empty"},
		{name: "duplicate node", cfg: Config{CNI: CNIBridged, Nodes: []string{"a", "a"}}, wantErr: `config.Nodes[1]: "a" given twice`},
		{name: "bad run id", cfg: Config{CNI: CNIBridged, Nodes: []string{"a"}, RunID: "has-dash"}, wantErr: "config.RunID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.cfg.normalize(tt.pods)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := fmt.Sprintf("%v %s %v %d", got.Nodes, got.RunID, got.ProbeTimeout, got.Parallelism); s != tt.want {
				t.Errorf("normalized = %s, want %s", s, tt.want)
			}
		})
	}
}

func TestAddressPlan(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		got  netip.Addr
		want string
	}{
		{nodeAddr(0, v4), "10.255.0.10"},
		{nodeAddr(3, v6), "fd00:255::d"},
		{nodeGateway(2, v4), "10.240.2.1"},
		{nodeGateway(2, v6), "fd00:10:240:2::1"},
		{serviceIP(5, v4), "10.96.0.15"},
		{serviceIP(5, v6), "fd00:10:96::f"},
	} {
		if tt.got.String() != tt.want {
			t.Errorf("got %s, want %s", tt.got, tt.want)
		}
	}
	if s := nodeSubnet(MaxNodes-1, v4).String(); s != "10.240.199.0/24" {
		t.Errorf("last node subnet = %s", s)
	}
}

func withServes(s string) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Annotations = map[string]string{ServesAnnotation: s} }
}

// TestPlanPods_ServesAnnotation: with the annotation a pod listens on exactly
// its TCP and UDP entries, whatever it declares; without it, on every
// declared port with both protocols.
func TestPlanPods_ServesAnnotation(t *testing.T) {
	t.Parallel()
	got, err := planPods(twoNodes, false, false, nil, []*corev1.Pod{
		podFixture("x", "a", "node-1", withServes("UDP/53, TCP/8080,TCP/80,SCTP/9003,udp/5353")),
		podFixture("x", "b", "node-1"),
	})
	if err != nil {
		t.Fatal(err)
	}
	render := func(p *podPlan) string { return fmt.Sprint(p.Ports, p.Listen) }
	if s, want := render(got[0]), "[53 80 5353 8080] [UDP/53 TCP/80 UDP/5353 TCP/8080]"; s != want {
		t.Errorf("annotated pod: %s, want %s", s, want)
	}
	if s, want := render(got[1]), "[80 81] [TCP/80 UDP/80 TCP/81 UDP/81]"; s != want {
		t.Errorf("plain pod: %s, want %s", s, want)
	}
	changed := *got[0]
	changed.Listen = changed.Listen[1:]
	if got[0].sameTopology(&changed) {
		t.Error("a pod whose servers change must be rebuilt")
	}
}
