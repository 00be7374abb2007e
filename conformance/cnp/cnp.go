// Package cnp holds SIG Network's ClusterNetworkPolicy conformance suite
// (sigs.k8s.io/network-policy-api v0.3.0, conformance/tests) transcribed into
// data: one YAML file per upstream test under tests/, and the cluster they run
// in, base.yaml. README.md describes the format.
package cnp

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/netip"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

//go:embed base.yaml tests/*.yaml
var files embed.FS

// Profiles, as upstream: a test is experimental when it needs a feature
// outside the standard set.
const (
	ProfileStandard     = "standard"
	ProfileExperimental = "experimental"
)

// Test is one upstream ConformanceTest.
type Test struct {
	Name     string   `json:"name"`     // upstream ShortName
	Profile  string   `json:"profile"`  // standard or experimental
	Features []string `json:"features"` // upstream SupportedFeature names
	Upstream string   `json:"upstream"` // upstream Description
	Objects  []Object `json:"objects"`  // what the test's manifests create
	Steps    []Step   `json:"steps"`    // one per upstream t.Run, in order
}

// Stage is a set of changes followed by the probes that check them.
// Changes apply in the order Delete, Apply, NamespaceLabels, PodLabels.
type Stage struct {
	// Delete names objects to delete: "name" for cluster-scoped objects,
	// "namespace/name" for namespaced ones.
	Delete []string `json:"delete,omitempty"`
	// Apply creates objects or replaces the object of the same kind and name.
	Apply []Object `json:"apply,omitempty"`
	// NamespaceLabels maps a namespace to its complete new label set.
	NamespaceLabels map[string]map[string]string `json:"namespaceLabels,omitempty"`
	// PodLabels maps "namespace/pod" to the pod's complete new label set.
	PodLabels map[string]map[string]string `json:"podLabels,omitempty"`
	Probes    []Probe                      `json:"probes,omitempty"`
}

// Step is one upstream t.Run. Its first stage is inline; Then holds the
// further stages of the same t.Run, where upstream changes state between
// probes (a stage without probes is upstream's t.Cleanup).
type Step struct {
	Name string `json:"name"`
	Stage
	Then []Stage `json:"then,omitempty"`
}

// Stages returns the step's stages in order.
func (s Step) Stages() []Stage { return append([]Stage{s.Stage}, s.Then...) }

// AllProbes returns every probe of the step, over all stages, in order.
func (s Step) AllProbes() []Probe {
	var out []Probe
	for _, st := range s.Stages() {
		out = append(out, st.Probes...)
	}
	return out
}

// Probe is one upstream PokeServer call.
type Probe struct {
	From     string          `json:"from"`     // namespace/pod of the client
	To       string          `json:"to"`       // namespace/pod, or node:<name>
	Protocol corev1.Protocol `json:"protocol"` // TCP, UDP or SCTP
	Port     Port            `json:"port"`
	Allowed  bool            `json:"allowed"`
}

// Port is a probe's destination port: a number, or a ${hostNetworkPort:N}
// placeholder that Cluster.Port resolves.
type Port string

// UnmarshalJSON reads a number or a placeholder string.
func (p *Port) UnmarshalJSON(b []byte) error {
	var n int32
	if err := json.Unmarshal(b, &n); err == nil {
		*p = Port(strconv.Itoa(int(n)))
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("port must be a number or a placeholder: %s", b)
	}
	if !placeholderRE.MatchString(s) || placeholderRE.FindString(s) != s {
		return fmt.Errorf("port %q is neither a number nor a placeholder", s)
	}
	*p = Port(s)
	return nil
}

// Object is one manifest as JSON, placeholders unresolved.
type Object struct{ Raw []byte }

// UnmarshalJSON keeps the object's JSON as it is.
func (o *Object) UnmarshalJSON(b []byte) error {
	o.Raw = append([]byte(nil), b...)
	return nil
}

// Meta is the identity of an Object.
type Meta struct {
	APIVersion, Kind, Namespace, Name string
}

// Meta decodes the object's apiVersion, kind, namespace and name.
func (o Object) Meta() (Meta, error) {
	var m struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Metadata   metav1.ObjectMeta `json:"metadata"`
	}
	if err := json.Unmarshal(o.Raw, &m); err != nil {
		return Meta{}, err
	}
	return Meta{m.APIVersion, m.Kind, m.Metadata.Namespace, m.Metadata.Name}, nil
}

// Key is how Delete refers to the object: name, or namespace/name.
func (m Meta) Key() string {
	if m.Namespace == "" {
		return m.Name
	}
	return m.Namespace + "/" + m.Name
}

