package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/manifest"
)

// workloadKinds maps what kubectl accepts before a slash (its short names,
// singular and plural names, and resource.group) to the workload kinds an
// end of a connection may name: `deploy/web` is every pod of Deployment
// web, as `kubectl logs deploy/web` reads it.
var workloadKinds = map[string]string{
	"deploy": manifest.KindDeployment, "deployment": manifest.KindDeployment, "deployments": manifest.KindDeployment, "deployment.apps": manifest.KindDeployment, "deployments.apps": manifest.KindDeployment,
	"sts": manifest.KindStatefulSet, "statefulset": manifest.KindStatefulSet, "statefulsets": manifest.KindStatefulSet, "statefulset.apps": manifest.KindStatefulSet, "statefulsets.apps": manifest.KindStatefulSet,
	"ds": manifest.KindDaemonSet, "daemonset": manifest.KindDaemonSet, "daemonsets": manifest.KindDaemonSet, "daemonset.apps": manifest.KindDaemonSet, "daemonsets.apps": manifest.KindDaemonSet,
	"rs": manifest.KindReplicaSet, "replicaset": manifest.KindReplicaSet, "replicasets": manifest.KindReplicaSet, "replicaset.apps": manifest.KindReplicaSet, "replicasets.apps": manifest.KindReplicaSet,
	"job": manifest.KindJob, "jobs": manifest.KindJob, "job.batch": manifest.KindJob, "jobs.batch": manifest.KindJob,
}

// workloadRef is an end written as TYPE/NAME for a workload in a namespace.
type workloadRef struct {
	kind, namespace, name string
}

func (w workloadRef) String() string {
	return strings.ToLower(w.kind) + " " + w.namespace + "/" + w.name
}

// parseWorkloadRef reads TYPE/NAME (deploy/web, sts/db, …) in namespace ns;
// ok is false for anything else (a pod, NAMESPACE/NAME, an address). A
// namespace named like a type is written pod/NAMESPACE/NAME (qualify).
func parseWorkloadRef(s, ns string) (workloadRef, bool) {
	typ, name, found := strings.Cut(s, "/")
	kind, known := workloadKinds[strings.ToLower(typ)]
	if !found || !known || name == "" || strings.Contains(name, "/") {
		return workloadRef{}, false
	}
	return workloadRef{kind: kind, namespace: ns, name: name}, true
}

// workloadPods returns the pods of w in snap ("namespace/name", sorted):
// those of its namespace its selector selects, as its controller counts
// them. The selector comes from the manifests read, or from the API
// server. A workload that is not found, or selects no pod, is a usage
// error that says so.
func (s *source) workloadPods(ctx context.Context, snap *cluster.Snapshot, w workloadRef) ([]string, error) {
	sel, err := s.workloadSelector(ctx, w)
	if err != nil {
		return nil, err
	}
	selector, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return nil, usagef("%s: spec.selector: %w", w, err)
	}
	if selector.Empty() {
		// An empty selector selects every pod of the namespace; the API
		// refuses such a workload, so a manifest with one is a mistake.
		return nil, usagef("%s: spec.selector is empty (the API server refuses such a %s)", w, w.kind)
	}
	var out []string
	for _, p := range snap.Pods {
		if p.Namespace == w.namespace && selector.Matches(labels.Set(p.Labels)) {
			out = append(out, p.Key())
		}
	}
	if len(out) == 0 {
		return nil, usagef("%s selects no pod (selector %s)", w, selector)
	}
	slices.Sort(out)
	return out, nil
}

// workloadSelector returns w's spec.selector: from the manifests when they
// were read (their workloads), else from the API server.
func (s *source) workloadSelector(ctx context.Context, w workloadRef) (*metav1.LabelSelector, error) {
	if s.manifests.given() {
		if s.objs != nil {
			for _, x := range s.objs.Workloads {
				if x.Kind == w.kind && x.Namespace == w.namespace && x.Name == w.name {
					if x.Selector == nil {
						// A Job's selector is the API server's to write
						// (controller-uid); its template's labels are what
						// the pods made from the manifest carry.
						return &metav1.LabelSelector{MatchLabels: x.Template.Labels}, nil
					}
					return x.Selector, nil
				}
			}
		}
		return nil, usagef("%s not found in -f %s", w, strings.Join(s.manifests, " -f "))
	}
	if s.client == nil {
		return nil, fmt.Errorf("%s: no cluster client", w)
	}
	sel, err := getSelector(ctx, s.client, w)
	switch {
	case apierrors.IsNotFound(err):
		return nil, usagef("%s not found", w)
	case apierrors.IsForbidden(err):
		return nil, fmt.Errorf("reading %s: %w (deploy/cli/explain-rbac.yaml is the read-only role the CLI needs; or name its pods)", w, err)
	case err != nil:
		return nil, fmt.Errorf("reading %s: %w", w, err)
	}
	return sel, nil
}

// getSelector reads one workload's spec.selector from the API server.
func getSelector(ctx context.Context, c kubernetes.Interface, w workloadRef) (*metav1.LabelSelector, error) {
	get := metav1.GetOptions{}
	switch w.kind {
	case manifest.KindDeployment:
		o, err := c.AppsV1().Deployments(w.namespace).Get(ctx, w.name, get)
		if err != nil {
			return nil, err
		}
		return o.Spec.Selector, nil
	case manifest.KindStatefulSet:
		o, err := c.AppsV1().StatefulSets(w.namespace).Get(ctx, w.name, get)
		if err != nil {
			return nil, err
		}
		return o.Spec.Selector, nil
	case manifest.KindDaemonSet:
		o, err := c.AppsV1().DaemonSets(w.namespace).Get(ctx, w.name, get)
		if err != nil {
			return nil, err
		}
		return o.Spec.Selector, nil
	case manifest.KindReplicaSet:
		o, err := c.AppsV1().ReplicaSets(w.namespace).Get(ctx, w.name, get)
		if err != nil {
			return nil, err
		}
		return o.Spec.Selector, nil
	case manifest.KindJob:
		o, err := c.BatchV1().Jobs(w.namespace).Get(ctx, w.name, get)
		if err != nil {
			return nil, err
		}
		return o.Spec.Selector, nil
	}
	return nil, fmt.Errorf("%s: not a workload kind", w.kind)
}
