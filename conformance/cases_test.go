package conformance

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/conformance/truthtable"
	"github.com/policyd/policyd/policy/model"
)

// upstreamReachabilityTests is the number of upstream reachability tests over
// the model (42 TCP, 3 UDP, 3 SCTP) minus the ones listed in cases/SKIPPED.md.
// A file that fails to embed or is deleted by mistake shows up here.
const upstreamReachabilityTests = 49

var testNodes = []string{"node-1", "node-2"}

func loadCases(t *testing.T) []Case {
	t.Helper()
	cases, err := Cases()
	if err != nil {
		t.Fatalf("Cases: %v", err)
	}
	return cases
}

func TestCases_ParseAndNamesUnique(t *testing.T) {
	t.Parallel()
	cases := loadCases(t)
	if len(cases) != upstreamReachabilityTests {
		t.Errorf("got %d cases, want %d", len(cases), upstreamReachabilityTests)
	}
	names, titles := map[string]bool{}, map[string]bool{}
	for _, c := range cases {
		if names[c.Name] {
			t.Errorf("case name %q used twice", c.Name)
		}
		names[c.Name] = true
		if titles[c.Upstream] {
			t.Errorf("case %s: upstream title %q used by another case", c.Name, c.Upstream)
		}
		titles[c.Upstream] = true
		if !strings.HasPrefix(c.Upstream, "[sig-network] Netpol ") {
			t.Errorf("case %s: upstream title %q does not start with the upstream describe text", c.Name, c.Upstream)
		}
		stepNames := map[string]bool{}
		for _, s := range c.Steps {
			if stepNames[s.Name] {
				t.Errorf("case %s: step name %q used twice", c.Name, s.Name)
			}
			stepNames[s.Name] = true
		}
	}
}

// TestCases_TablesCoverModel checks that every table of every step spans the
// nine model pods in model order, with every cell probed except the diagonal,
// and probes a port the model pods serve.
func TestCases_TablesCoverModel(t *testing.T) {
	t.Parallel()
	want := ModelPodKeys()
	served := map[PortProto]bool{}
	for _, pp := range ModelPorts() {
		served[pp] = true
	}
	for _, c := range loadCases(t) {
		for _, s := range c.Steps {
			where := fmt.Sprintf("case %s step %q", c.Name, s.Name)
			if len(s.Expect) == 0 {
				t.Errorf("%s: no tables", where)
			}
			for pp, tab := range s.Expect {
				if !served[pp] {
					t.Errorf("%s: probes %s, which the model pods do not serve", where, pp)
				}
				if !reflect.DeepEqual(tab.Names, want) {
					t.Errorf("%s %s: table names %v, want %v", where, pp, tab.Names, want)
					continue
				}
				for _, from := range want {
					for _, to := range want {
						_, probed := tab.Get(from, to)
						if probed == (from == to) {
							t.Errorf("%s %s: cell %s -> %s probed=%v, want %v", where, pp, from, to, probed, from != to)
						}
					}
				}
			}
		}
	}
}

// TestCases_ObjectsValid checks that every policy converts without validation
// errors and lives in a model namespace, and that every step applies cleanly
// on top of the previous ones.
func TestCases_ObjectsValid(t *testing.T) {
	t.Parallel()
	for _, c := range loadCases(t) {
		nss, pods := ModelCluster(testNodes)
		var pols []*networkingv1.NetworkPolicy
		for _, s := range c.Steps {
			for _, np := range s.Policies {
				if indexOf(modelNamespaces, np.Namespace) < 0 {
					t.Errorf("case %s step %q: policy %s/%s is outside the model namespaces", c.Name, s.Name, np.Namespace, np.Name)
				}
				if _, errs := cluster.ConvertPolicy(np); len(errs) > 0 {
					t.Errorf("case %s step %q: policy %s/%s: %v", c.Name, s.Name, np.Namespace, np.Name, errs)
				}
			}
			var err error
			if nss, pods, pols, err = s.Apply(nss, pods, pols); err != nil {
				t.Errorf("case %s: %v", c.Name, err)
				break
			}
		}
	}
}

