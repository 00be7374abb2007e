package manifest

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The workload kinds whose pod templates become pods (Objects.AllPods).
const (
	KindDeployment  = "Deployment"
	KindStatefulSet = "StatefulSet"
	KindDaemonSet   = "DaemonSet"
	KindReplicaSet  = "ReplicaSet"
	KindJob         = "Job"
	KindCronJob     = "CronJob"
)

var (
	gvkDeployment  = appsv1.SchemeGroupVersion.WithKind(KindDeployment)
	gvkStatefulSet = appsv1.SchemeGroupVersion.WithKind(KindStatefulSet)
	gvkDaemonSet   = appsv1.SchemeGroupVersion.WithKind(KindDaemonSet)
	gvkReplicaSet  = appsv1.SchemeGroupVersion.WithKind(KindReplicaSet)
	gvkJob         = batchv1.SchemeGroupVersion.WithKind(KindJob)
	gvkCronJob     = batchv1.SchemeGroupVersion.WithKind(KindCronJob)
	workloadGVKs   = []schema.GroupVersionKind{gvkDeployment, gvkStatefulSet, gvkDaemonSet, gvkReplicaSet, gvkJob, gvkCronJob}
)

// Workload is a controller of pods read from the manifests: what policies
// see of its pods is its pod template (labels, named ports, hostNetwork)
// and its namespace.
type Workload struct {
	// Kind is one of the Kind* workload constants.
	Kind      string
	Namespace string
	Name      string
	// Replicas is how many pods it asks for (1 for a DaemonSet, whose count
	// depends on the nodes; a Job's parallelism).
	Replicas int32
	Selector *metav1.LabelSelector
	Template corev1.PodTemplateSpec
	// ControlledBy is "Kind name" of the workload's controller when the
	// manifests are a dump of a live cluster (a Deployment's ReplicaSet, a
	// CronJob's Job): such a workload makes no pods of its own.
	ControlledBy string
}

// Key returns "Kind namespace/name".
func (w *Workload) Key() string { return w.Kind + " " + w.Namespace + "/" + w.Name }

// workloadOf turns a decoded workload object into a Workload; ok is false
// for any other object.
func workloadOf(obj any) (*Workload, bool) {
	var w Workload
	var meta metav1.ObjectMeta
	one := int32(1)
	replicas := func(r *int32) int32 {
		if r == nil {
			return one
		}
		return *r
	}
	switch o := obj.(type) {
	case *appsv1.Deployment:
		meta, w = o.ObjectMeta, Workload{Kind: KindDeployment, Replicas: replicas(o.Spec.Replicas), Selector: o.Spec.Selector, Template: o.Spec.Template}
	case *appsv1.StatefulSet:
		meta, w = o.ObjectMeta, Workload{Kind: KindStatefulSet, Replicas: replicas(o.Spec.Replicas), Selector: o.Spec.Selector, Template: o.Spec.Template}
	case *appsv1.DaemonSet:
		meta, w = o.ObjectMeta, Workload{Kind: KindDaemonSet, Replicas: 1, Selector: o.Spec.Selector, Template: o.Spec.Template}
	case *appsv1.ReplicaSet:
		meta, w = o.ObjectMeta, Workload{Kind: KindReplicaSet, Replicas: replicas(o.Spec.Replicas), Selector: o.Spec.Selector, Template: o.Spec.Template}
	case *batchv1.Job:
		meta, w = o.ObjectMeta, Workload{Kind: KindJob, Replicas: replicas(o.Spec.Parallelism), Selector: o.Spec.Selector, Template: o.Spec.Template}
	case *batchv1.CronJob:
		meta, w = o.ObjectMeta, Workload{Kind: KindCronJob, Replicas: replicas(o.Spec.JobTemplate.Spec.Parallelism), Selector: o.Spec.JobTemplate.Spec.Selector, Template: o.Spec.JobTemplate.Spec.Template}
	default:
		return nil, false
	}
	w.Namespace, w.Name = meta.Namespace, meta.Name
	if ref := metav1.GetControllerOf(&meta); ref != nil {
		w.ControlledBy = ref.Kind + " " + ref.Name
	}
	return &w, true
}

