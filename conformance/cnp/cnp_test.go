package cnp

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"
	"sigs.k8s.io/yaml"
)

func mustLoad(t *testing.T) ([]Test, *Cluster) {
	t.Helper()
	tests, err := Tests()
	if err != nil {
		t.Fatal(err)
	}
	c, err := Base(nil)
	if err != nil {
		t.Fatal(err)
	}
	return tests, c
}

// decodeStrict decodes a resolved object into the module's own type for its
// apiVersion and kind; unknown fields are errors.
func decodeStrict(m Meta, raw []byte) error {
	var into any
	switch m.APIVersion + "/" + m.Kind {
	case "policy.networking.k8s.io/v1beta1/ClusterNetworkPolicy":
		into = &v1beta1.ClusterNetworkPolicy{}
	case "policy.networking.k8s.io/v1alpha2/ClusterNetworkPolicy":
		into = &v1alpha2.ClusterNetworkPolicy{}
	case "networking.k8s.io/v1/NetworkPolicy":
		into = &networkingv1.NetworkPolicy{}
	default:
		return fmt.Errorf("unexpected %s %s", m.APIVersion, m.Kind)
	}
	return yaml.UnmarshalStrict(raw, into)
}

func TestData(t *testing.T) {
	tests, c := mustLoad(t)
	if len(tests) == 0 {
		t.Fatal("no tests")
	}
	for _, tc := range tests {
		t.Run(tc.Name, func(t *testing.T) {
			live := map[string]bool{}
			checkObj := func(where string, o Object) string {
				m, err := o.Meta()
				if err != nil {
					t.Fatalf("%s: %v", where, err)
				}
				raw, err := c.Resolve(o.Raw)
				if err != nil {
					t.Fatalf("%s: %v", where, err)
				}
				if err := decodeStrict(m, raw); err != nil {
					t.Errorf("%s: %s: %v", where, m.Key(), err)
				}
				return m.Key()
			}
			for i, o := range tc.Objects {
				k := checkObj(fmt.Sprintf("objects[%d]", i), o)
				if live[k] {
					t.Errorf("object %s twice", k)
				}
				live[k] = true
			}
			if len(tc.Steps) == 0 {
				t.Error("no steps")
			}
			for i, s := range tc.Steps {
				if s.Name == "" {
					t.Errorf("step %d has no name", i)
				}
				for j, st := range s.Stages() {
					where := fmt.Sprintf("step %d stage %d", i, j)
					for _, d := range st.Delete {
						if !live[d] {
							t.Errorf("%s: delete %s: not there", where, d)
						}
						delete(live, d)
					}
					for _, o := range st.Apply {
						live[checkObj(where, o)] = true
					}
					for ns, l := range st.NamespaceLabels {
						found := false
						for _, n := range c.Namespaces {
							found = found || n.Name == ns
						}
						if !found {
							t.Errorf("%s: namespaceLabels: no namespace %s", where, ns)
						}
						if l["kubernetes.io/metadata.name"] != ns {
							t.Errorf("%s: namespace %s loses kubernetes.io/metadata.name", where, ns)
						}
					}
					for p := range st.PodLabels {
						if c.Pod(p) == nil {
							t.Errorf("%s: podLabels: no pod %s", where, p)
						}
					}
					if j > 0 && len(st.Probes) == 0 && j != len(s.Then) {
						t.Errorf("%s: only the last stage may lack probes", where)
					}
					for _, p := range st.Probes {
						if _, _, err := c.Target(p); err != nil {
							t.Errorf("%s: %v", where, err)
						}
					}
				}
			}
			std := true
			for _, f := range tc.Features {
				if f != "ClusterNetworkPolicy" {
					std = false
				}
			}
			if want := map[bool]string{true: ProfileStandard, false: ProfileExperimental}[std]; tc.Profile != want {
				t.Errorf("profile %s, features %v say %s", tc.Profile, tc.Features, want)
			}
		})
	}
}

