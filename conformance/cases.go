// Package conformance owns the upstream Kubernetes e2e NetworkPolicy
// reachability cases, written as data: one YAML file per case under cases/,
// embedded in the binary. A case is a list of steps; each step applies
// objects (NetworkPolicies, pod and namespace label changes, policy deletes)
// to the x/y/z × a/b/c model cluster and then states the expected
// connectivity as truth tables, one per probed (port, protocol).
//
// The data is consumed by the semantics-model test in this package and by the
// kernel lab; neither needs to know how the expectations were derived. The
// file format is documented in cases/README.md, and the upstream tests that
// are not expressible over the model are listed in cases/SKIPPED.md.
package conformance

import (
	"embed"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/policyd/policyd/conformance/truthtable"
	"github.com/policyd/policyd/policy/model"
)

//go:embed cases/*.yaml
var caseFiles embed.FS

// PortProto is a probed destination port and protocol.
type PortProto = model.PortProto

// Step is one stage of a case: the changes it makes to the cluster, then the
// connectivity expected once they are in place. Changes apply in the order
// DeletePolicies, Policies, NamespaceLabels, PodLabels (see Apply).
type Step struct {
	// Name says in a few words what the step does.
	Name string
	// Policies are created, or replace the policy of the same namespace and
	// name (an update).
	Policies []*networkingv1.NetworkPolicy
	// DeletePolicies are policy keys "namespace/name" to delete.
	DeletePolicies []string
	// PodLabels maps a pod key "namespace/name" to its complete new label set.
	PodLabels map[string]map[string]string
	// NamespaceLabels maps a namespace name to its complete new label set.
	NamespaceLabels map[string]map[string]string
	// Services are created, or replace the Service of the same namespace and
	// name; they stay for the following steps (ApplyServices).
	Services []*corev1.Service
	// External are the expected verdicts on connections from a client
	// outside the cluster (ExternalClientIP) to a Service: every backend
	// the connection may reach must have this verdict.
	External []External
	// Expect holds one truth table per probed destination port and protocol;
	// its keys are the probes of this step. Cells marked not probed (the
	// diagonal: a pod to itself) carry no expectation.
	Expect truthtable.Tables
}

// ExternalClientIP is the address of the client outside the cluster whose
// connections External states; the lab's external client has it
// (lab.ExternalClientAddr).
const ExternalClientIP = "10.255.0.250"

// External is the expected verdict on connections from ExternalClientIP to
// one port of a Service, through its NodePorts and load-balancer IPs.
type External struct {
	// Service is "namespace/name".
	Service  string `json:"service"`
	Port     int32  `json:"port"`
	Protocol string `json:"protocol"`
	Allowed  bool   `json:"allowed"`
}

// ApplyServices returns prev with the step's Services created or replacing
// the ones of the same namespace and name, sorted by namespace/name.
func (s Step) ApplyServices(prev []*corev1.Service) []*corev1.Service {
	byKey := map[string]*corev1.Service{}
	for _, x := range prev {
		byKey[x.Namespace+"/"+x.Name] = x
	}
	for _, x := range s.Services {
		byKey[x.Namespace+"/"+x.Name] = x.DeepCopy()
	}
	var out []*corev1.Service
	for _, k := range slices.Sorted(maps.Keys(byKey)) {
		out = append(out, byKey[k])
	}
	return out
}

// Case is one upstream reachability test.
type Case struct {
	// Name is the case's unique name; the file is cases/<Name>.yaml.
	Name string
	// Upstream is the upstream test's full title (describe, context and it
	// texts, without feature tags).
	Upstream string
	// Steps run in order; each starts from the state the previous one left.
	Steps []Step
}

// Cases returns every case, sorted by name. An error names the file and the
// field that is wrong.
func Cases() ([]Case, error) {
	names, err := fs.Glob(caseFiles, "cases/*.yaml")
	if err != nil {
		return nil, fmt.Errorf("listing case files: %w", err)
	}
	sort.Strings(names)
	out := make([]Case, 0, len(names))
	seen := map[string]string{}
	for _, n := range names {
		data, err := caseFiles.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", n, err)
		}
		c, err := ParseCase(path.Base(n), data)
		if err != nil {
			return nil, err
		}
		if prev, dup := seen[c.Name]; dup {
			return nil, fmt.Errorf("%s: name %q already used by %s", n, c.Name, prev)
		}
		seen[c.Name] = n
		out = append(out, c)
	}
	return out, nil
}

// caseFile and stepFile are the YAML layout (see cases/README.md).
type caseFile struct {
	Name     string     `json:"name"`
	Upstream string     `json:"upstream"`
	Steps    []stepFile `json:"steps"`
}

type stepFile struct {
	Name            string                       `json:"name"`
	Policies        []networkingv1.NetworkPolicy `json:"policies,omitempty"`
	DeletePolicies  []string                     `json:"deletePolicies,omitempty"`
	PodLabels       map[string]map[string]string `json:"podLabels,omitempty"`
	NamespaceLabels map[string]map[string]string `json:"namespaceLabels,omitempty"`
	Services        []corev1.Service             `json:"services,omitempty"`
	External        []External                   `json:"external,omitempty"`
	Expect          string                       `json:"expect"`
}