// TemplateOfAnnotation is set on the pods a workload makes: "Kind
// namespace/name" of the workload whose template the pod is.
const TemplateOfAnnotation = "policyd.io/pod-template-of"

// maxReplicas bounds the pods one workload becomes with AllReplicas: a
// matrix of more is not read by anyone, and a hostile manifest must not
// make millions of pods.
const maxReplicas = 20

// podNames returns the names of the pods w becomes: one representative
// (named as the workload; a StatefulSet's first pod, NAME-0), or with all
// set, up to maxReplicas pods NAME-0, NAME-1, ...
func (w *Workload) podNames(all bool) []string {
	n := int32(1)
	if all {
		n = min(max(w.Replicas, 1), maxReplicas)
	}
	if n == 1 && w.Kind != KindStatefulSet {
		return []string{w.Name}
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%d", w.Name, i)
	}
	return names
}

// AllPods returns the Pods of the manifests followed by the pods their
// workloads make (sorted by key), and a note for each workload that makes
// none or more than one. A workload makes none when a controller of it is
// read too (its pods come from that controller) or when Pods it selects are
// in the manifests already (a dump of a live cluster). With all, a workload
// makes its replicas (at most maxReplicas); else one representative pod.
// A made pod that would take the name of another pod is left out, noted.
func (o *Objects) AllPods(all bool) ([]*corev1.Pod, []string) {
	pods := slices.Clone(o.Pods)
	taken := map[string]bool{}
	for _, p := range o.Pods {
		taken[p.Namespace+"/"+p.Name] = true
	}
	var notes []string
	read := map[string]bool{}
	for _, w := range o.Workloads {
		read[w.Kind+" "+w.Name+" in "+w.Namespace] = true
	}
	ws := slices.Clone(o.Workloads)
	sort.Slice(ws, func(i, j int) bool { return ws[i].Key() < ws[j].Key() })
	var made []*corev1.Pod
	for _, w := range ws {
		if w.ControlledBy != "" && read[w.ControlledBy+" in "+w.Namespace] {
			continue // its controller makes the pods
		}
		if sel, err := metav1.LabelSelectorAsSelector(w.Selector); err == nil && !sel.Empty() && slices.ContainsFunc(o.Pods, func(p *corev1.Pod) bool {
			return p.Namespace == w.Namespace && sel.Matches(labels.Set(p.Labels))
		}) {
			notes = append(notes, fmt.Sprintf("%s: its pods are in the manifests; no pod made from its template", w.Key()))
			continue
		}
		names := w.podNames(all)
		for _, name := range names {
			key := w.Namespace + "/" + name
			if taken[key] {
				notes = append(notes, fmt.Sprintf("%s: pod %s is taken by another object; not made from the template", w.Key(), key))
				continue
			}
			taken[key] = true
			p := &corev1.Pod{
				TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: KindPod},
				ObjectMeta: *w.Template.ObjectMeta.DeepCopy(),
				Spec:       *w.Template.Spec.DeepCopy(),
			}
			p.Namespace, p.Name, p.GenerateName = w.Namespace, name, ""
			if p.Annotations == nil {
				p.Annotations = map[string]string{}
			}
			p.Annotations[TemplateOfAnnotation] = w.Key()
			p.Status.Phase = corev1.PodRunning
			made = append(made, p)
		}
		if w.Replicas > 1 && !all {
			notes = append(notes, fmt.Sprintf("%s: %d replicas, judged as one pod %s/%s (--all-replicas makes each)", w.Key(), w.Replicas, w.Namespace, names[0]))
		}
	}
	return append(pods, made...), notes
}