// Tests returns every transcribed test, sorted by name, placeholders
// unresolved. Unknown fields are errors.
func Tests() ([]Test, error) {
	names, err := fs.Glob(files, "tests/*.yaml")
	if err != nil {
		return nil, err
	}
	var out []Test
	seen := map[string]bool{}
	for _, n := range names {
		b, err := files.ReadFile(n)
		if err != nil {
			return nil, err
		}
		var t Test
		if err := yaml.UnmarshalStrict(b, &t); err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		if want := strings.TrimSuffix(path.Base(n), ".yaml"); t.Name != want {
			return nil, fmt.Errorf("%s: name %q, want %q", n, t.Name, want)
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("%s: duplicate name", n)
		}
		seen[t.Name] = true
		if t.Profile != ProfileStandard && t.Profile != ProfileExperimental {
			return nil, fmt.Errorf("%s: profile %q", n, t.Profile)
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Cluster is the base cluster, with every address fixed.
type Cluster struct {
	Namespaces []*corev1.Namespace
	Pods       []*corev1.Pod
	Nodes      []*corev1.Node
	// Serves maps "namespace/pod" to what the pod listens on, as
	// "PROTOCOL/port", declared as a container port or not.
	Serves map[string][]string

	hostNetworkPorts []int32
}

type baseFile struct {
	HostNetworkPorts []int32 `json:"hostNetworkPorts"`
	Nodes            []struct {
		Name       string            `json:"name"`
		Labels     map[string]string `json:"labels"`
		InternalIP string            `json:"internalIP"`
	} `json:"nodes"`
	Houses []struct {
		Namespace   string             `json:"namespace"`
		Labels      map[string]string  `json:"labels"`
		StatefulSet string             `json:"statefulSet"`
		HostNetwork bool               `json:"hostNetwork"`
		PodIPs      []string           `json:"podIPs"`
		Containers  []corev1.Container `json:"containers"`
		Serves      []string           `json:"serves"`
	} `json:"houses"`
}

// Replicas is the number of pods of every house's StatefulSet.
const Replicas = 2

var (
	placeholderRE = regexp.MustCompile(`\$\{([A-Za-z]+):([^}]*)\}`)
	quotedPortRE  = regexp.MustCompile(`"\$\{hostNetworkPort:([0-9]+)\}"`)
	agnhost       = "registry.k8s.io/e2e-test-images/agnhost:2.45"
)

// Base builds the base cluster. nodes names the node slots of base.yaml in
// order (none: base.yaml's own names); pods are spread round-robin over them,
// in house order and then replica order.
func Base(nodes []string) (*Cluster, error) {
	raw, err := files.ReadFile("base.yaml")
	if err != nil {
		return nil, err
	}
	var ports struct {
		HostNetworkPorts []int32 `json:"hostNetworkPorts"`
	}
	if err := yaml.Unmarshal(raw, &ports); err != nil {
		return nil, fmt.Errorf("base.yaml: %w", err)
	}
	c := &Cluster{hostNetworkPorts: ports.HostNetworkPorts, Serves: map[string][]string{}}
	// base.yaml may use ${hostNetworkPort:N} itself.
	raw, err = c.Resolve(raw)
	if err != nil {
		return nil, fmt.Errorf("base.yaml: %w", err)
	}
	var b baseFile
	if err := yaml.UnmarshalStrict(raw, &b); err != nil {
		return nil, fmt.Errorf("base.yaml: %w", err)
	}
	if len(nodes) == 0 {
		for _, n := range b.Nodes {
			nodes = append(nodes, n.Name)
		}
	}
	if len(nodes) > len(b.Nodes) {
		return nil, fmt.Errorf("%d nodes asked for, base.yaml has %d slots", len(nodes), len(b.Nodes))
	}
	nodeIP := map[string]string{}
	for i, name := range nodes {
		slot := b.Nodes[i]
		labels := map[string]string{}
		for k, v := range slot.Labels {
			labels[k] = v
		}
		if _, ok := labels[corev1.LabelHostname]; ok {
			labels[corev1.LabelHostname] = name
		}
		nodeIP[name] = slot.InternalIP
		c.Nodes = append(c.Nodes, &corev1.Node{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
			Status: corev1.NodeStatus{
				Addresses: []corev1.NodeAddress{
					{Type: corev1.NodeInternalIP, Address: slot.InternalIP},
					{Type: corev1.NodeHostName, Address: name},
				},
				Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			},
		})
	}
	next := 0
	for _, h := range b.Houses {
		labels := map[string]string{corev1.LabelMetadataName: h.Namespace}
		for k, v := range h.Labels {
			labels[k] = v
		}
		c.Namespaces = append(c.Namespaces, &corev1.Namespace{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: h.Namespace, Labels: labels},
			Status:     corev1.NamespaceStatus{Phase: corev1.NamespaceActive},
		})
		if !h.HostNetwork && len(h.PodIPs) != Replicas {
			return nil, fmt.Errorf("base.yaml: house %s: %d podIPs, want %d", h.Namespace, len(h.PodIPs), Replicas)
		}
		for i := 0; i < Replicas; i++ {
			name := fmt.Sprintf("%s-%d", h.StatefulSet, i)
			node := nodes[next%len(nodes)]
			next++
			ip := nodeIP[node]
			if !h.HostNetwork {
				ip = h.PodIPs[i]
			}
			if _, err := netip.ParseAddr(ip); err != nil {
				return nil, fmt.Errorf("base.yaml: pod %s/%s: %w", h.Namespace, name, err)
			}
			var containers []corev1.Container
			for _, ct := range h.Containers {
				ct = *ct.DeepCopy()
				ct.Name = h.StatefulSet + "-" + ct.Name
				ct.Image = agnhost
				containers = append(containers, ct)
			}
			podLabels := map[string]string{
				"statefulset.kubernetes.io/pod-name": name,
				"apps.kubernetes.io/pod-index":       strconv.Itoa(i),
			}
			for k, v := range h.Labels {
				podLabels[k] = v
			}
			c.Pods = append(c.Pods, &corev1.Pod{
				TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
				ObjectMeta: metav1.ObjectMeta{Namespace: h.Namespace, Name: name, Labels: podLabels},
				Spec: corev1.PodSpec{
					NodeName:    node,
					HostNetwork: h.HostNetwork,
					Containers:  containers,
				},
				Status: corev1.PodStatus{
					Phase:  corev1.PodRunning,
					HostIP: nodeIP[node],
					PodIP:  ip,
					PodIPs: []corev1.PodIP{{IP: ip}},
					Conditions: []corev1.PodCondition{
						{Type: corev1.PodReady, Status: corev1.ConditionTrue},
					},
				},
			})
			c.Serves[h.Namespace+"/"+name] = append([]string(nil), h.Serves...)
		}
	}
	return c, nil
}

// Pod returns the pod "namespace/name", or nil.
func (c *Cluster) Pod(key string) *corev1.Pod {
	for _, p := range c.Pods {
		if p.Namespace+"/"+p.Name == key {
			return p
		}
	}
	return nil
}

// Node returns the node of that name, or nil.
func (c *Cluster) Node(name string) *corev1.Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

func nodeInternalIP(n *corev1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}

func (c *Cluster) placeholder(kind, arg string) (string, error) {
	switch kind {
	case "podIP", "podCIDR":
		p := c.Pod(arg)
		if p == nil {
			return "", fmt.Errorf("${%s:%s}: no such pod", kind, arg)
		}
		if kind == "podIP" {
			return p.Status.PodIP, nil
		}
		a, err := netip.ParseAddr(p.Status.PodIP)
		if err != nil {
			return "", err
		}
		return netip.PrefixFrom(a, a.BitLen()).String(), nil
	case "nodeIP":
		n := c.Node(arg)
		if n == nil {
			return "", fmt.Errorf("${nodeIP:%s}: no such node", arg)
		}
		return nodeInternalIP(n), nil
	case "hostNetworkPort":
		i, err := strconv.Atoi(arg)
		if err != nil || i < 0 || i >= len(c.hostNetworkPorts) {
			return "", fmt.Errorf("${hostNetworkPort:%s}: no such entry", arg)
		}
		return strconv.Itoa(int(c.hostNetworkPorts[i])), nil
	}
	return "", fmt.Errorf("unknown placeholder ${%s:%s}", kind, arg)
}

// Resolve substitutes every placeholder in raw (YAML or JSON). A JSON string
// that is exactly "${hostNetworkPort:N}" becomes a bare number. Unknown
// placeholders are errors.
func (c *Cluster) Resolve(raw []byte) ([]byte, error) {
	var firstErr error
	sub := func(re *regexp.Regexp, in []byte, kind func([]string) (string, string)) []byte {
		return re.ReplaceAllFunc(in, func(m []byte) []byte {
			k, a := kind(re.FindStringSubmatch(string(m)))
			v, err := c.placeholder(k, a)
			if err != nil && firstErr == nil {
				firstErr = err
			}
			return []byte(v)
		})
	}
	out := sub(quotedPortRE, raw, func(s []string) (string, string) { return "hostNetworkPort", s[1] })
	out = sub(placeholderRE, out, func(s []string) (string, string) { return s[1], s[2] })
	if firstErr != nil {
		return nil, firstErr
	}
	if bytes.Contains(out, []byte("${")) {
		return nil, fmt.Errorf("malformed placeholder left in %q", out)
	}
	return out, nil
}

// Port resolves a probe port.
func (c *Cluster) Port(p Port) (int32, error) {
	s, err := c.Resolve([]byte(p))
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(string(s), 10, 32)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %q: not a port", p)
	}
	return int32(n), nil
}

// Target resolves where a probe connects: the destination pod's primary
// address (a host-networked pod's is its node's), or the named node's
// InternalIP for "node:<name>"; and the port.
func (c *Cluster) Target(p Probe) (ip string, port int32, err error) {
	if c.Pod(p.From) == nil {
		return "", 0, fmt.Errorf("probe from %q: no such pod", p.From)
	}
	if name, ok := strings.CutPrefix(p.To, "node:"); ok {
		n := c.Node(name)
		if n == nil {
			return "", 0, fmt.Errorf("probe to %q: no such node", p.To)
		}
		ip = nodeInternalIP(n)
	} else {
		pod := c.Pod(p.To)
		if pod == nil {
			return "", 0, fmt.Errorf("probe to %q: no such pod", p.To)
		}
		ip = pod.Status.PodIP
	}
	switch p.Protocol {
	case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
	default:
		return "", 0, fmt.Errorf("probe protocol %q", p.Protocol)
	}
	port, err = c.Port(p.Port)
	return ip, port, err
}