func TestBase(t *testing.T) {
	c, err := Base([]string{"n1", "n2"})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Namespaces) != 5 || len(c.Pods) != 10 || len(c.Nodes) != 2 {
		t.Fatalf("%d namespaces, %d pods, %d nodes", len(c.Namespaces), len(c.Pods), len(c.Nodes))
	}
	ips := map[string]bool{}
	for i, p := range c.Pods {
		if want := []string{"n1", "n2"}[i%2]; p.Spec.NodeName != want {
			t.Errorf("%s/%s on %s, want %s", p.Namespace, p.Name, p.Spec.NodeName, want)
		}
		if !p.Spec.HostNetwork {
			if ips[p.Status.PodIP] {
				t.Errorf("%s/%s: address %s twice", p.Namespace, p.Name, p.Status.PodIP)
			}
			ips[p.Status.PodIP] = true
		} else if p.Status.PodIP != p.Status.HostIP {
			t.Errorf("host-networked %s has %s, its node %s", p.Name, p.Status.PodIP, p.Status.HostIP)
		}
	}
	centaur := c.Pod("network-policy-conformance-forbidden-forrest/centaur-1")
	if centaur == nil || centaur.Spec.Containers[1].Ports[0].ContainerPort != 34345 || centaur.Spec.Containers[1].Name != "centaur-34345-tcp" {
		t.Errorf("centaur-1 containers: %+v", centaur.Spec.Containers)
	}
	if got, _ := c.Resolve([]byte(`{"a":"${podCIDR:network-policy-conformance-ravenclaw/luna-lovegood-0}","b":"${hostNetworkPort:2}","c":"x-${hostNetworkPort:2}"}`)); string(got) != `{"a":"10.244.4.10/32","b":34347,"c":"x-34347"}` {
		t.Errorf("Resolve: %s", got)
	}
	for _, bad := range []string{"${nope:1}", "${podIP:x/y}", "${hostNetworkPort:8}", "${nodeIP:cnp-node-1}"} {
		if _, err := c.Resolve([]byte(bad)); err == nil {
			t.Errorf("Resolve(%s): no error", bad)
		}
	}
	if _, err := Base(make([]string, 5)); err == nil {
		t.Error("5 nodes for 4 slots: no error")
	}
}

// upstreamDir finds the module's conformance directory in the module cache.
func upstreamDir(t *testing.T) string {
	out, err := exec.Command("go", "list", "-m", "-json", "sigs.k8s.io/network-policy-api").Output()
	if err != nil {
		t.Skipf("sigs.k8s.io/network-policy-api not found by go list (%v); cannot cross-check against upstream", err)
	}
	var m struct{ Dir string }
	if err := json.Unmarshal(out, &m); err != nil || m.Dir == "" {
		t.Skipf("sigs.k8s.io/network-policy-api is not in the module cache; cannot cross-check against upstream")
	}
	d := filepath.Join(m.Dir, "conformance")
	if _, err := os.Stat(filepath.Join(d, "tests")); err != nil {
		t.Skipf("no upstream tests at %s: %v", d, err)
	}
	return d
}

type upstreamTest struct {
	name, description string
	features          []string
	manifests         []string
	runs, probes      int
}