// TestCases_Model runs every step of every case through the semantics model
// and requires it to agree with the expected tables on every probed cell.
func TestCases_Model(t *testing.T) {
	t.Parallel()
	for _, c := range loadCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			nss, pods := ModelCluster(testNodes)
			var pols []*networkingv1.NetworkPolicy
			var svcs []*corev1.Service
			for i, s := range c.Steps {
				var err error
				if nss, pods, pols, err = s.Apply(nss, pods, pols); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				svcs = s.ApplyServices(svcs)
				snap, errs := cluster.NewSnapshot(nss, pods, pols)
				errs = append(errs, snap.AddServices(svcs, nil)...)
				if len(errs) > 0 {
					t.Fatalf("step %d %q: snapshot: %v", i, s.Name, errs)
				}
				bad, _, err := CheckExternal(snap, s, false)
				if err != nil {
					t.Fatalf("step %d %q: %v", i, s.Name, err)
				}
				for _, b := range bad {
					t.Errorf("case %s step %d %q: %s", c.Name, i, s.Name, b)
				}
				for _, pp := range s.Expect.Keys() {
					exp := s.Expect[pp]
					obs, why := evaluateTable(t, snap, exp, pp)
					if n, diff := truthtable.Diff(exp, obs); n > 0 {
						t.Errorf("case %s (upstream %q)\nstep %d %q, %s: model disagrees with the expected table\n%s%s",
							c.Name, c.Upstream, i, s.Name, pp, diff, why(exp))
					}
				}
			}
		})
	}
}

// evaluateTable asks the model for every cell exp probes. why explains the
// model's decision for each cell that disagrees with exp.
func evaluateTable(t *testing.T, snap *cluster.Snapshot, exp *truthtable.Table, pp PortProto) (*truthtable.Table, func(*truthtable.Table) string) {
	t.Helper()
	obs := truthtable.New(exp.Names)
	decisions := map[[2]string]model.Decision{}
	for _, from := range exp.Names {
		for _, to := range exp.Names {
			if _, probed := exp.Get(from, to); !probed {
				continue
			}
			src, dst := snap.Pod(from), snap.Pod(to)
			if src == nil || dst == nil {
				t.Fatalf("%s -> %s: pod missing from the snapshot", from, to)
			}
			d := model.Evaluate(snap, model.Packet{
				Src:      model.Endpoint{Pod: src, IP: firstIP(t, src)},
				Dst:      model.Endpoint{Pod: dst, IP: firstIP(t, dst)},
				Protocol: pp.Protocol,
				Port:     pp.Port,
			})
			decisions[[2]string{from, to}] = d
			obs.Set(from, to, d.Allowed)
		}
	}
	why := func(exp *truthtable.Table) string {
		var b strings.Builder
		for _, from := range exp.Names {
			for _, to := range exp.Names {
				want, probed := exp.Get(from, to)
				d := decisions[[2]string{from, to}]
				if probed && want != d.Allowed {
					fmt.Fprintf(&b, "model on %s -> %s: egress: %s; ingress: %s\n", from, to, d.Egress.Reason, d.Ingress.Reason)
				}
			}
		}
		return b.String()
	}
	return obs, why
}

func firstIP(t *testing.T, p *cluster.Pod) netip.Addr {
	t.Helper()
	if len(p.IPs) == 0 {
		t.Fatalf("pod %s has no IP", p.Key())
	}
	return p.IPs[0]
}

func TestModelCluster(t *testing.T) {
	t.Parallel()
	nss, pods := ModelCluster([]string{"node-1", "node-2"})
	snap, errs := cluster.NewSnapshot(nss, pods, nil)
	if len(errs) > 0 {
		t.Fatalf("snapshot: %v", errs)
	}
	if got, want := len(snap.Namespaces), 3; got != want {
		t.Errorf("got %d namespaces, want %d", got, want)
	}
	for _, ns := range nss {
		if want := map[string]string{corev1.LabelMetadataName: ns.Name}; !reflect.DeepEqual(ns.Labels, want) {
			t.Errorf("namespace %s labels %v, want %v", ns.Name, ns.Labels, want)
		}
	}
	keys := ModelPodKeys()
	if len(pods) != len(keys) {
		t.Fatalf("got %d pods, want %d", len(pods), len(keys))
	}
	ips := map[netip.Addr]string{}
	for i, p := range pods {
		key := p.Namespace + "/" + p.Name
		if key != keys[i] {
			t.Errorf("pod %d is %s, want %s", i, key, keys[i])
		}
		if want := []string{"node-1", "node-2"}[i%2]; p.Spec.NodeName != want {
			t.Errorf("pod %s on node %q, want %q", key, p.Spec.NodeName, want)
		}
		if want := map[string]string{PodLabelKey: p.Name}; !reflect.DeepEqual(p.Labels, want) {
			t.Errorf("pod %s labels %v, want %v", key, p.Labels, want)
		}
		cp := snap.Pod(key)
		if len(cp.IPs) != 1 || !cp.IPs[0].Is4() || !netip.MustParsePrefix("10.0.0.0/8").Contains(cp.IPs[0]) {
			t.Errorf("pod %s IPs %v, want one 10.x IPv4 address", key, cp.IPs)
			continue
		}
		if want, _ := ModelPodIP(key); cp.IPs[0] != want {
			t.Errorf("pod %s IP %s, want ModelPodIP %s", key, cp.IPs[0], want)
		}
		if prev, dup := ips[cp.IPs[0]]; dup {
			t.Errorf("pods %s and %s share IP %s", prev, key, cp.IPs[0])
		}
		ips[cp.IPs[0]] = key
		for _, pp := range ModelPorts() {
			if n, ok := cp.ResolvePort(ModelPortName(pp), pp.Protocol); !ok || n != pp.Port {
				t.Errorf("pod %s: port %s resolves to %d, %v; want %d", key, ModelPortName(pp), n, ok, pp.Port)
			}
		}
	}
	if _, ok := ModelPodIP("x/d"); ok {
		t.Errorf("ModelPodIP(x/d) reported a pod outside the model")
	}
	// Every call returns fresh objects.
	_, again := ModelCluster(nil)
	again[0].Labels["pod"] = "changed"
	if pods[0].Labels["pod"] != "a" {
		t.Errorf("ModelCluster results share label maps")
	}
	if again[0].Spec.NodeName != "" {
		t.Errorf("with no nodes, pod scheduled on %q", again[0].Spec.NodeName)
	}
}