// ParseCase parses one case file. file is the file's base name; it must be
// the case name followed by ".yaml". Unknown fields are errors, so a typo in a
// policy cannot silently change its meaning.
func ParseCase(file string, data []byte) (Case, error) {
	var cf caseFile
	if err := yaml.UnmarshalStrict(data, &cf); err != nil {
		return Case{}, fmt.Errorf("case file %s: %w", file, err)
	}
	errf := func(format string, args ...any) (Case, error) {
		return Case{}, fmt.Errorf("case file %s: "+format, append([]any{file}, args...)...)
	}
	if cf.Name == "" {
		return errf("name: required")
	}
	if want := strings.TrimSuffix(file, ".yaml"); cf.Name != want {
		return errf("name: %q does not match the file name (want %q)", cf.Name, want)
	}
	if cf.Upstream == "" {
		return errf("upstream: required")
	}
	if len(cf.Steps) == 0 {
		return errf("steps: at least one step is required")
	}
	c := Case{Name: cf.Name, Upstream: cf.Upstream}
	for i, sf := range cf.Steps {
		s, err := convertStep(sf)
		if err != nil {
			return errf("steps[%d]: %w", i, err)
		}
		c.Steps = append(c.Steps, s)
	}
	return c, nil
}

func convertStep(sf stepFile) (Step, error) {
	if sf.Name == "" {
		return Step{}, fmt.Errorf("name: required")
	}
	s := Step{Name: sf.Name, DeletePolicies: sf.DeletePolicies, PodLabels: sf.PodLabels, NamespaceLabels: sf.NamespaceLabels}
	seen := map[string]bool{}
	for i := range sf.Policies {
		np := sf.Policies[i].DeepCopy()
		switch {
		case np.APIVersion != networkingv1.SchemeGroupVersion.String():
			return Step{}, fmt.Errorf("policies[%d].apiVersion: %q, want %q", i, np.APIVersion, networkingv1.SchemeGroupVersion.String())
		case np.Kind != "NetworkPolicy":
			return Step{}, fmt.Errorf("policies[%d].kind: %q, want NetworkPolicy", i, np.Kind)
		case np.Name == "":
			return Step{}, fmt.Errorf("policies[%d].metadata.name: required", i)
		case np.Namespace == "":
			return Step{}, fmt.Errorf("policies[%d].metadata.namespace: required", i)
		}
		key := np.Namespace + "/" + np.Name
		if seen[key] {
			return Step{}, fmt.Errorf("policies[%d]: %s appears twice in one step", i, key)
		}
		seen[key] = true
		s.Policies = append(s.Policies, np)
	}
	svcs := map[string]bool{}
	for i := range sf.Services {
		sv := sf.Services[i].DeepCopy()
		switch {
		case sv.APIVersion != "v1" || sv.Kind != "Service":
			return Step{}, fmt.Errorf("services[%d]: apiVersion/kind %s/%s, want v1/Service", i, sv.APIVersion, sv.Kind)
		case sv.Name == "" || sv.Namespace == "":
			return Step{}, fmt.Errorf("services[%d].metadata: name and namespace are required", i)
		}
		svcs[sv.Namespace+"/"+sv.Name] = true
		s.Services = append(s.Services, sv)
	}
	for i, x := range sf.External {
		if err := checkKey(x.Service); err != nil {
			return Step{}, fmt.Errorf("external[%d].service: %w", i, err)
		}
		if x.Port < 1 || x.Port > 65535 {
			return Step{}, fmt.Errorf("external[%d].port: %d is not in 1-65535", i, x.Port)
		}
		if x.Protocol != "TCP" && x.Protocol != "UDP" && x.Protocol != "SCTP" {
			return Step{}, fmt.Errorf("external[%d].protocol: %q is not TCP, UDP or SCTP", i, x.Protocol)
		}
		s.External = append(s.External, x)
	}
	for i, k := range sf.DeletePolicies {
		if err := checkKey(k); err != nil {
			return Step{}, fmt.Errorf("deletePolicies[%d]: %w", i, err)
		}
	}
	for k, l := range sf.PodLabels {
		if err := checkKey(k); err != nil {
			return Step{}, fmt.Errorf("podLabels[%s]: %w", k, err)
		}
		if err := checkLabels(l); err != nil {
			return Step{}, fmt.Errorf("podLabels[%s]: %w", k, err)
		}
	}
	for ns, l := range sf.NamespaceLabels {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			return Step{}, fmt.Errorf("namespaceLabels[%s]: not a namespace name: %s", ns, msgs[0])
		}
		if err := checkLabels(l); err != nil {
			return Step{}, fmt.Errorf("namespaceLabels[%s]: %w", ns, err)
		}
	}
	if strings.TrimSpace(sf.Expect) == "" {
		return Step{}, fmt.Errorf("expect: at least one truth table is required")
	}
	tables, err := truthtable.ParseTables(sf.Expect)
	if err != nil {
		return Step{}, fmt.Errorf("expect: %w", err)
	}
	if len(tables) == 0 {
		return Step{}, fmt.Errorf("expect: at least one truth table is required")
	}
	s.Expect = tables
	return s, nil
}

// checkKey checks a "namespace/name" key.
func checkKey(k string) error {
	ns, name, ok := strings.Cut(k, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return fmt.Errorf("%q is not namespace/name", k)
	}
	return nil
}

func checkLabels(l map[string]string) error {
	for k, v := range l {
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			return fmt.Errorf("label key %q: %s", k, msgs[0])
		}
		if msgs := validation.IsValidLabelValue(v); len(msgs) > 0 {
			return fmt.Errorf("label %s value %q: %s", k, v, msgs[0])
		}
	}
	return nil
}