// offlineNode is the node pods are placed on offline when the manifests
// name none (no Node objects, no spec.nodeName).
const offlineNode = "node-1"

// AssignAddresses places pods as policyd lab does: every pod without a
// node (not hostNetwork, not terminated) is given one, and every such pod
// without an address (no status.podIPs) an IPv4 address. Pods without a
// node are spread in key order over the known nodes (Node objects and the
// nodeNames pods give, sorted; offlineNode when there is none), and node
// i's pods take the free addresses of 10.240.i.0/24 from .2 up. It returns
// the pods (copies where changed) and a note per assignment. Addresses the
// manifests give are never reused.
func AssignAddresses(pods []*corev1.Pod, nodes []*corev1.Node) ([]*corev1.Pod, []string) {
	names := map[string]bool{}
	for _, n := range nodes {
		names[n.Name] = true
	}
	used := map[netip.Addr]bool{}
	for _, p := range pods {
		if p.Spec.NodeName != "" {
			names[p.Spec.NodeName] = true
		}
		for _, ip := range p.Status.PodIPs {
			if a, err := netip.ParseAddr(ip.IP); err == nil {
				used[a.Unmap()] = true
			}
		}
		if a, err := netip.ParseAddr(p.Status.PodIP); err == nil {
			used[a.Unmap()] = true
		}
	}
	nodeList := make([]string, 0, len(names))
	for n := range names {
		nodeList = append(nodeList, n)
	}
	sort.Strings(nodeList)
	if len(nodeList) == 0 {
		nodeList = []string{offlineNode}
	}
	idx := map[string]int{}
	for i, n := range nodeList {
		idx[n] = i
	}
	order := slices.Clone(pods)
	sort.SliceStable(order, func(i, j int) bool {
		return order[i].Namespace+"/"+order[i].Name < order[j].Namespace+"/"+order[j].Name
	})
	changed := map[*corev1.Pod]*corev1.Pod{}
	var notes []string
	unscheduled := 0
	for _, p := range order {
		if p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		hasAddr := p.Status.PodIP != "" || len(p.Status.PodIPs) > 0
		node := p.Spec.NodeName
		if node == "" {
			node = nodeList[unscheduled%len(nodeList)]
			unscheduled++
		}
		if hasAddr {
			if node != p.Spec.NodeName {
				q := p.DeepCopy()
				q.Spec.NodeName = node
				changed[p] = q
				notes = append(notes, fmt.Sprintf("pod %s/%s: no spec.nodeName: judged on node %s, as policyd lab would place it", p.Namespace, p.Name, node))
			}
			continue
		}
		i := idx[node]
		if i > 255 {
			notes = append(notes, fmt.Sprintf("pod %s/%s: no status.podIP, and node %s is beyond the 256 nodes offline addresses cover; it has no address", p.Namespace, p.Name, node))
			continue
		}
		a := netip.AddrFrom4([4]byte{10, 240, byte(i), 2})
		for ; a.As4()[2] == byte(i) && used[a]; a = a.Next() {
		}
		if a.As4()[2] != byte(i) || a.As4()[3] == 255 {
			notes = append(notes, fmt.Sprintf("pod %s/%s: no status.podIP, and node %s's offline range 10.240.%d.0/24 is full; it has no address", p.Namespace, p.Name, node, i))
			continue
		}
		used[a] = true
		q := p.DeepCopy()
		q.Spec.NodeName = node
		q.Status.PodIP, q.Status.PodIPs = a.String(), []corev1.PodIP{{IP: a.String()}}
		changed[p] = q
		notes = append(notes, fmt.Sprintf("pod %s/%s: no status.podIP: judged as %s on node %s, as policyd lab would place it", p.Namespace, p.Name, a, node))
	}
	out := make([]*corev1.Pod, len(pods))
	for i, p := range pods {
		if q, ok := changed[p]; ok {
			out[i] = q
		} else {
			out[i] = p
		}
	}
	return out, notes
}