func TestModelPortName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pp   PortProto
		want string
	}{
		{PortProto{Port: 80, Protocol: cluster.ProtocolTCP}, "serve-80-tcp"},
		{PortProto{Port: 81, Protocol: cluster.ProtocolUDP}, "serve-81-udp"},
		{PortProto{Port: 80, Protocol: cluster.ProtocolSCTP}, "serve-80-sctp"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			t.Parallel()
			if got := ModelPortName(tt.pp); got != tt.want {
				t.Errorf("ModelPortName(%s) = %q, want %q", tt.pp, got, tt.want)
			}
		})
	}
}

func policy(ns, name string, tweak ...func(*networkingv1.NetworkPolicy)) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{}
	np.APIVersion, np.Kind = "networking.k8s.io/v1", "NetworkPolicy"
	np.Namespace, np.Name = ns, name
	np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	for _, f := range tweak {
		f(np)
	}
	return np
}

func TestStep_Apply(t *testing.T) {
	t.Parallel()
	denyX := policy("x", "deny")
	allowX := policy("x", "allow", func(np *networkingv1.NetworkPolicy) {
		np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{}}
	})
	updatedDeny := policy("x", "deny", func(np *networkingv1.NetworkPolicy) {
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	})
	tests := []struct {
		name     string
		step     Step
		pols     []*networkingv1.NetworkPolicy
		wantPols []string // "ns/name:policyTypes"
		wantErr  string
		check    func(t *testing.T, nss []*corev1.Namespace, pods []*corev1.Pod)
	}{
		{
			name:     "create",
			step:     Step{Name: "s", Policies: []*networkingv1.NetworkPolicy{allowX}},
			pols:     []*networkingv1.NetworkPolicy{denyX},
			wantPols: []string{"x/allow:[Ingress]", "x/deny:[Ingress]"},
		},
		{
			name:     "update replaces the policy of the same key",
			step:     Step{Name: "s", Policies: []*networkingv1.NetworkPolicy{updatedDeny}},
			pols:     []*networkingv1.NetworkPolicy{denyX},
			wantPols: []string{"x/deny:[Egress]"},
		},
		{
			name:     "delete",
			step:     Step{Name: "s", DeletePolicies: []string{"x/deny"}},
			pols:     []*networkingv1.NetworkPolicy{denyX, allowX},
			wantPols: []string{"x/allow:[Ingress]"},
		},
		{
			name:    "delete of a missing policy",
			step:    Step{Name: "s", DeletePolicies: []string{"y/deny"}},
			pols:    []*networkingv1.NetworkPolicy{denyX},
			wantErr: "no policy y/deny",
		},
		{
			name: "pod labels replace the set",
			step: Step{Name: "s", PodLabels: map[string]map[string]string{"x/b": {"pod": "b", "pod2": "updated"}}},
			check: func(t *testing.T, _ []*corev1.Namespace, pods []*corev1.Pod) {
				if want := map[string]string{"pod": "b", "pod2": "updated"}; !reflect.DeepEqual(pods[1].Labels, want) {
					t.Errorf("x/b labels %v, want %v", pods[1].Labels, want)
				}
				if want := map[string]string{"pod": "a"}; !reflect.DeepEqual(pods[0].Labels, want) {
					t.Errorf("x/a labels %v, want %v", pods[0].Labels, want)
				}
			},
		},
		{
			name:    "labels of a missing pod",
			step:    Step{Name: "s", PodLabels: map[string]map[string]string{"x/d": {"pod": "d"}}},
			wantErr: "no pod x/d",
		},
		{
			name: "namespace keeps its name label",
			step: Step{Name: "s", NamespaceLabels: map[string]map[string]string{"y": {"ns2": "updated"}}},
			check: func(t *testing.T, nss []*corev1.Namespace, _ []*corev1.Pod) {
				if want := map[string]string{"ns2": "updated", corev1.LabelMetadataName: "y"}; !reflect.DeepEqual(nss[1].Labels, want) {
					t.Errorf("y labels %v, want %v", nss[1].Labels, want)
				}
			},
		},
		{
			name:    "namespace name label may not change",
			step:    Step{Name: "s", NamespaceLabels: map[string]map[string]string{"y": {corev1.LabelMetadataName: "x"}}},
			wantErr: "must be \"y\"",
		},
		{
			name:    "labels of a missing namespace",
			step:    Step{Name: "s", NamespaceLabels: map[string]map[string]string{"w": {}}},
			wantErr: "no namespace w",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			nss, pods := ModelCluster(testNodes)
			before := fmt.Sprint(nss, pods, tt.pols)
			gotNss, gotPods, gotPols, err := tt.step.Apply(nss, pods, tt.pols)
			if after := fmt.Sprint(nss, pods, tt.pols); after != before {
				t.Errorf("Apply modified its inputs")
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if tt.wantPols != nil {
				var got []string
				for _, p := range gotPols {
					got = append(got, fmt.Sprintf("%s/%s:%v", p.Namespace, p.Name, p.Spec.PolicyTypes))
				}
				if !reflect.DeepEqual(got, tt.wantPols) {
					t.Errorf("policies %v, want %v", got, tt.wantPols)
				}
			}
			if tt.check != nil {
				tt.check(t, gotNss, gotPods)
			}
		})
	}
}

