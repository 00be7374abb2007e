package conformance

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policyd/policyd/cluster"
)

// The model cluster of the upstream suite: namespaces x, y and z, each with
// pods a, b and c. Every pod serves ports 80 and 81 on TCP, UDP and SCTP.
var (
	modelNamespaces = []string{"x", "y", "z"}
	modelPodNames   = []string{"a", "b", "c"}
	modelPorts      = []int32{80, 81}
)

// PodLabelKey is the label every model pod carries with its name as value
// (pod=a), as upstream.
const PodLabelKey = "pod"

// ModelNamespaces returns the model's namespace names: x, y, z.
func ModelNamespaces() []string { return append([]string(nil), modelNamespaces...) }

// ModelPodKeys returns the model's pod keys in truth-table order:
// x/a, x/b, x/c, y/a, …, z/c.
func ModelPodKeys() []string {
	var out []string
	for _, ns := range modelNamespaces {
		for _, p := range modelPodNames {
			out = append(out, ns+"/"+p)
		}
	}
	return out
}

// ModelPorts returns every port the model pods serve: 80 and 81 on TCP, UDP
// and SCTP, sorted by port and then protocol.
func ModelPorts() []PortProto {
	var out []PortProto
	for _, port := range modelPorts {
		for _, proto := range cluster.Protocols {
			out = append(out, PortProto{Port: port, Protocol: proto})
		}
	}
	return out
}

// ModelPortName is the container port name upstream gives a served port,
// e.g. "serve-80-tcp". Named-port cases refer to these names.
func ModelPortName(pp PortProto) string {
	return fmt.Sprintf("serve-%d-%s", pp.Port, pp.Protocol.Lower())
}

// ModelPodIP returns the fixed IPv4 address of model pod key ("x/a"):
// 10.244.<namespace index + 1>.<pod index + 10>, so x/a is 10.244.1.10 and
// z/c is 10.244.3.12. Cases with ipBlock peers are written against these
// addresses. ok is false for a key outside the model.
func ModelPodIP(key string) (ip netip.Addr, ok bool) {
	ns, name, _ := strings.Cut(key, "/")
	i, j := indexOf(modelNamespaces, ns), indexOf(modelPodNames, name)
	if i < 0 || j < 0 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4([4]byte{10, 244, byte(i + 1), byte(j + 10)}), true
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

// ModelCluster returns the model as API objects: the three namespaces, labelled
// only with kubernetes.io/metadata.name as the API server does, and the nine
// running pods, labelled pod=<name>, with their ModelPodIP in status.podIP(s)
// and one container per served port (named cont-<port>-<protocol>, the port
// named ModelPortName), as upstream. Pods are spread round-robin over nodes
// in ModelPodKeys order; with no nodes they are left unscheduled.
func ModelCluster(nodes []string) ([]*corev1.Namespace, []*corev1.Pod) {
	var nss []*corev1.Namespace
	for _, ns := range modelNamespaces {
		nss = append(nss, &corev1.Namespace{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{corev1.LabelMetadataName: ns}},
			Status:     corev1.NamespaceStatus{Phase: corev1.NamespaceActive},
		})
	}
	var containers []corev1.Container
	for _, pp := range ModelPorts() {
		containers = append(containers, corev1.Container{
			Name: fmt.Sprintf("cont-%d-%s", pp.Port, pp.Protocol.Lower()),
			Ports: []corev1.ContainerPort{{
				Name:          ModelPortName(pp),
				ContainerPort: pp.Port,
				Protocol:      corev1.Protocol(pp.Protocol.String()),
			}},
		})
	}
	var pods []*corev1.Pod
	for i, key := range ModelPodKeys() {
		ns, name, _ := strings.Cut(key, "/")
		ip, _ := ModelPodIP(key)
		p := &corev1.Pod{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{PodLabelKey: name}},
			Spec:       corev1.PodSpec{Containers: deepCopyContainers(containers)},
			Status: corev1.PodStatus{
				Phase:  corev1.PodRunning,
				PodIP:  ip.String(),
				PodIPs: []corev1.PodIP{{IP: ip.String()}},
			},
		}
		if len(nodes) > 0 {
			p.Spec.NodeName = nodes[i%len(nodes)]
		}
		pods = append(pods, p)
	}
	return nss, pods
}

func deepCopyContainers(in []corev1.Container) []corev1.Container {
	out := make([]corev1.Container, len(in))
	for i := range in {
		in[i].DeepCopyInto(&out[i])
	}
	return out
}

// Apply returns the objects after this step's changes: policies in
// DeletePolicies are removed, Policies are created or replace the policy of
// the same key, NamespaceLabels and PodLabels replace the label sets of the
// named objects. A namespace always keeps its kubernetes.io/metadata.name
// label, as the API server enforces. The inputs are not modified; the outputs
// are deep copies, policies sorted by key.
//
// Deleting a policy that does not exist, or relabelling an object that does
// not exist, is an error: in the data it can only be a mistake.
func (s Step) Apply(nss []*corev1.Namespace, pods []*corev1.Pod, pols []*networkingv1.NetworkPolicy) ([]*corev1.Namespace, []*corev1.Pod, []*networkingv1.NetworkPolicy, error) {
	byKey := map[string]*networkingv1.NetworkPolicy{}
	for _, p := range pols {
		byKey[p.Namespace+"/"+p.Name] = p.DeepCopy()
	}
	for _, k := range s.DeletePolicies {
		if _, ok := byKey[k]; !ok {
			return nil, nil, nil, fmt.Errorf("step %q: deletePolicies: no policy %s", s.Name, k)
		}
		delete(byKey, k)
	}
	for _, p := range s.Policies {
		byKey[p.Namespace+"/"+p.Name] = p.DeepCopy()
	}
	outPols := make([]*networkingv1.NetworkPolicy, 0, len(byKey))
	for _, p := range byKey {
		outPols = append(outPols, p)
	}
	sort.Slice(outPols, func(i, j int) bool {
		return outPols[i].Namespace+"/"+outPols[i].Name < outPols[j].Namespace+"/"+outPols[j].Name
	})

	outNss := make([]*corev1.Namespace, len(nss))
	nsIndex := map[string]int{}
	for i, ns := range nss {
		outNss[i] = ns.DeepCopy()
		nsIndex[ns.Name] = i
	}
	for _, name := range slices.Sorted(maps.Keys(s.NamespaceLabels)) {
		i, ok := nsIndex[name]
		if !ok {
			return nil, nil, nil, fmt.Errorf("step %q: namespaceLabels: no namespace %s", s.Name, name)
		}
		l := copyLabels(s.NamespaceLabels[name])
		if v, set := l[corev1.LabelMetadataName]; set && v != name {
			return nil, nil, nil, fmt.Errorf("step %q: namespaceLabels[%s]: %s must be %q, got %q", s.Name, name, corev1.LabelMetadataName, name, v)
		}
		l[corev1.LabelMetadataName] = name
		outNss[i].Labels = l
	}

	outPods := make([]*corev1.Pod, len(pods))
	podIndex := map[string]int{}
	for i, p := range pods {
		outPods[i] = p.DeepCopy()
		podIndex[p.Namespace+"/"+p.Name] = i
	}
	for _, key := range slices.Sorted(maps.Keys(s.PodLabels)) {
		i, ok := podIndex[key]
		if !ok {
			return nil, nil, nil, fmt.Errorf("step %q: podLabels: no pod %s", s.Name, key)
		}
		outPods[i].Labels = copyLabels(s.PodLabels[key])
	}
	return outNss, outPods, outPols, nil
}

func copyLabels(in map[string]string) map[string]string {
	out := make(map[string]string, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}