// parseUpstream reads every ConformanceTest literal in tests/*.go and counts
// the t.Run and PokeServer calls in its Test function.
func parseUpstream(t *testing.T, dir string) map[string]upstreamTest {
	files, err := filepath.Glob(filepath.Join(dir, "tests", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no upstream test files: %v", err)
	}
	out := map[string]upstreamTest{}
	fset := token.NewFileSet()
	for _, f := range files {
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(af, func(n ast.Node) bool {
			cl, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			if sel, ok := cl.Type.(*ast.SelectorExpr); !ok || sel.Sel.Name != "ConformanceTest" {
				return true
			}
			var u upstreamTest
			for _, e := range cl.Elts {
				kv := e.(*ast.KeyValueExpr)
				switch kv.Key.(*ast.Ident).Name {
				case "ShortName":
					u.name, _ = strconv.Unquote(kv.Value.(*ast.BasicLit).Value)
				case "Description":
					u.description, _ = strconv.Unquote(kv.Value.(*ast.BasicLit).Value)
				case "Features":
					for _, x := range kv.Value.(*ast.CompositeLit).Elts {
						// suite.SupportClusterNetworkPolicyNamedPorts -> ClusterNetworkPolicyNamedPorts
						u.features = append(u.features, strings.TrimPrefix(x.(*ast.SelectorExpr).Sel.Name, "Support"))
					}
				case "Manifests":
					for _, x := range kv.Value.(*ast.CompositeLit).Elts {
						s, _ := strconv.Unquote(x.(*ast.BasicLit).Value)
						u.manifests = append(u.manifests, s)
					}
				case "Test":
					ast.Inspect(kv.Value, func(n ast.Node) bool {
						c, ok := n.(*ast.CallExpr)
						if !ok {
							return true
						}
						sel, ok := c.Fun.(*ast.SelectorExpr)
						if !ok {
							return true
						}
						x, _ := sel.X.(*ast.Ident)
						switch {
						case x != nil && x.Name == "t" && sel.Sel.Name == "Run":
							u.runs++
						case sel.Sel.Name == "PokeServer":
							u.probes++
						}
						return true
					})
				}
			}
			if u.name == "" {
				t.Fatalf("%s: ConformanceTest without ShortName", f)
			}
			if _, dup := out[u.name]; dup {
				t.Fatalf("upstream ShortName %s twice", u.name)
			}
			out[u.name] = u
			return false
		})
	}
	return out
}

func skipped(t *testing.T) map[string]bool {
	b, err := os.ReadFile("SKIPPED.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^- (CNP\w+):`).FindAllStringSubmatch(string(b), -1) {
		out[m[1]] = true
	}
	return out
}

var templateRE = regexp.MustCompile(`\{\{ *index +\.HostNetworkPorts +(\d+) *\}\}`)

// upstreamObjects decodes a test's manifests, with the host-network ports
// filled in as our base does, into generic JSON values.
func upstreamObjects(t *testing.T, dir string, c *Cluster, manifests []string) []any {
	var out []any
	for _, m := range manifests {
		b, err := os.ReadFile(filepath.Join(dir, m))
		if err != nil {
			t.Fatal(err)
		}
		b = templateRE.ReplaceAllFunc(b, func(s []byte) []byte {
			i, _ := strconv.Atoi(templateRE.FindStringSubmatch(string(s))[1])
			return []byte(strconv.Itoa(int(c.hostNetworkPorts[i])))
		})
		for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
			var v any
			if err := yaml.Unmarshal([]byte(doc), &v); err != nil {
				t.Fatalf("%s: %v", m, err)
			}
			if v != nil {
				out = append(out, v)
			}
		}
	}
	return out
}

// TestUpstreamCounts cross-checks the transcription against the upstream
// source in the module cache: every ShortName is transcribed or skipped, and
// per test the number of t.Run calls equals our steps, the number of
// PokeServer calls equals our probes, descriptions and features match, and
// our starting objects equal upstream's manifests.
func TestUpstreamCounts(t *testing.T) {
	dir := upstreamDir(t)
	up := parseUpstream(t, dir)
	tests, c := mustLoad(t)
	skip := skipped(t)
	ours := map[string]Test{}
	for _, tc := range tests {
		ours[tc.Name] = tc
	}
	var names []string
	for n := range up {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		u := up[n]
		tc, ok := ours[n]
		if !ok {
			if !skip[n] {
				t.Errorf("upstream test %s is neither transcribed nor in SKIPPED.md", n)
			}
			continue
		}
		if skip[n] {
			t.Errorf("%s is both transcribed and in SKIPPED.md", n)
		}
		probes := 0
		for _, s := range tc.Steps {
			probes += len(s.AllProbes())
		}
		if len(tc.Steps) != u.runs {
			t.Errorf("%s: %d steps, upstream has %d t.Run calls", n, len(tc.Steps), u.runs)
		}
		if probes != u.probes {
			t.Errorf("%s: %d probes, upstream has %d PokeServer calls", n, probes, u.probes)
		}
		if tc.Upstream != u.description {
			t.Errorf("%s: upstream %q, upstream's Description is %q", n, tc.Upstream, u.description)
		}
		if !reflect.DeepEqual(tc.Features, u.features) {
			t.Errorf("%s: features %v, upstream %v", n, tc.Features, u.features)
		}
		want := upstreamObjects(t, dir, c, u.manifests)
		var got []any
		for _, o := range tc.Objects {
			raw, err := c.Resolve(o.Raw)
			if err != nil {
				t.Fatal(err)
			}
			var v any
			if err := json.Unmarshal(raw, &v); err != nil {
				t.Fatal(err)
			}
			got = append(got, v)
		}
		if !reflect.DeepEqual(got, want) {
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(want)
			t.Errorf("%s: objects differ from upstream manifests %v\n got %s\nwant %s", n, u.manifests, g, w)
		}
	}
	for n := range ours {
		if _, ok := up[n]; !ok {
			t.Errorf("%s is not an upstream test", n)
		}
	}
	for n := range skip {
		if _, ok := up[n]; !ok {
			t.Errorf("SKIPPED.md lists %s, not an upstream test", n)
		}
	}
}