const validCase = `name: ok
upstream: "[sig-network] Netpol something"
steps:
- name: deny
  policies:
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: deny, namespace: x}
    spec: {podSelector: {}, policyTypes: [Ingress]}
  expect: |
    TCP/80
    -   x/a x/b
    x/a -   X
    x/b X   -
`

func TestParseCase(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		file    string
		data    string
		wantErr string
	}{
		{name: "valid", file: "ok.yaml", data: validCase},
		{name: "name differs from file", file: "other.yaml", data: validCase, wantErr: `does not match the file name`},
		{name: "unknown top-level field", file: "ok.yaml", data: validCase + "extra: 1\n", wantErr: `unknown field "extra"`},
		{name: "unknown policy field", file: "ok.yaml", data: strings.Replace(validCase, "podSelector: {}", "podSelectr: {}", 1), wantErr: `unknown field`},
		{name: "wrong apiVersion", file: "ok.yaml", data: strings.Replace(validCase, "networking.k8s.io/v1", "extensions/v1beta1", 1), wantErr: `policies[0].apiVersion`},
		{name: "missing namespace", file: "ok.yaml", data: strings.Replace(validCase, ", namespace: x", "", 1), wantErr: `metadata.namespace: required`},
		{name: "bad table mark", file: "ok.yaml", data: strings.Replace(validCase, "x/a -   X", "x/a -   Y", 1), wantErr: `unknown mark "Y"`},
		{name: "no table", file: "ok.yaml", data: strings.Split(validCase, "  expect:")[0], wantErr: `expect: at least one`},
		{name: "no steps", file: "ok.yaml", data: "name: ok\nupstream: u\nsteps: []\n", wantErr: `steps: at least one`},
		{name: "no upstream", file: "ok.yaml", data: strings.Replace(validCase, `upstream: "[sig-network] Netpol something"`, "", 1), wantErr: `upstream: required`},
		{name: "bad delete key", file: "ok.yaml", data: strings.Replace(validCase, "  expect:", "  deletePolicies: [deny]\n  expect:", 1), wantErr: `deletePolicies[0]`},
		{name: "bad pod key", file: "ok.yaml", data: strings.Replace(validCase, "  expect:", "  podLabels: {a: {pod: a}}\n  expect:", 1), wantErr: `podLabels[a]`},
		{name: "bad label value", file: "ok.yaml", data: strings.Replace(validCase, "  expect:", "  namespaceLabels: {\"y\": {ns2: \"not ok\"}}\n  expect:", 1), wantErr: `namespaceLabels[y]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := ParseCase(tt.file, []byte(tt.data))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.file) {
					t.Errorf("err %q does not name the file %s", err, tt.file)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCase: %v", err)
			}
			if len(c.Steps) != 1 || len(c.Steps[0].Policies) != 1 || len(c.Steps[0].Expect) != 1 {
				t.Fatalf("parsed %+v, want one step with one policy and one table", c)
			}
			tab := c.Steps[0].Expect[PortProto{Port: 80, Protocol: cluster.ProtocolTCP}]
			if allowed, probed := tab.Get("x/a", "x/b"); allowed || !probed {
				t.Errorf("x/a -> x/b = allowed %v probed %v, want denied", allowed, probed)
			}
		})
	}
}
